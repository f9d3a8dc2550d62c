"""LSP base-protocol framing on stdin/stdout for the JSON-RPC front end (server/protocol.py).

pygls' own reader drops unparsable frames silently and its ``exit`` closes stdout while turns
still write; this module reads frames itself, so a malformed, oversized or non-request message
gets a JSON-RPC error and the server carries on, and it ends the serve loop on ``exit`` after
which nothing more is written. Only framing lives here: what a message means is the handlers'.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from pygls.io_ import StdoutWriter

from server.config import Config
from server.errors import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR
from server.protocol import SessionServer

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024
_CONTENT_LENGTH = re.compile(rb"content-length:[ \t]*(-?\d+)", re.IGNORECASE)


class _Frames:
    """Reads LSP base-protocol frames from a binary stream on a reader thread."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def read(self) -> tuple[int | None, bytes | None] | None:
        """(content length, body) of the next frame; body None when the frame was too large;
        length None when the headers were unusable. None at end of input."""
        length: int | None = None
        bad = False
        headers = 0
        while True:
            line = self.stream.readline(MAX_HEADER_BYTES + 1)
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                if headers == 0:
                    continue  # stray blank lines between frames
                break
            headers += 1
            # Searched anywhere in the line: after a frame without Content-Length, its body
            # (no newline) and the next frame's header arrive as one line; this resynchronises.
            found = _CONTENT_LENGTH.search(line)
            if found:
                try:
                    length = int(found.group(1))
                    bad = length < 0
                except ValueError:
                    bad = True
        if length is None or bad:
            return (None, None)
        if length > MAX_FRAME_BYTES:
            left = length
            while left > 0:
                chunk = self.stream.read(min(left, 1 << 20))
                if not chunk:
                    return None
                left -= len(chunk)
            return (length, None)
        body = self.stream.read(length)
        if len(body) < length:
            return None
        return (length, body)


class _Discard:
    """The writer after ``exit``: the client has gone away from this conversation."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def _handle_frame(server: SessionServer, length: int | None, body: bytes | None) -> None:
    if length is None:
        server.send_error(None, INVALID_REQUEST, "invalid frame: missing Content-Length")
        return
    if body is None:
        server.send_error(
            None,
            INVALID_REQUEST,
            f"message of {length} bytes is over the {MAX_FRAME_BYTES} byte limit",
        )
        return
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        # ValueError: not UTF-8, not JSON, or an integer literal over Python's digit limit;
        # RecursionError: nesting deeper than the decoder's stack.
        server.send_error(None, PARSE_ERROR, f"parse error: {type(e).__name__}")
        return
    if not isinstance(data, dict):
        server.send_error(None, INVALID_REQUEST, "invalid request: expected a JSON object")
        return
    msg_id = data.get("id")
    if not isinstance(msg_id, int | str) or isinstance(msg_id, bool):
        msg_id = None
    if data.get("jsonrpc") != "2.0" or ("method" in data and not isinstance(data["method"], str)):
        server.send_error(msg_id, INVALID_REQUEST, "invalid request: not JSON-RPC 2.0")
        return
    is_request = "method" in data and "id" in data
    if is_request and isinstance(data["id"], bool | list | dict):
        # JSON-RPC ids are strings or numbers; pygls would fail on an unhashable one.
        server.send_error(None, INVALID_REQUEST, "invalid request: id must be a string or a number")
        return
    if data.get("method") == "exit" and not is_request:
        # Handled here rather than by pygls, whose `exit` closes stdout while turns still send
        # notifications and answers: each failed write was logged with two tracebacks.
        server.exit_code = 0 if server.shut_down else 1
        return
    if is_request and server.shut_down:
        # pygls drops everything after `shutdown`; LSP asks for an error (InvalidRequest).
        server.send_error(msg_id, INVALID_REQUEST, "invalid request: the server is shut down")
        return
    try:
        message = server.protocol.structure_message(data)
    except Exception as e:
        log.warning("could not read %s: %s", data.get("method"), type(e).__name__)
        if is_request:
            server.send_error(msg_id, INVALID_PARAMS, f"invalid params for {data['method']}")
        return
    if is_request and not (hasattr(message, "id") and hasattr(message, "method")):
        # An LSP notification method (or a response) sent with an id: pygls would drop the id
        # and never answer; a request must get an answer.
        server.send_error(
            msg_id, INVALID_REQUEST, f"invalid request: {data['method']} is not a request"
        )
        return
    try:
        server.protocol.handle_message(message)
    except Exception:
        log.exception("could not handle %s", data.get("method"))
        if is_request:
            server.send_error(msg_id, INTERNAL_ERROR, "internal error")


async def _serve(server: SessionServer, stdin: BinaryIO, stdout: BinaryIO) -> None:
    loop = asyncio.get_running_loop()
    server.loop = loop
    server.protocol.set_writer(StdoutWriter(stdout))
    frames = _Frames(stdin)
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stdin")
    try:
        while True:
            frame = await loop.run_in_executor(reader, frames.read)
            if frame is None:
                break
            _handle_frame(server, *frame)
            if server.exit_code is not None:
                break
    finally:
        reader.shutdown(wait=False)
        if server.exit_code is not None:
            # asyncio.run cancels the handlers still pending as it returns; after `exit`
            # nothing more reaches the client.
            server.protocol.set_writer(_Discard())


def serve_stdio(
    config: Config, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None
) -> int:
    """Serve one client on stdin/stdout until it sends ``exit`` or closes the pipe."""
    server = SessionServer(config)
    out = stdout or sys.stdout.buffer
    try:
        asyncio.run(_serve(server, stdin or sys.stdin.buffer, out))
    except BrokenPipeError:
        log.warning("the client closed the connection")
    _close(server)
    return server.exit_code or 0


def _close(server: SessionServer) -> None:
    if server.sidecar is not None:
        server.sidecar.close()
    server.executor.shutdown(wait=False, cancel_futures=True)
    server.waiting_executor.shutdown(wait=False, cancel_futures=True)
