"""Sessions, messages, parts and compaction rows: what goes in comes back out."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from store import NotFound, ReadOnlyView, RunnerId, Store, Tx
from store import ids as ids_module
from store.ids import time_of
from store.models import (
    CompactionError,
    CompactionPart,
    FilePart,
    MessageError,
    PartBody,
    ReasoningPart,
    StepFinishPart,
    TextPart,
    TokenUsage,
    ToolPart,
    ToolState,
)
from tests.support import FakeClock, pending_compaction

ROOT = Path(__file__).resolve().parent.parent


def new_session(store: Store, title: str = "s", directory: str | None = "/p") -> str:
    with store.write() as tx:
        return tx.create_session(title, directory).id


def count(store: Store, table: str, session_id: str) -> int:
    with store.read() as tx:
        row = tx._row(f"SELECT count(*) FROM {table} WHERE session_id = ?", (session_id,))
    assert row is not None
    return int(row[0])


# --- sessions -----------------------------------------------------------------------------------


def test_created_session_reads_back(timed_store: Store, clock: FakeClock) -> None:
    with timed_store.write() as tx:
        created = tx.create_session("Fix the build", "/work/project")
    with timed_store.read() as tx:
        assert tx.get_session(created.id) == created
    assert created.title == "Fix the build"
    assert created.directory == "/work/project"
    assert created.time_created == created.time_updated == clock.now


def test_session_without_directory(store: Store) -> None:
    sid = new_session(store, "no dir", None)
    with store.read() as tx:
        session = tx.require_session(sid)
    assert session.directory is None


def test_get_unknown_session_is_none_and_require_raises(store: Store) -> None:
    with store.read() as tx:
        assert tx.get_session("ses_missing") is None
        with pytest.raises(NotFound) as info:
            tx.require_session("ses_missing")
    assert info.value.what == "session"
    assert info.value.id == "ses_missing"


def test_list_sessions_newest_activity_first(timed_store: Store, clock: FakeClock) -> None:
    a = new_session(timed_store, "a")
    clock.now += 10
    b = new_session(timed_store, "b")
    clock.now += 10
    c = new_session(timed_store, "c")
    with timed_store.read() as tx:
        assert [s.id for s in tx.list_sessions()] == [c, b, a]
    clock.now += 10
    with timed_store.write() as tx:
        tx.update_session(a)  # activity moves it to the front
    with timed_store.read() as tx:
        assert [s.id for s in tx.list_sessions()] == [a, c, b]


def test_list_sessions_with_equal_times_puts_the_newer_id_first(timed_store: Store) -> None:
    made = [new_session(timed_store, str(i)) for i in range(3)]  # the clock does not move
    with timed_store.read() as tx:
        assert [s.id for s in tx.list_sessions()] == made[::-1]


def test_list_sessions_filters_by_directory_and_limits(
    timed_store: Store, clock: FakeClock
) -> None:
    here = []
    for i in range(4):
        clock.now += 1
        here.append(new_session(timed_store, f"here {i}", "/here"))
        clock.now += 1
        new_session(timed_store, f"there {i}", "/there")
    new_session(timed_store, "nowhere", None)
    with timed_store.read() as tx:
        assert [s.id for s in tx.list_sessions(directory="/here")] == here[::-1]
        assert [s.id for s in tx.list_sessions(directory="/here", limit=2)] == here[:1:-1]
        assert len(tx.list_sessions()) == 9
        assert len(tx.list_sessions(limit=3)) == 3
        assert tx.list_sessions(directory="/elsewhere") == []


def test_update_session_title_and_time(timed_store: Store, clock: FakeClock) -> None:
    sid = new_session(timed_store, "old")
    clock.now += 500
    with timed_store.write() as tx:
        updated = tx.update_session(sid, title="new")
    with timed_store.read() as tx:
        assert tx.require_session(sid) == updated
    assert updated.title == "new"
    assert updated.time_updated == clock.now
    assert updated.time_created == clock.now - 500


def test_update_session_without_title_keeps_it(timed_store: Store, clock: FakeClock) -> None:
    sid = new_session(timed_store, "same")
    clock.now += 5
    with timed_store.write() as tx:
        updated = tx.update_session(sid)
    assert updated.title == "same"
    assert updated.time_updated == clock.now


def test_update_session_time_never_goes_backwards(timed_store: Store, clock: FakeClock) -> None:
    sid = new_session(timed_store)
    clock.now -= 1_000
    with timed_store.write() as tx:
        updated = tx.update_session(sid, title="t")
    assert updated.time_updated == updated.time_created


def test_delete_session_cascades_to_everything_but_events(store: Store) -> None:
    sid = new_session(store)
    other = new_session(store)
    with store.write() as tx:
        marker = tx.add_message(sid, "marker")
        tx.put_part(marker.id, CompactionPart(auto=False, overflow=False))
        tx.insert_compaction(
            pending_compaction(tx, sid, marker.id, auto=True, instructions="keep the plan")
        )
        reply = tx.add_message(sid, "reply")
        part = tx.put_part(reply.id, TextPart("hello"))
        tx.acquire_lease(sid, RunnerId.fresh())
        kept = tx.add_message(other, "prompt")
        tx.put_part(kept.id, TextPart("other session"))
    with store.read() as tx:
        events_before = tx.events_after(0, session_id=sid)

    with store.write() as tx:
        tx.delete_session(sid)

    with store.read() as tx:
        assert tx.get_session(sid) is None
        assert tx.messages(sid) == []
        assert tx.get_message(reply.id) is None
        assert tx.get_part(part.id) is None
        assert tx.get_compaction(marker.id) is None
        assert tx.get_lease(sid) is None
        events = tx.events_after(0, session_id=sid)
        assert len(tx.history(other)) == 1
    for table in ("message", "part", "compaction", "lease"):
        assert count(store, table, sid) == 0
    assert events[: len(events_before)] == events_before  # the outbox keeps its history
    assert [e.type for e in events[len(events_before) :]] == ["session.deleted"]


# --- messages -----------------------------------------------------------------------------------


def test_add_message_reads_back(timed_store: Store, clock: FakeClock) -> None:
    sid = new_session(timed_store)
    with timed_store.write() as tx:
        user = tx.add_message(sid, "prompt")
        reply = tx.add_message(sid, "reply", parent_id=user.id, runner="run_1", model="m-1")
    with timed_store.read() as tx:
        assert tx.get_message(user.id) == user
        assert tx.get_message(reply.id) == reply
        assert tx.messages(sid) == [user, reply]
    assert reply.role == "assistant"
    assert reply.parent_id == user.id
    assert reply.runner == "run_1"
    assert reply.model == "m-1"
    assert reply.time_created == clock.now
    assert reply.finish is None
    assert reply.error is None


def test_add_message_ids_increase_within_a_session(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        made = [tx.add_message(sid, "prompt").id for _ in range(50)]
    assert made == sorted(made)
    with store.read() as tx:
        assert [m.id for m in tx.messages(sid)] == made


def test_add_message_ids_increase_across_two_store_instances(store: Store, db_path: Path) -> None:
    other = Store(db_path)
    sid = new_session(store)
    made = []
    for i in range(20):
        writer = store if i % 2 else other
        with writer.write() as tx:
            made.append(tx.add_message(sid, "prompt").id)
    assert made == sorted(made)
    other.close()


# A child process whose clock runs an hour ahead adds a message to the session.
FAST_CLOCK_CHILD = """
import sys, time, types
from store import Store, ids
ids.time = types.SimpleNamespace(time_ns=lambda: time.time_ns() + 3_600 * 10**9)
store = Store(sys.argv[1])
with store.write() as tx:
    print(tx.add_message(sys.argv[2], "prompt").id)
store.close()
"""


def test_add_message_sorts_after_a_newer_message_written_by_another_process(
    store: Store, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ids_module, "_last", ids_module._last)  # undone after the test
    sid = new_session(store)
    with store.write() as tx:
        first = tx.add_message(sid, "prompt")
    out = subprocess.run(
        [sys.executable, "-c", FAST_CLOCK_CHILD, str(db_path), sid],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    theirs = out.stdout.strip()
    assert theirs > first.id
    assert time_of(theirs) > time.time_ns() // 1_000_000 + 3_000_000  # made "in the future"
    with store.write() as tx:
        mine = tx.add_message(sid, "reply", parent_id=theirs)
    assert mine.id > theirs
    with store.read() as tx:
        assert [m.id for m in tx.messages(sid)] == [first.id, theirs, mine.id]
        assert tx.last_message_id(sid) == mine.id


def test_update_message_round_trips_every_mutable_field(timed_store: Store) -> None:
    sid = new_session(timed_store)
    with timed_store.write() as tx:
        msg = tx.add_message(sid, "summary", runner="run_x", model="big-model")
    finished = replace(
        msg,
        time_completed=msg.time_created + 42,
        finish="stop",
        error=MessageError("ProviderError", "HTTP 500 — upstream"),
        tokens=TokenUsage(
            input=1_200, output=340, reasoning=12, cache_read=800, cache_write=64, total=2_416
        ),
        cost=0.0123,
        model="big-model-2",
        summary_kind="extractive",
    )
    with timed_store.write() as tx:
        assert tx.update_message(finished) == finished
    with timed_store.read() as tx:
        assert tx.get_message(msg.id) == finished


def test_update_message_can_clear_fields_again(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        msg = tx.add_message(sid, "reply", model="m")
        failed = tx.update_message(
            replace(msg, error=MessageError("E", "x"), tokens=TokenUsage(input=1), cost=1.5)
        )
        cleared = tx.update_message(replace(failed, error=None, tokens=None, cost=None))
    with store.read() as tx:
        assert tx.get_message(msg.id) == cleared
    assert cleared.error is None
    assert cleared.tokens is None


def test_remove_message_removes_its_parts(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        msg = tx.add_message(sid, "prompt")
        part = tx.put_part(msg.id, TextPart("bye"))
        kept = tx.add_message(sid, "prompt")
    with store.write() as tx:
        tx.remove_message(msg.id)
    with store.read() as tx:
        assert tx.get_message(msg.id) is None
        assert tx.get_part(part.id) is None
        assert [m.id for m in tx.messages(sid)] == [kept.id]


# --- parts --------------------------------------------------------------------------------------

BODIES: list[PartBody] = [
    TextPart("plain text"),
    TextPart('synthetic — ünïcödé ✓ "quoted"\nline', synthetic=True),
    TextPart(""),
    ReasoningPart("thinking about it"),
    ToolPart(
        call_id="call_1",
        tool="read_file",
        state=ToolState(
            status="completed",
            input={"path": "src/app.py", "range": [1, 20], "opts": {"follow": True, "n": None}},
            output="def main(): ...",
            title="Read src/app.py",
            time_start=100,
            time_end=200,
            time_compacted=300,
        ),
    ),
    ToolPart(call_id="call_2", tool="bash", state=ToolState(status="pending")),
    ToolPart(
        call_id="call_3",
        tool="bash",
        state=ToolState(status="error", input={"cmd": "false"}, error="exit 1", time_start=0),
    ),
    ToolPart(call_id="call_4", tool="bash", state=ToolState(status="running", time_start=5)),
    FilePart(mime="image/png", url="file:///tmp/a.png", filename="a.png"),
    FilePart(mime="text/plain", url="data:text/plain;base64,aGk="),
    StepFinishPart(tokens=TokenUsage(input=10, output=5)),
    StepFinishPart(
        tokens=TokenUsage(input=10, output=5, reasoning=3, cache_read=7, cache_write=2, total=27),
        cost=0.25,
        reason="tool-calls",
    ),
    CompactionPart(auto=False, overflow=False),
    CompactionPart(auto=True, overflow=True, tail_start_id="msg_abc", instructions="be brief"),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_part_body_round_trips_through_the_database(store: Store, body: PartBody) -> None:
    sid = new_session(store)
    with store.write() as tx:
        msg = tx.add_message(sid, "reply")
        part = tx.put_part(msg.id, body)
    with store.read() as tx:
        stored = tx.get_part(part.id)
        assert tx.parts_of(msg.id) == [part]
        assert tx.history(sid)[0].parts == (part,)
    assert stored == part
    assert stored is not None
    assert stored.body == body
    assert stored.type == body.type
    assert stored.session_id == sid
    assert stored.message_id == msg.id


def test_a_part_holding_an_undecodable_file_name_is_stored_and_read_back_unchanged(
    store: Store,
) -> None:
    # os.listdir gives "caf\udce9.txt" for the bytes b"caf\xe9.txt"; SQLite takes only UTF-8.
    name = "caf\udce9.txt"
    body = ToolPart("call_1", "list_files", ToolState("completed", {"path": name}, output=name))
    sid = new_session(store)
    with store.read() as tx:
        before = tx.last_seq()
    with store.write() as tx:
        msg = tx.add_message(sid, "reply")
        part = tx.put_part(msg.id, body)
        text = tx.put_part(msg.id, TextPart(name))
    with store.read() as tx:
        assert tx.get_part(part.id) == part
        assert tx.get_part(text.id) == text
        events = tx.events_after(before, sid)
    assert events[-1].data["text"] == name
    assert events[-2].data["state"]["output"] == name


def test_put_part_with_the_same_id_replaces_the_body(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        msg = tx.add_message(sid, "reply")
        first = tx.put_part(msg.id, TextPart("draft"))
        pending = ToolState(status="pending")
        second = tx.put_part(msg.id, ToolPart("c", "bash", pending), part_id=first.id)
    assert second.id == first.id
    with store.read() as tx:
        assert tx.parts_of(msg.id) == [second]
        assert tx.get_part(first.id) == second
    assert count(store, "part", sid) == 1


def test_parts_are_kept_in_id_order(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        msg = tx.add_message(sid, "reply")
        parts = [tx.put_part(msg.id, TextPart(str(i))) for i in range(5)]
        tx.put_part(msg.id, TextPart("updated 0"), part_id=parts[0].id)
    with store.read() as tx:
        assert [p.id for p in tx.parts_of(msg.id)] == [p.id for p in parts]


def test_remove_part(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        msg = tx.add_message(sid, "reply")
        gone = tx.put_part(msg.id, TextPart("gone"))
        kept = tx.put_part(msg.id, TextPart("kept"))
    with store.write() as tx:
        tx.remove_part(gone.id)
    with store.read() as tx:
        assert tx.get_part(gone.id) is None
        assert tx.parts_of(msg.id) == [kept]


def test_history_pairs_messages_with_their_parts_from_an_id(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        a = tx.add_message(sid, "prompt")
        pa = tx.put_part(a.id, TextPart("a"))
        b = tx.add_message(sid, "reply", parent_id=a.id)
        pb1 = tx.put_part(b.id, ReasoningPart("b1"))
        pb2 = tx.put_part(b.id, TextPart("b2"))
        c = tx.add_message(sid, "prompt")
    with store.read() as tx:
        full = tx.history(sid)
        tail = tx.history(sid, from_id=b.id)
    assert [(h.info, h.parts) for h in full] == [(a, (pa,)), (b, (pb1, pb2)), (c, ())]
    assert [(h.info, h.parts) for h in tail] == [(b, (pb1, pb2)), (c, ())]


# --- compaction rows ----------------------------------------------------------------------------


def test_compaction_row_round_trips(timed_store: Store, clock: FakeClock) -> None:
    sid = new_session(timed_store)
    with timed_store.write() as tx:
        marker = tx.add_message(sid, "marker")
        inserted = tx.insert_compaction(
            pending_compaction(tx, sid, marker.id, auto=True, instructions="keep the plan")
        )
    with timed_store.read() as tx:
        assert tx.get_compaction(marker.id) == inserted
        assert tx.active_compaction(sid) == inserted
    clock.now += 7
    failed = replace(
        inserted,
        status="failed",
        tail_plan="",
        tail_set=True,
        summary_id="msg_s",
        error=CompactionError("summary_failed", "provider down"),
        attempts=3,
    )
    with timed_store.write() as tx:
        saved = tx.save_compaction(failed)
    assert saved == replace(failed, time_updated=clock.now)
    with timed_store.read() as tx:
        assert tx.get_compaction(marker.id) == saved
        assert tx.active_compaction(sid) is None
        assert tx.compactions(sid) == [saved]


# --- unknown ids and read views -----------------------------------------------------------------

UNKNOWN: dict[str, Callable[[Tx, str], object]] = {
    "update_session": lambda tx, sid: tx.update_session("ses_missing", title="x"),
    "delete_session": lambda tx, sid: tx.delete_session("ses_missing"),
    "add_message": lambda tx, sid: tx.add_message("ses_missing", "prompt"),
    "update_message": lambda tx, sid: tx.update_message(
        replace(tx.add_message(sid, "reply"), id="msg_missing", finish="stop")
    ),
    "remove_message": lambda tx, sid: tx.remove_message("msg_missing"),
    "require_message": lambda tx, sid: tx.require_message("msg_missing"),
    "put_part": lambda tx, sid: tx.put_part("msg_missing", TextPart("x")),
    "remove_part": lambda tx, sid: tx.remove_part("prt_missing"),
    "require_compaction": lambda tx, sid: tx.require_compaction("msg_missing"),
    "save_compaction": lambda tx, sid: tx.save_compaction(
        pending_compaction(tx, sid, "msg_missing", auto=True, instructions="keep the plan")
    ),
}


@pytest.mark.parametrize("op", UNKNOWN.values(), ids=UNKNOWN.keys())
def test_unknown_id_raises_not_found_and_writes_nothing(
    store: Store, op: Callable[[Tx, str], object]
) -> None:
    sid = new_session(store)
    with store.read() as tx:
        seq = tx.last_seq()
    with pytest.raises(NotFound), store.write() as tx:
        op(tx, sid)
    with store.read() as tx:
        assert tx.last_seq() == seq
        assert tx.messages(sid) == []


WRITES: dict[str, Callable[[Tx, str, str, str], object]] = {
    "create_session": lambda tx, sid, mid, pid: tx.create_session("x"),
    "update_session": lambda tx, sid, mid, pid: tx.update_session(sid, title="x"),
    "delete_session": lambda tx, sid, mid, pid: tx.delete_session(sid),
    "add_message": lambda tx, sid, mid, pid: tx.add_message(sid, "prompt"),
    "update_message": lambda tx, sid, mid, pid: tx.update_message(
        replace(tx.require_message(mid), finish="stop")
    ),
    "remove_message": lambda tx, sid, mid, pid: tx.remove_message(mid),
    "put_part": lambda tx, sid, mid, pid: tx.put_part(mid, TextPart("x")),
    "replace_part": lambda tx, sid, mid, pid: tx.put_part(mid, TextPart("x"), part_id=pid),
    "remove_part": lambda tx, sid, mid, pid: tx.remove_part(pid),
    "insert_compaction": lambda tx, sid, mid, pid: tx.insert_compaction(
        pending_compaction(tx, sid, mid, auto=True, instructions="keep the plan")
    ),
    "acquire_lease": lambda tx, sid, mid, pid: tx.acquire_lease(sid, RunnerId.fresh()),
    "heartbeat": lambda tx, sid, mid, pid: tx.heartbeat(sid, RunnerId.fresh()),
    "release_lease": lambda tx, sid, mid, pid: tx.release_lease(sid, RunnerId.fresh()),
}


@pytest.mark.parametrize("op", WRITES.values(), ids=WRITES.keys())
def test_writing_through_a_read_view_raises_read_only_view(
    store: Store, op: Callable[[Tx, str, str, str], object]
) -> None:
    sid = new_session(store)
    with store.write() as tx:
        msg = tx.add_message(sid, "marker")
        part = tx.put_part(msg.id, TextPart("x"))
    with store.read() as tx:
        seq = tx.last_seq()
        history = tx.history(sid)
        with pytest.raises(ReadOnlyView):
            op(tx, sid, msg.id, part.id)
    with store.read() as tx:
        assert tx.last_seq() == seq
        assert tx.history(sid) == history
        assert tx.get_compaction(msg.id) is None
        assert tx.get_lease(sid) is None
