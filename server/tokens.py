"""Token arithmetic: estimates from text, and the usable window of a model.

The window rules (docs/compaction.md describes them with the overflow test):
``reserved = min(20 000, max_output)`` with ``max_output = min(output limit, 32 000)``; the usable
window is ``input - reserved`` when the model has a separate input limit, else
``context - reserved``. An unknown context size (0) means "never compact automatically".
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from store.models import (
    CompactionPart,
    FilePart,
    Json,
    Part,
    PartBody,
    ReasoningPart,
    StepFinishPart,
    TextPart,
    TokenUsage,
    ToolPart,
)

CHARS_PER_TOKEN = 4
OUTPUT_TOKEN_MAX = 32_000
RESERVED_MAX = 20_000
PRUNED_PLACEHOLDER = "[Old tool result content cleared]"


@dataclass(frozen=True)
class ModelLimits:
    """A model's limits in tokens. ``context=0`` means unknown."""

    context: int
    output: int
    input: int | None = None

    def max_output(self) -> int:
        return min(self.output, OUTPUT_TOKEN_MAX) if self.output > 0 else OUTPUT_TOKEN_MAX

    def reserved(self) -> int:
        return min(RESERVED_MAX, self.max_output())

    def usable(self) -> int:
        """Tokens a request may occupy before the conversation must be compacted."""
        if self.context <= 0:
            return 0
        limit = self.input if self.input else self.context
        return max(0, limit - self.reserved())


def is_overflow(usage: TokenUsage, limits: ModelLimits, *, auto_compact: bool = True) -> bool:
    """Whether a step's usage has reached the usable window, so automatic compaction is due."""
    if not auto_compact or limits.context <= 0:
        return False
    return usage.count() >= limits.usable()


def estimate_text(text: str) -> int:
    """Characters divided by four, rounded up."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _json_text(value: Json) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def tool_output_for_model(part: ToolPart) -> str:
    """What the model sees of a tool's result: pruned outputs become a short placeholder."""
    state = part.state
    if state.time_compacted is not None:
        return PRUNED_PLACEHOLDER
    if state.status == "error":
        return state.error or ""
    return state.output or ""


def estimate_body(body: PartBody) -> int:
    match body:
        case TextPart(text=text) | ReasoningPart(text=text):
            return estimate_text(text)
        case ToolPart(state=state):
            return estimate_text(_json_text(state.input)) + estimate_text(
                tool_output_for_model(body)
            )
        case FilePart():
            return 256  # media is sent as an attachment; count a nominal share
        case StepFinishPart() | CompactionPart():
            return 0


def estimate_parts(parts: tuple[Part, ...] | list[Part]) -> int:
    return sum(estimate_body(p.body) for p in parts)
