"""Requesting a compaction: guarantees 1 (one active marker), 5 (stale markers), 6 (auto off)
and 7 (no loops)."""

from __future__ import annotations

import pytest

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import (
    AUTO_DISABLED,
    AUTO_LOOP,
    NO_PROGRESS,
    STALE,
    CompactionEngine,
    CompactionSettings,
)
from store import NotFound, Store
from store.models import CompactionPart
from tests.conftest import LIMITS
from tests.support import add_prompt, add_reply, add_turn, new_session


def _markers(store: Store, session_id: str) -> list[str]:
    with store.read() as tx:
        return [m.id for m in tx.messages(session_id) if m.kind == "marker"]


def test_second_compact_merges_into_active_marker(store: Store, engine: CompactionEngine) -> None:
    sid = new_session(store)
    add_turn(store, sid, "hello", "hi")
    first = engine.request(sid, instructions="keep the API names")
    second = engine.request(sid, instructions="mention the failing test")
    assert first.created and not second.created
    assert second.marker_id == first.marker_id
    assert _markers(store, sid) == [first.marker_id]
    with store.read() as tx:
        c = tx.require_compaction(str(first.marker_id))
        part = tx.parts_of(str(first.marker_id))[0].body
    assert c.instructions == "keep the API names\n\nmention the failing test"
    assert isinstance(part, CompactionPart)
    assert part.instructions == c.instructions


def test_compact_again_with_nothing_new_returns_the_completed_compaction(
    store: Store, engine: CompactionEngine, summarizer: ScriptedSummarizer
) -> None:
    sid = new_session(store)
    add_turn(store, sid, "hello", "hi")
    first = engine.compact(sid, auto=True)  # writes its own continuation after the summary
    late = engine.compact(sid)
    assert late.marker_id == first.marker_id and not late.created
    assert late.status == "completed" and late.summary_message_id == first.summary_message_id
    assert _markers(store, sid) == [first.marker_id] and summarizer.calls == 1
    add_turn(store, sid, "one more thing", "sure")
    assert engine.compact(sid).created
    assert summarizer.calls == 2


def test_repeated_instructions_are_not_duplicated(store: Store, engine: CompactionEngine) -> None:
    sid = new_session(store)
    a = engine.request(sid, instructions="focus on tests")
    engine.request(sid, instructions="focus on tests")
    with store.read() as tx:
        assert tx.require_compaction(str(a.marker_id)).instructions == "focus on tests"


def test_merged_request_announces_the_new_instructions(
    store: Store, engine: CompactionEngine
) -> None:
    sid = new_session(store)
    engine.request(sid)
    with store.read() as tx:
        cursor = tx.last_seq()
    engine.request(sid, instructions="be brief")
    with store.read() as tx:
        types = [e.type for e in tx.events_after(cursor)]
    assert types == ["compaction.updated", "message.part.updated"]


def test_stale_marker_is_closed_and_does_not_block_a_new_compaction(
    store: Store, engine: CompactionEngine
) -> None:
    sid = new_session(store)
    add_turn(store, sid, "first", "one")
    stale = engine.request(sid)
    # A reply finished after the marker (the marker was never summarized): it is stale.
    add_turn(store, sid, "second", "two")
    fresh = engine.request(sid)
    assert fresh.created and fresh.marker_id != stale.marker_id
    with store.read() as tx:
        old = tx.require_compaction(str(stale.marker_id))
    assert old.status == "failed"
    assert old.error is not None and old.error.code == STALE
    assert engine.run(sid, str(fresh.marker_id)).status == "completed"


def test_failed_reply_after_marker_does_not_make_it_stale(
    store: Store, engine: CompactionEngine
) -> None:
    sid = new_session(store)
    user, _ = add_turn(store, sid, "first", "one")
    marker = engine.request(sid)
    add_reply(store, sid, user.id, "half an answer", finished=False, error=True)
    again = engine.request(sid)
    assert not again.created and again.marker_id == marker.marker_id


def test_auto_off_refuses_automatic_compaction_without_writing_a_marker(
    store: Store, summarizer: ScriptedSummarizer
) -> None:
    engine = CompactionEngine(store, summarizer, CompactionSettings(LIMITS, auto_compact=False))
    sid = new_session(store)
    add_turn(store, sid, "x" * 60_000, "y")
    out = engine.compact(sid, auto=True)
    assert out.status == "failed" and out.marker_id is None
    assert out.error is not None and out.error.code == AUTO_DISABLED
    assert "context too large" in out.error.message
    assert _markers(store, sid) == []
    assert summarizer.calls == 0


def test_auto_off_is_honoured_on_the_overflow_path(
    store: Store, summarizer: ScriptedSummarizer
) -> None:
    engine = CompactionEngine(store, summarizer, CompactionSettings(LIMITS, auto_compact=False))
    sid = new_session(store)
    user = add_prompt(store, sid, "z" * 80_000)
    out = engine.compact_after_overflow(sid, replay_of=user.id)
    assert out.status == "failed" and out.error is not None
    assert out.error.code == AUTO_DISABLED
    assert _markers(store, sid) == [] and summarizer.calls == 0


def test_auto_off_still_allows_a_manual_compaction(
    store: Store, summarizer: ScriptedSummarizer
) -> None:
    engine = CompactionEngine(store, summarizer, CompactionSettings(LIMITS, auto_compact=False))
    sid = new_session(store)
    add_turn(store, sid, "hello", "hi")
    assert engine.compact(sid).status == "completed"


def test_second_automatic_compaction_without_a_new_user_message_is_refused(
    store: Store, engine: CompactionEngine, summarizer: ScriptedSummarizer
) -> None:
    sid = new_session(store)
    for i in range(4):
        add_turn(store, sid, f"q{i} " + "a" * 8_000, f"r{i} " + "b" * 8_000)
    assert engine.compact(sid, auto=True).status == "completed"
    again = engine.compact(sid, auto=True)
    assert again.status == "failed" and again.marker_id is None
    assert again.error is not None and again.error.code == AUTO_LOOP
    assert summarizer.calls == 1
    add_turn(store, sid, "a new question", "an answer")
    assert engine.compact(sid, auto=True).status == "completed"
    assert summarizer.calls == 2


def test_compaction_that_leaves_the_context_over_the_window_fails_as_no_progress(
    store: Store,
) -> None:
    # The summary itself is larger than the window: compacting cannot make progress.
    summarizer = ScriptedSummarizer(text="s" * 60_000)
    engine = CompactionEngine(store, summarizer, CompactionSettings(LIMITS))
    sid = new_session(store)
    for i in range(4):
        add_turn(store, sid, f"q{i} " + "a" * 8_000, f"r{i} " + "b" * 8_000)
    out = engine.compact(sid, auto=True)
    assert out.status == "failed"
    assert out.error is not None and out.error.code == NO_PROGRESS
    assert out.summary_message_id is not None  # kept in history, not deleted
    with store.read() as tx:
        assert tx.continuation_of(str(out.marker_id)) is None
    # ...and the next automatic trigger stops instead of looping.
    again = engine.compact(sid, auto=True)
    assert again.error is not None and again.error.code == AUTO_LOOP
    assert summarizer.calls == 1


def test_request_for_an_unknown_session_raises_not_found(engine: CompactionEngine) -> None:
    with pytest.raises(NotFound) as raised:
        engine.request("ses_nope")
    assert raised.value.what == "session"
