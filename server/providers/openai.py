"""A provider for any OpenAI-compatible Chat Completions endpoint.

Works with OpenAI, Ollama, llama.cpp, vLLM, LM Studio, OpenRouter and anything else that serves
``POST {base_url}/chat/completions`` with ``"stream": true`` as server-sent events. Standard
library only: one HTTP(S) connection per attempt, read incrementally so that every delta reaches
the sink as soon as it arrives.

Failure handling, in short:

* 429 and 500/502/503/504/529, and transport failures (refused, reset, timeout) before anything
  was streamed, are retried up to ``max_retries`` times, honouring ``Retry-After`` and
  ``retry-after-ms``; each wait is announced through ``sink.retry`` and watches the cancel token.
* Once a delta has been passed to the sink nothing is retried (it would duplicate text).
* A request longer than the model's context raises :class:`ContextOverflow`.
* A watcher thread shuts the socket down within a few tens of milliseconds of the cancel token
  being set, so even a silent server is abandoned promptly.
* Every exception message, log line and retry notice is scrubbed of the API key.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from server.providers.base import (
    CancelToken,
    ChatMessage,
    ChatRequest,
    ChatResult,
    ContextOverflow,
    FinishReason,
    ProviderCancelled,
    ProviderError,
    ProviderInfo,
    ProviderNotConfigured,
    RetryNotice,
    StreamSink,
    ToolCall,
    ToolSpec,
    Usage,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
OVERFLOW_STATUSES = frozenset({400, 413})
OVERFLOW_PATTERNS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "reduce the length",
    "exceeds the limit of",
    # llama.cpp: "the request exceeds the available context size, try increasing it"
    "exceeds the available context size",
    "exceed_context_size",
)

MESSAGE_CAP = 500  # characters of any exception message
WATCH_INTERVAL_S = 0.02  # how often the watcher looks at the cancel token
WAIT_STEP_S = 0.05  # longest blind sleep while waiting to retry
MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After (or backoff_max_s, if larger) is not waited for
ERROR_BODY_LIMIT = 64 * 1024  # bytes read from an error response
JSON_BODY_LIMIT = 32 * 1024 * 1024  # bytes read from a non-streamed answer
READ_SIZE = 64 * 1024
MIN_SECRET_CHARS = 4  # shorter keys are not secrets worth mangling every message for

_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
_SK_TOKEN = re.compile(r"\bsk-[A-Za-z0-9][A-Za-z0-9_\-]{5,}")


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every secret replaced by ``***``, bearer and ``sk-`` tokens masked, lone
    surrogates replaced, capped at :data:`MESSAGE_CAP` characters."""
    text = _well_formed(text)
    for secret in secrets:
        text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1 ***", text)
    text = _SK_TOKEN.sub("sk-***", text)
    if len(text) > MESSAGE_CAP:
        text = text[: MESSAGE_CAP - 1] + "…"
    return text


def is_context_overflow(text: str) -> bool:
    lowered = text.lower()
    return any(pattern in lowered for pattern in OVERFLOW_PATTERNS)


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


@dataclass(frozen=True)
class _Endpoint:
    scheme: str
    host: str
    port: int | None
    path: str  # "/v1/chat/completions", with the base URL's query string if any
    display: str  # the URL without user info, safe to show
    password: str | None

    @staticmethod
    def parse(base_url: str) -> _Endpoint:
        parts = urllib.parse.urlsplit(base_url.strip())
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ProviderNotConfigured(
                "baseUrl must be an http:// or https:// URL such as http://127.0.0.1:8080/v1"
            )
        try:
            port = parts.port
        except ValueError:
            raise ProviderNotConfigured("baseUrl has an invalid port") from None
        path = parts.path.rstrip("/") + "/chat/completions"
        if parts.query:
            path += "?" + parts.query
        host = parts.hostname
        netloc = f"[{host}]" if ":" in host else host
        if port is not None:
            netloc += f":{port}"
        display = urllib.parse.urlunsplit((scheme, netloc, path.split("?", 1)[0], "", ""))
        return _Endpoint(scheme, host, port, path, display, parts.password)


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another try (nothing was streamed)."""

    def __init__(self, error: ProviderError, reason: str, delay_s: float | None = None):
        super().__init__(error.message)
        self.error = error
        self.reason = reason
        self.delay_s = delay_s


class _Watchdog:
    """Shuts the connection's socket down soon after ``cancel`` is set, even mid-read."""

    def __init__(self, conn: http.client.HTTPConnection, cancel: CancelToken) -> None:
        self._conn = conn
        self._cancel = cancel
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="openai-cancel-watch", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(WATCH_INTERVAL_S):
            if not self._cancel.is_set():
                continue
            sock = self._conn.sock
            if sock is None:  # still connecting; the caller checks the token once connected
                continue
            log.debug("cancel requested: closing the connection")
            _abort_socket(sock)
            return


def _abort_socket(sock: socket.socket) -> None:
    # socket.socket.shutdown rather than SSLSocket.shutdown: the latter would drop the TLS
    # object under the reading thread's feet. Shutting the descriptor down wakes a blocked recv.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _SSEParser:
    """Splits a server-sent event stream into the data of each event."""

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        buf = self._buf + chunk
        tail = b""
        if buf.endswith(b"\r"):  # maybe half of a CRLF: wait for the next read
            buf, tail = buf[:-1], b"\r"
        buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = buf.split(b"\n")
        self._buf = rest + tail
        events: list[str] = []
        for line in lines:
            self._line(line.decode("utf-8", "replace"), events)
        return events

    def finish(self) -> list[str]:
        events: list[str] = []
        rest, self._buf = self._buf.rstrip(b"\r"), b""
        if rest:
            self._line(rest.decode("utf-8", "replace"), events)
        self._dispatch(events)
        return events

    def _line(self, line: str, events: list[str]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):  # comment / keep-alive
            return
        name, _, value = line.partition(":")
        if name != "data":  # event:, id:, retry: carry nothing we use
            return
        value = value.removeprefix(" ")
        if self._data and _complete("\n".join(self._data)):
            # Some servers omit the blank line between events.
            self._dispatch(events)
        self._data.append(value)

    def _dispatch(self, events: list[str]) -> None:
        if self._data:
            events.append("\n".join(self._data))
            self._data = []


def _complete(data: str) -> bool:
    if data.strip() == "[DONE]":
        return True
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


_SURROGATE = re.compile("[\ud800-\udfff]")


def _well_formed(text: str) -> str:
    """``text`` with each surrogate pair joined into the character it encodes and any lone
    surrogate replaced by U+FFFD. ``json.loads`` turns an escaped half (``"\\ud83d"``) into a
    lone surrogate, which no UTF-8 store or wire can carry."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class _Pieces:
    """Text that arrives in pieces, passed on as well-formed text. Some servers escape a
    character beyond the BMP as two surrogate halves and split it between two chunks: a high
    surrogate ending one piece waits for the next, and one that never gets its pair ends as
    U+FFFD."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        piece = self._held + piece
        self._held = ""
        if piece and "\ud800" <= piece[-1] <= "\udbff":
            piece, self._held = piece[:-1], piece[-1]
        return _well_formed(piece)

    def end(self) -> str:
        held, self._held = self._held, ""
        return _well_formed(held)


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


def _error_text(payload: object) -> str:
    """The human part of an error payload: ``error.message`` and its usual variants."""
    if isinstance(payload, list) and payload:
        return _error_text(payload[0])
    if isinstance(payload, str):
        return payload
    if not isinstance(payload, dict):
        return ""
    err = payload.get("error", payload)
    if isinstance(err, str):
        return err
    if isinstance(err, dict):
        for key in ("message", "msg", "detail"):
            value = err.get(key)
            if isinstance(value, str) and value:
                return value
    for key in ("message", "detail"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _body_text(raw: bytes) -> tuple[str, str]:
    """(message, whole text) of an error body, JSON or not."""
    text = raw.decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300], text
    return _error_text(payload), text


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
        self._text_pieces = _Pieces()
        self._reasoning_pieces = _Pieces()
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
            message = _error_text({"error": error}) or json.dumps(error)[:300]
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
            self.model = _well_formed(model)
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

    def tool_calls(self) -> tuple[ToolCall, ...]:
        calls: list[ToolCall] = []
        for index in sorted(self._tools):
            draft = self._tools[index]
            if not draft.name:
                log.warning("dropping a tool call without a name (index %d)", index)
                continue
            arguments = _well_formed("".join(draft.arguments)) or "{}"
            call_id = _well_formed(draft.id) or f"call_{index}"
            calls.append(ToolCall(call_id, _well_formed(draft.name), arguments))
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


def _tool_json(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
        },
    }


def _retry_after(headers: http.client.HTTPMessage) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``Retry-After``."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            value = float(millis)
        except ValueError:
            value = -1.0
        if value >= 0:
            return value / 1000.0
    after = headers.get("retry-after")
    if not after:
        return None
    after = after.strip()
    try:
        seconds = float(after)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(after)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if seconds >= 0 else None


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
        self._endpoint = _Endpoint.parse(settings.base_url)
        key = (settings.api_key or "").strip() or None
        if key is not None and not all(32 < ord(ch) < 127 for ch in key):
            raise ProviderNotConfigured(
                "apiKey contains characters that cannot be sent in an HTTP header"
            )
        self._key = key
        self._secrets = tuple(
            s for s in (key, self._endpoint.password) if s and len(s) >= MIN_SECRET_CHARS
        )
        self._ssl = ssl.create_default_context() if self._endpoint.scheme == "https" else None
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

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "User-Agent": "sessionlsp",
        }
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _connection(self) -> http.client.HTTPConnection:
        ep = self._endpoint
        timeout = self._settings.request_timeout_s
        if self._ssl is not None:
            return http.client.HTTPSConnection(ep.host, ep.port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)

    # -- errors -----------------------------------------------------------------------------

    def _fail(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        overflow: bool = False,
    ) -> ProviderError:
        cls = ContextOverflow if overflow else ProviderError
        return cls(scrub(message, self._secrets), status=status, retryable=retryable)

    def _status_error(self, resp: http.client.HTTPResponse) -> Exception:
        try:
            raw = resp.read(ERROR_BODY_LIMIT)
        except (OSError, http.client.HTTPException, ValueError):
            raw = b""
        message, whole = _body_text(raw)
        status = resp.status
        label = f"HTTP {status} {resp.reason or ''}".strip()
        text = f"{label}: {message}" if message else label
        if status in OVERFLOW_STATUSES and is_context_overflow(message + " " + whole):
            return self._fail(text, status=status, overflow=True)
        if status in RETRY_STATUSES:
            error = self._fail(text, status=status, retryable=True)
            return _Retry(error, scrub(label, self._secrets), _retry_after(resp.msg))
        if status in (401, 403):
            text += " (check apiKey)"
        elif status == 404:
            text += f" (check baseUrl and model: {self._endpoint.display})"
        return self._fail(text, status=status)

    def _connect_error(self, exc: BaseException) -> Exception:
        where = self._endpoint.display
        if isinstance(exc, socket.gaierror):
            return self._fail(f"could not resolve the host of {where}: {exc}")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return self._fail(f"the TLS certificate of {where} was rejected: {exc}")
        if isinstance(exc, TimeoutError):
            reason = f"no response within {self._settings.request_timeout_s:g} s"
        elif isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        else:
            reason = f"connection failed ({type(exc).__name__}: {exc})"
        error = self._fail(f"could not reach {where}: {reason}", retryable=True)
        return _Retry(error, scrub(reason, self._secrets))

    def _stream_error(self, exc: BaseException, answer: _Answer) -> Exception:
        if isinstance(exc, TimeoutError):
            reason = f"the stream stalled: no data for {self._settings.request_timeout_s:g} s"
        else:
            reason = f"the stream was cut ({type(exc).__name__}: {exc})"
        error = self._fail(reason, retryable=True)
        if answer.streamed:
            return error
        return _Retry(error, scrub(reason, self._secrets))

    # -- one attempt ------------------------------------------------------------------------

    def _attempt(self, body: bytes, answer: _Answer, cancel: CancelToken) -> ChatResult:
        conn = self._connection()
        try:
            with _Watchdog(conn, cancel):
                try:
                    conn.request("POST", self._endpoint.path, body=body, headers=self._headers())
                    resp = conn.getresponse()
                except Exception as exc:
                    if cancel.is_set():
                        raise ProviderCancelled() from None
                    if isinstance(exc, (OSError, http.client.HTTPException)):
                        raise self._connect_error(exc) from None
                    raise self._fail(f"could not send the request ({type(exc).__name__})") from None
                if cancel.is_set():
                    raise ProviderCancelled()
                if not 200 <= resp.status < 300:
                    raise self._status_error(resp)
                content_type = (resp.getheader("Content-Type") or "").lower()
                if "application/json" in content_type:
                    return self._read_json(resp, answer, cancel)
                return self._read_stream(resp, answer, cancel)
        finally:
            conn.close()

    def _read(self, resp: http.client.HTTPResponse, answer: _Answer, cancel: CancelToken) -> bytes:
        try:
            return resp.read1(READ_SIZE)
        except Exception as exc:
            if cancel.is_set():
                raise ProviderCancelled() from None
            if not isinstance(exc, (OSError, http.client.HTTPException)):
                raise
            if answer.complete:
                return b""
            raise self._stream_error(exc, answer) from None

    def _read_stream(
        self, resp: http.client.HTTPResponse, answer: _Answer, cancel: CancelToken
    ) -> ChatResult:
        parser = _SSEParser()
        seen = 0
        while not answer.done:
            if cancel.is_set():
                raise ProviderCancelled()
            data = self._read(resp, answer, cancel)
            if cancel.is_set():
                raise ProviderCancelled()
            events = parser.feed(data) if data else parser.finish()
            for event in events:
                seen += 1
                answer.event(event)
                if cancel.is_set():
                    raise ProviderCancelled()
                if answer.done:
                    break
            if not data:
                break
        if not answer.complete:
            if not seen:
                content_type = resp.getheader("Content-Type") or "none"
                raise self._fail(
                    "the provider's answer was not an event stream "
                    f"(Content-Type: {content_type}); check baseUrl"
                )
            raise self._fail("the stream ended before the answer was complete")
        return answer.result()

    def _read_json(
        self, resp: http.client.HTTPResponse, answer: _Answer, cancel: CancelToken
    ) -> ChatResult:
        """A server that ignored ``"stream": true`` and answered with one JSON document."""
        chunks: list[bytes] = []
        size = 0
        while size <= JSON_BODY_LIMIT:
            data = self._read(resp, answer, cancel)
            if not data:
                break
            chunks.append(data)
            size += len(data)
        if cancel.is_set():
            raise ProviderCancelled()
        try:
            payload = json.loads(b"".join(chunks))
        except ValueError:
            raise self._fail("the provider answered with malformed JSON") from None
        if not isinstance(payload, dict):
            raise self._fail("the provider answered with unexpected JSON")
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
        answer.chunk(converted)
        answer.done = True
        return answer.result()

    # -- the public call --------------------------------------------------------------------

    def chat(self, request: ChatRequest, sink: StreamSink, cancel: CancelToken) -> ChatResult:
        if cancel.is_set():
            raise ProviderCancelled()
        payload = self.request_body(request)
        body = json.dumps(payload).encode("utf-8")
        model = str(payload["model"])
        settings = self._settings
        log.debug(
            "POST %s model=%s messages=%d tools=%d",
            self._endpoint.display,
            model,
            len(request.messages),
            len(request.tools),
        )
        retries = 0
        while True:
            answer = _Answer(sink, model, self._fail)
            try:
                result = self._attempt(body, answer, cancel)
            except _Retry as retry:
                if cancel.is_set():
                    raise ProviderCancelled() from None
                delay = retry.delay_s
                if retries >= settings.max_retries:
                    raise self._gave_up(retry.error, retries) from None
                if delay is not None and delay > max(MAX_RETRY_AFTER_S, settings.backoff_max_s):
                    error = retry.error
                    raise self._fail(
                        f"{error.message} (the server asks to wait {delay:.0f} s before retrying)",
                        status=error.status,
                        retryable=True,
                    ) from None
                retries += 1
                if delay is None:
                    delay = min(
                        settings.backoff_base_s * 2 ** (retries - 1), settings.backoff_max_s
                    )
                notice = RetryNotice(retries, delay, retry.reason)
                log.info(
                    "retry %d/%d in %.2f s: %s",
                    retries,
                    settings.max_retries,
                    delay,
                    retry.reason,
                )
                sink.retry(notice)
                self._pause(delay, cancel)
                continue
            except ProviderError as error:
                if cancel.is_set():
                    raise ProviderCancelled() from None
                log.info("request failed: %s", error.message)
                raise
            log.debug("answer finished: %s usage=%s", result.finish, result.usage)
            return result

    def _gave_up(self, error: ProviderError, retries: int) -> ProviderError:
        message = error.message
        if retries:
            message += f" (gave up after {retries} {'retry' if retries == 1 else 'retries'})"
        log.info("request failed: %s", scrub(message, self._secrets))
        return self._fail(message, status=error.status, retryable=True)

    @staticmethod
    def _pause(delay_s: float, cancel: CancelToken) -> None:
        deadline = time.monotonic() + delay_s
        while True:
            if cancel.is_set():
                raise ProviderCancelled()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            step = min(WAIT_STEP_S, remaining)
            if isinstance(cancel, threading.Event):
                cancel.wait(step)
            else:
                time.sleep(step)
