"""Schema versions, tracked in ``PRAGMA user_version``, applied forward only."""

from __future__ import annotations

from importlib import resources

import apsw

# (version, script): each script takes the database from version - 1 to version.
MIGRATIONS: list[tuple[int, str]] = [
    (1, "schema.sql"),
]
LATEST = MIGRATIONS[-1][0]


class SchemaTooNew(Exception):
    """The database was written by a newer sessionlsp; this one will not touch it."""


def current_version(conn: apsw.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


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
        sql = resources.files("store").joinpath(script).read_text(encoding="utf-8")
        conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {int(target)}")
        version = target
    return version
