"""A turn whose provider fails in a way nobody planned for, run in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import CompactionEngine, CompactionSettings
from server.providers.base import (
    CancelToken,
    ChatRequest,
    ChatResult,
    ProviderInfo,
    StreamSink,
)
from server.runner import PromptRunner
from server.tokens import ModelLimits
from server.turn import PromptInput, SessionStatus, TurnSettings
from store import Store
from store.models import TextPart
from tests.support import new_session

LIMITS = ModelLimits(context=8_000, output=1_000)
TURN_TIMEOUT_S = 20.0


class BuggyProvider:
    """Streams some text, then raises something no provider is documented to raise."""

    info = ProviderInfo("buggy", "buggy-model", LIMITS.context, LIMITS.output)

    def chat(self, request: ChatRequest, sink: StreamSink, cancel: CancelToken) -> ChatResult:
        sink.text("half an ")
        raise RuntimeError("a bug in the provider")


class Quiet:
    def delta(
        self, session_id: str, message_id: str, part_id: str, part_type: str, delta: str
    ) -> None:
        pass

    def status(self, status: SessionStatus) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "s.db")
    yield s
    s.close()


def test_an_unexpected_failure_mid_stream_closes_the_reply_with_an_error_keeping_its_text(
    store: Store,
) -> None:
    engine = CompactionEngine(store, ScriptedSummarizer(), CompactionSettings(limits=LIMITS))
    runner = PromptRunner(
        store, engine.ownership, engine, BuggyProvider(), TurnSettings(limits=LIMITS), Quiet()
    )
    sid = new_session(store)
    try:
        outcome = runner.submit(sid, PromptInput(("hi",))).result(TURN_TIMEOUT_S)
    finally:
        runner.close()

    assert outcome.stop_reason == "error"
    assert outcome.error is not None and outcome.error.name == "InternalError"
    with store.read() as tx:
        reply = tx.messages(sid)[-1]
        parts = tx.parts_of(reply.id)
    assert reply.kind == "reply"
    assert reply.time_completed is not None  # not left in progress for followers
    assert reply.error is not None and reply.error.name == "InternalError"
    assert "a bug in the provider" in reply.error.message
    assert [p.body for p in parts] == [TextPart("half an ")]  # what was shown is kept
