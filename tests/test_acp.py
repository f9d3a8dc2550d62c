"""``sessionlsp acp`` driven by the official ACP client SDK (``agent-client-protocol``):
``spawn_agent_process`` and an ``acp.Client`` subclass, against the loopback fake OpenAI server.

Every incoming message is recorded raw (a connection observer), in arrival order, so tests see
updates the SDK 0.12 client has no model for (``compaction_update``) and where each update came
relative to the answer it precedes. Requests the SDK client cannot send (``session/delete``, an
``initialize`` declaring ``session.compaction``) go through its connection as the spec's JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from acp import Client, RequestError, spawn_agent_process, text_block
from acp.client.connection import ClientSideConnection
from acp.connection import StreamDirection, StreamEvent
from acp.schema import (
    ClientCapabilities,
    EmbeddedResourceContentBlock,
    ResourceContentBlock,
    TextResourceContents,
)

from store import Store
from tests.fakes.openai_server import FakeOpenAI, Reply, Stall
from tests.lsp_support import server_env

pytestmark = pytest.mark.asyncio

API_KEY = "sk-test-acp-0123456789abcdef"
CONTEXT = 10_000
OUTPUT = 1_000  # usable: 9 000 tokens
WAIT_S = 10.0


class Recorder(Client):
    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        pass  # updates are read raw from the observer


@dataclass
class Agent:
    conn: ClientSideConnection
    process: asyncio.subprocess.Process
    db: Path
    config: Path
    env: dict[str, str]
    incoming: list[dict[str, Any]] = field(default_factory=list)
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def raw(self, method: str, params: Any) -> Any:
        """A request the SDK client has no method or model for, as the spec's JSON."""
        return await self.conn._conn.send_request(method, params)

    def updates(self, session_id: str | None = None, kind: str | None = None) -> list[Any]:
        out = []
        for m in self.incoming:
            if m.get("method") != "session/update":
                continue
            p = m["params"]
            if session_id is not None and p["sessionId"] != session_id:
                continue
            if kind is not None and p["update"]["sessionUpdate"] != kind:
                continue
            out.append(p["update"])
        return out

    def text(self, session_id: str, kind: str = "agent_message_chunk") -> str:
        return "".join(u["content"]["text"] for u in self.updates(session_id, kind))

    async def wait_until(self, predicate: Any, timeout: float = WAIT_S) -> None:
        async with self.cond:
            await asyncio.wait_for(self.cond.wait_for(predicate), timeout)

    async def new(self, cwd: Path) -> str:
        r = await self.conn.new_session(cwd=str(cwd), mcp_servers=[])
        return str(r.session_id)

    async def prompt(self, session_id: str, text: str) -> str:
        r = await self.conn.prompt(session_id=session_id, prompt=[text_block(text)])
        return str(r.stop_reason)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunk_chars=6, prompt_tokens=50, completion_tokens=10) as f:
        yield f


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('provider = "openai"\nmodel = "fake-model"\n')
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "notes.txt").write_text("the answer is 42\n")
    return root


def env_for(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return server_env(
        {
            "SESSIONLSP_BASE_URL": fake.base_url,
            "SESSIONLSP_API_KEY": API_KEY,
            "SESSIONLSP_CONTEXT_LIMIT": str(CONTEXT),
            "SESSIONLSP_OUTPUT_LIMIT": str(OUTPUT),
        }
        | extra
    )


@contextlib.asynccontextmanager
async def spawn(
    db: Path,
    config: Path,
    env: dict[str, str],
    *,
    compaction: bool = False,
    initialize: bool = True,
) -> AsyncIterator[Agent]:
    box: list[Agent] = []

    async def observe(event: StreamEvent) -> None:
        if event.direction is StreamDirection.INCOMING and box:
            agent = box[0]
            async with agent.cond:
                agent.incoming.append(event.message)
                agent.cond.notify_all()

    args = ("-m", "server.cli", "acp", "--db", str(db), "--config", str(config))
    async with spawn_agent_process(
        Recorder(),  # type: ignore[abstract]  # the client methods a test needs are defined
        sys.executable,
        *args,
        env=env,
        observers=[observe],
    ) as (conn, process):
        agent = Agent(conn, process, db, config, env)
        box.append(agent)
        if initialize and compaction:
            # The SDK's ClientCapabilities has no `session.compaction` (unstable RFD): raw JSON.
            caps = {"session": {"compaction": {}}, "fs": {"readTextFile": False}}
            await agent.raw("initialize", {"protocolVersion": 1, "clientCapabilities": caps})
        elif initialize:
            await conn.initialize(protocol_version=1, client_capabilities=ClientCapabilities())
        try:
            yield agent
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.stdin.close() if process.stdin else None
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()


@pytest_asyncio.fixture
async def agent(tmp_path: Path, config_file: Path, fake: FakeOpenAI) -> AsyncIterator[Agent]:
    async with spawn(tmp_path / "s.db", config_file, env_for(fake)) as a:
        yield a


# --- initialize, authenticate, new ----------------------------------------------------------


async def test_initialize_advertises_what_the_agent_does(tmp_path: Path, config_file: Path) -> None:
    async with spawn(tmp_path / "s.db", config_file, server_env(), initialize=False) as a:
        r = await a.raw("initialize", {"protocolVersion": 1, "clientCapabilities": {}})
    assert r["protocolVersion"] == 1
    assert r["agentInfo"]["name"] == "sessionlsp"
    caps = r["agentCapabilities"]
    assert caps["loadSession"] is True
    assert caps["promptCapabilities"] == {"embeddedContext": True, "image": False, "audio": False}
    assert caps["sessionCapabilities"] == {"list": {}, "delete": {}, "resume": {}, "close": {}}
    [method] = r["authMethods"]
    assert "SESSIONLSP_API_KEY" in method["description"]


async def test_authenticate_needs_a_key_or_the_offline_provider(
    tmp_path: Path, config_file: Path, fake: FakeOpenAI
) -> None:
    async with spawn(tmp_path / "a.db", config_file, server_env({"X": "1"})) as a:
        with pytest.raises(RequestError) as e:
            await a.conn.authenticate(method_id="sessionlsp-api-key")
        assert e.value.code == -32000
        assert "SESSIONLSP_API_KEY" in str(e.value)
    async with spawn(tmp_path / "b.db", config_file, env_for(fake)) as a:
        assert await a.conn.authenticate(method_id="sessionlsp-api-key") is not None
    offline = tmp_path / "offline.toml"
    offline.write_text('provider = "offline"\n')
    async with spawn(tmp_path / "c.db", offline, server_env()) as a:
        await a.conn.authenticate(method_id="sessionlsp-api-key")


async def test_new_session_lives_in_cwd_and_lists_its_options(
    agent: Agent, workspace: Path, tmp_path: Path
) -> None:
    r = await agent.conn.new_session(cwd=str(workspace), mcp_servers=[])
    options = {o.id: o for o in r.config_options or []}
    assert set(options) == {"model", "autoCompact"}
    store = Store(tmp_path / "s.db")
    with store.read() as tx:
        assert tx.require_session(r.session_id).directory == str(workspace)
    store.close()
    await agent.wait_until(lambda: agent.updates(r.session_id, "available_commands_update"))
    [cmds] = agent.updates(r.session_id, "available_commands_update")
    assert {c["name"] for c in cmds["availableCommands"]} == {"compact", "context"}


# --- prompt, usage, cancel ----------------------------------------------------------------------


async def test_prompt_streams_chunks_then_usage_then_answers(
    agent: Agent, fake: FakeOpenAI, workspace: Path
) -> None:
    fake.push(Reply("Hello there, this streams in pieces", chunk_chars=5))
    sid = await agent.new(workspace)
    assert await agent.prompt(sid, "hi") == "end_turn"
    chunks = agent.updates(sid, "agent_message_chunk")
    assert len(chunks) >= 3  # streamed, not batched
    assert agent.text(sid) == "Hello there, this streams in pieces"
    assert len({c["messageId"] for c in chunks}) == 1
    assert not agent.updates(sid, "user_message_chunk")  # the client shows its own prompt
    [use] = agent.updates(sid, "usage_update")
    assert use["size"] == CONTEXT - OUTPUT and 0 < use["used"] < use["size"]
    kinds = [m.get("params", {}).get("update", {}).get("sessionUpdate") for m in agent.incoming]
    answer = next(
        i for i, m in enumerate(agent.incoming) if "result" in m and "stopReason" in m["result"]
    )
    assert kinds.index("usage_update") < answer


async def test_resources_become_context_the_model_sees(
    agent: Agent, fake: FakeOpenAI, workspace: Path
) -> None:
    sid = await agent.new(workspace)
    blocks: list[Any] = [
        text_block("explain"),
        ResourceContentBlock(type="resource_link", name="a.py", uri="file:///p/a.py"),
        EmbeddedResourceContentBlock(
            type="resource",
            resource=TextResourceContents(uri="file:///p/b.py", text="print('embedded')"),
        ),
    ]
    r = await agent.conn.prompt(session_id=sid, prompt=blocks)
    assert r.stop_reason == "end_turn"
    sent = fake.last_request.last_user_text
    assert "file:///p/a.py" in sent and "print('embedded')" in sent


async def test_cancel_mid_stream_keeps_the_text(
    agent: Agent, fake: FakeOpenAI, workspace: Path
) -> None:
    fake.push(Stall(after_chunks=2, text="partial answer that stalls", chunk_chars=4))
    sid = await agent.new(workspace)
    turn = asyncio.create_task(agent.prompt(sid, "go"))
    await agent.wait_until(lambda: len(agent.updates(sid, "agent_message_chunk")) >= 2)
    await agent.conn.cancel(session_id=sid)
    assert await asyncio.wait_for(turn, WAIT_S) == "cancelled"
    shown = agent.text(sid)
    assert shown == "partial "
    async with spawn(agent.db, agent.config, agent.env) as other:
        await other.conn.load_session(session_id=sid, cwd=str(workspace), mcp_servers=[])
        assert other.text(sid) == shown
