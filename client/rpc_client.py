"""A small synchronous JSON-RPC 2.0 client over a subprocess's stdio, with LSP framing.

Every message is framed as ``Content-Length: N\\r\\n\\r\\n<json>`` where N counts the UTF-8
bytes of the body. One reader thread parses the child's stdout and dispatches, in arrival
order: responses resolve the matching request's future; notifications go to the callbacks
registered with :meth:`RpcClient.on_notification`; requests from the server are answered
(``window/workDoneProgress/create`` and the capability registrations with ``null``, anything
else with -32601 unless a handler is registered with :meth:`RpcClient.on_request`). A handler
that must wait (for a person, say) returns a :class:`~concurrent.futures.Future` and the answer
goes out when it resolves, so the reader thread keeps dispatching meanwhile.

Because responses and notifications are dispatched on the same thread, every notification
the server sent before a response has been handled by the time the request returns.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import subprocess
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Self

logger = logging.getLogger(__name__)

NotificationHandler = Callable[[str, Any], None]
"""``callback(method, params)``; runs on the reader thread."""

RequestHandler = Callable[[str, Any], Any]
"""``handler(method, params) -> result``; raise :class:`RpcError` to answer with an error.

A returned :class:`~concurrent.futures.Future` is answered when it resolves: its result, or the
error its :class:`RpcError` (any other exception: an internal error) describes."""

METHOD_NOT_FOUND = -32601
PARSE_ERROR = -32700
NULL_ANSWERED = frozenset(
    {"window/workDoneProgress/create", "client/registerCapability", "client/unregisterCapability"}
)
STDERR_TAIL_LINES = 50
_EXIT_GRACE_S = 2.0  # how long the reader waits for the exit code once stdout has closed


class RpcError(Exception):
    """An error response from the other side."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


class RpcClosed(Exception):
    """The connection closed (the process exited or a pipe broke) before an answer came."""

    def __init__(self, message: str = "connection closed", returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


class FramingError(Exception):
    """The byte stream is not a sequence of ``Content-Length`` frames."""


def encode_frame(message: Mapping[str, Any]) -> bytes:
    """One message framed for the wire."""
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The body of the next frame; ``None`` at a clean end of stream (before any header)."""
    length: int | None = None
    started = False
    while True:
        line = stream.readline()
        if not line:
            if started:
                raise FramingError("stream ended inside a header")
            return None
        started = True
        line = line.rstrip(b"\r\n")
        if not line:
            break
        name, sep, value = line.partition(b":")
        if not sep:
            raise FramingError(f"malformed header line {line!r}")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError as exc:
                raise FramingError(f"bad Content-Length {value!r}") from exc
    if length is None or length < 0:
        raise FramingError("frame without a Content-Length header")
    body = stream.read(length)
    if len(body) < length:
        raise FramingError(f"stream ended after {len(body)} of {length} body bytes")
    return body


@dataclass(frozen=True)
class _Subscription:
    method: str | None
    callback: NotificationHandler


class RpcClient:
    """A JSON-RPC client bound to a child process (or any pair of byte streams)."""

    def __init__(
        self,
        reader: IO[bytes],
        writer: IO[bytes],
        process: subprocess.Popen[bytes] | None = None,
        stderr: IO[bytes] | None = None,
    ) -> None:
        """Start reading ``reader`` at once. ``stderr``, if given, is drained into a tail."""
        self.process = process
        self._reader = reader
        self._writer = writer
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._subscriptions: list[_Subscription] = []
        self._request_handlers: dict[str | None, RequestHandler] = {}
        self._stderr_callbacks: list[Callable[[str], None]] = []
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._closed: RpcClosed | None = None
        self._closing = False
        self._reader_thread = threading.Thread(
            target=self._read_loop, name="rpc-client-reader", daemon=True
        )
        self._stderr_thread: threading.Thread | None = None
        if stderr is not None:
            self._stderr_thread = threading.Thread(
                target=self._drain_stderr, args=(stderr,), name="rpc-client-stderr", daemon=True
            )
            self._stderr_thread.start()
        self._reader_thread.start()

    @classmethod
    def spawn(
        cls,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        stderr: int | IO[Any] | None = None,
        *,
        new_process_group: bool = False,
    ) -> RpcClient:
        """Start ``argv`` with piped stdin/stdout and talk to it.

        ``stderr`` is passed to Popen (``None`` inherits ours); with ``subprocess.PIPE`` the
        client drains it, keeps the last lines (:meth:`stderr_tail`) and hands each line to the
        :meth:`on_stderr` callbacks. ``new_process_group`` keeps a terminal's Ctrl-C (SIGINT to
        the foreground group) from reaching the child.
        """
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            process_group=0 if new_process_group else None,
        )
        assert process.stdin is not None and process.stdout is not None
        piped = process.stderr if stderr == subprocess.PIPE else None
        return cls(process.stdout, process.stdin, process=process, stderr=piped)

    # -- public API -------------------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        """The child's exit code once it has exited, else ``None``."""
        return self.process.poll() if self.process is not None else None

    @property
    def closed(self) -> bool:
        """Whether the connection has closed (no more answers will come)."""
        return self._closed is not None

    def request_async(self, method: str, params: Any = None) -> Future[Any]:
        """Send a request; the future resolves to its result or fails with RpcError/RpcClosed."""
        future: Future[Any] = Future()
        with self._state_lock:
            if self._closed is not None:
                future.set_exception(self._closed)
                return future
            request_id = next(self._ids)
            self._pending[request_id] = future
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        try:
            self._write(encode_frame(message))
        except RpcClosed as exc:
            with self._state_lock:
                self._pending.pop(request_id, None)
            if not future.done():
                future.set_exception(exc)
        return future

    def request(self, method: str, params: Any = None, timeout: float | None = None) -> Any:
        """Send a request and block for its result.

        Raises :class:`RpcError` for an error response, :class:`RpcClosed` if the connection
        closes first, and :class:`TimeoutError` after ``timeout`` seconds (the request is then
        forgotten: a late answer is dropped).
        """
        future = self.request_async(method, params)
        try:
            return future.result(timeout)
        except TimeoutError:
            with self._state_lock:
                for key, value in list(self._pending.items()):
                    if value is future:
                        del self._pending[key]
            raise TimeoutError(f"no answer to {method} within {timeout} s") from None

    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification. Raises :class:`RpcClosed` if the pipe is closed."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._write(encode_frame(message))

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (for tests of malformed input)."""
        self._write(data)

    def on_notification(
        self, method: str | None, callback: NotificationHandler
    ) -> Callable[[], None]:
        """Call ``callback(method, params)`` for each notification named ``method`` (None: all).

        Callbacks run on the reader thread in arrival order (for one message, in registration
        order); an exception in one is logged and does not stop the others. Returns a function
        that removes the subscription.
        """
        subscription = _Subscription(method, callback)
        with self._state_lock:
            self._subscriptions.append(subscription)

        def unsubscribe() -> None:
            with self._state_lock:
                if subscription in self._subscriptions:
                    self._subscriptions.remove(subscription)

        return unsubscribe

    def on_request(self, method: str | None, handler: RequestHandler) -> None:
        """Answer server requests named ``method`` (None: any without its own handler).

        ``handler(method, params)`` runs on the reader thread; its return value is the result,
        an :class:`RpcError` it raises becomes the error response. A handler that cannot answer
        at once returns a :class:`~concurrent.futures.Future`; the answer is sent, from the
        thread that resolves it, when it does (notifications keep flowing meanwhile).
        """
        with self._state_lock:
            self._request_handlers[method] = handler

    def on_stderr(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(line)`` for each line the child writes on stderr (when piped)."""
        with self._state_lock:
            self._stderr_callbacks.append(callback)

    def stderr_tail(self) -> list[str]:
        """The child's last stderr lines (only when spawned with ``stderr=PIPE``)."""
        with self._state_lock:
            return list(self._stderr_tail)

    def initialize(
        self,
        init_options: Any = None,
        capabilities: Mapping[str, Any] | None = None,
        *,
        client_name: str = "sessionlsp-rpc-client",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """``initialize`` then ``initialized``; returns the initialize result."""
        params: dict[str, Any] = {
            "processId": os.getpid(),
            "clientInfo": {"name": client_name},
            "rootUri": None,
            "capabilities": (
                dict(capabilities)
                if capabilities is not None
                else {"window": {"workDoneProgress": True}}
            ),
        }
        if init_options is not None:
            params["initializationOptions"] = init_options
        result = self.request("initialize", params, timeout=timeout)
        self.notify("initialized", {})
        return result if isinstance(result, dict) else {}

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the child to exit and its output to be read; its exit code (None: still up)."""
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        self._join_threads(timeout)
        return self.returncode

    def close(self, timeout: float = 5) -> int | None:
        """``shutdown`` + ``exit``, wait for the child, kill it if it does not go; its exit code."""
        with self._state_lock:
            already = self._closing
            self._closing = True
        if not already and not self.closed:
            try:
                self.request("shutdown", timeout=timeout)
                self.notify("exit")
            except (RpcError, RpcClosed, TimeoutError) as exc:
                logger.debug("shutdown did not go cleanly: %s", exc)
        self._close_stream(self._writer)
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("child %d did not exit; killing it", self.process.pid)
                self.process.kill()
                self.process.wait()
        self._join_threads(timeout)
        self._fail_pending(RpcClosed("connection closed by the client", self.returncode))
        return self.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            try:
                self._writer.write(data)
                self._writer.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                raise RpcClosed(f"cannot write: {exc}", self.returncode) from exc

    def _read_loop(self) -> None:
        reason = "connection closed"
        try:
            while True:
                body = read_frame(self._reader)
                if body is None:
                    break
                self._dispatch_body(body)
        except FramingError as exc:
            reason = f"protocol error: {exc}"
            logger.error("%s", reason)
        except (OSError, ValueError) as exc:
            reason = f"read failed: {exc}"
        self._close_stream(self._reader)
        returncode = self._exit_code_after_eof()
        if returncode is not None:
            reason = f"process exited (code {returncode})"
        self._fail_pending(RpcClosed(reason, returncode))

    def _exit_code_after_eof(self) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            return None

    def _fail_pending(self, error: RpcClosed) -> None:
        with self._state_lock:
            if self._closed is None:
                self._closed = error
            pending = list(self._pending.values())
            self._pending.clear()
        for future in pending:
            if not future.done():
                future.set_exception(self._closed)

    def _dispatch_body(self, body: bytes) -> None:
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.error("dropping a frame that is not JSON: %s", exc)
            return
        if not isinstance(message, dict):
            logger.error("dropping a frame that is not a JSON object")
            return
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message:
                self._answer_server_request(message["id"], method, message.get("params"))
            else:
                self._deliver_notification(method, message.get("params"))
        elif "id" in message:
            self._resolve(message)
        else:
            logger.error("dropping a message that is neither request, response nor notification")

    def _resolve(self, message: dict[str, Any]) -> None:
        request_id = message["id"]
        with self._state_lock:
            future = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if future is None:
            logger.warning("response to an unknown request id %r: %s", request_id, message)
            return
        error = message.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            future.set_exception(
                RpcError(
                    code if isinstance(code, int) else 0,
                    str(error.get("message", "")),
                    error.get("data"),
                )
            )
        else:
            future.set_result(message.get("result"))

    def _deliver_notification(self, method: str, params: Any) -> None:
        with self._state_lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            if subscription.method is not None and subscription.method != method:
                continue
            try:
                subscription.callback(method, params)
            except Exception:
                logger.exception("notification callback for %s failed", method)

    def _answer_server_request(self, request_id: Any, method: str, params: Any) -> None:
        with self._state_lock:
            handler = self._request_handlers.get(method) or self._request_handlers.get(None)
        response: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        if handler is not None:
            try:
                result = handler(method, params)
            except Exception as exc:
                response.update(_answer_for_exception(method, exc))
            else:
                if isinstance(result, Future):
                    result.add_done_callback(
                        lambda done: self._answer_later(request_id, method, done)
                    )
                    return
                response["result"] = result
        elif method in NULL_ANSWERED:
            response["result"] = None
        else:
            response["error"] = {"code": METHOD_NOT_FOUND, "message": f"unhandled: {method}"}
        self._send_response(method, response)

    def _answer_later(self, request_id: Any, method: str, done: Future[Any]) -> None:
        response: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id}
        try:
            response["result"] = done.result()
        except Exception as exc:  # an RpcError, a bug, or a cancelled future
            response.update(_answer_for_exception(method, exc))
        self._send_response(method, response)

    def _send_response(self, method: str, response: dict[str, Any]) -> None:
        try:
            self._write(encode_frame(response))
        except RpcClosed as exc:
            logger.debug("cannot answer %s: %s", method, exc)

    def _drain_stderr(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                with self._state_lock:
                    self._stderr_tail.append(line)
                    callbacks = list(self._stderr_callbacks)
                for callback in callbacks:
                    try:
                        callback(line)
                    except Exception:
                        logger.exception("stderr callback failed")
        except (OSError, ValueError) as exc:
            logger.debug("stderr drain stopped: %s", exc)
        self._close_stream(stream)

    def _join_threads(self, timeout: float | None) -> None:
        for thread in (self._reader_thread, self._stderr_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    @staticmethod
    def _close_stream(stream: IO[bytes]) -> None:
        try:
            stream.close()
        except (OSError, ValueError) as exc:
            logger.debug("closing a pipe: %s", exc)


def _answer_for_exception(method: str, exc: Exception) -> dict[str, Any]:
    """The ``error`` member answering a server request whose handler raised ``exc``."""
    if isinstance(exc, RpcError):
        return {"error": _error_object(exc)}
    logger.error("request handler for %s failed", method, exc_info=exc)
    return {"error": {"code": -32603, "message": f"client error: {exc}"}}


def _error_object(error: RpcError) -> dict[str, Any]:
    obj: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        obj["data"] = error.data
    return obj
