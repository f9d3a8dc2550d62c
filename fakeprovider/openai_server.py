"""A loopback fake of an OpenAI-compatible Chat Completions server, scripted step by step.

Used by the provider tests, by end-to-end tests (the real sidecar runs as a subprocess with its
base URL pointed here) and by benchmarks::

    with FakeOpenAI(chunk_chars=8) as fake:
        fake.push(HttpError(429, headers={"Retry-After": "0"}))
        fake.push(Reply("Hello there", prompt_tokens=12, completion_tokens=3))
        ...  # point a client at fake.base_url
        assert fake.wait_for_requests(2, timeout=5)

Every ``POST /v1/chat/completions`` consumes the first queued step whose ``when`` matches the
request (``"summary"`` requests are the ones whose first system message starts with one of
``summary_prefixes``, by default the summarizer's prompt); with no matching step it streams the
default reply: ``"Echo: "`` plus the first 200 characters of the last user message, or
:data:`DEFAULT_SUMMARY` for a summary request. :attr:`FakeOpenAI.served` gives how long each
request took to answer, :attr:`FakeOpenAI.stalls` how many :class:`Stall` steps have sent their
chunks and gone silent.

With ``directives=True`` (``--directives`` on the command line) a person or a real-editor test
scripts tool calls by typing them: a last user message ``/tool NAME {json arguments}`` is
answered with that one tool call, and a request whose last message is a tool result is answered
``"Done: "`` plus that result's first line, so the turn ends. One ``/tool`` line per prompt;
everything else is answered as usual.

Runnable on its own: ``python -m fakeprovider.openai_server --port 0 --delay-ms 0
--chunk-chars 4 [--directives]`` prints its base URL on the first line of stdout and serves until
interrupted (SIGINT or SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Literal, cast

SUMMARY_PREFIX = "You write the working memory of a coding session"
DEFAULT_SUMMARY = (
    "## Objective\nCarry on with the work described in the conversation.\n"
    "## Important Details\n- This summary was written by the fake OpenAI server.\n"
    "## Work State\n### Completed\n- Earlier steps.\n### Active\n- The current request.\n"
    "### Blocked\n- Nothing.\n"
    "## Next Move\nAnswer the latest message.\n"
    "## Relevant Files\n- (none)\n"
)
ECHO_CHARS = 200
HOLD_POLL_S = 0.05  # how often a stalled response looks for a disconnect or shutdown

Finish = Literal["stop", "length", "tool_calls"]
When = Literal["any", "summary", "chat"]
Predicate = Callable[[dict[str, Any]], bool]  # gets the parsed request body


@dataclass(frozen=True)
class Reply:
    """A complete streamed answer.

    ``chunks`` splits ``text`` into that many pieces, else ``chunk_chars`` characters a piece
    (default: the server's). ``tool_calls`` are ``(id, name, arguments_json)``; arguments are
    streamed in at least two fragments. ``finish`` defaults to ``"tool_calls"`` when there are
    tool calls, else ``"stop"``. Token counts default to the server's usage settings.
    """

    text: str = ""
    chunks: int | None = None
    chunk_chars: int | None = None
    delay_s: float | None = None  # before each chunk; None = the server's default
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    tool_calls: Sequence[tuple[str, str, str]] = ()
    finish: Finish | None = None
    reasoning: str = ""  # streamed as delta.reasoning_content before the text
    usage: bool = True  # send the usage chunk (only when the request asked for it)
    done: bool = True  # end with data: [DONE]


@dataclass(frozen=True)
class HttpError:
    """An error response: ``status`` with ``body`` as JSON and extra ``headers``.

    ``echo_auth`` appends the request's Authorization header to ``error.message``, as careless
    servers do, to prove that clients scrub it.
    """

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    echo_auth: bool = False


@dataclass(frozen=True)
class Stall:
    """Stream ``after_chunks`` chunks of ``text``, then hold the connection open, silent, until
    the client disconnects (recorded in :attr:`FakeOpenAI.disconnects`) or the server closes."""

    after_chunks: int = 0
    text: str = "I am thinking about it, please wait"
    chunk_chars: int | None = None


@dataclass(frozen=True)
class Cut:
    """Stream ``after_chunks`` chunks of ``text``, then close the socket mid-stream (with a TCP
    reset when ``reset``)."""

    after_chunks: int = 0
    text: str = "This answer will not be finished because the connection"
    chunk_chars: int | None = None
    reset: bool = False


@dataclass(frozen=True)
class Raw:
    """Send ``body`` verbatim (each piece of a sequence as its own HTTP chunk)."""

    body: str | Sequence[str]
    status: int = 200
    content_type: str = "text/event-stream"


Step = Reply | HttpError | Stall | Cut | Raw


@dataclass(frozen=True)
class RecordedRequest:
    body: dict[str, Any]  # the parsed JSON body
    headers: dict[str, str]  # header names in lower case
    summary: bool  # the first system message starts with one of the fake's summary_prefixes
    at: float  # time.monotonic() when it arrived
    path: str
    step: str  # the step that answered it: "default", "Reply", "HttpError", ...

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def last_user_text(self) -> str:
        return _last_user_text(self.body)


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


DIRECTIVE = "/tool "


def _directed_reply(body: dict[str, Any]) -> Reply | None:
    """The reply a ``/tool`` directive asks for (see the module docstring), or None."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if not messages:
        return None
    last = messages[-1]
    if last.get("role") == "tool":
        first = _content_text(last.get("content")).strip().splitlines()
        return Reply("Done: " + (first[0] if first else "(no output)"))
    if last.get("role") != "user":
        return None
    text = _content_text(last.get("content")).strip()
    if not text.startswith(DIRECTIVE):
        return None
    name, _, arguments = text[len(DIRECTIVE) :].strip().partition(" ")
    calls = sum(1 for m in messages if m.get("role") == "user")
    return Reply(tool_calls=[(f"call_d{calls}", name, arguments.strip() or "{}")])


def is_summary_request(body: dict[str, Any], prefixes: Sequence[str] = (SUMMARY_PREFIX,)) -> bool:
    """Whether the first system message of ``body`` starts with one of ``prefixes``."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "system":
            return _content_text(message.get("content")).startswith(tuple(prefixes))
    return False


def _split(text: str, chunks: int | None, chunk_chars: int) -> list[str]:
    if not text:
        return []
    size = math.ceil(len(text) / chunks) if chunks else max(1, chunk_chars)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class _Aborted(Exception):
    """The fake is shutting down, or the client went away."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (cancelled, or closing without reading the last bytes) are
        # part of what this server is for, not errors worth a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def fake(self) -> FakeOpenAI:
        return cast(_Server, self.server).fake

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.fake._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing ---------------------------------------------------------------------------

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self, status: int = 200, content_type: str = "text/event-stream") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        if self.fake._stop.is_set():
            raise _Aborted
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _event(self, payload: object) -> None:
        self._chunk(b"data: " + json.dumps(payload).encode("utf-8") + b"\n\n")

    def _end_stream(self, done: bool = True) -> None:
        if done:
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _pause(self, delay_s: float) -> None:
        if delay_s > 0 and self.fake._stop.wait(delay_s):
            raise _Aborted

    # -- requests ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            model = self.fake.model
            self._json(200, {"object": "list", "data": [{"id": model, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route for GET {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.split("?", 1)[0].rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route for POST {self.path}"}})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._json(400, {"error": {"message": "the body is not JSON"}})
            return
        if not isinstance(body, dict):
            self._json(400, {"error": {"message": "the body is not a JSON object"}})
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        step, index = self.fake._take(body, headers, self.path)
        try:
            self._answer(body, headers, step)
        except _Aborted:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True
            self.fake._record_disconnect()
        finally:
            self.fake._record_served(index)

    def _answer(self, body: dict[str, Any], headers: dict[str, str], step: Step | None) -> None:
        fake = self.fake
        if step is None:
            step = fake._default_reply(body)
        if isinstance(step, Reply):
            if body.get("stream") is True:
                self._stream_reply(body, step)
            else:
                self._whole_reply(body, step)
        elif isinstance(step, HttpError):
            self._http_error(headers, step)
        elif isinstance(step, Stall):
            self._stream_partial(body, step.text, step.chunk_chars, step.after_chunks)
            fake._record_stall()
            if self._hold():
                fake._record_disconnect()
            self.close_connection = True
        elif isinstance(step, Cut):
            self._stream_partial(body, step.text, step.chunk_chars, step.after_chunks)
            self._cut(step.reset)
        else:
            pieces = [step.body] if isinstance(step.body, str) else list(step.body)
            self._start_stream(step.status, step.content_type)
            for piece in pieces:
                self._chunk(piece.encode("utf-8"))
            self._end_stream(done=False)

    # -- answers ----------------------------------------------------------------------------

    def _chunk_payload(
        self, body: dict[str, Any], delta: dict[str, Any], finish: str | None
    ) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": str(body.get("model") or self.fake.model),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def _deltas(self, reply: Reply) -> list[dict[str, Any]]:
        chunk_chars = reply.chunk_chars or self.fake.chunk_chars
        deltas: list[dict[str, Any]] = [
            {"reasoning_content": piece} for piece in _split(reply.reasoning, None, chunk_chars)
        ]
        deltas += [{"content": piece} for piece in _split(reply.text, reply.chunks, chunk_chars)]
        for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
            size = max(1, min(chunk_chars, math.ceil(len(arguments) / 2)))
            for piece in _split(arguments, None, size):
                deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return deltas

    def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        fake = self.fake
        answer = reply.reasoning + reply.text + "".join(a for _, _, a in reply.tool_calls)
        prompt, completion = fake._usage_for(body, answer)
        if reply.prompt_tokens is not None:
            prompt = reply.prompt_tokens
        if reply.completion_tokens is not None:
            completion = reply.completion_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        }

    @staticmethod
    def _finish(reply: Reply) -> str:
        return reply.finish or ("tool_calls" if reply.tool_calls else "stop")

    def _stream_reply(self, body: dict[str, Any], reply: Reply) -> None:
        delay = self.fake.delay_s if reply.delay_s is None else reply.delay_s
        self._start_stream()
        self._event(self._chunk_payload(body, {"role": "assistant", "content": ""}, None))
        for delta in self._deltas(reply):
            self._pause(delay)
            self._event(self._chunk_payload(body, delta, None))
        self._event(self._chunk_payload(body, {}, self._finish(reply)))
        options = body.get("stream_options")
        if reply.usage and isinstance(options, dict) and options.get("include_usage"):
            usage_chunk = self._chunk_payload(body, {}, None)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = self._usage(body, reply)
            self._event(usage_chunk)
        self._end_stream(done=reply.done)

    def _whole_reply(self, body: dict[str, Any], reply: Reply) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.reasoning:
            message["reasoning_content"] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in reply.tool_calls
            ]
        payload = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model") or self.fake.model),
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish(reply)}],
            "usage": self._usage(body, reply),
        }
        self._json(200, payload)

    def _http_error(self, headers: dict[str, str], step: HttpError) -> None:
        payload: dict[str, Any] = json.loads(json.dumps(step.body))  # a deep copy
        if step.echo_auth:
            seen = headers.get("authorization", "(none)")
            error = payload.setdefault("error", {})
            if not isinstance(error, dict):
                error = payload["error"] = {"message": str(error)}
            error["message"] = f"{error.get('message', 'error')} (Authorization: {seen})"
        self._json(step.status, payload, step.headers)

    def _stream_partial(
        self, body: dict[str, Any], text: str, chunk_chars: int | None, after_chunks: int
    ) -> None:
        pieces = _split(text, None, chunk_chars or self.fake.chunk_chars)
        self._start_stream()
        self._event(self._chunk_payload(body, {"role": "assistant", "content": ""}, None))
        for piece in pieces[:after_chunks]:
            self._pause(self.fake.delay_s)
            self._event(self._chunk_payload(body, {"content": piece}, None))

    def _hold(self) -> bool:
        """Send nothing until the client disconnects (True) or the fake shuts down (False)."""
        sock = self.connection
        while not self.fake._stop.is_set():
            try:
                readable, _, _ = select.select([sock], [], [], HOLD_POLL_S)
                if readable and not sock.recv(4096):
                    return True
            except (OSError, ValueError):
                return True
        return False

    def _cut(self, reset: bool) -> None:
        self.close_connection = True
        sock = self.connection
        with contextlib.suppress(OSError):
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)


class FakeOpenAI:
    """A scripted OpenAI-compatible server on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "fake-model",
        chunk_chars: int = 4,
        delay_s: float = 0.0,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        usage: Callable[[dict[str, Any], str], tuple[int, int]] | None = None,
        reply: Callable[[dict[str, Any]], str] | None = None,
        summary_text: str = DEFAULT_SUMMARY,
        summary_prefixes: Sequence[str] = (SUMMARY_PREFIX,),
        directives: bool = False,
    ) -> None:
        self.model = model
        self.directives = directives  # "/tool NAME {json}" prompts become tool calls
        self.chunk_chars = chunk_chars
        self.delay_s = delay_s
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.usage = usage  # (request body, answer text) -> (prompt_tokens, completion_tokens)
        self.reply = reply  # request body -> answer text, for chat requests
        self.summary_text = summary_text
        self.summary_prefixes = tuple(summary_prefixes)
        self._host = host
        self._port = port
        self._cond = threading.Condition()
        self._steps: list[tuple[Step, When | Predicate]] = []
        self._requests: list[RecordedRequest] = []
        self._disconnects = 0
        self._stalls = 0
        self._finished: dict[int, float] = {}
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stop.set()
        server.shutdown()
        server.server_close()
        with self._cond:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- the script -------------------------------------------------------------------------

    def push(self, step: Step, when: When | Predicate = "any") -> None:
        """Queue ``step`` for the next request that ``when`` matches: ``"any"``, ``"summary"``,
        ``"chat"``, or a predicate on the parsed request body."""
        with self._cond:
            self._steps.append((step, when))

    def push_all(self, steps: Sequence[Step], when: When | Predicate = "any") -> None:
        with self._cond:
            self._steps.extend((step, when) for step in steps)

    def clear(self) -> None:
        with self._cond:
            self._steps.clear()

    @property
    def pending_steps(self) -> int:
        with self._cond:
            return len(self._steps)

    # -- what happened ----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._cond:
            if not self._requests:
                raise LookupError("no request has arrived")
            return self._requests[-1]

    @property
    def summary_requests(self) -> int:
        with self._cond:
            return sum(1 for r in self._requests if r.summary)

    @property
    def chat_requests(self) -> int:
        with self._cond:
            return sum(1 for r in self._requests if not r.summary)

    @property
    def disconnects(self) -> int:
        """Clients that went away while a :class:`Stall` held their response open (or while
        any response was being written)."""
        with self._cond:
            return self._disconnects

    @property
    def stalls(self) -> int:
        """:class:`Stall` steps that have sent their chunks and are holding the response open."""
        with self._cond:
            return self._stalls

    @property
    def served(self) -> list[tuple[float, float | None]]:
        """For each request in arrival order: ``(arrived, answered)`` in ``time.monotonic()``
        seconds; ``answered`` is when the fake finished writing the response (or gave up on
        it), ``None`` while it is still being answered."""
        with self._cond:
            return [(r.at, self._finished.get(i)) for i, r in enumerate(self._requests)]

    def is_summary(self, body: dict[str, Any]) -> bool:
        """Whether ``body`` is a summary request by this fake's ``summary_prefixes``."""
        return is_summary_request(body, self.summary_prefixes)

    def wait_for_stalls(self, n: int = 1, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._stalls >= n, timeout)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._requests) >= n, timeout)

    def wait_for_disconnects(self, n: int = 1, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._disconnects >= n, timeout)

    # -- used by the handler ----------------------------------------------------------------

    def _track(self, conn: socket.socket) -> None:
        with self._cond:
            self._conns.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._cond:
            self._conns.discard(conn)

    def _record_disconnect(self) -> None:
        with self._cond:
            self._disconnects += 1
            self._cond.notify_all()

    def _record_stall(self) -> None:
        with self._cond:
            self._stalls += 1
            self._cond.notify_all()

    def _record_served(self, index: int) -> None:
        with self._cond:
            self._finished[index] = time.monotonic()
            self._cond.notify_all()

    def _take(
        self, body: dict[str, Any], headers: dict[str, str], path: str
    ) -> tuple[Step | None, int]:
        """The step that answers this request, and the request's index in :attr:`requests`."""
        summary = self.is_summary(body)
        kind = "summary" if summary else "chat"
        with self._cond:
            step: Step | None = None
            for i, (candidate, when) in enumerate(self._steps):
                if when(body) if callable(when) else when in ("any", kind):
                    step = candidate
                    del self._steps[i]
                    break
            index = len(self._requests)
            self._requests.append(
                RecordedRequest(
                    body=body,
                    headers=headers,
                    summary=summary,
                    at=time.monotonic(),
                    path=path,
                    step=type(step).__name__ if step is not None else "default",
                )
            )
            self._cond.notify_all()
        return step, index

    def _default_reply(self, body: dict[str, Any]) -> Reply:
        if self.is_summary(body):
            return Reply(self.summary_text)
        if self.reply is not None:
            return Reply(self.reply(body))
        if self.directives:
            directed = _directed_reply(body)
            if directed is not None:
                return directed
        return Reply("Echo: " + (_last_user_text(body)[:ECHO_CHARS] or "(nothing)"))

    def _usage_for(self, body: dict[str, Any], answer: str) -> tuple[int, int]:
        if self.usage is not None:
            return self.usage(body, answer)
        prompt = self.prompt_tokens
        if prompt is None:
            prompt = _tokens(json.dumps(body.get("messages", [])))
        completion = self.completion_tokens
        if completion is None:
            completion = max(1, _tokens(answer))
        return prompt, completion


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="pause before each chunk")
    parser.add_argument("--chunk-chars", type=int, default=4)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--prompt-tokens", type=int, default=None)
    parser.add_argument("--completion-tokens", type=int, default=None)
    parser.add_argument(
        "--directives", action="store_true", help='"/tool NAME {json}" prompts become tool calls'
    )
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    with FakeOpenAI(
        host=args.host,
        port=args.port,
        model=args.model,
        chunk_chars=args.chunk_chars,
        delay_s=args.delay_ms / 1000.0,
        prompt_tokens=args.prompt_tokens,
        completion_tokens=args.completion_tokens,
        directives=args.directives,
    ) as fake:
        print(fake.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
