"""A second, independent ACP implementation agrees with ours: the official TypeScript SDK
(``@agentclientprotocol/sdk``, pinned in tests/acp_ts/package-lock.json) drives ``sessionlsp
acp`` through initialize, session/new and a prompt (tests/acp_ts/client.mjs). The SDK frames
newline-delimited JSON-RPC itself and parses every message against its own v1 schema, so a
framing or shape the Python SDK happens to tolerate would fail here.

Needs Node 20 and npm (CI has both); without them the test fails rather than skips.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from store import Store
from tests.lsp_support import server_env
from tests.test_acp import spawn

pytestmark = pytest.mark.slow

CLIENT_DIR = Path(__file__).parent / "acp_ts"
TIMEOUT_S = 60.0


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not on PATH: the TypeScript SDK test needs Node 20 and npm"
    return path


def install_sdk() -> None:
    """``npm ci`` when node_modules does not match package-lock.json (as ./dev does for
    editors/vscode): a stamp named by the lockfile's hash marks a finished install."""
    digest = hashlib.sha1((CLIENT_DIR / "package-lock.json").read_bytes()).hexdigest()[:12]
    stamp = CLIENT_DIR / "node_modules" / f".installed-{digest}"
    if stamp.exists():
        return
    subprocess.run(
        [tool("npm"), "ci", "--no-audit", "--no-fund"],
        cwd=CLIENT_DIR,
        check=True,
        timeout=300,
        stdout=sys.stderr,
    )
    stamp.touch()


def test_the_typescript_sdk_client_agrees_on_framing_and_shapes(tmp_path: Path) -> None:
    install_sdk()
    config = tmp_path / "config.toml"
    config.write_text("")  # nothing set: the offline provider
    db, cwd = tmp_path / "s.db", tmp_path / "project"
    cwd.mkdir()
    sessionlsp = Path(sys.executable).with_name("sessionlsp")
    acp_args = ["--db", str(db), "--config", str(config)]
    run = subprocess.run(
        [tool("node"), str(CLIENT_DIR / "client.mjs"), str(sessionlsp), str(cwd), *acp_args],
        check=False,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)

    assert seen["protocolVersion"] == 1
    assert seen["agentInfo"]["name"] == "sessionlsp"
    assert seen["stopReason"] == "end_turn"
    assert "agent_message_chunk" in seen["kinds"]
    assert "usage_update" in seen["kinds"]
    assert seen["kinds"][0] == "available_commands_update"
    assert seen["exit"] == {"code": 0, "signal": None}  # stdin closed: the agent exits cleanly
    text = seen["text"]
    assert text

    sid = seen["sessionId"]
    store = Store(db)
    with store.read() as tx:
        history = tx.history(sid)
    store.close()
    [reply] = [m for m in history if m.info.kind == "reply"]
    stored = "".join(p.to_json()["text"] for p in reply.parts if p.to_json()["type"] == "text")
    assert text == stored
    assert replayed(db, config, cwd, sid) == text


def replayed(db: Path, config: Path, cwd: Path, sid: str) -> str:
    """The reply's text as ``session/load`` over the Python SDK replays it."""

    async def load() -> str:
        async with spawn(db, config, server_env()) as agent:
            await agent.conn.load_session(session_id=sid, cwd=str(cwd), mcp_servers=[])
            return agent.text(sid)

    return asyncio.run(load())
