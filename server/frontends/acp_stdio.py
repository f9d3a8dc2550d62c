"""Newline-delimited JSON-RPC on stdin/stdout for ``sessionlsp acp`` (server/frontends/acp.py).

ACP frames each message as one line of JSON (no Content-Length headers). The SDK's own stdio
reader drops a line that is not JSON without an answer; this transport answers it with a parse
error (-32700) and keeps serving, caps a line's size, and is the only writer of stdout. It
plays the part server/lsp_stdio.py plays for the LSP front end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from typing import Any, BinaryIO

from acp.connection import Connection

from server.config import Config
from server.frontends.acp import AcpAgent, Dispatch

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 16 * 1024 * 1024


class StdioLines:
    """Newline-delimited JSON-RPC on binary streams, as an SDK ``Transport``: lines are read on
    a thread; what is not a JSON-RPC message is answered here (-32700, -32600)."""

    def __init__(self, stdin: BinaryIO, stdout: BinaryIO, loop: asyncio.AbstractEventLoop):
        self._out = stdout
        self._loop = loop
        self._inbox: asyncio.Queue[dict[str, Any] | tuple[int, str] | None] = asyncio.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._read, args=(stdin,), daemon=True)
        self._thread.name = "acp-stdin"

    def start(self) -> None:
        self._thread.start()

    def _read(self, stdin: BinaryIO) -> None:
        try:
            while True:
                line = stdin.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                item: dict[str, Any] | tuple[int, str] | None
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    while line and not line.endswith(b"\n"):
                        line = stdin.readline(1 << 20)
                    item = (-32600, f"message over {MAX_LINE_BYTES} bytes")
                elif not line.strip():
                    continue
                else:
                    try:
                        parsed = json.loads(line)
                    except ValueError as e:
                        item = (-32700, f"parse error: {str(e)[:200]}")
                    else:
                        item = parsed if _is_message(parsed) else (-32600, "invalid request")
                self._loop.call_soon_threadsafe(self._inbox.put_nowait, item)
        except Exception:
            log.exception("reading stdin failed")
        finally:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._inbox.put_nowait, None)

    async def receive(self) -> dict[str, Any] | None:
        while True:
            item = await self._inbox.get()
            if item is None or isinstance(item, dict):
                return item
            code, message = item
            self.write({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})

    async def send(self, message: dict[str, Any]) -> None:
        self.write(message)

    def write(self, message: dict[str, Any]) -> None:
        if self._closed:
            return
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        try:
            self._out.write(data)
            self._out.flush()
        except (OSError, ValueError):
            log.warning("stdout closed; nothing more is sent")
            self._closed = True

    async def close(self) -> None:
        self._closed = True


def _is_message(value: object) -> bool:
    if not isinstance(value, dict):
        return False
    if "method" in value:
        return isinstance(value["method"], str)
    return "id" in value and ("result" in value or "error" in value)


async def serve(config: Config, stdin: BinaryIO, stdout: BinaryIO) -> int:
    loop = asyncio.get_running_loop()
    agent = AcpAgent(config)
    agent.loop = loop
    transport = StdioLines(stdin, stdout, loop)
    conn = Connection(Dispatch(agent), transport, listening=False)
    agent.conn = conn
    pump = asyncio.create_task(agent.pump())
    agent.sidecar.start()
    transport.start()
    try:
        await conn.main_loop()
    finally:  # end of input: stop the turns, let the workers finish, then close the store
        agent.closing = True  # no more questions: a turn that would ask fails the call
        runner = agent.sidecar.runner
        if runner is not None:
            await agent.call(lambda: runner.close(timeout=2.0))
        if agent.turns:
            await asyncio.wait(set(agent.turns), timeout=2.0)
        await asyncio.wait_for(agent.flush(), timeout=2.0)
        pump.cancel()
        await conn.close()
        for pool in (agent.executor, agent.waiting_executor):
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        try:
            agent.sidecar.close()
        except Exception:
            log.exception("closing the service failed")
    return 0


def serve_stdio(config: Config, stdin: BinaryIO, stdout: BinaryIO) -> int:
    return asyncio.run(serve(config, stdin, stdout))
