"""What the store raises. Each class names one thing that went wrong."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import apsw


class StoreError(Exception):
    """The database could not be opened or written (read-only, disk full, locked, corrupt).

    Every error of the SQLite driver leaves the store as one of these (``Store.write`` and
    ``Store.read`` translate them), so nothing above the store needs to know the driver."""


class ReadOnly(StoreError):
    """The file (or its directory) cannot be written just now; reads still work."""


class Locked(StoreError):
    """Another connection held the write lock past the busy timeout."""


class Full(StoreError):
    """The disk is full (or a file size limit was reached)."""


class Corrupt(StoreError):
    """The file is damaged or is not a database; it is never rewritten."""


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


def from_driver(e: apsw.Error, prefix: str = "") -> StoreError:
    """The store's error for an error of the SQLite driver, with the driver's message."""
    kind: type[StoreError] = StoreError
    if isinstance(e, apsw.ReadOnlyError):
        kind = ReadOnly
    elif isinstance(e, apsw.BusyError | apsw.LockedError):
        kind = Locked
    elif isinstance(e, apsw.FullError):
        kind = Full
    elif isinstance(e, apsw.CorruptError | apsw.NotADBError):
        kind = Corrupt
    return kind(prefix + (str(e) or type(e).__name__))


@contextlib.contextmanager
def driver_errors(prefix: str = "") -> Iterator[None]:
    """Raise the driver's errors inside the block as the store's own."""
    try:
        yield
    except apsw.Error as e:
        raise from_driver(e, prefix) from e
