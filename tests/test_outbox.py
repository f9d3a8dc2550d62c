"""The outbox: one event per durable change, written in the change's transaction, published
after commit, read back in commit order by ``events_after`` (also across processes)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from store import Store, Tx
from store.models import Event, Json, ReasoningPart, TextPart, ToolPart, ToolState
from tests.support import FakeClock, pending_compaction

ROOT = Path(__file__).resolve().parent.parent


class Recorder:
    """A subscriber that keeps every batch it was handed."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []

    def __call__(self, events: list[Event]) -> None:
        self.batches.append(list(events))

    @property
    def events(self) -> list[Event]:
        return [e for batch in self.batches for e in batch]


class Boom(Exception):
    pass


@pytest.fixture
def recorder(store: Store) -> Recorder:
    r = Recorder()
    store.subscribe(r)
    return r


def new_session(store: Store, title: str = "s") -> str:
    with store.write() as tx:
        return tx.create_session(title, "/p").id


def all_events(store: Store, after: int = 0) -> list[Event]:
    with store.read() as tx:
        return tx.events_after(after)


def last_seq(store: Store) -> int:
    with store.read() as tx:
        return tx.last_seq()


# --- one event per change -----------------------------------------------------------------------


def one_event(store: Store, change: Callable[[Tx], Any]) -> tuple[Any, Event]:
    """Run ``change`` in a write; check it wrote exactly one event and return it."""
    before = last_seq(store)
    with store.write() as tx:
        result = change(tx)
    events = all_events(store, before)
    assert len(events) == 1, [e.type for e in events]
    assert events[0].seq == before + 1
    return result, events[0]


def test_create_session_writes_session_created(timed_store: Store, clock: FakeClock) -> None:
    session, event = one_event(timed_store, lambda tx: tx.create_session("t", "/d"))
    assert (event.type, event.session_id, event.time) == ("session.created", session.id, clock.now)
    assert event.data == session.to_json()
    assert event.data["title"] == "t"
    assert event.data["directory"] == "/d"


def test_update_session_writes_session_updated(timed_store: Store) -> None:
    sid = new_session(timed_store)
    session, event = one_event(timed_store, lambda tx: tx.update_session(sid, title="renamed"))
    assert (event.type, event.session_id) == ("session.updated", sid)
    assert event.data == session.to_json()
    assert event.data["title"] == "renamed"


def test_delete_session_writes_session_deleted(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        m = tx.add_message(sid, "prompt")
        tx.put_part(m.id, TextPart("x"))
    _, event = one_event(store, lambda tx: tx.delete_session(sid))
    assert (event.type, event.session_id, event.data) == ("session.deleted", sid, {"id": sid})


def test_add_message_writes_message_updated(store: Store) -> None:
    sid = new_session(store)
    message, event = one_event(store, lambda tx: tx.add_message(sid, "prompt"))
    assert (event.type, event.session_id) == ("message.updated", sid)
    assert event.data == message.to_json()
    assert {"id", "sessionId", "role", "kind", "time"} <= event.data.keys()


def test_update_message_writes_message_updated(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        m = tx.add_message(sid, "reply")
    done = replace(m, finish="stop", time_completed=m.time_created + 1, cost=0.5)
    _, event = one_event(store, lambda tx: tx.update_message(done))
    assert event.type == "message.updated"
    assert event.data == done.to_json()
    assert event.data["finish"] == "stop"


def test_remove_message_writes_one_message_removed(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        m = tx.add_message(sid, "prompt")
        tx.put_part(m.id, TextPart("a"))
        tx.put_part(m.id, TextPart("b"))
    _, event = one_event(store, lambda tx: tx.remove_message(m.id))
    assert (event.type, event.session_id) == ("message.removed", sid)
    assert event.data == {"sessionId": sid, "messageId": m.id}


def test_put_part_writes_the_whole_part(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        m = tx.add_message(sid, "prompt")
    part, event = one_event(store, lambda tx: tx.put_part(m.id, TextPart("hello")))
    assert (event.type, event.session_id) == ("message.part.updated", sid)
    assert event.data == part.to_json()
    assert event.data == {
        "id": part.id,
        "messageId": m.id,
        "sessionId": sid,
        "type": "text",
        "text": "hello",
    }


def test_appending_streamed_text_announces_only_the_new_text(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        m = tx.add_message(sid, "reply")
        pid = tx.new_part_id()
    _, first = one_event(store, lambda tx: tx.append_part_text(m.id, TextPart("Hel"), pid, 0))
    _, second = one_event(store, lambda tx: tx.append_part_text(m.id, TextPart("Hello!"), pid, 3))
    assert first.type == second.type == "message.part.delta"
    assert (first.data["offset"], first.data["delta"]) == (0, "Hel")
    assert (second.data["offset"], second.data["delta"]) == (3, "lo!")
    assert second.data["type"] == "text" and second.data["id"] == pid
    with store.read() as tx:
        stored = tx.get_part(pid)
    assert stored is not None and stored.body == TextPart("Hello!")  # the row holds it all


def test_replacing_a_part_writes_the_new_body(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        m = tx.add_message(sid, "reply")
        first = tx.put_part(m.id, ToolPart("c1", "bash", ToolState(status="pending")))
    done = ToolPart("c1", "bash", ToolState(status="completed", output="ok", input={"a": 1}))
    part, event = one_event(store, lambda tx: tx.put_part(m.id, done, part_id=first.id))
    assert event.type == "message.part.updated"
    assert event.data == part.to_json()
    assert event.data["id"] == first.id
    assert event.data["state"]["status"] == "completed"
    assert event.data["state"]["output"] == "ok"


def test_remove_part_writes_message_part_removed(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        m = tx.add_message(sid, "reply")
        p = tx.put_part(m.id, ReasoningPart("hmm"))
    _, event = one_event(store, lambda tx: tx.remove_part(p.id))
    assert (event.type, event.session_id) == ("message.part.removed", sid)
    assert event.data == {"sessionId": sid, "messageId": m.id, "partId": p.id}


def test_compaction_insert_and_save_write_compaction_updated(store: Store) -> None:
    sid = new_session(store)
    with store.write() as tx:
        marker = tx.add_message(sid, "marker")
    c, event = one_event(
        store, lambda tx: tx.insert_compaction(pending_compaction(tx, sid, marker.id))
    )
    assert (event.type, event.session_id) == ("compaction.updated", sid)
    assert event.data == c.event_json()
    assert event.data["markerId"] == marker.id
    assert event.data["status"] == "pending"
    saved, event = one_event(
        store, lambda tx: tx.save_compaction(replace(c, status="running", attempts=1))
    )
    assert event.type == "compaction.updated"
    assert event.data == saved.event_json()
    assert (event.data["status"], event.data["attempts"]) == ("running", 1)


def apply(state: dict[str, dict[str, Json]], event: Event) -> None:
    """A client's reducer: the events alone rebuild sessions, messages, parts, compactions."""
    d = event.data
    match event.type:
        case "session.created" | "session.updated":
            state["sessions"][d["id"]] = d
        case "session.deleted":
            state["sessions"].pop(d["id"])
            for table in ("messages", "parts"):
                for key in [k for k, v in state[table].items() if v["sessionId"] == d["id"]]:
                    del state[table][key]
        case "message.updated":
            state["messages"][d["id"]] = d
        case "message.removed":
            del state["messages"][d["messageId"]]
            for key in [k for k, v in state["parts"].items() if v["messageId"] == d["messageId"]]:
                del state["parts"][key]
        case "message.part.updated":
            state["parts"][d["id"]] = d
        case "message.part.removed":
            del state["parts"][d["partId"]]
        case "compaction.updated":
            state["compactions"][d["markerId"]] = d
        case _:
            raise AssertionError(f"unexpected event {event.type}")


def test_events_alone_rebuild_what_the_store_holds(store: Store) -> None:
    sid, gone = new_session(store, "kept"), new_session(store, "gone")
    with store.write() as tx:
        tx.update_session(sid, title="kept, renamed")
        user = tx.add_message(sid, "prompt")
        tx.put_part(user.id, TextPart("do it"))
        reply = tx.add_message(sid, "reply", parent_id=user.id)
        p1 = tx.put_part(reply.id, TextPart("draft"))
        tx.put_part(reply.id, TextPart("final"), part_id=p1.id)
        p2 = tx.put_part(reply.id, ReasoningPart("scratch"))
        tx.remove_part(p2.id)
        tx.update_message(replace(reply, finish="stop", time_completed=reply.time_created))
        dropped = tx.add_message(sid, "prompt")
        tx.put_part(dropped.id, TextPart("never mind"))
        tx.remove_message(dropped.id)
        marker = tx.add_message(sid, "marker")
        c = tx.insert_compaction(pending_compaction(tx, sid, marker.id))
        tx.save_compaction(replace(c, status="completed", attempts=1))
        m = tx.add_message(gone, "prompt")
        tx.put_part(m.id, TextPart("in a deleted session"))
        tx.delete_session(gone)

    state: dict[str, dict[str, Json]] = {
        k: {} for k in ("sessions", "messages", "parts", "compactions")
    }
    for event in all_events(store):
        apply(state, event)

    with store.read() as tx:
        assert state["sessions"] == {s.id: s.to_json() for s in tx.list_sessions()}
        history = tx.history(sid)
        compactions = tx.compactions(sid)
    assert state["messages"] == {h.info.id: h.info.to_json() for h in history}
    assert state["parts"] == {p.id: p.to_json() for h in history for p in h.parts}
    assert state["compactions"] == {c.marker_id: c.event_json() for c in compactions}


# --- transactions and subscribers ---------------------------------------------------------------


def test_rolled_back_write_publishes_no_events(store: Store, recorder: Recorder) -> None:
    sid = new_session(store)
    recorder.batches.clear()
    seq = last_seq(store)
    made: dict[str, str] = {}
    with pytest.raises(Boom), store.write() as tx:
        made["session"] = tx.create_session("doomed").id
        made["message"] = tx.add_message(sid, "prompt").id
        made["part"] = tx.put_part(made["message"], TextPart("x")).id
        tx.update_session(sid, title="doomed too")
        raise Boom
    assert recorder.batches == []
    assert last_seq(store) == seq
    assert all_events(store, seq) == []
    with store.read() as tx:
        assert tx.get_session(made["session"]) is None
        assert tx.get_message(made["message"]) is None
        assert tx.get_part(made["part"]) is None
        assert tx.require_session(sid).title == "s"


def test_subscribers_run_after_the_commit(store: Store, db_path: Path) -> None:
    elsewhere = Store(db_path)  # another connection sees only committed data
    seen: list[tuple[bool, bool]] = []

    def check(events: list[Event]) -> None:
        with elsewhere.read() as tx:
            sid = events[0].session_id
            seen.append((tx.get_session(sid) is not None, tx.last_seq() >= events[-1].seq))

    store.subscribe(check)
    with store.write() as tx:
        tx.create_session("visible")
    assert seen == [(True, True)]
    elsewhere.close()


def test_subscribers_get_one_batch_per_transaction_in_seq_order(
    store: Store, recorder: Recorder
) -> None:
    second = Recorder()
    store.subscribe(second)
    with store.write() as tx:
        sid = tx.create_session("one transaction").id
        m = tx.add_message(sid, "prompt")
        tx.put_part(m.id, TextPart("a"))
        tx.put_part(m.id, TextPart("b"))
    assert len(recorder.batches) == 1
    batch = recorder.batches[0]
    assert [e.type for e in batch] == [
        "session.created",
        "message.updated",
        "message.part.updated",
        "message.part.updated",
    ]
    assert [e.seq for e in batch] == sorted(e.seq for e in batch)
    assert batch == all_events(store)  # exactly what was stored
    assert second.batches == recorder.batches


def test_separate_transactions_publish_separately(store: Store, recorder: Recorder) -> None:
    sid = new_session(store)
    with store.write() as tx:
        tx.add_message(sid, "prompt")
    with store.write() as tx:
        tx.update_session(sid, title="x")
    assert [[e.type for e in b] for b in recorder.batches] == [
        ["session.created"],
        ["message.updated"],
        ["session.updated"],
    ]
    assert recorder.events == all_events(store)


def test_write_without_events_calls_no_subscriber(store: Store, recorder: Recorder) -> None:
    with store.write():
        pass
    assert recorder.batches == []


def test_nested_write_publishes_with_the_outer_commit(store: Store, recorder: Recorder) -> None:
    with store.write() as outer:
        sid = outer.create_session("outer").id
        with store.write() as inner:
            inner.add_message(sid, "prompt")
        assert recorder.batches == []  # the inner block did not publish on its own
        outer.update_session(sid, title="after inner")
    assert len(recorder.batches) == 1
    assert [e.type for e in recorder.batches[0]] == [
        "session.created",
        "message.updated",
        "session.updated",
    ]
    assert recorder.events == all_events(store)


def test_inner_block_that_raises_drops_only_its_own_events(
    store: Store, recorder: Recorder
) -> None:
    with store.write() as outer:
        sid = outer.create_session("outer").id
        kept = outer.add_message(sid, "prompt")
        with pytest.raises(Boom), store.write() as inner:
            dropped = inner.add_message(sid, "prompt")
            inner.put_part(kept.id, TextPart("dropped part"))
            raise Boom
        later = outer.add_message(sid, "prompt")
    assert len(recorder.batches) == 1
    published = recorder.batches[0]
    assert [(e.type, e.data["id"]) for e in published] == [
        ("session.created", sid),
        ("message.updated", kept.id),
        ("message.updated", later.id),
    ]
    assert published == all_events(store)  # seqs and payloads are the stored ones
    with store.read() as tx:
        assert tx.get_message(dropped.id) is None
        assert tx.parts_of(kept.id) == []
        assert [m.id for m in tx.messages(sid)] == [kept.id, later.id]


def test_outer_rollback_drops_the_inner_blocks_events_too(store: Store, recorder: Recorder) -> None:
    with pytest.raises(Boom), store.write() as outer:
        sid = outer.create_session("outer").id
        with store.write() as inner:
            inner.add_message(sid, "prompt")
        raise Boom
    assert recorder.batches == []
    assert all_events(store) == []
    # the thread's outbox is clean: the next write publishes only its own events
    new_session(store, "next")
    assert [[e.type for e in b] for b in recorder.batches] == [["session.created"]]


def test_unsubscribed_listener_is_not_called(store: Store) -> None:
    r = Recorder()
    unsubscribe = store.subscribe(r)
    new_session(store)
    unsubscribe()
    new_session(store)
    assert len(r.batches) == 1


def test_a_failing_subscriber_does_not_undo_the_commit_or_stop_others(
    store: Store, recorder: Recorder
) -> None:
    def broken(events: list[Event]) -> None:
        raise RuntimeError("listener bug")

    store.subscribe(broken)
    later = Recorder()
    store.subscribe(later)
    sid = new_session(store)
    with store.read() as tx:
        assert tx.get_session(sid) is not None
    assert len(recorder.batches) == len(later.batches) == 1


# --- reading the outbox -------------------------------------------------------------------------


def test_last_seq_of_an_empty_outbox_is_zero(store: Store) -> None:
    assert last_seq(store) == 0
    assert all_events(store) == []


def test_events_after_returns_later_events_oldest_first(store: Store) -> None:
    for i in range(5):
        new_session(store, str(i))
    events = all_events(store)
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5
    assert last_seq(store) == seqs[-1]
    assert all_events(store, seqs[1]) == events[2:]
    assert all_events(store, seqs[-1]) == []


def test_events_after_filters_by_session_and_limits(store: Store) -> None:
    a, b = new_session(store, "a"), new_session(store, "b")
    for _ in range(3):
        with store.write() as tx:
            tx.add_message(a, "prompt")
            tx.add_message(b, "prompt")
    with store.read() as tx:
        everything = tx.events_after(0)
        only_a = tx.events_after(0, session_id=a)
        assert only_a == [e for e in everything if e.session_id == a]
        assert len(only_a) == 4
        assert tx.events_after(0, limit=3) == everything[:3]
        assert (
            tx.events_after(0, session_id=b, limit=2)
            == [e for e in everything if e.session_id == b][:2]
        )
        assert tx.events_after(only_a[1].seq, session_id=a) == only_a[2:]
        assert tx.events_after(only_a[1].seq, session_id=a, limit=1) == only_a[2:3]
        assert tx.events_after(0, limit=0) == []
        assert tx.events_after(0, session_id="ses_missing") == []


def test_paging_with_a_limit_visits_every_event_once(store: Store) -> None:
    for i in range(7):
        new_session(store, str(i))
    paged: list[Event] = []
    cursor = 0
    while page := _page(store, cursor, 3):
        paged.extend(page)
        cursor = page[-1].seq
    assert paged == all_events(store)


def _page(store: Store, cursor: int, limit: int) -> list[Event]:
    with store.read() as tx:
        return tx.events_after(cursor, limit=limit)


def test_events_from_another_store_instance_are_read_in_commit_order(
    store: Store, db_path: Path
) -> None:
    other = Store(db_path)
    first = new_session(store, "first")
    second = new_session(other, "second")
    third = new_session(store, "third")
    assert [e.session_id for e in all_events(store)] == [first, second, third]
    assert all_events(other) == all_events(store)
    other.close()


# --- two writer processes -----------------------------------------------------------------------


def _drain(stream: Any, into: list[str]) -> None:
    for line in stream:
        into.append(line.strip())


@pytest.mark.slow
def test_two_writer_processes_produce_one_ordered_outbox_that_a_tailing_reader_never_misses(
    store: Store, db_path: Path
) -> None:
    sid = new_session(store, "shared")
    count = 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.procs.outbox_writer", str(db_path), sid, str(count)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs: list[list[str]] = [[], []]
    drains: list[threading.Thread] = []
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p, out in zip(procs, outputs, strict=True):
            drains.append(threading.Thread(target=_drain, args=(p.stdout, out), daemon=True))
            drains[-1].start()
        for p in procs:  # release both writers together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.close()

        tailed: list[Event] = []
        cursor = 0
        while True:
            exited = all(p.poll() is not None for p in procs)
            with store.read() as tx:
                batch = tx.events_after(cursor)
            tailed.extend(batch)
            if batch:
                cursor = batch[-1].seq
            if exited:  # this read began after both exited, so it saw their last commits
                break
            store.wait_for_change(timeout=0.05, poll_interval=0.001)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(30)
        for t in drains:
            t.join(10)

    assert [p.returncode for p in procs] == [0, 0]
    final = all_events(store)
    assert tailed == final  # the tailing reader missed nothing and saw nothing twice

    seqs = [e.seq for e in final]
    assert all(a < b for a, b in itertools.pairwise(seqs))

    written = [[tuple(line.split()) for line in out] for out in outputs]
    assert [len(w) for w in written] == [count, count]
    ids_in_events = [e.data["id"] for e in final[1:]]  # after the session.created event
    assert [e.type for e in final[:1]] == ["session.created"]
    assert len(ids_in_events) == len(set(ids_in_events)) == 4 * count
    for w in written:
        mine = {i for pair in w for i in pair}
        in_commit_order = [i for pair in w for i in pair]
        assert [i for i in ids_in_events if i in mine] == in_commit_order

    # each transaction's two events are adjacent: seq order is commit order
    for message, part in zip(final[1::2], final[2::2], strict=True):
        assert message.type == "message.updated"
        assert part.type == "message.part.updated"
        assert part.data["messageId"] == message.data["id"]
        assert part.data["sessionId"] == sid
    # and message ids in the shared session sort in commit order, whichever process wrote them
    message_ids = [e.data["id"] for e in final[1::2]]
    assert message_ids == sorted(message_ids)
    with store.read() as tx:
        assert [m.id for m in tx.messages(sid)] == message_ids
