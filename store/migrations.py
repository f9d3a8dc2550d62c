"""Schema versions, tracked in ``PRAGMA user_version``, applied forward only."""

from __future__ import annotations

import os
from importlib import resources

import apsw

from store.errors import NotASessionlspDatabase, SchemaTooNew

# (version, script): each script takes the database from version - 1 to version.
MIGRATIONS: list[tuple[int, str]] = [
    (1, "schema.sql"),
    (2, "migration_2.sql"),
    (3, "migration_3.sql"),
    (4, "migration_4.sql"),
    (5, "migration_5.sql"),
]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: apsw.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def read_script(name: str) -> str:
    """The SQL of one migration script shipped in the store package."""
    return resources.files("store").joinpath(name).read_text(encoding="utf-8")


def refuse_unusable_file(path: str | os.PathLike[str]) -> None:
    """Before anything (even the journal mode) changes the file, refuse one this version must
    not use: written by a newer sessionlsp (SchemaTooNew), or another program's database
    (NotASessionlspDatabase). A missing or empty file is fine: it becomes a new database.

    A sessionlsp file at version 0 is empty: the first migration creates the tables and sets
    the version in one transaction. So any table, view, index or trigger at version 0 belongs
    to someone else.
    """
    if not os.path.exists(path):
        return
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        version = current_version(conn)
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
            )
        ]
        objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()
    if version > LATEST:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this sessionlsp supports ({LATEST})"
        )
    if version == 0 and objects and objects[0]:
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise NotASessionlspDatabase(
            f"{path} is not a sessionlsp database (it holds tables: {shown or 'none'})"
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
