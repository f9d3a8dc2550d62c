"""Schema versions, tracked in ``PRAGMA user_version``, applied forward only."""

from __future__ import annotations

import os
from importlib import resources

import apsw

# (version, script): each script takes the database from version - 1 to version.
MIGRATIONS: list[tuple[int, str]] = [
    (1, "schema.sql"),
    (2, "migration_2.sql"),
    (3, "migration_3.sql"),
]
LATEST = MIGRATIONS[-1][0]


class SchemaTooNew(Exception):
    """The database was written by a newer sessionlsp; this one will not touch it."""


def current_version(conn: apsw.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def read_script(name: str) -> str:
    """The SQL of one migration script shipped in the store package."""
    return resources.files("store").joinpath(name).read_text(encoding="utf-8")


def refuse_newer_schema(path: str | os.PathLike[str]) -> None:
    """Raise SchemaTooNew before anything (even the journal mode) changes a newer file."""
    if not os.path.exists(path):
        return
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        version = current_version(conn)
    finally:
        conn.close()
    if version > LATEST:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this sessionlsp supports ({LATEST})"
        )


def migrate(conn: apsw.Connection) -> int:
    """Apply every migration newer than the file's version. Call inside a write transaction."""
    version = current_version(conn)
    if version > LATEST:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this sessionlsp supports ({LATEST})"
        )
    for target, script in MIGRATIONS:
        if target <= version:
            continue
        conn.execute(read_script(script))
        conn.execute(f"PRAGMA user_version = {int(target)}")
        version = target
    return version
