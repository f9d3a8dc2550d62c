"""What the store raises. Each class names one thing that went wrong."""

from __future__ import annotations


class StoreError(Exception):
    """The database could not be opened or written (read-only, disk full, locked, corrupt)."""


class NotFound(StoreError):
    """No row with that id: an unknown session, message, part or compaction."""

    def __init__(self, what: str, id_: str) -> None:
        super().__init__(f"unknown {what}: {id_}")
        self.what = what
        self.id = id_


class ReadOnlyView(StoreError):
    """A write was attempted through a read snapshot; writes need ``Store.write()``."""


class LeaseLost(StoreError):
    """This runner no longer holds the session's lease; another runner took it over."""


class SchemaTooNew(StoreError):
    """The database was written by a newer sessionlsp; this one will not touch it."""


class NotASessionlspDatabase(StoreError):
    """The file is another program's SQLite database; sessionlsp will not adopt it."""
