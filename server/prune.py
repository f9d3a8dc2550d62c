"""Pruning old tool outputs: they stay stored but stop going to the model.

Walking back from the newest message, past the last two user turns, the newest 40 000 tokens
of tool output are kept; older outputs are marked ``compacted`` (their time is recorded on the
tool state) when that frees more than 20 000 tokens. Nothing is deleted: the model sees a short
placeholder instead, and clients can still show the original output.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from server.context import load_conversation
from server.tokens import estimate_text
from store import Store
from store.models import Part, ToolPart

PRUNE_PROTECT_TOKENS = 40_000
PRUNE_MINIMUM_TOKENS = 20_000
PROTECTED_TURNS = 2


@dataclass(frozen=True)
class PruneResult:
    parts: int  # tool outputs marked compacted
    tokens: int  # estimated tokens they no longer cost


def prune(store: Store, session_id: str) -> PruneResult:
    """Mark old tool outputs compacted, as described in the module docstring."""
    with store.write() as tx:
        conv = load_conversation(tx, session_id)
        turns = 0
        seen = 0
        candidates: list[tuple[Part, ToolPart, int]] = []
        for m in reversed(conv.messages):
            if m.info.role == "user":
                turns += 1
                continue
            if turns < PROTECTED_TURNS:
                continue
            for part in reversed(m.parts):
                body = part.body
                if not isinstance(body, ToolPart) or body.state.status != "completed":
                    continue
                if body.state.time_compacted is not None:
                    continue
                tokens = estimate_text(body.state.output or "")
                seen += tokens
                if seen > PRUNE_PROTECT_TOKENS:
                    candidates.append((part, body, tokens))
        freed = sum(tokens for _, _, tokens in candidates)
        if freed <= PRUNE_MINIMUM_TOKENS:
            return PruneResult(0, 0)
        now = tx.now()
        for part, body, _ in candidates:
            state = replace(body.state, time_compacted=now)
            tx.put_part(part.message_id, replace(body, state=state), part.id)
        return PruneResult(len(candidates), freed)
