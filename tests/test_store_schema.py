"""The database file: pragmas, schema versions and migrations, and how transactions lock it."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from store import NotASessionlspDatabase, SchemaTooNew, Store, StoreError, migrations
from store.migrations import LATEST
from store.models import Event, TextPart


def raw(path: Path, busy_timeout_ms: int = 0) -> apsw.Connection:
    """A plain connection to the file, as another process would open it."""
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(busy_timeout_ms)
    return conn


def scalar(conn: apsw.Connection, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def schema_of(conn: apsw.Connection) -> list[tuple[Any, ...]]:
    return [
        tuple(r) for r in conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY 1, 2")
    ]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pragma(store: Store, name: str) -> Any:
    # Pragmas like synchronous and busy_timeout belong to a connection, so ask the store's own.
    return scalar(store._connection(), f"PRAGMA {name}")


@pytest.fixture
def thread_runner() -> Iterator[Callable[[Callable[[], None]], threading.Thread]]:
    threads: list[threading.Thread] = []

    def start(target: Callable[[], None]) -> threading.Thread:
        t = threading.Thread(target=target, daemon=True)
        threads.append(t)
        t.start()
        return t

    yield start
    for t in threads:
        t.join(timeout=10)


# --- the file and its pragmas -------------------------------------------------------------------


def test_store_keeps_everything_in_one_database_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "sessions.db"
    store = Store(path)
    with store.write() as tx:
        sid = tx.create_session("one file", "/p").id
        tx.add_message(sid, "prompt")
    names = {p.name for p in path.parent.iterdir()}
    assert names <= {"sessions.db", "sessions.db-wal", "sessions.db-shm"}
    assert "sessions.db" in names
    store.close()


def test_journal_mode_is_wal_on_the_file(store: Store, db_path: Path) -> None:
    assert pragma(store, "journal_mode") == "wal"
    assert scalar(raw(db_path), "PRAGMA journal_mode") == "wal"  # persistent in the file


def test_connection_pragmas_synchronous_full_foreign_keys_busy_timeout(store: Store) -> None:
    assert pragma(store, "synchronous") == 2  # FULL
    assert pragma(store, "foreign_keys") == 1
    assert pragma(store, "busy_timeout") == store.busy_timeout_ms > 0


def test_every_thread_connection_gets_the_same_pragmas(
    store: Store, thread_runner: Callable[[Callable[[], None]], threading.Thread]
) -> None:
    seen: dict[str, Any] = {}

    def look() -> None:
        for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
            seen[name] = pragma(store, name)
        seen["connection"] = store._connection()

    thread_runner(look).join()
    assert seen["connection"] is not store._connection()
    assert seen["journal_mode"] == "wal"
    assert seen["synchronous"] == 2
    assert seen["foreign_keys"] == 1
    assert seen["busy_timeout"] == store.busy_timeout_ms


def test_busy_timeout_is_configurable(db_path: Path) -> None:
    store = Store(db_path, busy_timeout_ms=1234)
    assert pragma(store, "busy_timeout") == 1234
    store.close()


# --- schema versions ----------------------------------------------------------------------------


def test_new_file_is_migrated_to_the_latest_version(store: Store, db_path: Path) -> None:
    conn = raw(db_path)
    assert scalar(conn, "PRAGMA user_version") == LATEST
    tables = {r[1] for r in schema_of(conn) if r[0] == "table"}
    assert {"session", "message", "part", "compaction", "lease", "event"} <= tables


def test_reopening_an_existing_file_keeps_its_data_and_does_not_migrate_again(
    db_path: Path,
) -> None:
    first = Store(db_path)
    with first.write() as tx:
        sid = tx.create_session("kept").id
    first.close()
    schema = schema_of(raw(db_path))

    again = Store(db_path)  # the v1 script would fail with "table session already exists"
    with again.read() as tx:
        session = tx.get_session(sid)
        assert session is not None
        assert session.title == "kept"
    assert schema_of(raw(db_path)) == schema
    assert scalar(raw(db_path), "PRAGMA user_version") == LATEST
    again.close()


def test_migrations_run_forward_once_each(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = {"v2.sql": "CREATE TABLE added_in_v2 (x INTEGER);"}
    runs: list[str] = []
    real_read = migrations.read_script

    def read(name: str) -> str:
        runs.append(name)
        return scripts[name] if name in scripts else real_read(name)

    monkeypatch.setattr(migrations, "read_script", read)
    monkeypatch.setattr(migrations, "MIGRATIONS", [(1, "schema.sql")])
    monkeypatch.setattr(migrations, "LATEST", 1)

    Store(db_path).close()
    assert runs == ["schema.sql"]
    assert scalar(raw(db_path), "PRAGMA user_version") == 1

    monkeypatch.setattr(migrations, "MIGRATIONS", [(1, "schema.sql"), (2, "v2.sql")])
    monkeypatch.setattr(migrations, "LATEST", 2)
    Store(db_path).close()
    assert runs == ["schema.sql", "v2.sql"]  # only the new step ran
    conn = raw(db_path)
    assert scalar(conn, "PRAGMA user_version") == 2
    assert scalar(conn, "SELECT count(*) FROM sqlite_master WHERE name = 'added_in_v2'") == 1

    Store(db_path).close()
    assert runs == ["schema.sql", "v2.sql"]  # nothing ran on reopen


def test_failed_migration_leaves_the_old_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrations, "MIGRATIONS", [(1, "schema.sql")])
    monkeypatch.setattr(migrations, "LATEST", 1)
    Store(db_path).close()
    broken = "CREATE TABLE half (x); SELECT no_such_function();"
    monkeypatch.setattr(migrations, "read_script", lambda name: broken)
    monkeypatch.setattr(migrations, "MIGRATIONS", [(1, "schema.sql"), (2, "v2.sql")])
    monkeypatch.setattr(migrations, "LATEST", 2)
    with pytest.raises(StoreError, match="no such function"):
        Store(db_path)
    conn = raw(db_path)
    assert scalar(conn, "PRAGMA user_version") == 1
    assert scalar(conn, "SELECT count(*) FROM sqlite_master WHERE name = 'half'") == 0


def test_a_version_1_file_is_upgraded_with_the_unfinished_message_index(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", [(1, "schema.sql")])
        m.setattr(migrations, "LATEST", 1)
        Store(db_path).close()
    assert scalar(raw(db_path), "PRAGMA user_version") == 1
    Store(db_path).close()
    conn = raw(db_path)
    assert scalar(conn, "PRAGMA user_version") == LATEST
    names = "SELECT count(*) FROM sqlite_master WHERE name = 'message_unfinished'"
    assert scalar(conn, names) == 1


def test_a_version_3_file_is_upgraded_with_the_permission_rule_table(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
        m.setattr(migrations, "LATEST", 3)
        old = Store(db_path)
        with old.write() as tx:
            sid = tx.create_session("from v3").id
        old.close()
    assert scalar(raw(db_path), "PRAGMA user_version") == 3
    store = Store(db_path)
    with store.write() as tx:
        tx.remember_permission(sid, "edit", "docs/a.md")
        assert [r.pattern for r in tx.remembered_permissions(sid)] == ["docs/a.md"]
        plan = tx.explain("SELECT * FROM permission_rule WHERE session_id = ?", (sid,))
    store.close()
    assert scalar(raw(db_path), "PRAGMA user_version") == LATEST >= 4
    assert any("permission_rule_by_session" in step for step in plan), plan


def _newer_database(path: Path, journal_mode: str) -> None:
    conn = raw(path)
    conn.execute(f"PRAGMA journal_mode = {journal_mode}")
    conn.execute("CREATE TABLE from_the_future (x TEXT); INSERT INTO from_the_future VALUES ('a')")
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()


def test_newer_schema_is_refused_and_its_contents_left_alone(db_path: Path) -> None:
    _newer_database(db_path, "wal")
    before = digest(db_path)
    with pytest.raises(SchemaTooNew):
        Store(db_path)
    conn = raw(db_path)
    assert scalar(conn, "PRAGMA user_version") == LATEST + 1
    assert [r[1] for r in schema_of(conn)] == ["from_the_future"]
    assert [tuple(r) for r in conn.execute("SELECT x FROM from_the_future")] == [("a",)]
    assert digest(db_path) == before


def test_newer_schema_is_refused_without_changing_the_files_journal_mode(db_path: Path) -> None:
    # A refused file must be left exactly as found, including its (persistent) journal mode.
    _newer_database(db_path, "delete")
    before = digest(db_path)
    with pytest.raises(SchemaTooNew):
        Store(db_path)
    assert scalar(raw(db_path), "PRAGMA journal_mode") == "delete"
    assert digest(db_path) == before


# --- locking ------------------------------------------------------------------------------------


def test_write_takes_the_write_lock_before_writing_anything(
    store: Store,
    db_path: Path,
    thread_runner: Callable[[Callable[[], None]], threading.Thread],
) -> None:
    opened = threading.Event()
    finish = threading.Event()

    def hold_write_open() -> None:
        with store.write():
            opened.set()
            finish.wait(10)

    holder = thread_runner(hold_write_open)
    assert opened.wait(10)
    other = raw(db_path, busy_timeout_ms=0)
    try:
        with pytest.raises(apsw.BusyError):
            other.execute("BEGIN IMMEDIATE")
        # a reader is not blocked by the held write lock (WAL)
        assert scalar(other, "SELECT count(*) FROM session") == 0
    finally:
        finish.set()
        holder.join(10)
    other.execute("BEGIN IMMEDIATE")  # free again once the write ended
    other.execute("ROLLBACK")


def test_nested_write_keeps_the_write_lock(
    store: Store,
    db_path: Path,
    thread_runner: Callable[[Callable[[], None]], threading.Thread],
) -> None:
    opened = threading.Event()
    finish = threading.Event()

    def hold_nested_write() -> None:
        with store.write(), store.write():
            opened.set()
            finish.wait(10)

    holder = thread_runner(hold_nested_write)
    assert opened.wait(10)
    other = raw(db_path, busy_timeout_ms=0)
    try:
        with pytest.raises(apsw.BusyError):
            other.execute("BEGIN IMMEDIATE")
    finally:
        finish.set()
        holder.join(10)


def test_read_does_not_block_a_writer(store: Store, db_path: Path) -> None:
    impatient = Store(db_path, busy_timeout_ms=0)  # a blocked write would raise BusyError
    with store.read() as tx:
        assert tx.list_sessions() == []
        with impatient.write() as wtx:
            wtx.create_session("written during a read")
    with store.read() as tx:
        assert [s.title for s in tx.list_sessions()] == ["written during a read"]
    impatient.close()


def test_read_is_a_snapshot(store: Store, db_path: Path) -> None:
    other = Store(db_path, busy_timeout_ms=0)
    with store.write() as tx:
        sid = tx.create_session("before").id
    with store.read() as tx:
        assert tx.require_session(sid).title == "before"
        seq = tx.last_seq()
        with other.write() as wtx:
            wtx.update_session(sid, title="after")
            wtx.create_session("another")
        # still the snapshot taken at the first read
        assert tx.require_session(sid).title == "before"
        assert tx.last_seq() == seq
        assert len(tx.list_sessions()) == 1
    with store.read() as tx:
        assert tx.require_session(sid).title == "after"
        assert tx.last_seq() == seq + 2
    other.close()


def test_read_inside_a_write_sees_the_writes_so_far(store: Store) -> None:
    with store.write() as tx:
        sid = tx.create_session("uncommitted").id
        with store.read() as rtx:
            assert rtx.require_session(sid).title == "uncommitted"
    with store.read() as rtx:
        assert rtx.get_session(sid) is not None


# A writer waiting for the lock must not stop the rest of the process: the lock holder (another
# thread) has to be able to run and commit. A short busy timeout turns a stall into a BusyError.
CONTENDED_BUSY_TIMEOUT_MS = 1_000


def _write_from_threads(stores: list[Store], sid: str, per_thread: int) -> list[BaseException]:
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def writer(store: Store) -> None:
        try:
            start.wait(10)
            for i in range(per_thread):
                with store.write() as tx:
                    m = tx.add_message(sid, "prompt")
                    tx.put_part(m.id, TextPart(f"{i}"))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_threads_sharing_one_store_can_write_at_the_same_time(db_path: Path) -> None:
    store = Store(db_path, busy_timeout_ms=CONTENDED_BUSY_TIMEOUT_MS)
    with store.write() as tx:
        sid = tx.create_session("shared").id
    batches: list[list[Event]] = []
    store.subscribe(batches.append)

    errors = _write_from_threads([store, store], sid, 25)

    assert errors == []
    with store.read() as tx:
        assert len(tx.messages(sid)) == 50
        stored = tx.events_after(1)
    # each thread's transaction published its own two events, nothing of the other thread's
    assert len(batches) == 50
    for message, part in batches:
        assert part.data["messageId"] == message.data["id"]
        assert part.seq == message.seq + 1
    assert sorted((e for b in batches for e in b), key=lambda e: e.seq) == stored
    store.close()


def test_two_stores_in_one_process_can_write_at_the_same_time(db_path: Path) -> None:
    stores = [Store(db_path, busy_timeout_ms=CONTENDED_BUSY_TIMEOUT_MS) for _ in range(2)]
    with stores[0].write() as tx:
        sid = tx.create_session("shared").id

    errors = _write_from_threads(stores, sid, 25)

    assert errors == []
    with stores[1].read() as tx:
        assert len(tx.messages(sid)) == 50
    for s in stores:
        s.close()


def test_a_file_that_is_not_a_database_gives_a_clear_store_error(tmp_path: Path) -> None:
    bogus = tmp_path / "sessions.db"
    bogus.write_bytes(b"this is not an SQLite database, just some text " * 100)
    with pytest.raises(StoreError, match=r"cannot open database .*sessions\.db"):
        Store(bogus)
    assert bogus.read_bytes().startswith(b"this is not an SQLite database")


def test_another_programs_database_is_refused_before_anything_changes(db_path: Path) -> None:
    conn = raw(db_path)
    conn.execute("CREATE TABLE notes (x TEXT); CREATE VIEW recent AS SELECT x FROM notes")
    conn.close()
    before = digest(db_path)
    with pytest.raises(NotASessionlspDatabase, match=r"not a sessionlsp database .*notes, recent"):
        Store(db_path)
    assert scalar(raw(db_path), "PRAGMA journal_mode") == "delete"
    assert digest(db_path) == before


def test_an_empty_file_becomes_a_new_database(db_path: Path) -> None:
    db_path.touch()
    Store(db_path).close()
    assert scalar(raw(db_path), "PRAGMA user_version") == LATEST
