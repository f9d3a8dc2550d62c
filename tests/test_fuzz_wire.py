"""Hypothesis-generated JSON-RPC traffic against one live ``sessionlsp serve`` process.

The server is started once for the module and fed random traffic: known methods with missing,
extra and wrongly typed params, unknown methods, requests and notifications, strange ids, huge
strings, lone surrogates, invalid UTF-8, JSON that is not an object, deep nesting, truncated
frames (completed with filler, as docs/protocol.md §1 says the reader waits for the rest) and
bad headers. After each example a ``session/list`` must succeed, and every request whose id the
server could read must have been answered once, with a result or an error whose code is one a
client may legitimately get (an internal error, -32603, is a bug and fails the test). At the
end the process is still alive and exits cleanly when its input closes.
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from client.rpc_client import FramingError, encode_frame, read_frame
from server.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    UNKNOWN_SESSION,
)
from tests.lsp_support import server_env

pytestmark = pytest.mark.slow  # hypothesis drives a real server process

ANSWER_WAIT_S = 60.0  # generous: answers normally take milliseconds
# What random traffic may legitimately get. -32603 (a bug) and -31005 (storage) are not here.
ALLOWED_CODES = frozenset(
    {PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, REQUEST_CANCELLED}
    | {UNKNOWN_SESSION}
)
SESSION_METHODS = (
    "session/new",
    "session/list",
    "session/load",
    "session/context",
    "session/prompt",
    "session/cancel",
    "session/compact",
    "session/events",
    "session/delete",
)
OTHER_METHODS = (
    "initialize",
    "initialized",
    "$/cancelRequest",
    "$/setTrace",
    "$/unknown",
    "window/workDoneProgress/cancel",
    "textDocument/didOpen",
    "textDocument/hover",
    "workspace/didChangeConfiguration",
    "session/unknown",
    "Session/List",
    "",
)
NEVER_SENT = frozenset({"exit", "shutdown"})  # they end the session on purpose
PARAMS: dict[str, tuple[str, ...]] = {
    "session/new": ("title", "directory"),
    "session/list": ("directory", "limit"),
    "session/load": ("sessionId",),
    "session/context": ("sessionId",),
    "session/prompt": ("sessionId", "prompt", "model"),
    "session/cancel": ("sessionId",),
    "session/compact": ("sessionId", "instructions"),
    "session/events": ("after", "sessionId", "limit"),
    "session/delete": ("sessionId",),
    "$/cancelRequest": ("id",),
}
REAL_SESSIONS = ("@real-session-0@", "@real-session-1@")  # swapped for live ids when sent


CLOSED: dict[str, Any] = {}  # put in the inbox when the server's output ends


class ServerGone(Exception):
    """The server's stdout closed: it exited or crashed."""


# --- the live server --------------------------------------------------------------------------


class LiveServer:
    """One server process; a reader thread parses everything it sends."""

    def __init__(self, tmp: Path) -> None:
        config = tmp / "config.toml"
        config.write_text("")
        self.stderr_path = tmp / "server.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "server.cli",
                    "serve",
                    "--db",
                    str(tmp / "fuzz.db"),
                    "--config",
                    str(config),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=server_env(),
            )
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.fatal: list[str] = []  # bytes on stdout that were not a frame of JSON
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="fuzz-reader", daemon=True)
        self._reader.start()
        self.sessions: list[str] = []

    def next_id(self) -> int:
        return next(self._ids)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        with self._write_lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def _read(self) -> None:
        try:
            self._read_frames()
        finally:
            self.inbox.put(CLOSED)  # wakes every wait at once

    def next(self, timeout: float = ANSWER_WAIT_S) -> dict[str, Any]:
        """The next message from the server; fails at once when its output has closed."""
        message = self.inbox.get(timeout=timeout)
        if message is CLOSED:
            self.inbox.put(CLOSED)
            raise ServerGone(f"the server closed its output (exit code {self.proc.poll()})")
        return message

    def _read_frames(self) -> None:
        assert self.proc.stdout is not None
        while True:
            try:
                body = read_frame(self.proc.stdout)
            except FramingError as e:
                self.fatal.append(f"not a frame: {e}")
                return
            if body is None:
                return
            try:
                message = json.loads(body)
            except ValueError as e:
                self.fatal.append(f"frame is not JSON: {e}: {body[:200]!r}")
                continue
            if not isinstance(message, dict):
                self.fatal.append(f"frame is not an object: {body[:200]!r}")
                continue
            if isinstance(message.get("method"), str) and "id" in message:
                # A request from the server (work-done progress): any result will do.
                self.send(encode_frame({"jsonrpc": "2.0", "id": message["id"], "result": None}))
                continue
            self.inbox.put(message)

    def request(self, method: str, params: Any = None) -> dict[str, Any]:
        """Send a well-formed request and return its answer (other messages are dropped)."""
        request_id = self.next_id()
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        body = json.dumps(message).encode("ascii")  # lone surrogates become \\uXXXX escapes
        self.send(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.monotonic() + ANSWER_WAIT_S
        while True:
            reply = self.next(timeout=max(0.0, deadline - time.monotonic()))
            if reply.get("id") == request_id and "method" not in reply:
                return reply

    def close(self) -> tuple[int, bytes]:
        """Close stdin; the exit code and any bytes left on stdout."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        return code, self.proc.stdout.read()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("fuzz"))
    try:
        init = server.request("initialize", {"processId": None, "capabilities": {}})
        assert "result" in init, init
        server.send(encode_frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
        for title in ("one", "two"):
            created = server.request("session/new", {"title": title})
            server.sessions.append(created["result"]["sessionId"])
        prompt = [{"type": "text", "text": "something to compact later"}]
        turn = server.request("session/prompt", {"sessionId": server.sessions[0], "prompt": prompt})
        assert turn["result"]["stopReason"] == "end_turn"
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


# --- strategies -------------------------------------------------------------------------------

MISSING = object()  # a field or member left out

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, picked with these weights (``one_of`` favours its first ones)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(range(len(table))).flatmap(lambda i: table[i])


surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
huge = st.builds(
    lambda char, n: char * n,
    st.sampled_from(["x", "é", "€", "\U0001d11e", " ", "\n"]),
    st.integers(100_000, 1_200_000),
)
texts = weighted(
    (6, st.text(max_size=60)),
    (1, st.builds(lambda a, c, b: a + c + b, st.text(max_size=8), surrogate, st.text(max_size=8))),
    (1, st.text(max_size=8).map(lambda t: t + "\x00")),
    (1, huge),
)
session_ids = weighted((6, st.sampled_from(REAL_SESSIONS)), (2, texts), (1, json_values))
counts = weighted((4, st.integers(-3, 20_000)), (1, st.integers(-(2**80), 2**80)), (1, json_values))
blocks = st.fixed_dictionaries(
    {"type": weighted((6, st.just("text")), (1, st.sampled_from(["image", ""])), (1, json_values))},
    optional={"text": weighted((6, texts), (1, json_values)), "extra": json_values},
)
prompts = weighted((6, st.lists(blocks, min_size=1, max_size=3)), (1, json_values))
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "sessionId": session_ids,
    "title": weighted((5, texts), (1, json_values)),
    "directory": weighted((5, texts), (1, json_values)),
    "instructions": weighted((5, texts), (1, json_values)),
    "model": weighted((5, texts), (1, json_values)),
    "limit": counts,
    "after": counts,
    "prompt": prompts,
    "id": weighted((3, st.integers(0, 1000)), (1, json_values)),
}
init_params = st.fixed_dictionaries(
    {},
    optional={
        "processId": json_values,
        "capabilities": weighted((3, st.just({})), (1, json_values)),
        "rootUri": json_values,
        "initializationOptions": weighted(
            (
                3,
                st.dictionaries(
                    st.sampled_from(["provider", "model", "contextLimit", "autoCompact", "apiKey"]),
                    json_values,
                    max_size=3,
                ),
            ),
            (1, json_values),
        ),
    },
)


def params_for(method: str) -> st.SearchStrategy[Any]:
    if method == "initialize":
        known: st.SearchStrategy[Any] = init_params
    else:
        fields = PARAMS.get(method, ())
        # Required fields are usually there, so that the checks behind them are reached too.
        required = ("sessionId", "prompt", "after")
        known = st.fixed_dictionaries(
            {f: FIELD_VALUES[f] for f in fields if f in required},
            optional={f: FIELD_VALUES[f] for f in fields if f not in required},
        )
        known = weighted(
            (4, known),
            (1, st.fixed_dictionaries({}, optional={f: FIELD_VALUES[f] for f in fields})),
        )
    extra = st.dictionaries(st.text(max_size=8), json_values, min_size=1, max_size=2)
    with_extra = st.builds(lambda k, e: {**e, **k}, known, extra)
    return weighted((6, known), (2, with_extra), (1, json_values), (1, st.just(MISSING)))


methods = weighted(
    (8, st.sampled_from(SESSION_METHODS)),
    (2, st.sampled_from(OTHER_METHODS)),
    (1, st.text(max_size=20).filter(lambda m: m not in NEVER_SENT)),
)
odd_floats = st.sampled_from([16.5, -0.25, 1e-300, float("nan"), float("inf")])  # not 3.0


@dataclass(frozen=True)
class Message:
    """A JSON-RPC message before ids and live session ids are filled in."""

    method: Any  # a string, or something else (or MISSING) for a malformed message
    params: Any
    id_kind: str  # "int", "str": a fresh id; "none": a notification; "weird": ``weird_id``
    weird_id: Any = None
    jsonrpc: Any = "2.0"
    ascii_only: bool = True  # False: UTF-8 as is (lone surrogates then make it invalid UTF-8)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    method = draw(methods)
    return Message(
        method=draw(weighted((12, st.just(method)), (1, json_values), (1, st.just(MISSING)))),
        params=draw(params_for(method)),
        id_kind=draw(st.sampled_from(["int"] * 4 + ["str", "none", "weird"])),
        weird_id=draw(st.one_of(odd_floats, st.booleans(), st.none(), st.lists(scalars))),
        jsonrpc=draw(st.sampled_from(["2.0"] * 12 + ["1.0", 2, MISSING])),
        ascii_only=draw(st.sampled_from([True, True, True, False])),
    )


# How a body is framed. The first five deliver the body intact.
INTACT = ("plain", "lowercase_header", "extra_headers", "blank_lines_before", "long_header")
BROKEN = (
    "truncated",
    "no_length",
    "no_length_then_body",
    "negative_length",
    "unreadable_length",
)
garbage = st.one_of(
    st.binary(max_size=200),
    st.just(b"\xff\xfe not utf-8 \x80"),
    st.integers(1_000, 200_000).map(lambda n: b"[" * n),
    st.integers(1_000, 200_000).map(lambda n: b'{"a":' * n),
    st.integers(4_400, 20_000).map(lambda n: b'{"jsonrpc":"2.0","id":1,"p":' + b"7" * n + b"}"),
    st.sampled_from([b"[]", b'"a string"', b"null", b"{}"]),
)


@dataclass(frozen=True)
class Item:
    framing: str
    payload: Message | bytes
    cut: float = 0.5  # where a truncated body is cut, as a fraction of its length


items = st.builds(
    Item,
    framing=st.sampled_from(("plain",) * 12 + INTACT + BROKEN),
    payload=weighted((6, messages()), (1, garbage)),
    cut=st.floats(0.0, 0.99),
)


# --- sending and checking -----------------------------------------------------------------------


@dataclass
class Expected:
    answers: set[int | str] = field(default_factory=set)  # ids that must be answered once
    null_errors: int = 0  # at least this many error responses with id null


def _live_ids(value: Any, sessions: list[str]) -> Any:
    if isinstance(value, str) and value in REAL_SESSIONS:
        return sessions[REAL_SESSIONS.index(value)]
    if isinstance(value, list):
        return [_live_ids(v, sessions) for v in value]
    if isinstance(value, dict):
        return {k: _live_ids(v, sessions) for k, v in value.items()}
    return value


def _body(server: LiveServer, m: Message) -> bytes:
    obj: dict[str, Any] = {}
    if m.jsonrpc is not MISSING:
        obj["jsonrpc"] = m.jsonrpc
    if m.id_kind == "int":
        obj["id"] = server.next_id()
    elif m.id_kind == "str":
        obj["id"] = f"fuzz-{server.next_id()}"
    elif m.id_kind == "weird":
        obj["id"] = m.weird_id
    if m.method is not MISSING:
        obj["method"] = m.method
    if m.params is not MISSING:
        obj["params"] = _live_ids(m.params, server.sessions)
    text = json.dumps(obj, ensure_ascii=m.ascii_only)
    return text.encode("utf-8", errors="surrogatepass")


def _answer_id(body: bytes) -> tuple[bool, Any]:
    """(whether the server can read it, the id it must answer), as the server itself reads it."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(obj, dict):
        return False, None
    request_id = obj.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return True, None
    if obj.get("jsonrpc") != "2.0" or "method" in obj:
        return True, request_id
    return True, None  # a response: nothing to answer


def _frame(header: bytes, body: bytes) -> bytes:
    return header + b"\r\n" + body


def send_item(server: LiveServer, item: Item, expected: Expected) -> None:
    body = item.payload if isinstance(item.payload, bytes) else _body(server, item.payload)
    length = b"Content-Length: %d\r\n" % len(body)
    intact = {
        "plain": _frame(length, body),
        "lowercase_header": _frame(length.lower(), body),
        "extra_headers": _frame(
            b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n" + length, body
        ),
        "blank_lines_before": b"\r\n\r\n" + _frame(length, body),
        "long_header": _frame(b"X-Padding: " + b"p" * 9000 + b"\r\n" + length, body),
    }
    if item.framing in intact:
        server.send(intact[item.framing])
        readable, answer = _answer_id(body)
        if not readable:
            expected.null_errors += 1
        elif answer is not None:
            expected.answers.add(answer)
        return
    if item.framing == "truncated":
        # Content-Length promises the whole body; part of it comes, then filler up to the
        # promised length (the reader waits for exactly that many bytes).
        keep = int(len(body) * item.cut)
        padded = body[:keep] + b" " * (len(body) - keep)
        server.send(_frame(length, padded))
        readable, answer = _answer_id(padded)
        if not readable:
            expected.null_errors += 1
        elif answer is not None:
            expected.answers.add(answer)
        return
    if item.framing == "no_length":
        server.send(b"Content-Type: application/json\r\n\r\n")
        expected.null_errors += 1
        return
    if item.framing == "negative_length":
        server.send(b"Content-Length: -5\r\n\r\n")
        expected.null_errors += 1
        return
    if item.framing == "unreadable_length":
        server.send(b"Content-Length: twelve\r\n\r\n")
        expected.null_errors += 1
        return
    assert item.framing == "no_length_then_body"
    # A body the server cannot delimit. docs/protocol.md §1: the reader resynchronises on the
    # next frame's Content-Length when the body has no line break and is short (the header
    # line limit is 8 KiB), so a well-formed frame follows at once and must be answered.
    lone = body[:2000].replace(b"\n", b" ").replace(b"\r", b" ")
    if re.search(rb"content-length", lone, re.IGNORECASE):
        lone = b"{}"
    server.send(b"Content-Type: application/json\r\n\r\n" + lone)
    expected.null_errors += 1
    follow = server.next_id()
    server.send(encode_frame({"jsonrpc": "2.0", "id": follow, "method": "session/list"}))
    expected.answers.add(follow)


def check_answers(server: LiveServer, expected: Expected, sentinel: int) -> list[str]:
    """Read until every expected id and the sentinel are answered; the problems found."""
    problems: list[str] = []
    waiting = set(expected.answers) | {sentinel}
    answered: set[Any] = set()
    null_errors = 0
    deadline = time.monotonic() + ANSWER_WAIT_S
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            problems.append(
                f"no answer within {ANSWER_WAIT_S} s for ids {sorted(map(str, waiting))}"
            )
            break
        try:
            message = server.next(timeout=left)
        except queue.Empty:
            continue
        except ServerGone as e:
            problems.append(str(e))
            break
        method = message.get("method")
        if method is not None:
            if method == "window/showMessage" and "internal error" in json.dumps(message):
                problems.append(f"internal error reported: {message}")
            continue
        problems += check_response(message)
        error = message.get("error")
        event(f"answer: {error.get('code') if isinstance(error, dict) else 'result'}")
        response_id = message.get("id")
        fresh = isinstance(response_id, int | str) and not isinstance(response_id, bool)
        if not fresh:  # null, or an odd id of ours echoed back
            if response_id is None and "error" in message:
                null_errors += 1
            continue
        if response_id in answered and response_id in expected.answers:
            problems.append(f"answered twice: {response_id!r}")
        if response_id not in expected.answers | {sentinel}:
            problems.append(f"an answer to an id that was never sent: {message}")
        answered.add(response_id)
        waiting.discard(response_id)
        if response_id == sentinel and "result" not in message:
            problems.append(f"the follow-up session/list failed: {message}")
    if null_errors < expected.null_errors:
        problems.append(
            f"{expected.null_errors} unreadable frames but {null_errors} errors with id null"
        )
    return problems


def check_response(message: dict[str, Any]) -> list[str]:
    """A response is a result or an error with a documented code, never an internal error."""
    has_result, has_error = "result" in message, "error" in message
    if has_result == has_error:
        return [f"not exactly one of result and error: {message}"]
    if has_error:
        error = message["error"]
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            return [f"malformed error: {message}"]
        if error.get("code") not in ALLOWED_CODES:
            return [f"error code {error.get('code')!r} for fuzzed traffic: {message}"]
        return []
    result = message["result"]
    if isinstance(result, dict) and isinstance(result.get("error"), dict):
        name = result["error"].get("name")
        if name in ("InternalError", "StorageError"):
            return [f"a turn ended with {name}: {message}"]
    return []


def exchange(server: LiveServer, traffic: list[Item]) -> list[str]:
    expected = Expected()
    for item in traffic:
        if item.framing != "plain":
            event(f"framing: {item.framing}")
        if isinstance(item.payload, Message):
            method = item.payload.method
            known = method in SESSION_METHODS or method in OTHER_METHODS
            event(f"method: {method if known else '(random or not a string)'}")
            if len(json.dumps(item.payload.params, default=str)) > 100_000:
                event("a param over 100 000 characters")
        send_item(server, item, expected)
    sentinel = server.next_id()
    listing = {
        "jsonrpc": "2.0",
        "id": sentinel,
        "method": "session/list",
        "params": {"limit": 10_000},
    }
    server.send(encode_frame(listing))
    problems = check_answers(server, expected, sentinel)
    if server.fatal:
        problems += server.fatal
    if server.proc.poll() is not None:
        problems.append(f"the server exited with code {server.proc.returncode}")
    if not problems:
        replace_deleted_sessions(server)
    return problems


def replace_deleted_sessions(server: LiveServer) -> None:
    """Fuzzed deletes remove the real sessions; new ones keep later examples reaching the
    code behind the unknown-session check."""
    listed = server.request("session/list", {"limit": 10_000})["result"]["sessions"]
    alive = {s["id"] for s in listed}
    for i, session in enumerate(server.sessions):
        if session not in alive:
            server.sessions[i] = server.request("session/new", {})["result"]["sessionId"]
            turn = [{"type": "text", "text": "history to compact"}]
            server.request("session/prompt", {"sessionId": server.sessions[i], "prompt": turn})
            event("a real session was deleted and replaced")


# --- tests --------------------------------------------------------------------------------------


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(traffic=st.lists(items, min_size=1, max_size=6))
def test_random_traffic_is_answered_and_the_server_keeps_serving(
    live: LiveServer, traffic: list[Item]
) -> None:
    assert exchange(live, traffic) == []


def _drain(live: LiveServer) -> None:
    """Forget what earlier tests left unread (late notifications)."""
    while not live.inbox.empty():
        if live.inbox.get_nowait() is CLOSED:
            live.inbox.put(CLOSED)
            return


def test_deeply_nested_json_gets_a_parse_error_instead_of_killing_the_server(
    live: LiveServer,
) -> None:
    _drain(live)
    nested = b'{"jsonrpc":"2.0","id":1,"method":"session/list","params":' + b"[" * 50_000
    for body in (b"[" * 100_000, nested):
        live.send(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        error = live.next()
        assert error == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": PARSE_ERROR, "message": "parse error: RecursionError"},
        }
    assert "result" in live.request("session/list")


def test_an_integer_literal_beyond_pythons_digit_limit_gets_a_parse_error(
    live: LiveServer,
) -> None:
    body = b'{"jsonrpc":"2.0","id":7,"method":"session/list","params":{"limit":' + b"9" * 5000
    body += b"}}"
    _drain(live)
    live.send(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    error = live.next()
    assert error["id"] is None
    assert error["error"]["code"] == PARSE_ERROR
    assert "result" in live.request("session/list")


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("$/cancelRequest", {"id": 10**6}),
        ("$/setTrace", {"value": "off"}),
        ("window/workDoneProgress/cancel", {"token": "t"}),
        ("initialized", {}),
    ],
)
def test_a_notification_method_sent_with_an_id_is_answered_with_invalid_request(
    live: LiveServer, method: str, params: dict[str, Any]
) -> None:
    reply = live.request(method, params)
    assert reply["error"]["code"] == INVALID_REQUEST
    assert method in reply["error"]["message"]


@pytest.mark.parametrize("odd_id", [[1, 2], {"a": 1}, True])
def test_a_request_whose_id_is_not_a_string_or_number_gets_invalid_request(
    live: LiveServer, odd_id: Any
) -> None:
    """Found by the fuzzer: pygls answered -32603 "unhashable type" (echoing the id)."""
    _drain(live)
    body = json.dumps({"jsonrpc": "2.0", "id": odd_id, "method": "session/list"}).encode()
    live.send(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    error = live.next()
    assert error["id"] is None
    assert error["error"]["code"] == INVALID_REQUEST
    assert "result" in live.request("session/list")


@pytest.mark.parametrize(
    ("method", "params", "field_name"),
    [
        ("session/new", {"title": "a\ud800b"}, "title"),
        ("session/list", {"directory": "\udfff"}, "directory"),
        ("session/prompt", {"sessionId": REAL_SESSIONS[0], "prompt": []}, "prompt[0].text"),
        ("session/compact", {"sessionId": REAL_SESSIONS[0], "instructions": "\ud83d"}, None),
    ],
)
def test_lone_surrogates_in_params_are_invalid_params_not_internal_errors(
    live: LiveServer, method: str, params: dict[str, Any], field_name: str | None
) -> None:
    params = _live_ids(params, live.sessions)
    if method == "session/prompt":
        params["prompt"] = [{"type": "text", "text": "hi \ud800 there"}]
    reply = live.request(method, params)  # json.dumps spells them as \\uXXXX escapes
    assert reply["error"]["code"] == INVALID_PARAMS, reply
    assert reply["error"]["data"]["field"] == (field_name or "instructions")
    assert "surrogate" in reply["error"]["message"]


@pytest.mark.parametrize(
    "method", ["session/load", "session/compact", "session/cancel", "session/prompt"]
)
def test_a_request_racing_session_delete_gets_unknown_session_not_a_storage_error(
    live: LiveServer, method: str
) -> None:
    """Found by the fuzzer: the session vanished between the check and the write, and the
    answer was a foreign key failure (-31005), "unknown compaction" (-32602), or a turn ending
    in InternalError."""
    _drain(live)
    codes: list[object] = []
    for _ in range(15):
        sid = live.request("session/new", {})["result"]["sessionId"]
        params: dict[str, Any] = {"sessionId": sid}
        if method == "session/prompt":
            params["prompt"] = [{"type": "text", "text": "racing"}]
        delete, other = live.next_id(), live.next_id()
        for request_id, name, p in (
            (delete, "session/delete", {"sessionId": sid}),
            (other, method, params),
        ):
            live.send(
                encode_frame({"jsonrpc": "2.0", "id": request_id, "method": name, "params": p})
            )
        answers: dict[object, dict[str, Any]] = {}
        while len(answers) < 2:
            message = live.next()
            if message.get("id") in (delete, other) and "method" not in message:
                answers[message["id"]] = message
        assert "result" in answers[delete]
        reply = answers[other]
        if "error" in reply:
            codes.append(reply["error"]["code"])
        else:  # a turn that lost the race must not end in an error either
            codes.append(reply["result"].get("error", {}).get("name", "result"))
    assert set(codes) <= {"result", UNKNOWN_SESSION}, codes


def test_after_all_the_traffic_the_server_is_alive_and_exits_cleanly(live: LiveServer) -> None:
    assert live.proc.poll() is None
    assert live.fatal == []
    listed = live.request("session/list", {"limit": 10_000})
    assert "result" in listed
    code, rest = live.close()
    assert code == 0
    assert rest == b"", f"bytes on stdout that are not frames: {rest[:200]!r}"
