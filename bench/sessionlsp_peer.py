"""Driving sessionlsp as its users do: ``sessionlsp chat MESSAGE`` and ``sessionlsp serve`` over
stdio, with the openai provider pointed at the shared fake.

The settings come from the environment (``SESSIONLSP_PROVIDER=openai``, ``SESSIONLSP_BASE_URL``,
``SESSIONLSP_MODEL``, ``SESSIONLSP_CONTEXT_LIMIT``, ``SESSIONLSP_OUTPUT_LIMIT``,
``SESSIONLSP_API_KEY``) and an empty config file, so nothing of the user's configuration leaks
in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from bench.history import History, from_sessionlsp
from bench.limits import Limits
from client.rpc_client import RpcClient

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 120.0
MODEL = "fake-model"


def _script() -> list[str]:
    """The ``sessionlsp`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "sessionlsp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "server.cli"]


def env(base_url: str, limits: Limits) -> dict[str, str]:
    """Our environment without the user's sessionlsp or OpenAI settings, pointed at the fake."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONLSP_", "OPENAI_"))}
    return base | {
        "SESSIONLSP_PROVIDER": "openai",
        "SESSIONLSP_BASE_URL": base_url,
        "SESSIONLSP_MODEL": MODEL,
        "SESSIONLSP_CONTEXT_LIMIT": str(limits.context),
        "SESSIONLSP_OUTPUT_LIMIT": str(limits.output),
        "SESSIONLSP_API_KEY": "bench-key",
    }


def empty_config(workdir: Path) -> Path:
    config = workdir / "empty.toml"
    if not config.exists():
        config.write_text("", encoding="utf-8")
    return config


def chat_argv(db: Path, config: Path, message: str) -> list[str]:
    """``sessionlsp chat MESSAGE``: one prompt in a new session, the answer on stdout."""
    return [*_script(), "chat", "--db", str(db), "--config", str(config), message]


def _prompt(session_id: str, text: str) -> dict[str, Any]:
    return {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}


class SessionlspServer:
    """``sessionlsp serve --db DB`` over stdio, in a process group of its own."""

    def __init__(self, db: Path, config: Path, environment: dict[str, str]) -> None:
        argv = [*_script(), "serve", "--db", str(db), "--config", str(config)]
        self.client = RpcClient.spawn(
            argv, env=environment, cwd=ROOT, stderr=subprocess.PIPE, new_process_group=True
        )
        try:
            self.client.initialize(timeout=TIMEOUT_S)
        except BaseException:
            self.kill()
            raise

    @property
    def pid(self) -> int:
        assert self.client.process is not None
        return self.client.process.pid

    def fail(self, what: str) -> RuntimeError:
        tail = "\n".join(self.client.stderr_tail()[-10:])
        return RuntimeError(f"sessionlsp: {what}; its stderr ends with:\n{tail}")

    def new_session(self, title: str) -> str:
        result = self.client.request("session/new", {"title": title}, timeout=TIMEOUT_S)
        return str(result["sessionId"])

    def prompt_async(self, session_id: str, text: str) -> Future[Any]:
        return self.client.request_async("session/prompt", _prompt(session_id, text))

    def prompt(self, session_id: str, text: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """Send a prompt; the result once the turn is done (``stopReason`` ``end_turn``)."""
        result: dict[str, Any] = self.prompt_async(session_id, text).result(timeout)
        if result.get("stopReason") != "end_turn":
            raise self.fail(f"the prompt ended with {result}")
        return result

    def compact_async(self, session_id: str) -> Future[Any]:
        return self.client.request_async("session/compact", {"sessionId": session_id})

    def load(self, session_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.request(
            "session/load", {"sessionId": session_id}, timeout=TIMEOUT_S
        )
        return result

    def history(self, session_id: str) -> History:
        return from_sessionlsp(self.load(session_id)["messages"])

    def kill(self) -> None:
        """SIGKILL the process group, at once, as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.client.wait(TIMEOUT_S)

    def stop(self) -> None:
        self.client.close(timeout=15)


@contextlib.contextmanager
def serve(db: Path, config: Path, environment: dict[str, str]) -> Iterator[SessionlspServer]:
    server = SessionlspServer(db, config, environment)
    try:
        yield server
    finally:
        server.stop()
