"""Summarizers for the compaction engine, built on the configured provider.

``ProviderSummarizer`` asks the chat provider for the summary and maps its failures onto the
exceptions the engine understands. ``OfflineSummarizer`` writes an extractive summary from the
transcript itself (the offline provider is not a language model).
"""

from __future__ import annotations

from collections.abc import Callable

from server.providers.base import (
    CancelToken,
    ChatMessage,
    ChatRequest,
    ContextOverflow,
    Provider,
    ProviderCancelled,
    ProviderError,
    RetryNotice,
    Usage,
)
from server.summary import (
    PATH_MENTION,
    SummaryCancelled,
    SummaryFailed,
    SummaryReply,
    SummaryRequest,
    SummaryTooLarge,
    one_line,
)
from server.tokens import ModelLimits
from store.models import TokenUsage


def token_usage(u: Usage | None) -> TokenUsage | None:
    if u is None:
        return None
    return TokenUsage(
        input=u.input,
        output=u.output,
        reasoning=u.reasoning,
        cache_read=u.cache_read,
        total=u.total,
    )


def provider_limits(provider: Provider) -> ModelLimits:
    return ModelLimits(provider.info.context_limit, provider.info.output_limit)


class _SummarySink:
    def __init__(self, on_text: Callable[[str], None]) -> None:
        self.on_text = on_text

    def text(self, delta: str) -> None:
        self.on_text(delta)

    def reasoning(self, delta: str) -> None:
        pass

    def retry(self, notice: RetryNotice) -> None:
        pass


class ProviderSummarizer:
    """The chat model writes the summary."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    @property
    def limits(self) -> ModelLimits:
        return provider_limits(self.provider)

    def summarize(
        self, request: SummaryRequest, on_text: Callable[[str], None], cancel: CancelToken
    ) -> SummaryReply:
        chat = ChatRequest(
            messages=(ChatMessage("system", request.system), ChatMessage("user", request.prompt())),
            max_tokens=self.limits.max_output(),
        )
        try:
            result = self.provider.chat(chat, _SummarySink(on_text), cancel)
        except ContextOverflow as e:
            raise SummaryTooLarge(e.message) from e
        except ProviderCancelled as e:
            raise SummaryCancelled() from e
        except ProviderError as e:
            raise SummaryFailed(e.message) from e
        return SummaryReply(result.text, token_usage(result.usage), result.model)


def offline_provider_summary(request: SummaryRequest) -> str:
    """What the offline provider writes where a model would: a deterministic summary made of
    the transcript's own sentences, from the same trimmed request a model gets and in the
    sections :data:`~server.summary.SYSTEM_PROMPT` asks for.

    Not :func:`server.summary.fallback_summary`, which replaces a summary any model (this
    one included) failed to write."""
    if not request.transcript and not request.previous_summary:
        return (
            "## Objective\n(nothing older than the recent messages kept verbatim)\n"
            "## Important Details\nThe offline provider found no earlier messages to summarize.\n"
        )
    users = [e for e in request.transcript if e.role == "user"]
    texts = ["\n".join(c.text for c in e.chunks if c.kind == "text") for e in users]
    texts = [t for t in texts if t.strip()]
    files: dict[str, None] = {}
    for e in request.transcript:
        for c in e.chunks:
            for found in PATH_MENTION.findall(c.text):
                files.setdefault(found, None)
    out = ["## Objective", one_line(texts[0], 400) if texts else "(no user request found)"]
    out.append("## Important Details")
    if request.previous_summary:
        out.append("Earlier summary:\n" + request.previous_summary.strip())
    if request.instructions:
        out.append("Instructions: " + one_line(request.instructions, 400))
    out.append(f"{len(request.transcript)} messages summarized by the offline provider.")
    out.append("## Work State")
    out += [f"- asked: {one_line(t, 200)}" for t in texts[-5:]] or ["(none)"]
    out.append("## Next Move")
    out.append(one_line(texts[-1], 200) if texts else "(unknown)")
    out.append("## Relevant Files")
    out += [f"- {f}" for f in list(files)[:20]] or ["(none mentioned)"]
    return "\n".join(out) + "\n"


class OfflineSummarizer:
    def __init__(self, limits: ModelLimits) -> None:
        self._limits = limits

    @property
    def limits(self) -> ModelLimits:
        return self._limits

    def summarize(
        self, request: SummaryRequest, on_text: Callable[[str], None], cancel: CancelToken
    ) -> SummaryReply:
        text = offline_provider_summary(request)
        for line in text.splitlines(keepends=True):
            if cancel.is_set():
                raise SummaryCancelled()
            on_text(line)
        output = (len(text) + 3) // 4
        usage = TokenUsage(input=request.estimated_tokens, output=output)
        return SummaryReply(text, usage, "offline", kind="extractive")
