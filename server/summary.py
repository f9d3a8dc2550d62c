"""The summarizer's side of a compaction: the request, its trimming, and the extractive fallback.

The engine talks to a model only through :class:`Summarizer`. The request it sends is always
trimmed to the summarizer model's usable window first, so "the summary request is too large" is
an exception, not the normal way a long session fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from server.providers.base import CancelToken
from server.tokens import ModelLimits, estimate_text, tool_output_for_model
from store.models import FilePart, MessageWithParts, TextPart, TokenUsage, ToolPart

SYSTEM_PROMPT = """\
You write the working memory of a coding session that is about to be shortened. The person and \
the assistant will continue from your text alone plus the few most recent messages, so keep \
every fact they would otherwise have to rediscover. Write Markdown with exactly these sections:

## Objective
What the person wants overall, in their own terms.
## Important Details
Decisions, constraints, names, versions, commands and error messages that still matter.
## Work State
### Completed
### Active
### Blocked
## Next Move
The single next step.
## Relevant Files
Paths, each with a few words on why it matters.

If an earlier summary is given, merge it with the new messages: keep what is still true, drop \
what was superseded. Do not invent facts. Do not call tools."""

DEFAULT_WINDOW_TOKENS = 64_000  # assumed when the summarizer's context size is unknown
TOOL_OUTPUT_CAPS = (2_000, 500, 100, 0)  # characters, tightened until the request fits
TEXT_CAPS = (None, 4_000, 1_000, 300)


class SummaryTooLarge(Exception):
    """The model rejected the summary request as longer than its context window."""


class SummaryFailed(Exception):
    """The model did not produce a summary (provider error, empty answer, network)."""


class SummaryCancelled(Exception):
    """The summary was cancelled by the user."""


@dataclass(frozen=True)
class Chunk:
    kind: Literal["text", "tool", "media"]
    text: str


@dataclass(frozen=True)
class TranscriptEntry:
    role: str
    message_id: str
    chunks: tuple[Chunk, ...]

    def render(self) -> str:
        return f"[{self.role}]\n" + "\n".join(c.text for c in self.chunks)


@dataclass(frozen=True)
class SummaryRequest:
    system: str
    previous_summary: str | None
    transcript: tuple[TranscriptEntry, ...]
    instructions: str | None
    omitted_messages: int
    estimated_tokens: int
    budget_tokens: int

    def prompt(self) -> str:
        """The user message that carries everything to summarize."""
        out: list[str] = []
        if self.previous_summary:
            out.append("Earlier summary to merge:\n" + self.previous_summary)
        if self.omitted_messages:
            out.append(f"[{self.omitted_messages} older messages omitted to fit the window]")
        out.append("Messages since then:\n\n" + "\n\n".join(e.render() for e in self.transcript))
        if self.instructions:
            out.append("Additional instructions from the user:\n" + self.instructions)
        return "\n\n".join(out)


@dataclass(frozen=True)
class SummaryReply:
    text: str
    tokens: TokenUsage | None = None
    model: str | None = None
    kind: Literal["model", "extractive"] = "model"  # extractive: assembled, not written by a model


class Summarizer(Protocol):
    """A model that can write a summary, streaming its text through ``on_text``.

    Implementations check ``cancel.is_set()`` between chunks and raise SummaryCancelled.
    """

    @property
    def limits(self) -> ModelLimits: ...

    def summarize(
        self, request: SummaryRequest, on_text: Callable[[str], None], cancel: CancelToken
    ) -> SummaryReply:
        """Raise SummaryTooLarge, SummaryCancelled, or SummaryFailed when there is no summary."""
        ...


# --- building and trimming the request ---------------------------------------------------------


def _cap(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    if limit == 0:
        return f"[{len(text)} characters omitted]"
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit} characters omitted ...]\n{text[-tail:]}"


def _entry(m: MessageWithParts, tool_cap: int, text_cap: int | None) -> TranscriptEntry | None:
    chunks: list[Chunk] = []
    for p in m.parts:
        body = p.body
        if isinstance(body, TextPart):
            chunks.append(Chunk("text", _cap(body.text, text_cap)))
        elif isinstance(body, ToolPart):
            args = json.dumps(body.state.input, ensure_ascii=False, sort_keys=True)
            out = _cap(tool_output_for_model(body), tool_cap)
            status = "" if body.state.status == "completed" else f" ({body.state.status})"
            chunks.append(Chunk("tool", f"[tool {body.tool}{status}] {_cap(args, 500)}\n{out}"))
        elif isinstance(body, FilePart):
            chunks.append(Chunk("media", f"[attached {body.mime}: {body.filename or 'file'}]"))
    return TranscriptEntry(m.info.role, m.info.id, tuple(chunks)) if chunks else None


def _fixed_size(previous: str | None, instructions: str | None) -> int:
    """Tokens of everything but the transcript (system prompt, earlier summary, framing)."""
    text = estimate_text(SYSTEM_PROMPT) + estimate_text(previous or "")
    return text + estimate_text(instructions or "") + 50


def _entry_size(e: TranscriptEntry) -> int:
    return estimate_text(e.render()) + 2


def build_summary_request(
    head: tuple[MessageWithParts, ...],
    previous_summary: str | None,
    instructions: str | None,
    limits: ModelLimits,
) -> SummaryRequest:
    """Everything to summarize, trimmed until it fits the summarizer's usable window.

    Tool outputs are capped (2 000 characters, tighter if needed), media becomes a one-line
    mention, long texts are cut in the middle, then the oldest messages are dropped; the earlier
    summary is kept (cut to half the budget at most) so nothing already summarized is lost.
    """
    budget = limits.usable() or DEFAULT_WINDOW_TOKENS
    if previous_summary and estimate_text(previous_summary) > budget // 2:
        previous_summary = _cap(previous_summary, budget // 2 * 4)
    if instructions and _fixed_size(previous_summary, instructions) > budget * 3 // 4:
        instructions = _cap(instructions, budget // 4 * 4)
    fixed = _fixed_size(previous_summary, instructions)
    entries: list[TranscriptEntry] = []
    sizes: list[int] = []
    for tool_cap, text_cap in zip(TOOL_OUTPUT_CAPS, TEXT_CAPS, strict=True):
        entries = [e for e in (_entry(m, tool_cap, text_cap) for m in head) if e is not None]
        sizes = [_entry_size(e) for e in entries]
        if fixed + sum(sizes) <= budget:
            break
    total = fixed + sum(sizes)
    omitted = 0
    while omitted < len(entries) and total > budget:
        total -= sizes[omitted]
        omitted += 1
    return SummaryRequest(
        system=SYSTEM_PROMPT,
        previous_summary=previous_summary,
        transcript=tuple(entries[omitted:]),
        instructions=instructions,
        omitted_messages=omitted,
        estimated_tokens=total,
        budget_tokens=budget,
    )


# --- the deterministic fallback ----------------------------------------------------------------

PATH_MENTION = re.compile(r"(?<![\w/.-])(?:[\w.-]+/)*[\w-]+\.[A-Za-z][\w]{0,7}\b")
_BACKTICKED = re.compile(r"`([A-Za-z_][\w.:]{2,60})`")
_URLISH = re.compile(r"^(?:\w+\.)+(?:com|org|net|io)$")


def _mentions(head: tuple[MessageWithParts, ...]) -> list[str]:
    seen: dict[str, None] = {}
    for m in head:
        for p in m.parts:
            body = p.body
            texts: list[str] = []
            if isinstance(body, TextPart):
                texts.append(body.text)
            elif isinstance(body, ToolPart):
                for key in ("path", "file", "filePath", "pattern"):
                    value = body.state.input.get(key)
                    if isinstance(value, str):
                        seen.setdefault(value, None)
            for text in texts:
                for found in PATH_MENTION.findall(text):
                    if not _URLISH.match(found) and not found[0].isdigit():
                        seen.setdefault(found, None)
                for found in _BACKTICKED.findall(text):
                    seen.setdefault(found, None)
    return list(seen)[:40]


def _text_of(m: MessageWithParts) -> str:
    return "\n".join(p.body.text for p in m.parts if isinstance(p.body, TextPart)).strip()


def one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def fallback_summary(
    head: tuple[MessageWithParts, ...], previous_summary: str | None, reason: str
) -> str:
    """A summary assembled from the messages themselves, for when the model failed to write one
    (error, empty answer): it works from the stored messages, not from a request that may be
    the very thing that failed, and says why the model's summary is missing.

    Not :func:`server.summarizers.offline_provider_summary`, which stands in for a model when
    the offline provider is configured and answers a :class:`SummaryRequest` like one."""
    prompts = [m for m in head if m.info.kind == "prompt" and _text_of(m)]
    errors = [
        p.body
        for m in head
        for p in m.parts
        if isinstance(p.body, ToolPart) and p.body.state.status == "error"
    ]
    out = [
        "## Extractive summary",
        f"_The model could not write a summary ({one_line(reason, 200)}); "
        "this one was assembled from the messages themselves._",
    ]
    if previous_summary:
        out += ["## Earlier summary", previous_summary.strip()]
    out.append("## Objective")
    out.append(one_line(_text_of(prompts[0]), 600) if prompts else "(no user request found)")
    mentions = _mentions(head)
    out.append("## Relevant Files and Identifiers")
    out += [f"- {x}" for x in mentions] or ["(none mentioned)"]
    out.append("## Recent Requests")
    out += [f"- {one_line(_text_of(m), 300)}" for m in prompts[-3:]] or ["(none)"]
    out.append("## Open Tool Errors")
    out += [
        f"- {e.tool} {one_line(json.dumps(e.state.input, sort_keys=True), 120)}: "
        f"{one_line(e.state.error or 'error', 200)}"
        for e in errors[-5:]
    ] or ["(none)"]
    return "\n".join(out) + "\n"
