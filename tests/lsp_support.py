"""Driving real ``sessionlsp serve`` processes from tests, and what the server tests share.

:func:`start` runs a server under pytest-lsp; the helpers below it (config files, environments,
request params, reading answers back) are the one copy used by every test that talks to a real
server, whether through pytest-lsp or :class:`client.rpc_client.RpcClient`.

Notifications are collected by client features registered before the server starts, so nothing
sent early is lost (``wait_for_notification`` only sees notifications that arrive after it is
called). ``wait_until`` waits on a condition that every notification signals.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.protocol import JsonRPCResponseMessage
from pytest_lsp import ClientServerConfig, LanguageClient
from pytest_lsp.client import register_lsp_features

from client.rpc_client import RpcClient
from fakeprovider.openai_server import FakeOpenAI
from server.protocol import plain_converter

WAIT_S = 20.0  # the longest a test waits for something that should happen at once


def _client_converter() -> Any:
    converter = plain_converter()
    converter.register_structure_hook(
        JsonRPCResponseMessage, lambda obj, cls: cls(**{"result": None, **obj})
    )
    return converter


@dataclass
class Collected:
    """Every notification the client received, in arrival order."""

    items: list[tuple[str, Any]] = field(default_factory=list)
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)

    def of(self, method: str) -> list[Any]:
        return [p for m, p in self.items if m == method]

    def syncs(self, session_id: str | None = None, type_: str | None = None) -> list[Any]:
        return [
            p
            for p in self.of("session/sync")
            if (session_id is None or p["sessionId"] == session_id)
            and (type_ is None or p["type"] == type_)
        ]


class Session:
    """A started server and the client connected to it."""

    def __init__(self, client: LanguageClient, collected: Collected, initialized: Any) -> None:
        self.client = client
        self.collected = collected
        self.initialized = initialized  # the InitializeResult
        self._any: Any = client  # pygls' client methods are untyped

    async def request(self, method: str, params: Any = None) -> Any:
        return await self._any.protocol.send_request_async(method, params)

    def send(self, method: str, params: Any = None) -> asyncio.Future[Any]:
        """Send a request now (before anything the caller sends next); await the answer later."""
        # pytest-lsp's send_request_async is a coroutine that sends only once awaited; pygls'
        # send_request writes at once.
        return asyncio.wrap_future(self._any.protocol.send_request(method, params))

    def notify(self, method: str, params: Any = None) -> None:
        self.client.protocol.notify(method, params)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        async with self.collected.cond:
            await asyncio.wait_for(self.collected.cond.wait_for(predicate), timeout)

    async def close(self) -> None:
        if self.client.stopped:
            return
        await self.client.shutdown_session()
        await self._any.stop()

    async def kill(self) -> None:
        if self.client.stopped:
            return
        server = self.client._server
        assert server is not None
        # pygls keeps the tasks of server -> client requests still being answered among its
        # request futures, and on the server's exit fails with "Task does not support
        # set_exception": forget them (their handlers are the test's to end).
        futures = self._any.protocol._request_futures
        for key, fut in list(futures.items()):
            if isinstance(fut, asyncio.Task):
                del futures[key]
        server.kill()
        await server.wait()
        self._any._stop_event.set()
        await self._any.stop()


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONLSP_")}
    env.pop("OPENAI_API_KEY", None)
    env["SESSIONLSP_OFFLINE_DELAY_MS"] = "0"  # the offline provider unpaced (tests never wait)
    env.update(extra or {})
    return env


async def start(
    db: Path,
    *,
    config: Path,
    env: Mapping[str, str] | None = None,
    init_options: dict[str, Any] | None = None,
    progress: bool = True,
    permissions: Callable[[Any], Awaitable[Any]] | None = None,
) -> Session:
    """With ``permissions``, the client declares ``experimental.sessionlsp.permissions`` and
    answers each ``session/requestPermission`` with what ``permissions(params)`` returns."""
    collected = Collected()

    def make_client() -> LanguageClient:
        client = LanguageClient(converter_factory=_client_converter)
        register_lsp_features(client)
        for method in ("session/sync", "session/delta", "session/status"):
            _collect(client, method, collected)
        if permissions is not None:
            answer = permissions

            async def request_permission(ls: Any, params: Any) -> Any:
                collected.items.append(("session/requestPermission", params))
                async with collected.cond:
                    collected.cond.notify_all()
                return await answer(params)

            client.feature("session/requestPermission")(request_permission)

        return client

    cfg = ClientServerConfig(
        server_command=[
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--db",
            str(db),
            "--config",
            str(config),
        ],
        client_factory=make_client,
        server_env=server_env(env),
    )
    client = await cfg.start()
    assert isinstance(client, LanguageClient)
    caps = types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=progress),
        experimental={"sessionlsp": {"permissions": True}} if permissions is not None else None,
    )
    result = await client.initialize_session(
        types.InitializeParams(capabilities=caps, initialization_options=init_options)
    )
    return Session(client, collected, result)


def _collect(client: LanguageClient, method: str, collected: Collected) -> None:
    original = client.protocol.fm.features.get(method)

    async def on_notification(ls: LanguageClient, params: Any) -> None:
        if original is not None:
            original(params)
        async with collected.cond:
            collected.items.append((method, params))
            collected.cond.notify_all()

    client.feature(method)(on_notification)


# --- shared by the server tests ---------------------------------------------------------------


def write_config(path: Path, lines: Mapping[str, object]) -> Path:
    """A TOML config file of simple ``key = value`` lines."""
    out = []
    for key, value in lines.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append(f"{key} = {text}")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def env_for(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    """The environment that points a server's openai provider at ``fake``, plus ``extra``."""
    return {"SESSIONLSP_BASE_URL": fake.base_url} | extra


def prompt_params(session_id: str, text: str) -> dict[str, Any]:
    """``session/prompt`` params for one text prompt."""
    return {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}


def text_of(message: dict[str, Any]) -> str:
    """The text parts of a stored message (as ``session/load`` returns it), joined."""
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


async def new_session(server: Session, title: str = "t", directory: str | None = None) -> str:
    result = await server.request("session/new", {"title": title, "directory": directory})
    return str(result["sessionId"])


async def history(server: Session, sid: str) -> list[dict[str, Any]]:
    loaded = await server.request("session/load", {"sessionId": sid})
    return list(loaded["messages"])


def prompt_and_wait(
    client: RpcClient, session_id: str, text: str, timeout: float
) -> dict[str, Any]:
    """Send one text prompt over ``client`` and return its ``session/prompt`` result."""
    result = client.request("session/prompt", prompt_params(session_id, text), timeout=timeout)
    assert isinstance(result, dict)
    return result


__all__ = [
    "WAIT_S",
    "Collected",
    "Session",
    "env_for",
    "history",
    "new_session",
    "prompt_and_wait",
    "prompt_params",
    "server_env",
    "start",
    "text_of",
    "write_config",
]
