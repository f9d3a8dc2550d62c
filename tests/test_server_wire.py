"""Bytes on the wire: malformed and oversized frames get JSON-RPC errors and the server keeps
serving; stdout carries nothing but frames; the terminal chat works against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from client.rpc_client import encode_frame, read_frame
from fakeprovider.openai_server import FakeOpenAI, Stall
from server.errors import INVALID_REQUEST, PARSE_ERROR, SERVER_NOT_INITIALIZED, STORAGE_ERROR
from server.lsp_stdio import MAX_FRAME_BYTES
from store import Store
from tests.lsp_support import prompt_params, server_env


class Raw:
    """The server under a hand-written client that can send anything."""

    def __init__(
        self,
        tmp_path: Path,
        db: str | None = None,
        *,
        config_text: str = "",
        env: Mapping[str, str] | None = None,
        stderr: Path | None = None,
    ) -> None:
        config = tmp_path / "config.toml"
        config.write_text(config_text)
        self.db = db or str(tmp_path / "db.sqlite")
        err = stderr.open("wb") if stderr is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--db", self.db, "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=server_env(env),
        )
        if stderr is not None:
            err.close()  # type: ignore[union-attr]
        self.next_id = 0
        self.notifications: list[dict[str, Any]] = []

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def frame(self, body: bytes) -> None:
        self.send(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        body = read_frame(self.proc.stdout)  # fails on anything that is not a frame
        assert body is not None, "the server closed stdout"
        message = json.loads(body)
        assert isinstance(message, dict)
        return message

    def send_request(self, method: str, params: Any = None) -> int:
        """Send a request without waiting; returns its id (see :meth:`answers`)."""
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(encode_frame(message))
        return self.next_id

    def answers(self, ids: set[int]) -> dict[int, dict[str, Any]]:
        """Read until every request in ``ids`` is answered; notifications are kept."""
        found: dict[int, dict[str, Any]] = {}
        while set(found) != ids:
            message = self.read()
            if "method" in message:
                self.notifications.append(message)
            elif message.get("id") in ids:
                found[message["id"]] = message
        return found

    def wait_for_notification(self, method: str) -> dict[str, Any]:
        while True:
            message = self.read()
            if "method" not in message:
                continue
            self.notifications.append(message)
            if message["method"] == method:
                return message

    def request(self, method: str, params: Any = None) -> dict[str, Any]:
        msg_id = self.send_request(method, params)
        return self.answers({msg_id})[msg_id]

    def initialize(self) -> None:
        reply = self.request("initialize", {"processId": None, "capabilities": {}})
        assert reply["result"]["capabilities"]["experimental"]["sessionlsp"]["protocolVersion"] == 1
        self.send(encode_frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # end of input: the server exits
        code = self.proc.wait(timeout=20)
        assert self.proc.stdout is not None
        rest = self.proc.stdout.read()
        assert rest == b"", f"bytes on stdout that are not frames: {rest[:200]!r}"
        return code


@pytest.fixture
def raw(tmp_path: Path) -> Iterator[Raw]:
    r = Raw(tmp_path)
    yield r
    if r.proc.poll() is None:
        r.proc.kill()
        r.proc.wait()


def test_a_database_that_cannot_be_opened_fails_initialize_with_a_storage_error(
    tmp_path: Path,
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    raw = Raw(tmp_path, db=str(not_a_dir / "sessions.db"))
    try:
        reply = raw.request("initialize", {"processId": None, "capabilities": {}})
        assert reply["error"]["code"] == STORAGE_ERROR
        assert "storage error" in reply["error"]["message"]
        assert raw.request("session/list")["error"]["code"] == SERVER_NOT_INITIALIZED
        assert raw.close() == 0
    finally:
        if raw.proc.poll() is None:
            raw.proc.kill()


def test_a_request_before_initialize_is_refused_with_server_not_initialized(raw: Raw) -> None:
    reply = raw.request("session/list", {})
    assert reply["error"]["code"] == SERVER_NOT_INITIALIZED
    raw.initialize()
    assert raw.request("session/list")["result"] == {"sessions": []}


def test_a_second_initialize_does_not_apply_its_log_file(raw: Raw, tmp_path: Path) -> None:
    raw.initialize()
    log_file = tmp_path / "second.log"
    options = {"logFile": str(log_file), "logLevel": "debug"}
    reply = raw.request(
        "initialize", {"processId": None, "capabilities": {}, "initializationOptions": options}
    )
    assert "capabilities" in reply["result"]
    assert raw.request("session/new", {})["result"]["session"]["id"]
    assert raw.close() == 0
    assert not log_file.exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"jsonrpc": "2.0", "id": 1, "method": "session/list", ', PARSE_ERROR),  # truncated
        (b"\xff\xfe not utf-8 \x80", PARSE_ERROR),
        (b"[1, 2, 3]", INVALID_REQUEST),  # batches are not supported
        (b'"just a string"', INVALID_REQUEST),
        (b'{"jsonrpc": "1.0", "id": 5, "method": "session/list"}', INVALID_REQUEST),
        (b'{"jsonrpc": "2.0", "id": 6, "method": 42}', INVALID_REQUEST),
    ],
)
def test_malformed_frames_get_an_error_and_the_server_keeps_serving(
    raw: Raw, body: bytes, code: int
) -> None:
    raw.initialize()
    raw.frame(body)
    error = raw.read()
    assert error["error"]["code"] == code
    assert raw.request("session/new", {"title": "still here"})["result"]["sessionId"]
    assert raw.close() == 0


def test_an_oversized_message_is_refused_without_being_parsed(raw: Raw) -> None:
    raw.initialize()
    size = MAX_FRAME_BYTES + 1
    header = b"Content-Length: %d\r\n\r\n" % size
    raw.send(header + b"x" * size)
    error = raw.read()
    assert error["id"] is None
    assert error["error"]["code"] == INVALID_REQUEST
    assert str(MAX_FRAME_BYTES) in error["error"]["message"]
    assert raw.request("session/list", {})["result"] == {"sessions": []}


def test_a_frame_without_content_length_is_refused(raw: Raw) -> None:
    raw.initialize()
    raw.send(b"Content-Type: application/json\r\n\r\n")
    assert raw.read()["error"]["code"] == INVALID_REQUEST
    assert raw.request("session/list", {})["result"] == {"sessions": []}


def test_the_reader_resynchronises_after_a_frame_without_content_length(raw: Raw) -> None:
    raw.initialize()
    raw.send(b'Content-Type: application/json\r\n\r\n{"jsonrpc": "2.0", "id": 77}')
    assert raw.read()["error"]["code"] == INVALID_REQUEST
    assert raw.request("session/list", {})["result"] == {"sessions": []}


def test_a_huge_prompt_inside_the_limit_is_stored_whole(raw: Raw) -> None:
    raw.initialize()
    sid = raw.request("session/new", {})["result"]["sessionId"]
    text = "é" * 900_000  # 1.8 MB of UTF-8
    reply = raw.request(
        "session/prompt", {"sessionId": sid, "prompt": [{"type": "text", "text": text}]}
    )
    assert reply["result"]["stopReason"] in ("end_turn", "error")
    loaded = raw.request("session/load", {"sessionId": sid})["result"]
    assert loaded["messages"][0]["parts"][0]["text"] == text


def test_shutdown_then_exit_ends_the_process_with_code_0(raw: Raw) -> None:
    raw.initialize()
    assert raw.request("shutdown")["result"] is None
    after = raw.request("session/list", {})
    assert after["error"]["code"] == INVALID_REQUEST  # answered, not dropped
    raw.send(encode_frame({"jsonrpc": "2.0", "method": "exit"}))
    assert raw.proc.wait(timeout=20) == 0


def test_chat_one_shot_prints_the_streamed_answer(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("")
    argv = [sys.executable, "-m", "server.cli", "chat", "--db", str(tmp_path / "db.sqlite")]
    result = subprocess.run(
        [*argv, "--config", str(config), "hello from the terminal"],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('You said: "hello from the terminal"')
    assert "sessionlsp chat --session ses_" in result.stderr


@pytest.fixture
def stalling(tmp_path: Path) -> Iterator[tuple[Raw, FakeOpenAI, str]]:
    """A server on the fake OpenAI provider, with a session whose next answer stalls after two
    chunks, and that prompt sent (its id is the first request after the session's)."""
    with FakeOpenAI(chunk_chars=6) as fake:
        env = {"SESSIONLSP_BASE_URL": fake.base_url, "SESSIONLSP_API_KEY": "sk-test-key"}
        raw = Raw(
            tmp_path,
            config_text='provider = "openai"\nmodel = "fake-model"\n',
            env=env,
            stderr=tmp_path / "stderr.log",
        )
        try:
            raw.initialize()
            sid = raw.request("session/new", {"title": "t"})["result"]["sessionId"]
            fake.push(Stall(after_chunks=2, text="partial answer that never ends"), when="chat")
            yield raw, fake, sid
        finally:
            if raw.proc.poll() is None:
                raw.proc.kill()
                raw.proc.wait()


def test_shutdown_during_a_turn_answers_the_prompts_with_their_ids(
    stalling: tuple[Raw, FakeOpenAI, str],
) -> None:
    raw, _, sid = stalling
    running = raw.send_request("session/prompt", prompt_params(sid, "first"))
    queued = raw.send_request("session/prompt", prompt_params(sid, "second"))
    raw.wait_for_notification("session/delta")
    shutdown = raw.send_request("shutdown")
    answers = raw.answers({running, queued, shutdown})

    assert answers[shutdown]["result"] is None
    first = answers[running]["result"]  # a result, not the -32800 error
    assert first["stopReason"] == "cancelled"
    assert first["userMessageId"] is not None and first["messageId"] is not None
    # the queued prompt never started: nothing of it is stored, so it has no ids
    assert answers[queued]["result"] == {"stopReason": "cancelled", "messageId": None}
    raw.send(encode_frame({"jsonrpc": "2.0", "method": "exit"}))
    assert raw.proc.wait(timeout=20) == 0
    store = Store(raw.db)
    try:
        with store.read() as tx:
            reply = tx.history(sid)[-1]
        assert reply.info.id == first["messageId"]
        assert reply.info.error is not None and reply.info.error.name == "Cancelled"
    finally:
        store.close()


def test_exit_without_shutdown_during_a_turn_ends_at_once_with_a_short_log(
    stalling: tuple[Raw, FakeOpenAI, str], tmp_path: Path
) -> None:
    raw, _, sid = stalling
    raw.send_request("session/prompt", prompt_params(sid, "first"))
    raw.wait_for_notification("session/delta")
    raw.send(encode_frame({"jsonrpc": "2.0", "method": "exit"}))
    assert raw.proc.wait(timeout=20) == 1  # LSP: exit without shutdown is code 1
    log = (tmp_path / "stderr.log").read_bytes()
    assert len(log.splitlines()) <= 3, log[:2000]
    assert b"Traceback" not in log
    store = Store(raw.db)
    try:
        with store.read() as tx:
            reply = tx.history(sid)[-1]
        assert reply.info.error is not None and reply.info.error.name == "Cancelled"
    finally:
        store.close()


def test_errors_answered_to_the_client_leave_no_traceback_in_the_log(tmp_path: Path) -> None:
    raw = Raw(tmp_path, stderr=tmp_path / "stderr.log")
    try:
        raw.initialize()
        assert raw.request("session/load", {"sessionId": "nope"})["error"]["code"] == -31001
        assert raw.request("session/load", {})["error"]["code"] == -32602
        assert raw.request("session/nope", {})["error"]["code"] == -32601
        assert raw.request("shutdown")["result"] is None
        assert raw.close() == 0
    finally:
        if raw.proc.poll() is None:
            raw.proc.kill()
    assert b"Traceback" not in (tmp_path / "stderr.log").read_bytes()
