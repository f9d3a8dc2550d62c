"""Running a compaction: guarantees 2 (summary binds to its marker), 3 (crash mid-summary never
blocks), 4 (repair without a second model call), 8 (too large ends, never loops) and
9 (never destructive; extractive fallback)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import (
    AUTO_LOOP,
    CANCELLED,
    CONTINUATION_TEXT,
    SUMMARY_TOO_LARGE,
    TOO_MANY_ATTEMPTS,
    CompactionEngine,
    CompactionSettings,
)
from server.context import build_context
from server.crashpoints import crash_hook
from server.summary import SummaryFailed, SummaryTooLarge
from store import RunnerId, Store
from store.models import Compaction, Json, Message, TextPart
from tests.conftest import LIMITS
from tests.support import add_prompt, add_turn, new_session


class Crash(BaseException):
    """Stands in for the process dying at a crash point."""


def _crash_at(point: str) -> AbstractContextManager[None]:
    def hook(name: str) -> None:
        if name == point:
            raise Crash(name)

    return crash_hook(hook)


def _snapshot(store: Store, session_id: str) -> dict[str, Json]:
    with store.read() as tx:
        return {m.info.id: m.to_json() for m in tx.history(session_id)}


def _summaries(store: Store, marker_id: str) -> list[Message]:
    with store.read() as tx:
        return tx.summaries_of(marker_id)


def _long_session(store: Store) -> str:
    sid = new_session(store)
    for i in range(4):
        add_turn(store, sid, f"q{i} " + "a" * 8_000, f"r{i} " + "b" * 8_000, tool_output="o" * 100)
    return sid


# --- 2: the summary binds to its marker ---------------------------------------------------------


def test_summary_binds_to_marker_not_to_a_prompt_queued_after_it(
    store: Store, engine: CompactionEngine
) -> None:
    sid = _long_session(store)
    marker = engine.request(sid)
    queued = add_prompt(store, sid, "a question sent while compacting")
    out = engine.run(sid, str(marker.marker_id))
    assert out.status == "completed"
    (summary,) = _summaries(store, str(marker.marker_id))
    assert summary.parent_id == marker.marker_id and summary.compaction_id == marker.marker_id
    with store.read() as tx:
        answered = [m for m in tx.messages(sid) if m.parent_id == queued.id]
    assert answered == []  # the queued prompt is still waiting for its answer
    assert build_context(store, sid).messages[-1].message_id == queued.id


def test_prompt_arriving_mid_stream_does_not_steal_the_summary(store: Store) -> None:
    sid = _long_session(store)
    arrived: list[str] = []

    def user_types(chunk: int) -> None:
        if chunk == 1:
            arrived.append(add_prompt(store, sid, "are you there?").id)

    summarizer = ScriptedSummarizer(before_chunk=user_types)
    engine = CompactionEngine(store, summarizer, CompactionSettings(LIMITS, flush_interval_ms=0))
    out = engine.compact(sid)
    (summary,) = _summaries(store, str(out.marker_id))
    assert summary.parent_id == out.marker_id
    assert arrived and build_context(store, sid).messages[-1].message_id == arrived[0]


# --- 3: a crash mid-summary never blocks ---------------------------------------------------------


def test_dead_runners_unfinished_summary_is_closed_as_interrupted_and_redone(
    db_path: Path,
) -> None:
    now = [1_000_000]
    store = Store(db_path, clock=lambda: now[0], lease_timeout_ms=30_000)
    sid = _long_session(store)
    first = CompactionEngine(store, ScriptedSummarizer(), CompactionSettings(LIMITS))
    with _crash_at("mid_summary"), pytest.raises(Crash):
        CompactionEngine(
            store,
            ScriptedSummarizer(),
            CompactionSettings(LIMITS, flush_interval_ms=0),
            runner=first.runner,
        ).compact(sid)
    with store.write() as tx:  # the crashed runner's lease is still in the table
        tx.acquire_lease(sid, first.runner)
    (marker,) = [c.marker_id for c in _compactions(store, sid)]

    second = CompactionEngine(store, ScriptedSummarizer(), CompactionSettings(LIMITS))
    # While the first runner's lease is live, its unfinished summary is left alone.
    assert second.recover(sid) is None
    assert second.run(sid, marker, timeout=0).status == "running"
    (unfinished,) = _summaries(store, marker)
    assert unfinished.finish is None and unfinished.error is None

    now[0] += 30_001  # no heartbeat for longer than the lease timeout: the owner is dead
    out = second.run(sid, marker)
    assert out.status == "completed" and out.model_calls == 1
    interrupted, good = _summaries(store, marker)
    assert interrupted.id == unfinished.id  # kept, not deleted
    assert interrupted.error is not None and interrupted.error.name == "Interrupted"
    assert good.succeeded and out.summary_message_id == good.id
    with store.read() as tx:
        assert tx.parts_of(interrupted.id), "text streamed before the crash is kept"
        assert tx.get_lease(sid) is None


def test_marker_whose_attempts_keep_dying_fails_after_three(store: Store) -> None:
    sid = _long_session(store)
    summarizer = ScriptedSummarizer()
    for _ in range(3):
        with _crash_at("after_summary_row"), pytest.raises(Crash):
            CompactionEngine(store, summarizer, CompactionSettings(LIMITS)).compact(sid)
    out = CompactionEngine(store, summarizer, CompactionSettings(LIMITS)).compact(sid)
    assert out.status == "failed"
    assert out.error is not None and out.error.code == TOO_MANY_ATTEMPTS
    attempts = _summaries(store, str(out.marker_id))
    assert len(attempts) == 3
    assert all(a.error is not None and a.error.name == "Interrupted" for a in attempts)
    assert summarizer.calls == 0  # every attempt died before calling the model


def _compactions(store: Store, session_id: str) -> list[Compaction]:
    with store.read() as tx:
        return tx.compactions(session_id)


def test_a_runner_that_lost_its_lease_stops_writing(db_path: Path) -> None:
    now = [1_000_000]
    store = Store(db_path, clock=lambda: now[0], lease_timeout_ms=30_000)
    sid = _long_session(store)
    intruder = RunnerId.fresh()

    def taken_over(chunk: int) -> None:
        if chunk == 1:
            now[0] += 30_001
            with store.write() as tx:
                assert tx.acquire_lease(sid, intruder)

    summarizer = ScriptedSummarizer(before_chunk=taken_over)
    engine = CompactionEngine(store, summarizer, CompactionSettings(LIMITS, flush_interval_ms=0))
    marker = engine.request(sid)
    out = engine.run(sid, str(marker.marker_id), timeout=0)
    assert out.status == "running"  # it gave up; the new owner will finish
    (attempt,) = _summaries(store, str(marker.marker_id))
    assert attempt.finish is None
    with store.read() as tx:
        lease = tx.get_lease(sid)
    assert lease is not None and lease.owner == intruder.owner


# --- 4: a crash after the summary is repaired without calling the model again ---------------


@pytest.mark.parametrize("point", ["after_summary", "after_bookkeeping"])
def test_crash_after_summary_is_repaired_without_a_second_model_call(
    store: Store, point: str
) -> None:
    sid = _long_session(store)
    first = ScriptedSummarizer()
    with _crash_at(point), pytest.raises(Crash):
        CompactionEngine(store, first, CompactionSettings(LIMITS)).compact(sid, auto=True)
    (c,) = _compactions(store, sid)
    assert c.status == "running" and c.summary_id is not None

    second = ScriptedSummarizer()
    out = CompactionEngine(store, second, CompactionSettings(LIMITS)).run(sid, c.marker_id)
    assert out.status == "completed"
    assert second.calls == 0 and out.model_calls == 0
    with store.read() as tx:
        done = tx.require_compaction(c.marker_id)
        part = tx.parts_of(c.marker_id)[0].body
        continuation = tx.continuation_of(c.marker_id)
        conts = [m for m in tx.messages(sid) if m.kind == "continuation"]
    assert done.tail_set and getattr(part, "tail_start_id", None) == (done.tail_plan or None)
    assert continuation is not None and len(conts) == 1
    with store.read() as tx:
        (text,) = [p.body for p in tx.parts_of(continuation.id)]
    assert isinstance(text, TextPart) and text.text == CONTINUATION_TEXT


def test_recovery_twice_writes_the_continuation_once(store: Store) -> None:
    sid = _long_session(store)
    with _crash_at("after_bookkeeping"), pytest.raises(Crash):
        CompactionEngine(store, ScriptedSummarizer(), CompactionSettings(LIMITS)).compact(
            sid, auto=True
        )
    for _ in range(2):
        CompactionEngine(store, ScriptedSummarizer(), CompactionSettings(LIMITS)).recover(sid)
    with store.read() as tx:
        assert len([m for m in tx.messages(sid) if m.kind == "continuation"]) == 1


# --- 8: a summary request that is too large fails clearly, and nothing loops -----------------


def test_too_large_summary_fails_the_compaction_with_a_clear_error(store: Store) -> None:
    sid = _long_session(store)
    summarizer = ScriptedSummarizer(fail_with=SummaryTooLarge("context_length_exceeded"))
    engine = CompactionEngine(store, summarizer, CompactionSettings(LIMITS))
    before = _snapshot(store, sid)
    out = engine.compact(sid, auto=True)
    assert out.status == "failed"
    assert out.error is not None and out.error.code == SUMMARY_TOO_LARGE
    assert "too large to compact" in out.error.message
    (attempt,) = _summaries(store, str(out.marker_id))
    assert attempt.error is not None and attempt.error.name == "ContextTooLarge"
    after = _snapshot(store, sid)
    assert {k: after[k] for k in before} == before  # history untouched
    again = engine.compact(sid, auto=True)
    assert again.error is not None and again.error.code == AUTO_LOOP
    assert summarizer.calls == 1


# --- 9: never destructive, and a deterministic fallback --------------------------------------


def test_provider_failure_falls_back_to_an_extractive_summary(store: Store) -> None:
    sid = _long_session(store)
    before = _snapshot(store, sid)
    engine = CompactionEngine(
        store, ScriptedSummarizer(fail_with=SummaryFailed("HTTP 503")), CompactionSettings(LIMITS)
    )
    out = engine.compact(sid, auto=True)
    assert out.status == "completed"
    (summary,) = _summaries(store, str(out.marker_id))
    assert summary.summary_kind == "extractive" and summary.succeeded
    with store.read() as tx:
        (body,) = [p.body for p in tx.parts_of(summary.id)]
    assert isinstance(body, TextPart)
    assert body.text.startswith("## Extractive summary")
    assert "HTTP 503" in body.text and "q0 aaaa" in body.text
    after = _snapshot(store, sid)
    assert {k: after[k] for k in before} == before


def test_empty_model_summary_is_replaced_by_the_extractive_one(store: Store) -> None:
    sid = _long_session(store)
    engine = CompactionEngine(store, ScriptedSummarizer(text="   "), CompactionSettings(LIMITS))
    out = engine.compact(sid)
    (summary,) = _summaries(store, str(out.marker_id))
    assert summary.summary_kind == "extractive"


def test_model_summary_is_marked_as_such(store: Store, engine: CompactionEngine) -> None:
    sid = _long_session(store)
    out = engine.compact(sid)
    (summary,) = _summaries(store, str(out.marker_id))
    assert summary.summary_kind == "model" and summary.tokens is not None


def test_cancelled_compaction_fails_and_leaves_history_untouched(store: Store) -> None:
    sid = _long_session(store)
    cancel = threading.Event()
    summarizer = ScriptedSummarizer(before_chunk=lambda i: cancel.set() if i == 1 else None)
    engine = CompactionEngine(store, summarizer, CompactionSettings(LIMITS))
    before = _snapshot(store, sid)
    out = engine.compact(sid, cancel=cancel)
    assert out.status == "failed" and out.error is not None and out.error.code == CANCELLED
    (attempt,) = _summaries(store, str(out.marker_id))
    assert attempt.error is not None and attempt.error.name == "Cancelled"
    after = _snapshot(store, sid)
    assert {k: after[k] for k in before} == before
    assert build_context(store, sid).marker_id is None


# --- overflow: compact, then send the overflowing message again --------------------------------


def test_overflow_compaction_replays_the_message_that_overflowed(
    store: Store, engine: CompactionEngine
) -> None:
    sid = _long_session(store)
    big = add_prompt(store, sid, "please review " + "c" * 2_000)
    out = engine.compact_after_overflow(sid, replay_of=big.id)
    assert out.status == "completed"
    with store.read() as tx:
        replay = tx.continuation_of(str(out.marker_id))
        assert replay is not None and replay.kind == "replay"
        (body,) = [p.body for p in tx.parts_of(replay.id)]
    assert isinstance(body, TextPart) and body.text.startswith("please review ")
    ids = [m.message_id for m in build_context(store, sid).messages]
    assert big.id not in ids  # sent once, as the replay, not twice
    assert ids[-1] == replay.id


def test_second_overflow_compaction_never_brings_back_the_replaced_message(
    store: Store, engine: CompactionEngine
) -> None:
    # Found by the property test: the second compaction's tail reached back into the first
    # one's tail, and as an id range it took in the message the first one had replaced.
    sid = new_session(store)
    add_prompt(store, sid, "p0")
    p1 = add_prompt(store, sid, "p1")
    first = engine.compact_after_overflow(sid, replay_of=p1.id)
    p2 = add_prompt(store, sid, "p2")
    second = engine.compact_after_overflow(sid, replay_of=p2.id)
    assert first.status == second.status == "completed"
    with store.read() as tx:
        replay_1 = tx.continuation_of(str(first.marker_id))
        replay_2 = tx.continuation_of(str(second.marker_id))
    assert replay_1 is not None and replay_2 is not None
    ids = [m.message_id for m in build_context(store, sid).messages]
    assert p1.id not in ids and p2.id not in ids
    assert ids == [second.marker_id, second.summary_message_id, replay_1.id, replay_2.id]


# --- streaming -----------------------------------------------------------------------------


def test_streamed_summary_is_stored_at_most_every_flush_interval(store: Store) -> None:
    sid = _long_session(store)
    engine = CompactionEngine(
        store, ScriptedSummarizer(chunks=50), CompactionSettings(LIMITS, flush_interval_ms=60_000)
    )
    with store.read() as tx:
        cursor = tx.last_seq()
    out = engine.compact(sid)
    with store.read() as tx:
        updates = [
            e
            for e in tx.events_after(cursor)
            if e.type == "message.part.updated" and e.data["messageId"] == out.summary_message_id
        ]
    assert len(updates) == 1  # fifty chunks, one durable write at the end


def test_compaction_status_changes_are_announced_in_order(
    store: Store, engine: CompactionEngine
) -> None:
    sid = _long_session(store)
    with store.read() as tx:
        cursor = tx.last_seq()
    out = engine.compact(sid)
    with store.read() as tx:
        statuses = [
            e.data["status"] for e in tx.events_after(cursor) if e.type == "compaction.updated"
        ]
    assert statuses[0] == "pending" and statuses[-1] == "completed"
    assert "running" in statuses
    assert out.status == "completed"
