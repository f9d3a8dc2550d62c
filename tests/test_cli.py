"""The ``sessionlsp`` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import apsw

from store import Store
from store.migrations import LATEST
from tests.support import add_turn, new_session


def test_info_reports_schema_integrity_and_rows_of_an_existing_database(db_path: Path) -> None:
    store = Store(db_path)
    sid = new_session(store)
    add_turn(store, sid, "hello", "hi")
    store.close()
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "info", "--db", str(db_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["schemaVersion"] == LATEST and report["integrity"] == "ok"
    assert report["rows"]["session"] == 1 and report["rows"]["message"] == 2
    assert report["activeCompactions"] == 0


def test_info_creates_a_missing_database_in_a_new_directory(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "dir" / "sessions.db"
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "info", "--db", str(target)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["rows"]["session"] == 0
    assert target.exists()


def test_info_on_a_database_from_a_newer_sessionlsp_says_so_in_one_line_and_fails(
    db_path: Path,
) -> None:
    Store(db_path).close()
    conn = apsw.Connection(str(db_path))
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "info", "--db", str(db_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"sessionlsp: database schema version {LATEST + 1} is newer than this sessionlsp"
        f" supports ({LATEST})"
    ]
