"""The built-in offline provider: deterministic, no network, and not a language model.

It answers every prompt with a short reply built from the prompt's own words, streamed a few
words at a time, and reports token usage estimated from the request (four characters a token).
It exists so that a newcomer (and the test suite) can see sessions, streaming, compaction and
sync work with nothing configured. It never calls tools.

The trap is speed: answered in a millisecond, streaming and cancel cannot be seen, so a person
trying the product concludes neither works. The pieces are paced (``offline_delay_ms``, default
40 ms a piece of three words, about a second per answer; cancel takes effect within one pause).
Tests and benchmarks set it to 0. The answer states no token count of its own: the editors'
meter (``session/context``) is the one count, and a second estimate here disagreed with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from server.providers.base import (
    CancelToken,
    ChatRequest,
    ChatResult,
    ProviderCancelled,
    ProviderConfig,
    ProviderEntry,
    ProviderInfo,
    StreamSink,
    Usage,
)

CHARS_PER_TOKEN = 4
QUOTE_CHARS = 160


def _tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def offline_answer(request: ChatRequest) -> str:
    """The reply to ``request``: a fixed function of the last user message and the history."""
    users = [m for m in request.messages if m.role == "user"]
    last = users[-1].content if users else ""
    turns = len(users)
    words = len(last.split())
    return (
        f'You said: "{_one_line(last, QUOTE_CHARS)}" ({words} words). '
        f"This is the offline provider, not a language model: it repeats what you wrote so "
        f"that sessions, streaming, compaction and sync can be tried without one. "
        f"The model would now see {turns} user message{'s' if turns != 1 else ''}; "
        f"the context meter shows how many tokens."
    )


def _pause(seconds: float, cancel: CancelToken) -> None:
    """Wait ``seconds`` or until ``cancel`` is set, in short waits (any CancelToken has
    ``is_set()``, not every one ``wait()``)."""
    idle = threading.Event()  # waited on, never set: a pause that is not a busy loop
    left = seconds
    while left > 0 and not cancel.is_set():
        step = min(left, 0.01)
        idle.wait(step)
        left -= step


def _pieces(text: str, words_per_piece: int) -> list[str]:
    words = text.split(" ")
    return [
        " ".join(words[i : i + words_per_piece]) + (" " if i + words_per_piece < len(words) else "")
        for i in range(0, len(words), words_per_piece)
    ]


class OfflineProvider:
    def __init__(
        self,
        *,
        model: str = "offline",
        context_limit: int = 8000,
        output_limit: int = 1000,
        delay_ms: int = 0,
        pause: Callable[[float, CancelToken], None] = _pause,
    ) -> None:
        self._info = ProviderInfo("offline", model, context_limit, output_limit)
        self.words_per_piece = 3
        self.delay_s = delay_ms / 1000.0
        self._pause = pause

    @property
    def info(self) -> ProviderInfo:
        return self._info

    def chat(self, request: ChatRequest, sink: StreamSink, cancel: CancelToken) -> ChatResult:
        answer = offline_answer(request)
        for i, piece in enumerate(_pieces(answer, self.words_per_piece)):
            if i and self.delay_s > 0:
                self._pause(self.delay_s, cancel)
            if cancel.is_set():
                raise ProviderCancelled()
            sink.text(piece)
        prompt_tokens = sum(_tokens(m.content) for m in request.messages) + sum(
            _tokens(c.arguments) for m in request.messages for c in m.tool_calls
        )
        output = _tokens(answer)
        usage = Usage(input=prompt_tokens, output=output, total=prompt_tokens + output)
        return ChatResult("stop", answer, usage=usage, model=self._info.model)


def _make(config: ProviderConfig) -> OfflineProvider:
    return OfflineProvider(
        model=config.model or "offline",
        context_limit=config.context_limit,
        output_limit=config.output_limit,
        delay_ms=config.offline_delay_ms,
    )


ENTRY = ProviderEntry(
    name="offline",
    about="the built-in deterministic provider (no network, not a language model)",
    model="offline",
    context_limit=8_000,
    output_limit=1_000,
    requires=(),
    language_model=False,
    make=_make,
)
