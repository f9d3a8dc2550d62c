"""Building large sessions quickly for benchmarks (bulk writes, one transaction per batch)."""

from __future__ import annotations

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import CompactionEngine, CompactionSettings
from server.tokens import ModelLimits
from store import Store
from store.models import StepFinishPart, TextPart, TokenUsage

BATCH = 2_000
LIMITS = ModelLimits(context=128_000, output=16_000)


def add_turns(store: Store, session_id: str, turns: int, start: int = 0) -> None:
    """Append ``turns`` user/assistant pairs of a few hundred characters each."""
    for first in range(start, start + turns, BATCH):
        with store.write() as tx:
            for i in range(first, min(first + BATCH, start + turns)):
                user = tx.add_message(session_id, "prompt")
                tx.put_part(user.id, TextPart(f"question {i}: " + "q" * 200))
                reply = tx.add_message(session_id, "reply", parent_id=user.id)
                tx.put_part(reply.id, TextPart(f"answer {i}: " + "a" * 400))
                tx.put_part(reply.id, StepFinishPart(TokenUsage(input=100, output=100)))


def session_compacted_20_ago(store: Store, messages: int) -> str:
    """A session of ``messages`` messages whose last compaction was 20 messages ago."""
    with store.write() as tx:
        session_id = tx.create_session(f"bench {messages}").id
    add_turns(store, session_id, (messages - 22) // 2)
    engine = CompactionEngine(store, ScriptedSummarizer(), CompactionSettings(LIMITS))
    engine.compact(session_id)  # the marker and its summary: 2 messages
    add_turns(store, session_id, 10, start=messages)
    return session_id
