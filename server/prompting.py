"""Turn the model's context (server.context) into a provider-neutral chat request."""

from __future__ import annotations

import json

from server.context import ContextMessage, ModelContext
from server.providers.base import ChatMessage, ChatRequest, ToolCall, ToolSpec
from server.tokens import tool_output_for_model
from store.models import FilePart, TextPart, ToolPart

SYSTEM_PROMPT = """\
You are a coding assistant working with a developer inside their editor. Answer precisely and \
briefly. When you need to look at the project, use the read-only tools you are given (paths are \
relative to the project directory); you cannot change files or run commands."""


def system_prompt(directory: str | None, tools: bool) -> str:
    where = f"\nThe project directory is {directory}." if directory else ""
    how = "" if tools else "\nNo tools are available in this session."
    return SYSTEM_PROMPT + where + how


def _text(m: ContextMessage) -> str:
    out: list[str] = []
    for p in m.parts:
        if isinstance(p.body, TextPart):
            out.append(p.body.text)
        elif isinstance(p.body, FilePart):
            name = p.body.filename or p.body.url
            out.append(f"[attached file: {name} ({p.body.mime})]")
    return "\n".join(out)


def to_chat_messages(m: ContextMessage) -> list[ChatMessage]:
    """One stored message as chat messages: tool calls become an assistant message with
    ``tool_calls`` followed by one ``tool`` message per result."""
    if m.role == "user":
        return [ChatMessage("user", _text(m))]
    tools = [p.body for p in m.parts if isinstance(p.body, ToolPart)]
    if not tools:
        return [ChatMessage("assistant", _text(m))]
    calls = tuple(ToolCall(t.call_id, t.tool, _arguments(t)) for t in tools)
    out = [ChatMessage("assistant", _text(m), tool_calls=calls)]
    for t in tools:
        result = tool_output_for_model(t)
        if t.state.status in ("pending", "running"):
            result = "(the tool did not finish)"
        out.append(ChatMessage("tool", result or "(no output)", tool_call_id=t.call_id))
    return out


def _arguments(t: ToolPart) -> str:
    return json.dumps(t.state.input, separators=(",", ":"), ensure_ascii=False)


def chat_request(
    ctx: ModelContext,
    *,
    directory: str | None,
    tools: tuple[ToolSpec, ...],
    max_tokens: int | None,
    model: str | None = None,
) -> ChatRequest:
    messages = [ChatMessage("system", system_prompt(directory, bool(tools)))]
    for m in ctx.messages:
        messages.extend(to_chat_messages(m))
    return ChatRequest(tuple(messages), tools, max_tokens, model)
