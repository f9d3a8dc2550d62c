"""The JSON-RPC front end: pygls, LSP framing on stdio, and thin handlers.

Each handler validates its params (server/params.py), calls one ``Sidecar`` method off the event
loop, and shapes the answer (server/wire.py). Notifications from worker threads are handed to the
event loop with ``call_soon_threadsafe``, so every byte on stdout is written by one thread and
notifications keep the order in which they were produced.

pygls traps handled here: its default converter turns custom params into namedtuples (and renames
keys such as ``_meta``), and a request without ``params`` fails to deserialize and gets no
answer. ``plain_converter`` keeps params as the plain JSON values they were. The bytes on stdin
and stdout (LSP framing, the reader, the serve loop) are server/lsp_stdio.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from typing import Any, TypeVar

import cattrs
from lsprotocol import converters, types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage, LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from server import params as P
from server import wire
from server.config import Config, ConfigError
from server.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    SERVER_NOT_INITIALIZED,
    STORAGE_ERROR,
    UNKNOWN_SESSION,
    RpcFailure,
)
from server.logs import setup_logging
from server.permission_gate import parse_answer
from server.service import Sidecar
from server.turn import SessionStatus
from store import NotFound, StoreError
from store.models import Event, PermissionOption

log = logging.getLogger(__name__)

T = TypeVar("T")


class _AnsweredErrors(logging.Filter):
    """pygls logs every error answer with a traceback at ERROR level, including the expected
    ones (unknown session, invalid params): a client's mistake filled the log with stack traces.
    Those answers carry their stable code to the client; the failures worth a traceback
    (internal errors) are logged by ``_failure`` itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, JsonRpcException)


logging.getLogger("pygls.protocol.json_rpc").addFilter(_AnsweredErrors())


def plain_converter() -> cattrs.Converter:
    """lsprotocol's converter, except that custom requests keep params as plain JSON."""
    converter = converters.get_converter()

    def keep_params(obj: dict[str, Any], cls: type[Any]) -> Any:
        return cls(**{"params": None, **obj})

    converter.register_structure_hook(JsonRPCRequestMessage, keep_params)
    converter.register_structure_hook(JsonRPCNotification, keep_params)
    return converter


class SessionProtocol(LanguageServerProtocol):
    """Adds sessionlsp's capabilities to the ``initialize`` answer."""

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Any:
        result = yield from super().lsp_initialize(params)
        server = self._server
        assert isinstance(server, SessionServer)
        result.capabilities.experimental = {"sessionlsp": server.capabilities_json()}
        return result


class SessionServer(LanguageServer):
    def __init__(self, base_config: Config) -> None:
        super().__init__(
            "sessionlsp",
            version("sessionlsp"),
            protocol_cls=SessionProtocol,
            converter_factory=plain_converter,
        )
        self.base_config = base_config
        self.sidecar: Sidecar | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # Two pools: requests that may wait for a model or another process's lease (compaction)
        # never take the threads that quick requests (list, load, cancel, ...) need.
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="rpc")
        self.waiting_executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="rpc-wait")
        # marker id -> "creating" | "begun" | "ended" | "end-requested completed|failed"
        self._progress: dict[str, str] = {}
        self.turns: set[asyncio.Task[Any]] = set()  # session/prompt handlers not yet answered
        self.shut_down = False  # `shutdown` was received
        self.exit_code: int | None = None  # set by `exit`: stop reading, send nothing more
        # The client declared capabilities.experimental.sessionlsp.permissions in initialize.
        self.answers_permissions = False
        _register(self)

    # --- plumbing ------------------------------------------------------------------------------

    def capabilities_json(self) -> dict[str, Any]:
        s = self.sidecar
        if s is None:
            return {"protocolVersion": wire.PROTOCOL_VERSION}
        info = s.setup.limits
        model = s.config.model or (s.setup.provider.info.model if s.setup.provider else "")
        public = s.config.public_json()  # the base URL with any password masked
        where = (str(s.store.path), public["baseUrl"], s.config.api_key is not None)
        return wire.capabilities(
            s.config.provider, model, (info.context, info.output), s.config.auto_compact, where
        )

    def require(self) -> Sidecar:
        if self.sidecar is None:
            raise RpcFailure(SERVER_NOT_INITIALIZED, "server not initialized: send initialize")
        return self.sidecar

    async def call(self, fn: Callable[[], T], *, waits: bool = False) -> T:
        """Run a blocking Sidecar call on a worker thread; ``waits`` for a call that may wait
        for a model or for another process (it runs in a pool of its own)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.waiting_executor if waits else self.executor, fn)

    def send_error(self, msg_id: Any, code: int, message: str) -> None:
        """Answer a message pygls never saw (unreadable, oversized, not a request) with a
        JSON-RPC error. pygls has no public way to write a raw response, so this is the one
        place that calls its private writer; call it on the event loop thread."""
        self.protocol._send_data(
            {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
        )

    def send(self, method: str, params: Any) -> None:
        """Send a notification from any thread, in the order the calls were made."""
        if self.loop is None or self.loop.is_closed() or self.exit_code is not None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while shutting down
            self.loop.call_soon_threadsafe(self.protocol.notify, method, params)

    # --- PermissionClient (server/permission_gate.py) -----------------------------------------

    def can_answer_permissions(self) -> bool:
        return (
            self.answers_permissions
            and not self.shut_down
            and self.exit_code is None
            and self.loop is not None
            and not self.loop.is_closed()
        )

    def request_permission(
        self, params: Any, answered: Callable[[PermissionOption | None], None]
    ) -> None:
        """Send ``session/requestPermission`` from any thread; ``answered`` gets the option the
        client selected (None when it cancelled, failed or went away), on a worker thread."""
        loop = self.loop
        if loop is None or loop.is_closed():
            answered(None)
            return

        def send() -> None:
            future = self.protocol.send_request("session/requestPermission", params)

            def done(f: Any) -> None:
                try:
                    option = parse_answer(f.result())
                except BaseException as e:  # an error answer, or the connection ended
                    log.info("session/requestPermission failed: %s", _brief(e))
                    option = None
                self.executor.submit(answered, option)

            future.add_done_callback(done)

        try:
            loop.call_soon_threadsafe(send)
        except RuntimeError:  # the loop closed while shutting down
            answered(None)

    # --- SidecarListener ----------------------------------------------------------------------

    def event(self, event: Event) -> None:
        self.send("session/sync", event.to_json())
        if event.type == "compaction.updated" and self.loop is not None:
            self.loop.call_soon_threadsafe(self._compaction_progress, event)

    def delta(
        self, session_id: str, message_id: str, part_id: str, part_type: str, delta: str
    ) -> None:
        self.send("session/delta", wire.delta(session_id, message_id, part_id, part_type, delta))

    def status(self, status: SessionStatus) -> None:
        self.send("session/status", wire.status(status))

    def _compaction_progress(self, event: Event) -> None:
        """LSP work-done progress for each compaction, when the client supports it."""
        caps = self.client_capabilities
        if not (caps and caps.window and caps.window.work_done_progress):
            return
        marker = str(event.data.get("markerId"))
        status = event.data.get("status")
        token = f"sessionlsp/compact/{marker}"
        state = self._progress.get(marker)
        if status in ("pending", "running") and state is None:
            self._progress[marker] = "creating"

            def created(*_: Any) -> None:
                title = "Compacting session"
                self.work_done_progress.begin(
                    token, types.WorkDoneProgressBegin(title=title, message="summarizing")
                )
                ended = self._progress.get(marker, "")
                if ended.startswith("end-requested "):  # it finished before the client answered
                    outcome = ended.removeprefix("end-requested ")
                    self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=outcome))
                    self._progress[marker] = "ended"
                else:
                    self._progress[marker] = "begun"

            self.work_done_progress.create(token, created)
        elif status in ("completed", "failed") and state is not None:
            if state == "begun":
                message = "completed" if status == "completed" else "failed"
                self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
                self._progress[marker] = "ended"
            elif state == "creating":
                outcome = "completed" if status == "completed" else "failed"
                self._progress[marker] = f"end-requested {outcome}"


Handler = Callable[[SessionServer, dict[str, Any]], Awaitable[Any]]


def _failure(e: BaseException) -> JsonRpcException:
    """The JSON-RPC error for an exception; secrets never appear in these messages."""
    if isinstance(e, JsonRpcException):
        return e
    if isinstance(e, RpcFailure):
        return JsonRpcException(e.message, e.code, e.data)
    if isinstance(e, NotFound):
        code = UNKNOWN_SESSION if e.what == "session" else INVALID_PARAMS
        return JsonRpcException(str(e), code, {"field": e.what + "Id"})
    if isinstance(e, StoreError):
        log.warning("storage error: %s", e)
        return JsonRpcException(f"storage error: {_brief(e)}", STORAGE_ERROR)
    log.exception("internal error", exc_info=e)
    return JsonRpcException(f"internal error: {type(e).__name__}", INTERNAL_ERROR)


def _brief(e: BaseException) -> str:
    return (str(e) or type(e).__name__)[:300]


def _handler(fn: Handler) -> Callable[[SessionServer, Any], Awaitable[Any]]:
    # pygls passes the server to handlers whose first parameter is named ``ls``.
    async def run(ls: SessionServer, params: Any) -> Any:
        try:
            return await fn(ls, P.as_object(params))
        except Exception as e:
            raise _failure(e) from None

    run.__name__ = fn.__name__
    return run


# --- the handlers -------------------------------------------------------------------------------


async def session_new(server: SessionServer, p: dict[str, Any]) -> Any:
    title = P.optional_str(p, "title", 500) or ""
    directory = P.optional_str(p, "directory", 4096)
    s = server.require()
    session = await server.call(lambda: s.new_session(title, directory))
    return wire.session_created(session)


async def session_list(server: SessionServer, p: dict[str, Any]) -> Any:
    directory = P.optional_str(p, "directory", 4096)
    limit = P.optional_int(p, "limit", 100, 1, 10_000)
    s = server.require()
    sessions = await server.call(lambda: s.list_sessions(directory, limit))
    return {"sessions": [x.to_json() for x in sessions]}


async def session_load(server: SessionServer, p: dict[str, Any]) -> Any:
    session_id = P.required_str(p, "sessionId")
    s = server.require()
    return wire.loaded(await server.call(lambda: s.load(session_id)))


async def session_context(server: SessionServer, p: dict[str, Any]) -> Any:
    session_id = P.required_str(p, "sessionId")
    s = server.require()
    return wire.context(await server.call(lambda: s.context(session_id)))


async def session_prompt(server: SessionServer, p: dict[str, Any]) -> Any:
    session_id = P.required_str(p, "sessionId")
    texts = P.prompt_texts(p)
    model = P.optional_str(p, "model", 200)
    s = server.require()
    # Submitted on the event loop thread, so prompts queue in the order they arrived.
    future = s.prompt(session_id, texts, model)
    task = asyncio.current_task()
    assert task is not None
    server.turns.add(task)  # `shutdown` answers after every turn it stops has been answered
    try:
        outcome = await asyncio.wrap_future(future)
    finally:
        server.turns.discard(task)
    return wire.turn(outcome)


async def session_cancel(server: SessionServer, p: dict[str, Any]) -> Any:
    session_id = P.required_str(p, "sessionId")
    s = server.require()
    # Stopped here on the event loop thread, where requests are taken in arrival order: a
    # prompt that arrives after this cancel is queued after it and is not stopped by it.
    stopped = s.stop_here(session_id)
    await server.call(lambda: s.request_cancel(session_id))
    return {"cancelled": stopped}


async def session_compact(server: SessionServer, p: dict[str, Any]) -> Any:
    session_id = P.required_str(p, "sessionId")
    instructions = P.optional_str(p, "instructions", 20_000)
    s = server.require()
    token = s.stop_token(session_id)  # on the event loop: a later session/cancel stops it
    outcome = await server.call(lambda: s.compact(session_id, instructions, token), waits=True)
    # This process's commits were sent as they happened; a compaction another process drove
    # is only polled for, so read its events now, before the answer that reports its end.
    await server.call(s.sync_now)
    return wire.compaction(outcome)


async def session_events(server: SessionServer, p: dict[str, Any]) -> Any:
    after = P.optional_int(p, "after", 0)
    if "after" not in p:
        raise RpcFailure(INVALID_PARAMS, "invalid params: after is required", {"field": "after"})
    session_id = P.optional_str(p, "sessionId", 200)
    limit = P.optional_int(p, "limit", 1000, 1, 10_000)
    s = server.require()
    found, seq = await server.call(lambda: s.events(after, session_id, limit))
    return wire.events(found, seq)


async def session_delete(server: SessionServer, p: dict[str, Any]) -> Any:
    session_id = P.required_str(p, "sessionId")
    s = server.require()
    await server.call(lambda: s.delete(session_id))
    return {}


REQUESTS: dict[str, Handler] = {
    "session/new": session_new,
    "session/list": session_list,
    "session/load": session_load,
    "session/context": session_context,
    "session/prompt": session_prompt,
    "session/cancel": session_cancel,
    "session/compact": session_compact,
    "session/events": session_events,
    "session/delete": session_delete,
}


def _declares_permissions(capabilities: Any) -> bool:
    """``capabilities.experimental.sessionlsp.permissions`` is ``true`` (exactly)."""
    experimental = getattr(capabilities, "experimental", None)
    if not isinstance(experimental, dict):
        return False
    ours = experimental.get("sessionlsp")
    return isinstance(ours, dict) and ours.get("permissions") is True


def _register(server: SessionServer) -> None:
    for method, fn in REQUESTS.items():
        server.feature(method)(_handler(fn))

    @server.feature(types.INITIALIZE)
    def initialize(ls: SessionServer, params: types.InitializeParams) -> None:
        options = params.initialization_options
        if options is not None and not isinstance(options, dict):
            raise JsonRpcInvalidParams("initializationOptions must be an object")
        try:
            config = ls.base_config.with_init_options(options or {})
        except ConfigError as e:
            raise JsonRpcException(str(e), INVALID_PARAMS) from None
        if ls.sidecar is not None:  # a second initialize: checked, not applied (protocol.md)
            return
        if (config.log_file, config.log_level) != (
            ls.base_config.log_file,
            ls.base_config.log_level,
        ):
            setup_logging(config)  # logFile / logLevel given in initializationOptions
        for warning in config.warnings:
            log.warning("%s", warning)
        ls.answers_permissions = _declares_permissions(params.capabilities)
        try:
            ls.sidecar = Sidecar(config, ls)
        except (StoreError, OSError) as e:
            raise JsonRpcException(f"storage error: {_brief(e)}", STORAGE_ERROR) from None
        ls.sidecar.gate.client = ls
        ls.sidecar.start()

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: SessionServer, *_: Any) -> None:
        # pygls cancels every request still pending once this handler returns, which would
        # answer the stopped prompts with -32800 and lose their ids: stop the turns (off the
        # event loop, so their last notifications and answers can still be written), then
        # wait until each prompt has its result.
        ls.shut_down = True
        runner = ls.sidecar.runner if ls.sidecar is not None else None
        if runner is not None:
            await ls.call(lambda: runner.close(timeout=2.0))
        if ls.turns:
            await asyncio.wait(set(ls.turns), timeout=2.0)
