"""Storage faults under a live server: a read-only file, a full disk, a file size limit, a
database locked by another process past the busy timeout, a damaged header and a damaged page.

For each: the client gets a JSON-RPC storage error (-31005, or a turn ending with
``StorageError``) whose message says what is wrong and is not a traceback; the server keeps
answering what it still can (and, once the fault is gone, the very request that failed); and
nothing stored before the fault is lost: every session, message, part and event written before
is still there, byte for byte, and ``PRAGMA integrity_check`` is ``ok``. A damaged file is never
rewritten or "repaired".
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import pytest

from client.rpc_client import RpcClient, RpcError
from fakeprovider.openai_server import FakeOpenAI, Reply
from server.errors import SERVER_NOT_INITIALIZED, STORAGE_ERROR
from store.migrations import LATEST
from tests.lsp_support import prompt_and_wait, write_config
from tests.soak.servers import Outputs, kill, spawn

pytestmark = pytest.mark.slow  # real server processes under disk-full, locks and corruption

WAIT_S = 60.0  # an answer normally takes milliseconds; a locked write takes the busy timeout
BUSY_TIMEOUT_S = 5.0  # store.db.DEFAULT_BUSY_TIMEOUT_MS; there is no setting to shorten it


# --- what is stored -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Every row that matters, read straight from the file."""

    sessions: dict[str, tuple[Any, ...]]  # id -> (title, directory, time_created)
    messages: dict[str, tuple[Any, ...]]
    parts: dict[str, tuple[Any, ...]]
    events: dict[int, tuple[Any, ...]]


def read_snapshot(db: Path) -> Snapshot:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        sessions = {
            r[0]: tuple(r[1:])
            for r in conn.execute("SELECT id, title, directory, time_created FROM session")
        }
        messages = {r[0]: tuple(r[1:]) for r in conn.execute("SELECT * FROM message")}
        parts = {r[0]: tuple(r[1:]) for r in conn.execute("SELECT * FROM part")}
        events = {r[0]: tuple(r[1:]) for r in conn.execute("SELECT * FROM event")}
    finally:
        conn.close()
    return Snapshot(sessions, messages, parts, events)


def integrity(db: Path) -> list[str]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def assert_nothing_lost(db: Path, before: Snapshot) -> Snapshot:
    """Everything in ``before`` is still stored, unchanged, and the file is sound."""
    assert integrity(db) == ["ok"]
    after = read_snapshot(db)
    for name in ("sessions", "messages", "parts", "events"):
        old, new = getattr(before, name), getattr(after, name)
        missing = [k for k in old if k not in new]
        changed = [k for k in old if k in new and new[k] != old[k]]
        assert not missing, f"{name} lost: {missing[:5]}"
        assert not changed, f"{name} changed: {changed[:5]}"
    return after


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- servers ------------------------------------------------------------------------------------


@dataclass
class Place:
    db: Path
    config: Path
    logs: Path
    started: int = 0

    def start(self, wrapper: list[str] | None = None, init: bool = True) -> RpcClient:
        self.started += 1
        client = spawn(
            self.db,
            self.config,
            Outputs.under(self.logs, f"server{self.started}"),
            None,
            wrapper or (),
        )
        if init:
            client.initialize(capabilities={}, timeout=WAIT_S)
        return client


def place_in(directory: Path, logs: Path) -> Place:
    directory.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    config = write_config(logs / "config.toml", {"provider": "offline"})
    return Place(directory / "sessions.db", config, logs)


def prompt(client: RpcClient, session_id: str, text: str) -> dict[str, Any]:
    return prompt_and_wait(client, session_id, text, WAIT_S)


def populate(client: RpcClient) -> list[str]:
    """Three sessions with a few answered turns each, one of them compacted."""
    sessions = []
    for i in range(3):
        sid = client.request("session/new", {"title": f"before the fault {i}"}, timeout=WAIT_S)
        sessions.append(str(sid["sessionId"]))
        for turn in range(3):
            assert prompt(client, sessions[-1], f"turn {turn} of session {i}")["stopReason"] == (
                "end_turn"
            )
    compacted = client.request("session/compact", {"sessionId": sessions[0]}, timeout=WAIT_S)
    assert compacted["status"] == "completed"
    return sessions


def populated(place: Place, clients: list[RpcClient]) -> list[str]:
    """``populate`` by a server that then shuts down, leaving the database to the test."""
    writer = place.start()
    clients.append(writer)
    sessions = populate(writer)
    assert writer.close() == 0
    return sessions


def storage_error(call: Any) -> RpcError:
    """The RpcError a call raised; it must be a storage error with a plain message."""
    with pytest.raises(RpcError) as caught:
        call()
    error = caught.value
    assert error.code == STORAGE_ERROR, error
    assert_clear(error.message)
    return error


def assert_clear(message: str) -> None:
    assert message.startswith("storage error: ") or message.startswith("StorageError")
    assert "Traceback" not in message and 'File "' not in message
    assert len(message) < 600


def turn_storage_error(result: dict[str, Any]) -> str:
    """A turn that ended with a storage error: its message."""
    assert result["stopReason"] == "error", result
    error = result["error"]
    assert (error["name"], error["code"]) == ("StorageError", STORAGE_ERROR), result
    message = str(error["message"])
    assert "Traceback" not in message and len(message) < 600
    return message


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return place_in(tmp_path / "data", tmp_path / "logs")


@pytest.fixture
def clients() -> Iterator[list[RpcClient]]:
    """Servers a test started; killed at the end whatever happened."""
    started: list[RpcClient] = []
    yield started
    for client in started:
        kill(client)


# --- read-only ----------------------------------------------------------------------------------


def read_only_wrapper(probe: Path) -> list[str]:
    """A command prefix under which ``probe`` (mode 0444) cannot be opened for writing.

    Root ignores file modes through CAP_DAC_OVERRIDE; dropping it (and CAP_DAC_READ_SEARCH)
    from the bounding set before exec makes root's server obey them. Skips the test when
    neither that nor an ordinary user makes the file read-only here.
    """
    wrapper: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file read-only")
        wrapper = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]
    check = [*wrapper, sys.executable, "-c", f"open({str(probe)!r}, 'r+b')"]
    if subprocess.run(check, capture_output=True, check=False, timeout=WAIT_S).returncode == 0:
        pytest.skip("a file of mode 0444 is still writable for this user")
    return wrapper


def test_read_only_database_refuses_writes_with_a_storage_error_and_still_serves_reads(
    place: Place, clients: list[RpcClient]
) -> None:
    sessions = populated(place, clients)
    before = read_snapshot(place.db)
    os.chmod(place.db, 0o444)
    wrapper = read_only_wrapper(place.db)
    file_before = digest(place.db)
    try:
        server = place.start(wrapper)
        clients.append(server)
        listed = server.request("session/list", {}, timeout=WAIT_S)
        assert {s["id"] for s in listed["sessions"]} == set(sessions)
        loaded = server.request("session/load", {"sessionId": sessions[1]}, timeout=WAIT_S)
        stored = {mid for mid, row in before.messages.items() if row[0] == sessions[1]}
        assert {m["info"]["id"] for m in loaded["messages"]} == stored

        error = storage_error(lambda: server.request("session/new", {}, timeout=WAIT_S))
        assert "readonly" in error.message
        compact = {"sessionId": sessions[2]}
        error = storage_error(lambda: server.request("session/compact", compact, timeout=WAIT_S))
        assert "readonly" in error.message
        assert "readonly" in turn_storage_error(prompt(server, sessions[2], "a write"))
        listed = server.request("session/list", {}, timeout=WAIT_S)  # still serving
        assert len(listed["sessions"]) == 3
        assert server.close() == 0
    finally:
        os.chmod(place.db, 0o644)
    assert digest(place.db) == file_before
    assert_nothing_lost(place.db, before)


def immutable(paths: list[Path], on: bool) -> None:
    """``chattr +i`` / ``-i``: a fault that binds root too (file modes do not)."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("no chattr: cannot make a file immutable")
    flag = "+i" if on else "-i"
    for path in paths:
        done = subprocess.run(
            [chattr, flag, str(path)], capture_output=True, check=False, timeout=WAIT_S
        )
        if done.returncode != 0:
            if on:
                pytest.skip(f"chattr +i fails here: {done.stderr.decode(errors='replace')}")
            raise AssertionError(f"chattr -i {path}: {done.stderr.decode(errors='replace')}")


def test_database_read_only_when_the_server_started_takes_writes_once_the_fault_clears(
    place: Place, clients: list[RpcClient]
) -> None:
    sessions = populated(place, clients)
    before = read_snapshot(place.db)
    files = [p for p in (place.db, place.db.with_name(place.db.name + "-wal")) if p.exists()]
    immutable(files, on=True)
    try:
        server = place.start()
        clients.append(server)
        error = storage_error(lambda: server.request("session/new", {}, timeout=WAIT_S))
        assert "readonly" in error.message
        assert "readonly" in turn_storage_error(prompt(server, sessions[0], "while read-only"))
        listed = server.request("session/list", {}, timeout=WAIT_S)  # reads still work
        assert len(listed["sessions"]) == 3
    finally:
        immutable(files, on=False)
    # The same server, without a restart: every kind of write works again.
    created = server.request("session/new", {"title": "after the fault"}, timeout=WAIT_S)
    assert created["session"]["title"] == "after the fault"
    assert prompt(server, sessions[0], "writable again")["stopReason"] == "end_turn"
    compacted = server.request("session/compact", {"sessionId": sessions[1]}, timeout=WAIT_S)
    assert compacted["status"] == "completed"
    assert server.close() == 0
    assert_nothing_lost(place.db, before)


# --- disk full ----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (needs the right to mount: root here; skipped elsewhere)."""
    mount = shutil.which("mount")
    where = tmp_path / "disk"
    where.mkdir()
    if mount is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
        timeout=WAIT_S,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode(errors='replace')}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=WAIT_S)


def fill(directory: Path) -> Path:
    """Write a file until the disk is full."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == 28, e  # ENOSPC
    finally:
        os.close(fd)
    return filler


BIG = "x" * 900_000  # one prompt text near the limit: about 1.8 MB in the write-ahead log


def test_full_disk_fails_a_write_with_a_storage_error_until_space_is_freed(
    small_disk: Path, tmp_path: Path, clients: list[RpcClient]
) -> None:
    place = place_in(small_disk, tmp_path / "logs")
    server = place.start()
    clients.append(server)
    sessions = populate(server)
    before = read_snapshot(place.db)
    filler = fill(small_disk)

    message = turn_storage_error(prompt(server, sessions[0], BIG))
    assert "full" in message
    listed = server.request("session/list", {}, timeout=WAIT_S)  # reads still work
    assert len(listed["sessions"]) == 3

    filler.unlink()
    answered = prompt(server, sessions[0], BIG)  # the same request, now that there is room
    assert answered["stopReason"] == "end_turn", answered
    assert server.close() == 0
    after = assert_nothing_lost(place.db, before)
    texts = [row for row in after.parts.values() if BIG in str(row[-1])]
    assert texts, "the prompt sent after space was freed is stored whole"


def test_file_size_limit_fails_writes_with_a_storage_error_until_lifted(
    place: Place, clients: list[RpcClient]
) -> None:
    """The same fault without a mount: RLIMIT_FSIZE set on the running server (which, being
    Python, ignores SIGXFSZ), so that every write to the database files fails."""
    server = place.start()
    clients.append(server)
    sessions = populate(server)
    before = read_snapshot(place.db)
    assert server.process is not None
    pid = server.process.pid
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    try:
        for call in (
            lambda: server.request("session/new", {"title": "no room"}, timeout=WAIT_S),
            lambda: server.request("session/compact", {"sessionId": sessions[1]}, timeout=WAIT_S),
        ):
            error = storage_error(call)
            assert "disk I/O error" in error.message or "full" in error.message
        turn_storage_error(prompt(server, sessions[1], "no room for this"))
        listed = server.request("session/list", {}, timeout=WAIT_S)  # reads still work
        assert len(listed["sessions"]) == 3
        loaded = server.request("session/load", {"sessionId": sessions[2]}, timeout=WAIT_S)
        assert len(loaded["messages"]) == 6
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    created = server.request("session/new", {"title": "no room"}, timeout=WAIT_S)
    assert created["session"]["title"] == "no room"
    assert prompt(server, sessions[1], "room again")["stopReason"] == "end_turn"
    assert server.close() == 0
    assert_nothing_lost(place.db, before)


class Follower:
    """A second server process following one session: what another editor would be told."""

    def __init__(self, client: RpcClient, session_id: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        client.on_notification("session/sync", self._on_sync)
        client.request("session/load", {"sessionId": session_id}, timeout=WAIT_S)

    def _on_sync(self, _method: str, params: Any) -> None:
        with self.cond:
            self.events.append(params)
            self.cond.notify_all()

    def wait_for(self, found: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        with self.cond:
            assert self.cond.wait_for(lambda: any(found(e) for e in self.events), WAIT_S)
            return next(e for e in self.events if found(e))


LOCKER = """
import sys, apsw
conn = apsw.Connection(sys.argv[1])
conn.set_busy_timeout(30_000)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
conn.close()
"""


@contextlib.contextmanager
def file_size_limit(pid: int, db: Path) -> Iterator[None]:
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)


@contextlib.contextmanager
def locked_by_another_process(pid: int, db: Path) -> Iterator[None]:
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout is not None and locker.stdin is not None
    try:
        assert locker.stdout.readline().strip() == "locked"
        yield
    finally:
        locker.stdin.write("\n")
        locker.stdin.flush()
        assert locker.wait(timeout=WAIT_S) == 0


@pytest.mark.parametrize("fault", [file_size_limit, locked_by_another_process])
def test_a_storage_fault_mid_answer_keeps_the_ids_and_closes_the_reply_as_failed_once_writes_work(
    place: Place, clients: list[RpcClient], fault: Callable[[int, Path], Any]
) -> None:
    with FakeOpenAI(chunk_chars=4) as fake:
        settings = {"provider": "openai", "model": "m", "baseUrl": fake.base_url, "apiKey": "sk-x"}
        config = write_config(place.logs / "openai.toml", settings)
        openai_place = Place(place.db, config, place.logs)
        server, other = openai_place.start(), openai_place.start()
        clients.extend([server, other])
        sid = server.request("session/new", {"title": "fault"}, timeout=WAIT_S)["sessionId"]
        follower = Follower(other, sid)
        fake.push(Reply(text="word " * 400, delay_s=0.02), when="chat")
        params = {"sessionId": sid, "prompt": [{"type": "text", "text": "go"}]}
        answer = server.request_async("session/prompt", params)
        follower.wait_for(lambda e: e["type"] == "message.part.delta")  # reply text is stored
        assert server.process is not None
        pid = server.process.pid
        with fault(pid, place.db):
            result = answer.result(WAIT_S)
        turn_storage_error(result)
        assert result["userMessageId"] is not None and result["messageId"] is not None

        # writes work again: the reply is closed with the reason, and the follower is told
        closed = follower.wait_for(
            lambda e: (
                e["type"] == "message.updated"
                and e["data"]["id"] == result["messageId"]
                and e["data"].get("error") is not None
            )
        )
        assert closed["data"]["error"]["name"] == "StorageError"
        loaded = other.request("session/load", {"sessionId": sid}, timeout=WAIT_S)
        reply = loaded["messages"][-1]
        assert reply["info"]["id"] == result["messageId"]
        assert reply["info"]["error"]["name"] == "StorageError"  # not "Interrupted"
        assert reply["parts"][0]["text"].startswith("word word")
        fake.push(Reply(text="fine again"), when="chat")
        assert prompt(server, sid, "again")["stopReason"] == "end_turn"
        assert integrity(place.db) == ["ok"]


# --- locked -------------------------------------------------------------------------------------


def test_database_locked_past_the_busy_timeout_fails_then_the_same_requests_succeed(
    place: Place, clients: list[RpcClient]
) -> None:
    server = place.start()
    clients.append(server)
    sessions = populate(server)
    before = read_snapshot(place.db)
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(place.db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None and locker.stdin is not None
        assert locker.stdout.readline().strip() == "locked"
        # Readers are not blocked (WAL): list answers at once while the writers wait.
        new = server.request_async("session/new", {"title": "while locked"})
        compact = server.request_async("session/compact", {"sessionId": sessions[1]})
        turn = server.request_async(
            "session/prompt",
            {"sessionId": sessions[0], "prompt": [{"type": "text", "text": "while locked"}]},
        )
        # Reads go on (WAL): list, and load with nothing to repair, answer while writes wait.
        listed = server.request("session/list", {}, timeout=WAIT_S)
        assert len(listed["sessions"]) == 3
        loaded = server.request("session/load", {"sessionId": sessions[2]}, timeout=WAIT_S)
        stored = {mid for mid, row in before.messages.items() if row[0] == sessions[2]}
        assert {m["info"]["id"] for m in loaded["messages"]} == stored
        for future in (new, compact):
            error = storage_error(lambda f=future: f.result(WAIT_S + BUSY_TIMEOUT_S))
            assert "locked" in error.message
        assert "locked" in turn_storage_error(turn.result(WAIT_S + BUSY_TIMEOUT_S))
        locker.stdin.write("release\n")
        locker.stdin.flush()
        assert locker.wait(timeout=WAIT_S) == 0
    finally:
        if locker.poll() is None:
            locker.kill()
            locker.wait()
    created = server.request("session/new", {"title": "while locked"}, timeout=WAIT_S)
    assert created["session"]["title"] == "while locked"
    compacted = server.request("session/compact", {"sessionId": sessions[1]}, timeout=WAIT_S)
    assert compacted["status"] == "completed"
    assert prompt(server, sessions[0], "while locked")["stopReason"] == "end_turn"
    assert server.close() == 0
    assert_nothing_lost(place.db, before)


# --- damaged file -------------------------------------------------------------------------------


def test_damaged_header_fails_initialize_with_a_storage_error_and_the_file_is_untouched(
    place: Place, clients: list[RpcClient]
) -> None:
    populated(place, clients)
    with place.db.open("r+b") as f:
        f.write(b"this is not the SQLite header at all!".ljust(100, b"#"))
    file_before = digest(place.db)

    server = place.start(init=False)
    clients.append(server)
    error = storage_error(lambda: server.initialize(capabilities={}, timeout=WAIT_S))
    assert "not a database" in error.message
    with pytest.raises(RpcError) as refused:
        server.request("session/list", {}, timeout=WAIT_S)
    assert refused.value.code == SERVER_NOT_INITIALIZED
    assert server.close() == 0
    assert digest(place.db) == file_before
    assert sorted(p.name for p in place.db.parent.iterdir()) == ["sessions.db"]


def page_of_table(db: Path, table: str) -> tuple[int, int]:
    """(offset, size) of the root page of ``table``."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,))
        root = rows.fetchall()[0][0]
        size = conn.execute("PRAGMA page_size").fetchall()[0][0]
        assert isinstance(root, int) and isinstance(size, int)
    finally:
        conn.close()
    return (root - 1) * size, size


def test_damaged_page_fails_the_requests_that_read_it_and_the_file_is_not_rewritten(
    place: Place, clients: list[RpcClient]
) -> None:
    sessions = populated(place, clients)
    before = read_snapshot(place.db)
    offset, size = page_of_table(place.db, "part")
    with place.db.open("r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)
    file_before = digest(place.db)

    server = place.start()
    clients.append(server)
    listed = server.request("session/list", {}, timeout=WAIT_S)  # the session table is sound
    assert {s["id"] for s in listed["sessions"]} == set(sessions)
    events = server.request("session/events", {"after": 0, "limit": 10_000}, timeout=WAIT_S)
    assert [e["seq"] for e in events["events"]] == sorted(before.events)
    for sid in sessions:
        load = {"sessionId": sid}
        error = storage_error(lambda p=load: server.request("session/load", p, timeout=WAIT_S))
        assert "malformed" in error.message
    assert server.close() == 0
    assert digest(place.db) == file_before  # reads only: not a byte written

    # A write that needs the damaged page fails too, and the page is left as it was.
    server = place.start()
    clients.append(server)
    assert "malformed" in turn_storage_error(prompt(server, sessions[0], "more"))
    assert server.close() == 0
    with place.db.open("rb") as f:
        f.seek(offset)
        assert f.read(size) == b"\xff" * size


# --- a file this sessionlsp must not use ------------------------------------------------------


def refused_at_initialize(place: Place, clients: list[RpcClient]) -> RpcError:
    """Start a server on ``place.db``: its ``initialize`` must fail with a storage error, and
    the server stays uninitialized."""
    server = place.start(init=False)
    clients.append(server)
    error = storage_error(lambda: server.initialize(capabilities={}, timeout=WAIT_S))
    with pytest.raises(RpcError) as refused:
        server.request("session/list", {}, timeout=WAIT_S)
    assert refused.value.code == SERVER_NOT_INITIALIZED
    assert server.close() == 0
    return error


def test_database_from_a_newer_sessionlsp_fails_initialize_with_a_storage_error_naming_versions(
    place: Place, clients: list[RpcClient]
) -> None:
    populated(place, clients)
    conn = apsw.Connection(str(place.db))
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    file_before = digest(place.db)

    error = refused_at_initialize(place, clients)
    assert f"schema version {LATEST + 1} is newer" in error.message
    assert f"({LATEST})" in error.message
    assert digest(place.db) == file_before


def foreign_database(db: Path, tables: list[str]) -> None:
    """Another program's SQLite file: its own tables and rows, the default rollback journal."""
    conn = apsw.Connection(str(db))
    for table in tables:
        conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute(f"INSERT INTO {table} (body) VALUES ('theirs')")
    conn.close()


@pytest.mark.parametrize("tables", [["notes", "tags"], ["session"]], ids=["own", "clashing"])
def test_another_programs_sqlite_file_fails_initialize_and_is_left_byte_for_byte(
    place: Place, clients: list[RpcClient], tables: list[str]
) -> None:
    foreign_database(place.db, tables)
    file_before = digest(place.db)
    assert place.db.read_bytes()[18:20] == b"\x01\x01"  # rollback journal, not WAL

    error = refused_at_initialize(place, clients)
    assert "not a sessionlsp database" in error.message
    assert all(table in error.message for table in tables)
    assert digest(place.db) == file_before
    assert place.db.read_bytes()[18:20] == b"\x01\x01"  # not switched to WAL
    assert sorted(p.name for p in place.db.parent.iterdir()) == ["sessions.db"]


def test_an_empty_file_is_taken_as_a_new_database(place: Place, clients: list[RpcClient]) -> None:
    place.db.touch()
    server = place.start()
    clients.append(server)
    created = server.request("session/new", {"title": "in an empty file"}, timeout=WAIT_S)
    assert prompt(server, created["sessionId"], "hello")["stopReason"] == "end_turn"
    assert server.close() == 0
    assert list(read_snapshot(place.db).sessions) == [created["sessionId"]]
