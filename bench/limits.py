"""The model limits both systems are configured with, for each scenario."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """A model's context window and output limit, in tokens."""

    context: int
    output: int

    @property
    def usable(self) -> int:
        """The window both systems compact at: context minus min(output, 20 000)."""
        return self.context - min(self.output, 20_000)


# No compaction while measuring speed; room for a 20 000-token answer.
ROOMY = Limits(context=1_000_000, output=32_000)
# The near-the-window scenarios: usable window 7 000 tokens in both systems.
TIGHT = Limits(context=8_000, output=1_000)
