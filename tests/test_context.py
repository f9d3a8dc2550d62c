"""Guarantee 10: the tail kept verbatim, and build_context = [marker, summary, tail, after],
read from the last completed compaction on."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import CompactionEngine, CompactionSettings
from server.context import MARKER_TEXT, build_context, plan_tail, tail_budget
from server.summary import SummaryTooLarge
from server.tokens import ModelLimits
from store import Store
from store.db import StatementProfile
from store.models import MessageWithParts, ReasoningPart, TextPart
from tests.conftest import LIMITS
from tests.support import add_prompt, add_turn, new_session


def _ids(store: Store, session_id: str, kind: str) -> list[str]:
    with store.read() as tx:
        return [m.id for m in tx.messages(session_id) if m.kind == kind]


def test_tail_budget_is_a_quarter_of_the_window_clamped_to_2000_and_8000() -> None:
    assert tail_budget(ModelLimits(16_000, 4_000)) == 3_000
    assert tail_budget(ModelLimits(6_000, 1_000)) == 2_000
    assert tail_budget(ModelLimits(200_000, 32_000)) == 8_000
    assert tail_budget(ModelLimits(0, 0)) == 2_000


def test_tail_keeps_the_last_two_turns_when_they_fit(store: Store) -> None:
    sid = new_session(store)
    turns = [add_turn(store, sid, f"q{i}", f"a{i}") for i in range(5)]
    with store.read() as tx:
        history = tuple(tx.history(sid))
    assert plan_tail(history, budget=2_000) == turns[3][0].id


def test_tail_splits_a_turn_that_does_not_fit_at_the_earliest_message_that_fits(
    store: Store,
) -> None:
    sid = new_session(store)
    add_turn(store, sid, "q0", "a0")
    add_turn(store, sid, "q1 " + "x" * 8_000, "a1 " + "y" * 2_000)  # ~2 000 + ~500 tokens
    last_user, _ = add_turn(store, sid, "q2", "a2")
    with store.read() as tx:
        history = tuple(tx.history(sid))
    reply_1 = history[3].info.id
    assert plan_tail(history, budget=1_000) == reply_1  # q1 itself does not fit
    assert plan_tail(history, budget=10) == last_user.id  # only the newest turn fits


def test_tail_is_empty_when_not_even_the_last_message_fits(store: Store) -> None:
    sid = new_session(store)
    add_turn(store, sid, "q", "a" * 40_000)
    with store.read() as tx:
        history: tuple[MessageWithParts, ...] = tuple(tx.history(sid))
    assert plan_tail(history, budget=2_000) is None


def test_context_after_compaction_is_marker_summary_tail_then_after(
    store: Store, engine: CompactionEngine
) -> None:
    sid = new_session(store)
    for i in range(4):
        add_turn(store, sid, f"q{i} " + "a" * 4_000, f"r{i} " + "b" * 4_000)
    kept_user, kept_reply = add_turn(store, sid, "q4", "r4")
    out = engine.compact(sid, auto=True)
    later = add_prompt(store, sid, "what next?")
    ctx = build_context(store, sid)
    (continuation,) = _ids(store, sid, "continuation")
    assert [m.message_id for m in ctx.messages] == [
        out.marker_id,
        out.summary_message_id,
        *_tail_ids(store, sid, str(out.marker_id)),
        continuation,
        later.id,
    ]
    assert [m.role for m in ctx.messages][:2] == ["user", "assistant"]
    first = ctx.messages[0].parts[0].body
    assert isinstance(first, TextPart) and first.text == MARKER_TEXT
    assert kept_user.id in [m.message_id for m in ctx.messages]
    assert kept_reply.id in [m.message_id for m in ctx.messages]
    assert ctx.tokens == sum(m.tokens for m in ctx.messages)


def _tail_ids(store: Store, session_id: str, marker_id: str) -> list[str]:
    with store.read() as tx:
        c = tx.require_compaction(marker_id)
        return [
            m.id
            for m in tx.messages(session_id, c.tail_plan)
            if m.id < marker_id and m.kind in ("prompt", "reply")
        ]


def test_context_leaves_out_failed_markers_and_interrupted_summaries(
    store: Store, engine: CompactionEngine, summarizer: ScriptedSummarizer
) -> None:
    sid = new_session(store)
    add_turn(store, sid, "q0", "r0")
    summarizer.fail_with = SummaryTooLarge("big")
    failed = engine.compact(sid)
    assert failed.status == "failed"
    add_turn(store, sid, "q1", "r1")
    ctx = build_context(store, sid)
    with store.read() as tx:
        summaries = [m.id for m in tx.messages(sid) if m.kind == "summary"]
    ids = [m.message_id for m in ctx.messages]
    assert failed.marker_id not in ids
    assert not set(summaries) & set(ids)
    assert ctx.marker_id is None  # no completed compaction yet: the whole history is read


def test_context_without_compaction_is_the_whole_conversation(store: Store) -> None:
    sid = new_session(store)
    turns = [add_turn(store, sid, f"q{i}", f"a{i}") for i in range(3)]
    ctx = build_context(store, sid)
    assert [m.message_id for m in ctx.messages] == [m.id for t in turns for m in t]
    assert ctx.read_from == ""


def _session_compacted_20_messages_ago(store: Store, engine: CompactionEngine, n: int) -> str:
    sid = new_session(store)
    for i in range((n - 20) // 2):
        add_turn(store, sid, f"question {i}", f"answer {i}")
    engine.compact(sid)
    for i in range(9):
        add_turn(store, sid, f"later question {i}", f"later answer {i}")
    return sid


@pytest.mark.parametrize("n", [200, 2_000])
def test_build_context_reads_only_from_the_last_completed_compaction(
    store: Store, engine: CompactionEngine, n: int
) -> None:
    sid = _session_compacted_20_messages_ago(store, engine, n)
    ctx = build_context(store, sid)
    assert len(ctx.messages) < 30
    with store.read() as tx:
        read = tx.messages(sid, ctx.read_from)
    assert len(read) < 30  # the read starts at the tail, not at the first message


def test_build_context_cost_does_not_grow_with_history_before_the_compaction(
    tmp_path: Path, summarizer: ScriptedSummarizer
) -> None:
    steps = []
    for n in (200, 2_000):
        store = Store(tmp_path / f"s{n}.db")
        engine = CompactionEngine(store, summarizer, CompactionSettings(LIMITS))
        sid = _session_compacted_20_messages_ago(store, engine, n)
        with store.profile() as statements:
            build_context(store, sid)
        steps.append(sum(s.vm_steps for s in statements))
        plans = _query_plans(store, statements)
        assert not [p for p in plans if "SCAN" in p], plans
        store.close()
    # SQLite's count of virtual-machine steps: identical work for 10x the history.
    assert steps[0] == steps[1]


def _query_plans(store: Store, statements: list[StatementProfile]) -> list[str]:
    """SQLite's plan for each SELECT that ran (placeholders bound to dummy values)."""
    plans = []
    with store.read() as tx:
        for s in statements:
            if s.sql.startswith("SELECT"):
                plans += tx.explain(s.sql, ("x",) * s.sql.count("?"))
    return plans


def test_assistant_message_with_nothing_to_send_is_left_out(store: Store) -> None:
    sid = new_session(store)
    user = add_prompt(store, sid, "think about it")
    with store.write() as tx:
        thinking = tx.add_message(sid, "reply", parent_id=user.id)
        tx.put_part(thinking.id, ReasoningPart("hmm"))
    ids = [m.message_id for m in build_context(store, sid).messages]
    assert ids == [user.id]
