"""A provider for any OpenAI-compatible Chat Completions endpoint.

Works with OpenAI, Ollama, llama.cpp, vLLM, LM Studio, OpenRouter and anything else that serves
``POST {base_url}/chat/completions`` with ``"stream": true`` as server-sent events. This module
is the OpenAI JSON: the request body, and the answer built from the streamed chunks (text,
reasoning, tool calls put together from their fragments, usage, errors reported mid-stream).
The connection, retries, cancel and the scrubbing of secrets are :mod:`server.providers.http`'s,
the event stream's framing :mod:`server.providers.sse`'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.providers.base import (
    CancelToken,
    ChatMessage,
    ChatRequest,
    ChatResult,
    FinishReason,
    ProviderCancelled,
    ProviderConfig,
    ProviderEntry,
    ProviderError,
    ProviderInfo,
    ProviderNotConfigured,
    StreamSink,
    ToolCall,
    ToolSpec,
    Usage,
)
from server.providers.http import (
    RETRY_STATUSES,
    Endpoint,
    HttpSettings,
    HttpTransport,
    error_text,
    is_context_overflow,
)
from server.providers.sse import TextPieces, well_formed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenAISettings:
    base_url: str  # e.g. "http://127.0.0.1:8080/v1"; "/chat/completions" is appended
    api_key: str | None = field(repr=False)
    model: str
    context_limit: int
    output_limit: int
    request_timeout_s: float = 60.0  # connect, and the longest silence between bytes (stall)
    max_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0


def _int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return 0


def _usage(raw: Mapping[str, Any]) -> Usage:
    prompt = _int(raw.get("prompt_tokens"))
    completion = _int(raw.get("completion_tokens"))
    prompt_details = raw.get("prompt_tokens_details")
    cached = _int(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else 0
    if not cached:
        cached = _int(raw.get("prompt_cache_hit_tokens"))  # DeepSeek
    completion_details = raw.get("completion_tokens_details")
    reasoning = (
        _int(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict)
        else 0
    )
    total = raw.get("total_tokens")
    return Usage(
        input=max(0, prompt - cached),
        output=completion,
        reasoning=reasoning,
        cache_read=cached,
        total=total if isinstance(total, int) and not isinstance(total, bool) else None,
    )


@dataclass
class _ToolDraft:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _Answer:
    """The answer of one attempt, built chunk by chunk."""

    def __init__(self, sink: StreamSink, model: str, fail: Callable[..., ProviderError]) -> None:
        self._sink = sink
        self._fail = fail
        self.model = model
        self.streamed = False  # a delta has reached the sink: retrying would duplicate it
        self.done = False  # data: [DONE] seen
        self.finish_raw: str | None = None
        self.usage: Usage | None = None
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._text_pieces = TextPieces()
        self._reasoning_pieces = TextPieces()
        self._tools: dict[int, _ToolDraft] = {}
        self._last_tool: int | None = None

    @property
    def complete(self) -> bool:
        return self.done or self.finish_raw is not None

    def event(self, data: str) -> None:
        if data.strip() == "[DONE]":
            self.done = True
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            log.debug("ignoring an event that is not JSON (%d chars)", len(data))
            return
        if isinstance(chunk, dict):
            self.chunk(chunk)

    def chunk(self, chunk: Mapping[str, Any]) -> None:
        error = chunk.get("error")
        if error:
            message = error_text({"error": error}) or json.dumps(error)[:300]
            code = error.get("code") if isinstance(error, dict) else None
            status = code if isinstance(code, int) and not isinstance(code, bool) else None
            overflow = is_context_overflow(message + " " + json.dumps(error))
            raise self._fail(
                f"the provider reported an error: {message}",
                status=status,
                retryable=not overflow and status in RETRY_STATUSES,
                overflow=overflow,
            )
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self.model = well_formed(model)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = _usage(usage)
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return
        choice = next(
            (c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), choices[0]
        )
        if not isinstance(choice, dict):
            return
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._delta(delta)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self.finish_raw = finish

    def _delta(self, delta: Mapping[str, Any]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self._reasoning_delta(self._reasoning_pieces.feed(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._text_delta(self._text_pieces.feed(content))
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            for fragment in tool_calls:
                if isinstance(fragment, dict):
                    self._tool_fragment(fragment)
        function_call = delta.get("function_call")  # the pre-tools API
        if isinstance(function_call, dict):
            self._tool_fragment({"index": 0, "function": function_call})

    def _reasoning_delta(self, reasoning: str) -> None:
        if reasoning:
            self._reasoning.append(reasoning)
            self.streamed = True
            self._sink.reasoning(reasoning)

    def _text_delta(self, text: str) -> None:
        if text:
            self._text.append(text)
            self.streamed = True
            self._sink.text(text)

    def _tool_fragment(self, fragment: Mapping[str, Any]) -> None:
        index = fragment.get("index")
        call_id = fragment.get("id")
        if not isinstance(index, int) or isinstance(index, bool):
            last = self._tools.get(self._last_tool) if self._last_tool is not None else None
            if last is not None and (not call_id or call_id == last.id):
                index = self._last_tool
            else:
                index = max(self._tools, default=-1) + 1
        assert isinstance(index, int)
        draft = self._tools.setdefault(index, _ToolDraft())
        self._last_tool = index
        if isinstance(call_id, str) and call_id:
            draft.id = call_id
        function = fragment.get("function")
        if not isinstance(function, dict):
            return
        name = function.get("name")
        if isinstance(name, str) and name and not draft.name:
            draft.name = name
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            draft.arguments.append(arguments)
        elif isinstance(arguments, dict):  # some servers send an object, not JSON text
            draft.arguments.append(json.dumps(arguments))

    def document(self, payload: dict[str, Any]) -> ChatResult:
        """The whole answer of a server that ignored ``"stream": true``: one JSON document."""
        choices = payload.get("choices")
        converted: dict[str, Any] = {k: v for k, v in payload.items() if k != "choices"}
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            message = choice.get("message")
            delta = dict(message) if isinstance(message, dict) else {}
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                delta["tool_calls"] = [
                    {**call, "index": i} for i, call in enumerate(calls) if isinstance(call, dict)
                ]
            converted["choices"] = [
                {"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason")}
            ]
        self.chunk(converted)
        self.done = True
        return self.result()

    def tool_calls(self) -> tuple[ToolCall, ...]:
        calls: list[ToolCall] = []
        for index in sorted(self._tools):
            draft = self._tools[index]
            if not draft.name:
                log.warning("dropping a tool call without a name (index %d)", index)
                continue
            arguments = well_formed("".join(draft.arguments)) or "{}"
            call_id = well_formed(draft.id) or f"call_{index}"
            calls.append(ToolCall(call_id, well_formed(draft.name), arguments))
        return tuple(calls)

    def result(self) -> ChatResult:
        self._reasoning_delta(self._reasoning_pieces.end())
        self._text_delta(self._text_pieces.end())
        calls = self.tool_calls()
        finish: FinishReason
        if self.finish_raw in ("tool_calls", "function_call"):
            finish = "tool_calls"
        elif self.finish_raw == "length":
            finish = "length"
        elif calls:
            finish = "tool_calls"
        else:
            finish = "stop"
        return ChatResult(
            finish=finish,
            text="".join(self._text),
            tool_calls=calls,
            usage=self.usage,
            model=self.model,
            reasoning="".join(self._reasoning),
        )


def _message_json(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content,
        }
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def _headers(key: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "User-Agent": "sessionlsp",
    }
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _tool_json(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
        },
    }


class OpenAIProvider:
    """Streams chat completions from an OpenAI-compatible endpoint."""

    def __init__(self, settings: OpenAISettings) -> None:
        missing = [
            name
            for name, value in (("baseUrl", settings.base_url), ("model", settings.model))
            if not (value or "").strip()
        ]
        if missing:
            raise ProviderNotConfigured(
                f"the openai provider needs {' and '.join(missing)} to be set"
            )
        self._settings = settings
        endpoint = Endpoint.parse(settings.base_url, "/chat/completions")
        key = (settings.api_key or "").strip() or None
        if key is not None and not all(32 < ord(ch) < 127 for ch in key):
            raise ProviderNotConfigured(
                "apiKey contains characters that cannot be sent in an HTTP header"
            )
        self._transport = HttpTransport(
            endpoint,
            _headers(key),
            HttpSettings(
                request_timeout_s=settings.request_timeout_s,
                max_retries=settings.max_retries,
                backoff_base_s=settings.backoff_base_s,
                backoff_max_s=settings.backoff_max_s,
            ),
            secrets=(key,),
        )
        self._info = ProviderInfo(
            "openai", settings.model, settings.context_limit, settings.output_limit
        )

    @property
    def info(self) -> ProviderInfo:
        return self._info

    @property
    def settings(self) -> OpenAISettings:
        return self._settings

    # -- the request ------------------------------------------------------------------------

    def request_body(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        body: dict[str, Any] = {
            "model": request.model or self._settings.model,
            "messages": [_message_json(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.tools:
            body["tools"] = [_tool_json(t) for t in request.tools]
        return body

    def chat(self, request: ChatRequest, sink: StreamSink, cancel: CancelToken) -> ChatResult:
        if cancel.is_set():
            raise ProviderCancelled()
        payload = self.request_body(request)
        body = json.dumps(payload).encode("utf-8")
        model = str(payload["model"])
        log.debug(
            "POST %s model=%s messages=%d tools=%d",
            self._transport.endpoint.display,
            model,
            len(request.messages),
            len(request.tools),
        )
        return self._transport.post(
            body, lambda: _Answer(sink, model, self._transport.fail), sink, cancel
        )


def _make(config: ProviderConfig) -> OpenAIProvider:
    return OpenAIProvider(
        OpenAISettings(
            base_url=config.base_url or "",
            api_key=config.api_key,
            model=config.model,
            context_limit=config.context_limit,
            output_limit=config.output_limit,
        )
    )


ENTRY = ProviderEntry(
    name="openai",
    about="any OpenAI-compatible Chat Completions endpoint",
    model="",
    context_limit=128_000,
    output_limit=4_096,
    requires=("baseUrl", "model"),
    language_model=True,
    make=_make,
)
