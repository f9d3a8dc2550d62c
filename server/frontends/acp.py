"""The Agent Client Protocol front end: ``sessionlsp acp``.

Built on the official Python SDK (``agent-client-protocol``): its router validates params with
the schema's pydantic models and calls :class:`AcpAgent`'s methods, its ``Connection`` does the
JSON-RPC. Where the SDK (generated from schema v1.19) lags the spec, this module speaks the spec's
JSON itself through that connection, without forking the SDK:

* ``session/delete`` has no route in the SDK: :class:`Dispatch` answers it before the router;
* ``session/close`` and ``session/resume`` are routed only with ``use_unstable_protocol``;
* ``clientCapabilities.session.compaction`` is dropped by the SDK's model: read from the raw
  ``initialize`` params; ``compaction_update`` / ``compaction_summary_chunk`` have no types:
  sent as plain JSON (server/frontends/acp_updates.py);
* the SDK's stdio reader drops a line that is not JSON without an answer: the NDJSON transport
  (server/frontends/acp_stdio.py) answers it with a parse error (-32700) and keeps serving.

Everything else is the same ``Sidecar`` the LSP front end uses (server/service.py). Listener
callbacks come from worker threads; they are handed to the event loop with
``call_soon_threadsafe`` into one queue that a single task sends from, so updates keep the order
in which they were produced and every byte on stdout is written by the event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from acp.agent.router import build_agent_router
from acp.connection import Connection
from acp.exceptions import RequestError
from acp.schema import (
    BlobResourceContents,
    EmbeddedResourceContentBlock,
    ResourceContentBlock,
    TextContentBlock,
)
from pydantic import ValidationError

from server.config import Config
from server.errors import PROVIDER_NOT_CONFIGURED, UNKNOWN_SESSION, RpcFailure
from server.frontends import acp_commands
from server.frontends.acp_updates import (
    SessionView,
    Update,
    input_diffs,
    planned_diffs,
    text_block,
    tool_call_fields,
    usage,
)
from server.permission_gate import OPTIONS, parse_answer
from server.service import ContextView, Sidecar
from server.tools import plan_tool
from server.tools.edits import Plan
from store import StoreError
from store.models import Event, Json, PermissionOption

if TYPE_CHECKING:
    from server.turn import SessionStatus

log = logging.getLogger(__name__)

T = TypeVar("T")
PROTOCOL_VERSION = 1
AUTH_METHOD = "sessionlsp-api-key"
AUTH_HELP = (
    "sessionlsp reads its API key from SESSIONLSP_API_KEY (or OPENAI_API_KEY) in the agent's "
    'environment, or api_key in its config.toml; set provider = "offline" to run without one. '
    "Run `sessionlsp config` to see what it found."
)
LIST_PAGE = 50
Item = Callable[[], Awaitable[None]]


class AcpAgent:
    """The SDK's ``Agent`` over one ``Sidecar``, and the Sidecar's listener."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sidecar = Sidecar(config, self)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.conn: Connection | None = None
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="acp")
        self.waiting_executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="acp-wait")
        self.out: asyncio.Queue[Item] = asyncio.Queue()
        self.views: dict[str, SessionView] = {}
        self.loading: dict[str, list[Event]] = {}  # session/load in progress: events held back
        self.models: dict[str, str] = {}  # session -> model chosen with set_config_option
        self.compaction_capable = False
        self.boolean_options = False
        self.turns: set[asyncio.Task[Any]] = set()
        self.questions: set[asyncio.Task[None]] = set()  # session/request_permission in flight
        self.closing = False  # the input ended: no more questions
        self.sidecar.gate.client = self

    # --- plumbing ------------------------------------------------------------------------------

    async def call(self, fn: Callable[[], T], *, waits: bool = False) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.waiting_executor if waits else self.executor, fn)

    def post(self, item: Item) -> None:
        """Queue work for the sender task, from any thread, in call order."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.out.put_nowait, item)

    async def pump(self) -> None:
        while True:
            item = await self.out.get()
            try:
                await item()
            except Exception:
                log.exception("could not send an update")

    async def send(self, session_id: str, update: Update) -> None:
        if self.conn is None:
            return
        with contextlib.suppress(ConnectionError):
            await self.conn.send_notification(
                "session/update", {"sessionId": session_id, "update": update}
            )

    async def send_all(self, session_id: str, updates: list[Update]) -> None:
        for u in updates:
            await self.send(session_id, u)

    def queue(self, session_id: str, updates: list[Update]) -> None:
        async def run() -> None:
            await self.send_all(session_id, updates)

        self.out.put_nowait(run)

    async def flush(self) -> None:
        """Wait until everything queued so far has been written."""
        done = asyncio.get_running_loop().create_future()

        async def mark() -> None:
            done.set_result(None)

        self.out.put_nowait(mark)
        await done

    async def context(self, session_id: str) -> ContextView | None:
        try:
            return await self.call(lambda: self.sidecar.context(session_id))
        except (RpcFailure, StoreError):
            return None

    async def send_usage(self, session_id: str) -> None:
        view = await self.context(session_id)
        if view is not None:
            self.queue(session_id, [usage(view)])
            if session_id in self.views:
                self.views[session_id].used = view.context.tokens

    def view(self, session_id: str, directory: str | None = None) -> SessionView:
        v = self.views.get(session_id)
        if v is None:
            v = SessionView(session_id, self.compaction_capable, directory)
            self.views[session_id] = v
        return v

    # --- PermissionClient (server/permission_gate.py; worker threads) ------------------------

    def can_answer_permissions(self) -> bool:
        """``session/request_permission`` is a baseline client method: every ACP client can be
        asked, while the connection lasts."""
        loop = self.loop
        return (
            self.conn is not None and loop is not None and not loop.is_closed() and not self.closing
        )

    def request_permission(
        self, params: Json, answered: Callable[[PermissionOption | None], None]
    ) -> None:
        """Ask the client with ``session/request_permission``, without blocking the caller: the
        question is built on a worker (it reads the store and plans the edit again for its
        diff), sent from the event loop in order with the updates, and ``answered`` gets the
        option selected (None: cancelled, an error, or the connection ended) on a worker."""

        def build() -> None:
            try:
                built = self._permission_params(params)
            except Exception:
                log.exception("could not build the permission question")
                built = None
            if built is None:
                answered(None)
                return
            acp_params, part_id, diffs = built
            self.post(lambda: self._ask(acp_params, part_id, diffs, answered))

        try:
            self.executor.submit(build)
        except RuntimeError:  # shutting down
            answered(None)

    def _permission_params(self, params: Json) -> tuple[Json, str, list[Update]] | None:
        with self.sidecar.store.read() as tx:
            question = tx.get_permission_request(str(params.get("permissionId")))
            session = tx.get_session(question.session_id) if question is not None else None
        if question is None or session is None:
            return None
        directory = session.directory
        diffs: list[Update] = []
        content: list[Update] = []
        if question.diff is not None and directory:
            planned = plan_tool(question.tool, json.dumps(question.input), Path(directory))
            if isinstance(planned, Plan):  # each file's whole text, before and after
                diffs = planned_diffs(planned, directory)
            else:  # the file changed since the question was asked: the stored diff, as text
                content = [{"type": "content", "content": text_block(question.diff)}]
        if not diffs and not content:
            diffs = input_diffs(question.tool, question.input, directory)
        tool_call = tool_call_fields(
            question.part_id,
            question.tool,
            question.title,
            "pending",
            question.input,
            directory,
            diffs,
        )
        if diffs or content:
            tool_call["content"] = diffs + content
        acp_params: Json = {
            "sessionId": question.session_id,
            "toolCall": tool_call,
            "options": [dict(o) for o in OPTIONS],
        }
        return acp_params, question.part_id, diffs

    async def _ask(
        self,
        params: Json,
        part_id: str,
        diffs: list[Update],
        answered: Callable[[PermissionOption | None], None],
    ) -> None:
        """A pump item: send the question now (after the updates queued before it) and wait
        for the answer in a task of its own, so that updates keep flowing meanwhile."""
        v = self.views.get(str(params["sessionId"]))
        if v is not None and diffs:
            v.diffs[part_id] = diffs  # the tool call's later updates show the same diff
        conn = self.conn
        if conn is None or self.closing:
            self._answered(answered, None)
            return

        async def wait() -> None:
            option: PermissionOption | None = None
            try:
                option = parse_answer(await conn.send_request("session/request_permission", params))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # an error answer, or the connection ended
                log.info("session/request_permission failed: %s", e)
            finally:
                self._answered(answered, option)

        task = asyncio.get_running_loop().create_task(wait())
        self.questions.add(task)
        task.add_done_callback(self.questions.discard)

    def _answered(
        self, answered: Callable[[PermissionOption | None], None], option: PermissionOption | None
    ) -> None:
        """Store the answer on a worker (it writes the store); a question the turn already
        settled (cancel, another client's answer) ignores it."""
        try:
            self.executor.submit(answered, option)
        except RuntimeError:  # shutting down: the turn settles the question as it stops
            log.debug("an answer arrived after shutdown and is dropped")

    # --- SidecarListener (worker threads) -------------------------------------------------------

    def event(self, event: Event) -> None:
        self.post(lambda: self._on_event(event))

    def delta(
        self, session_id: str, message_id: str, part_id: str, part_type: str, delta: str
    ) -> None:
        async def run() -> None:
            v = self.views.get(session_id)
            if v is not None and session_id not in self.loading:
                await self.send_all(session_id, v.delta(message_id, part_id, part_type, delta))

        self.post(run)

    def status(self, status: SessionStatus) -> None:
        pass  # ACP has no busy/idle notification; the prompt's answer ends the turn

    async def _on_event(self, e: Event) -> None:
        held = self.loading.get(e.session_id)
        if held is not None:
            held.append(e)
            return
        v = self.views.get(e.session_id)
        if v is None:
            return
        ctx = await self.context(e.session_id) if v.ends_compaction(e) else None
        await self.send_all(e.session_id, v.event(e, ctx))
        if ctx is not None and e.data.get("status") == "completed":
            v.used = ctx.context.tokens
            await self.send(e.session_id, usage(ctx))

    # --- the Agent methods (called by the SDK's router, on the event loop) ---------------------

    async def initialize(self, protocol_version: int, **_: Any) -> dict[str, Any]:
        return {
            "protocolVersion": PROTOCOL_VERSION,
            "agentInfo": {"name": "sessionlsp", "version": version("sessionlsp")},
            "agentCapabilities": {
                "loadSession": True,
                "promptCapabilities": {"embeddedContext": True, "image": False, "audio": False},
                "sessionCapabilities": {"list": {}, "delete": {}, "resume": {}, "close": {}},
            },
            "authMethods": [{"id": AUTH_METHOD, "name": "API key", "description": AUTH_HELP}],
        }

    async def authenticate(self, method_id: str, **_: Any) -> dict[str, Any]:
        if method_id != AUTH_METHOD:
            raise _invalid("methodId", f"unknown auth method {method_id!r}; use {AUTH_METHOD!r}")
        if self.sidecar.runner is None:
            raise _auth_required(self.sidecar.setup.problem)
        return {}

    async def new_session(self, cwd: str, mcp_servers: Any = None, **_: Any) -> dict[str, Any]:
        _absolute(cwd)
        session = await self.call(lambda: self.sidecar.new_session("", cwd))
        self.view(session.id, cwd)
        self._after_answer(session.id)
        return {"sessionId": session.id, "configOptions": self.config_options(session.id)}

    async def load_session(self, cwd: str, session_id: str, **_: Any) -> dict[str, Any]:
        _absolute(cwd)
        self.loading[session_id] = []
        try:
            loaded = await self.call(lambda: self.sidecar.load(session_id))
            v = SessionView(session_id, self.compaction_capable, loaded.session.directory)
            self.views[session_id] = v
            self.queue(session_id, v.replay(loaded))
        finally:
            held = self.loading.pop(session_id, [])
        for e in held:
            self.post(lambda e=e: self._on_event(e))  # type: ignore[misc]
        await self.send_usage(session_id)
        await self.flush()
        self._after_answer(session_id)
        return {"configOptions": self.config_options(session_id)}

    async def resume_session(self, cwd: str, session_id: str, **_: Any) -> dict[str, Any]:
        _absolute(cwd)
        loaded = await self.call(lambda: self.sidecar.load(session_id))
        v = SessionView(session_id, self.compaction_capable, loaded.session.directory)
        v.replay(loaded)  # what was already there is known, and not sent
        self.views[session_id] = v
        self._after_answer(session_id)
        return {"configOptions": self.config_options(session_id)}

    async def close_session(self, session_id: str, **_: Any) -> dict[str, Any]:
        await self.call(lambda: self.sidecar.context(session_id))  # unknown session: an error
        self.sidecar.stop_here(session_id)
        self.views.pop(session_id, None)
        return {}

    async def delete_session(self, session_id: str) -> dict[str, Any]:
        await self.call(lambda: self.sidecar.delete(session_id))
        self.views.pop(session_id, None)
        return {}

    async def list_sessions(
        self, cwd: str | None = None, cursor: str | None = None, **_: Any
    ) -> dict[str, Any]:
        start = 0
        if cursor is not None:
            if not cursor.isdigit():
                raise _invalid("cursor", "is not a cursor this agent gave")
            start = int(cursor)
        found = await self.call(lambda: self.sidecar.list_sessions(cwd, start + LIST_PAGE + 1))
        page = found[start : start + LIST_PAGE]
        out: dict[str, Any] = {
            "sessions": [
                {
                    "sessionId": s.id,
                    "cwd": s.directory or "/",
                    **({"title": s.title} if s.title else {}),
                    "updatedAt": datetime.fromtimestamp(s.time_updated / 1000, UTC).isoformat(),
                }
                for s in page
            ]
        }
        if len(found) > start + LIST_PAGE:
            out["nextCursor"] = str(start + LIST_PAGE)
        return out

    async def prompt(self, prompt: list[Any], session_id: str, **_: Any) -> dict[str, Any]:
        command = acp_commands.parse(prompt)
        if command is not None:
            return await acp_commands.run(self, session_id, command)
        texts = prompt_texts(prompt)
        # Submitted before the first await, so prompts and cancels keep their arrival order.
        future = self.sidecar.prompt(session_id, texts, self.models.get(session_id))
        v = self.view(session_id)
        v.local_prompts += 1
        task = asyncio.current_task()
        if task is not None:
            self.turns.add(task)
        try:
            outcome = await asyncio.wrap_future(future)
        finally:
            if task is not None:
                self.turns.discard(task)

            async def done() -> None:
                v.local_prompts -= 1

            self.out.put_nowait(done)
        await self.send_usage(session_id)
        await self.flush()
        if outcome.stop_reason == "error":
            e = outcome.error
            data = {"name": e.name, "messageId": outcome.message_id} if e else None
            raise RequestError(e.code if e else -32603, e.message if e else "turn failed", data)
        return {"stopReason": outcome.stop_reason}

    async def cancel(self, session_id: str, **_: Any) -> None:
        # On the event loop, where messages are taken in arrival order (see server/protocol.py).
        self.sidecar.stop_here(session_id)
        try:
            await self.call(lambda: self.sidecar.request_cancel(session_id))
        except (RpcFailure, StoreError) as e:
            log.info("cancel of %s: %s", session_id, e)

    async def set_config_option(
        self, config_id: str, session_id: str, value: str | bool, **_: Any
    ) -> dict[str, Any]:
        await self.call(lambda: self.sidecar.context(session_id))  # unknown session: an error
        if config_id == "model":
            if value not in self.model_names():
                raise _invalid("value", f"{value!r} is not a configured model")
            self.models[session_id] = str(value)
        elif config_id == "autoCompact":
            on = value if isinstance(value, bool) else str(value).lower() == "true"
            self.set_auto_compact(on)
        else:
            raise _invalid("configId", f"unknown config option {config_id!r}")
        options = self.config_options(session_id)
        if config_id == "autoCompact":  # process-wide: every session shown here changed
            for other in self.views:
                if other != session_id:
                    update = {"sessionUpdate": "config_option_update"}
                    self.queue(other, [update | {"configOptions": self.config_options(other)}])
        return {"configOptions": options}

    # --- config options ------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        s = self.sidecar
        model = self.config.model or (s.setup.provider.info.model if s.setup.provider else "")
        return [model] if model else []

    def set_auto_compact(self, on: bool) -> None:
        self.sidecar.set_auto_compact(on)

    def config_options(self, session_id: str) -> list[dict[str, Any]]:
        names = self.model_names()
        current = self.models.get(session_id) or (names[0] if names else "")
        auto = self.sidecar.config.auto_compact
        options: list[dict[str, Any]] = [
            {
                "id": "model",
                "name": "Model",
                "category": "model",
                "type": "select",
                "currentValue": current,
                "options": [{"value": n, "name": n} for n in names],
            }
        ]
        describe = "Compact the conversation when it nears the model's context window"
        if self.boolean_options:
            options.append(
                {
                    "id": "autoCompact",
                    "name": "Auto-compact",
                    "description": describe,
                    "type": "boolean",
                    "currentValue": auto,
                }
            )
        else:  # the client did not declare boolean options: the same choice as a select
            options.append(
                {
                    "id": "autoCompact",
                    "name": "Auto-compact",
                    "description": describe,
                    "type": "select",
                    "currentValue": "true" if auto else "false",
                    "options": [{"value": "true", "name": "On"}, {"value": "false", "name": "Off"}],
                }
            )
        return options

    def _after_answer(self, session_id: str) -> None:
        """``available_commands_update`` once the answer that names the session is written
        (the SDK writes it in the same event loop step that the handler returns in)."""
        updates = [acp_commands.available()]
        asyncio.get_running_loop().call_soon(self.queue, session_id, updates)


def prompt_texts(prompt: list[Any]) -> tuple[str, ...]:
    """The prompt's blocks as the texts of one user message: resources become text the model
    sees."""
    texts: list[str] = []
    for i, block in enumerate(prompt):
        if isinstance(block, TextContentBlock):
            texts.append(block.text)
        elif isinstance(block, ResourceContentBlock):
            texts.append(f"[resource: {block.name} <{block.uri}>]")
        elif isinstance(block, EmbeddedResourceContentBlock):
            r = block.resource
            if isinstance(r, BlobResourceContents):
                texts.append(f"[binary resource {r.uri} ({r.mime_type or 'no type'}) omitted]")
            else:
                texts.append(f'<resource uri="{r.uri}">\n{r.text}\n</resource>')
        else:
            kind = getattr(block, "type", type(block).__name__)
            raise _invalid(f"prompt[{i}]", f"{kind} blocks are not supported")
    if not texts:
        raise _invalid("prompt", "must hold at least one block")
    return tuple(texts)


def _absolute(cwd: str) -> None:
    if not os.path.isabs(cwd):
        raise _invalid("cwd", "must be an absolute path")


def _invalid(field: str, problem: str) -> RequestError:
    return RequestError(-32602, f"invalid params: {field} {problem}", {"field": field})


def _auth_required(problem: str | None) -> RequestError:
    detail = f"{problem}. " if problem else ""
    return RequestError(-32000, f"authentication required: {detail}{AUTH_HELP}", None)


def _failure(e: RpcFailure) -> RequestError:
    if e.code == PROVIDER_NOT_CONFIGURED:
        return _auth_required(e.message)
    if e.code == UNKNOWN_SESSION:
        return RequestError(-32002, f"resource not found: {e.message}", {"code": e.code})
    return RequestError(e.code, e.message, e.data)


class Dispatch:
    """The connection's handler: the SDK's router, plus what the SDK lags on, and this
    project's errors turned into JSON-RPC errors."""

    def __init__(self, agent: AcpAgent) -> None:
        self.agent = agent
        self.router = build_agent_router(agent, use_unstable_protocol=True)  # type: ignore[arg-type]

    async def __call__(self, method: str, params: Any, is_notification: bool) -> Any:
        try:
            if method == "initialize" and isinstance(params, dict):
                self._capabilities(params.get("clientCapabilities"))
            if method == "session/delete" and not is_notification:
                session_id = params.get("sessionId") if isinstance(params, dict) else None
                if not isinstance(session_id, str):
                    raise _invalid("sessionId", "is required (a string)")
                return await self.agent.delete_session(session_id)
            return await self.router(method, params, is_notification)
        except ValidationError as e:
            errors = e.errors(include_url=False, include_context=False, include_input=False)
            first = errors[0] if errors else {"loc": (), "msg": "invalid"}
            where = ".".join(str(x) for x in first["loc"]) or "params"
            raise RequestError(
                -32602, f"invalid params: {where}: {first['msg']}", {"field": where}
            ) from None
        except RpcFailure as e:
            raise _failure(e) from None
        except StoreError as e:
            log.warning("storage error: %s", e)
            raise RequestError(-31005, f"storage error: {str(e)[:300]}") from None

    def _capabilities(self, caps: object) -> None:
        session = caps.get("session") if isinstance(caps, dict) else None
        if not isinstance(session, dict):
            return
        self.agent.compaction_capable = session.get("compaction") not in (None, False)
        options = session.get("configOptions")
        self.agent.boolean_options = isinstance(options, dict) and options.get("boolean") not in (
            None,
            False,
        )


__all__ = ["AcpAgent", "Dispatch", "prompt_texts"]
