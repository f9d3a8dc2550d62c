"""Guarantee 11: old tool outputs are marked compacted, never deleted."""

from __future__ import annotations

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import CompactionEngine, CompactionSettings
from server.context import build_context
from server.providers.base import CancelToken, ChatRequest, ChatResult, ProviderInfo, StreamSink
from server.prune import prune
from server.runner import PromptRunner
from server.tokens import PRUNED_PLACEHOLDER, ModelLimits
from server.turn import PromptInput, SessionStatus, TurnSettings
from store import Store
from store.models import ToolPart
from tests.support import add_turn, new_session


def _tool_parts(store: Store, session_id: str) -> list[ToolPart]:
    with store.read() as tx:
        return [
            p.body for m in tx.history(session_id) for p in m.parts if isinstance(p.body, ToolPart)
        ]


def test_prune_keeps_the_newest_40000_tokens_and_marks_older_outputs_compacted(
    store: Store,
) -> None:
    sid = new_session(store)
    for i in range(9):  # 9 outputs of 10 000 tokens each
        add_turn(store, sid, f"q{i}", f"a{i}", tool_output=f"{i}" * 40_000)
    result = prune(store, sid)
    parts = _tool_parts(store, sid)
    compacted = [p.state.time_compacted is not None for p in parts]
    # The last two turns are protected; of the rest, the newest 40 000 tokens (4 outputs) are
    # kept and the 3 older ones (30 000 tokens, over the 20 000 minimum) are pruned.
    assert compacted == [True, True, True, False, False, False, False, False, False]
    assert result.parts == 3 and result.tokens == 30_000
    assert all(p.state.output == f"{i}" * 40_000 for i, p in enumerate(parts))  # not deleted


def test_prune_does_nothing_when_it_would_free_20000_tokens_or_less(store: Store) -> None:
    sid = new_session(store)
    for i in range(8):  # 2 protected turns, 4 kept, 2 prunable = exactly 20 000 tokens
        add_turn(store, sid, f"q{i}", f"a{i}", tool_output="z" * 40_000)
    assert prune(store, sid).parts == 0
    assert not any(p.state.time_compacted for p in _tool_parts(store, sid))


def test_pruned_output_reaches_the_model_as_a_placeholder(store: Store) -> None:
    sid = new_session(store)
    for i in range(9):
        add_turn(store, sid, f"q{i}", f"a{i}", tool_output="y" * 40_000)
    before = build_context(store, sid).tokens
    prune(store, sid)
    ctx = build_context(store, sid)
    tools = [p.body for m in ctx.messages for p in m.parts if isinstance(p.body, ToolPart)]
    assert tools[0].state.output == PRUNED_PLACEHOLDER
    assert before - ctx.tokens >= 30_000 - 100


def test_prune_is_announced_as_part_updates(store: Store) -> None:
    sid = new_session(store)
    for i in range(9):
        add_turn(store, sid, f"q{i}", f"a{i}", tool_output="y" * 40_000)
    with store.read() as tx:
        cursor = tx.last_seq()
    result = prune(store, sid)
    with store.read() as tx:
        events = tx.events_after(cursor)
    assert [e.type for e in events] == ["message.part.updated"] * result.parts
    assert all(e.data["state"]["time"]["compacted"] for e in events)


class _Answers:
    """A provider that answers every prompt with one short sentence."""

    info = ProviderInfo("answers", "answers-model", 200_000, 4_000)

    def chat(self, request: ChatRequest, sink: StreamSink, cancel: CancelToken) -> ChatResult:
        sink.text("done")
        return ChatResult(text="done", finish="stop")


class _Quiet:
    def delta(self, *_: object) -> None:
        pass

    def status(self, status: SessionStatus) -> None:
        pass


def test_a_turn_prunes_old_tool_outputs_when_it_ends(store: Store) -> None:
    limits = ModelLimits(context=200_000, output=4_000)  # 90 000 tokens fit: no compaction
    sid = new_session(store)
    for i in range(9):
        add_turn(store, sid, f"q{i}", f"a{i}", tool_output=f"{i}" * 40_000)
    engine = CompactionEngine(store, ScriptedSummarizer(), CompactionSettings(limits=limits))
    runner = PromptRunner(
        store, engine.ownership, engine, _Answers(), TurnSettings(limits=limits), _Quiet()
    )
    try:
        outcome = runner.submit(sid, PromptInput(("one more",))).result(20)
    finally:
        runner.close()
    assert outcome.stop_reason == "end_turn"
    compacted = [p.state.time_compacted is not None for p in _tool_parts(store, sid)]
    # The last two user turns are the new prompt and q8, so output 8 is protected; of 0-7 the
    # newest four (4-7, 40 000 tokens) are kept and 0-3 (40 000 tokens) are pruned.
    assert compacted == [True, True, True, True, False, False, False, False, False]
