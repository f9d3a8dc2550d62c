"""An in-process summarizer that streams a fixed summary; it can be told to fail, block or be too
large. It implements the compaction engine's ``Summarizer`` interface (:mod:`server.summary`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from server.providers.base import CancelToken
from server.summary import SummaryCancelled, SummaryReply, SummaryRequest
from server.tokens import ModelLimits
from store.models import TokenUsage


@dataclass
class ScriptedSummarizer:
    """Streams a fixed summary in chunks; can be told to fail, block or be too large."""

    text: str = "## Objective\nShip the feature.\n## Next Move\nRun the tests."
    chunks: int = 4
    limits: ModelLimits = field(default_factory=lambda: ModelLimits(context=100_000, output=8_000))
    fail_with: Exception | None = None
    before_chunk: Callable[[int], None] | None = None  # called before each chunk is streamed
    requests: list[SummaryRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def calls(self) -> int:
        return len(self.requests)

    def summarize(
        self, request: SummaryRequest, on_text: Callable[[str], None], cancel: CancelToken
    ) -> SummaryReply:
        with self.lock:
            self.requests.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        size = max(1, len(self.text) // self.chunks)
        pieces = [self.text[i : i + size] for i in range(0, len(self.text), size)]
        for i, piece in enumerate(pieces):
            if self.before_chunk is not None:
                self.before_chunk(i)
            if cancel.is_set():
                raise SummaryCancelled()
            on_text(piece)
        return SummaryReply(self.text, TokenUsage(input=request.estimated_tokens, output=50))
