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
import json
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
    AllowedOutcome,
    ClientCapabilities,
    DeniedOutcome,
    EmbeddedResourceContentBlock,
    PermissionOption,
    RequestPermissionResponse,
    ResourceContentBlock,
    TextResourceContents,
    ToolCallUpdate,
)

from fakeprovider.openai_server import FakeOpenAI, Reply, Stall
from store import Store
from tests.lsp_support import server_env

pytestmark = pytest.mark.asyncio

API_KEY = "sk-test-acp-0123456789abcdef"
CONTEXT = 10_000
OUTPUT = 1_000  # usable: 9 000 tokens
WAIT_S = 10.0


class Recorder(Client):
    """Permission questions are answered with ``answer`` (an option id, or ``"cancelled"``),
    once ``release`` is set (it starts set)."""

    def __init__(self) -> None:
        self.answer = "once"
        self.release = asyncio.Event()
        self.release.set()

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        pass  # updates are read raw from the observer

    async def request_permission(
        self,
        session_id: str,
        tool_call: ToolCallUpdate,
        options: list[PermissionOption],
        **kwargs: Any,
    ) -> RequestPermissionResponse:
        await self.release.wait()  # the request itself is read raw from the observer
        if self.answer == "cancelled":
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=self.answer)
        )


@dataclass
class Agent:
    conn: ClientSideConnection
    process: asyncio.subprocess.Process
    db: Path
    config: Path
    env: dict[str, str]
    client: Recorder
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
    client = Recorder()  # type: ignore[abstract]  # the client methods a test needs are defined
    async with spawn_agent_process(
        client,
        sys.executable,
        *args,
        env=env,
        observers=[observe],
    ) as (conn, process):
        agent = Agent(conn, process, db, config, env, client)
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


# --- load, resume, list, close, delete ------------------------------------------------------


def shown(updates: list[Any]) -> list[tuple[str, ...]]:
    """The replay, as (kind, id, text or status) rows."""
    rows: list[tuple[str, ...]] = []
    for u in updates:
        kind = u["sessionUpdate"]
        if kind in ("user_message_chunk", "agent_message_chunk", "agent_thought_chunk"):
            rows.append((kind, u["messageId"], u["content"]["text"]))
        elif kind in ("tool_call", "tool_call_update"):
            rows.append((kind, u["toolCallId"], u["status"]))
    return rows


def stored(db: Path, session_id: str) -> list[tuple[str, ...]]:
    """What the replay must show, from the store: prompts, replies and tool calls in order."""
    store = Store(db)
    with store.read() as tx:
        history = tx.history(session_id)
    store.close()
    rows: list[tuple[str, ...]] = []
    status = {"completed": "completed", "error": "failed"}
    for m in history:
        for p in m.parts:
            part = p.to_json()
            if m.info.kind == "prompt" and part["type"] == "text":
                rows.append(("user_message_chunk", m.info.id, part["text"]))
            elif m.info.kind == "reply" and part["type"] == "text":
                rows.append(("agent_message_chunk", m.info.id, part["text"]))
            elif m.info.kind == "reply" and part["type"] == "tool":
                rows.append(("tool_call", part["id"], "pending"))
                rows.append(("tool_call_update", part["id"], status[part["state"]["status"]]))
    return rows


async def test_load_replays_the_stored_history_then_answers(
    agent: Agent, fake: FakeOpenAI, workspace: Path
) -> None:
    fake.push(Reply(tool_calls=[("call_1", "read_file", '{"path": "notes.txt"}')]))
    fake.push(Reply("The notes say 42."))
    sid = await agent.new(workspace)
    assert await agent.prompt(sid, "what do the notes say?") == "end_turn"
    live_tools = agent.updates(sid, "tool_call_update")
    assert live_tools[-1]["status"] == "completed" and live_tools[-1]["kind"] == "read"
    assert live_tools[-1]["locations"] == [{"path": str(workspace / "notes.txt")}]
    assert await agent.prompt(sid, "thanks") == "end_turn"

    async with spawn(agent.db, agent.config, agent.env) as other:
        r = await other.conn.load_session(session_id=sid, cwd=str(workspace), mcp_servers=[])
        assert r is not None
        answer = next(i for i, m in enumerate(other.incoming) if "result" in m and m["id"] == 1)
        replayed = [
            m["params"]["update"] for m in other.incoming[:answer] if m.get("method")
        ]  # everything came before the answer
        assert shown(replayed) == stored(agent.db, sid)
        assert any(u["sessionUpdate"] == "usage_update" for u in replayed)


async def test_resume_answers_without_replaying(agent: Agent, workspace: Path) -> None:
    sid = await agent.new(workspace)
    await agent.prompt(sid, "hello")
    async with spawn(agent.db, agent.config, agent.env) as other:
        await other.conn.resume_session(session_id=sid, cwd=str(workspace), mcp_servers=[])
        assert not other.updates(sid, "user_message_chunk")
        assert not other.updates(sid, "agent_message_chunk")
        assert await other.prompt(sid, "again") == "end_turn"
        assert other.text(sid).startswith("Echo: again")


async def test_list_pages_close_and_delete(agent: Agent, workspace: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ids = [await agent.new(workspace) for _ in range(52)]
    await agent.new(elsewhere)
    first = await agent.conn.list_sessions(cwd=str(workspace))
    assert len(first.sessions) == 50 and first.next_cursor
    rest = await agent.conn.list_sessions(cwd=str(workspace), cursor=first.next_cursor)
    assert len(rest.sessions) == 2 and rest.next_cursor is None
    assert {s.session_id for s in first.sessions + rest.sessions} == set(ids)
    assert all(s.cwd == str(workspace) and s.updated_at for s in first.sessions)
    everything = await agent.conn.list_sessions()
    assert len(everything.sessions) == 50 and everything.next_cursor

    await agent.conn.close_session(session_id=ids[0])
    # The SDK client has no session/delete (schema v1.19): the spec's JSON through its connection.
    assert await agent.raw("session/delete", {"sessionId": ids[0]}) == {}
    with pytest.raises(RequestError) as e:
        await agent.conn.load_session(session_id=ids[0], cwd=str(workspace), mcp_servers=[])
    assert e.value.code == -32002


# --- compaction ---------------------------------------------------------------------------------


async def test_compact_command_without_the_capability_is_a_text_notice(
    agent: Agent, fake: FakeOpenAI, workspace: Path
) -> None:
    sid = await agent.new(workspace)
    await agent.prompt(sid, "first")
    before = len(agent.incoming)
    assert await agent.prompt(sid, "/compact keep the file names") == "end_turn"
    assert fake.summary_requests == 1
    assert "keep the file names" in str(fake.requests[-1].messages)
    after = [m["params"]["update"] for m in agent.incoming[before:] if m.get("method")]
    notice = "".join(
        u["content"]["text"] for u in after if u["sessionUpdate"] == "agent_message_chunk"
    )
    assert notice.startswith("Compacted: ") and "summary follows" in notice
    assert "## Objective" in notice
    assert not [u for u in after if u["sessionUpdate"].startswith("compaction")]
    assert after[-1]["sessionUpdate"] == "usage_update"


async def test_compact_command_with_the_capability_sends_compaction_updates(
    tmp_path: Path, config_file: Path, fake: FakeOpenAI, workspace: Path
) -> None:
    async with spawn(tmp_path / "s.db", config_file, env_for(fake), compaction=True) as a:
        sid = await a.new(workspace)
        await a.prompt(sid, "first")
        assert await a.prompt(sid, "/compact") == "end_turn"
        updates = a.updates(sid, "compaction_update")
        assert [u["status"] for u in updates] == ["in_progress", "completed"]
        assert len({u["compactionId"] for u in updates}) == 1
        summary = updates[-1]["summary"][0]["text"]
        assert "## Objective" in summary
        chunks = a.updates(sid, "compaction_summary_chunk")
        assert "".join(c["content"]["text"] for c in chunks) == summary
        assert "Compacted" not in a.text(sid)
        assert fake.summary_requests == 1


async def test_auto_compaction_mid_turn_is_announced_and_the_turn_goes_on(
    agent: Agent, fake: FakeOpenAI, workspace: Path
) -> None:
    sid = await agent.new(workspace)
    await agent.prompt(sid, "earlier work")
    call = ("call_1", "read_file", '{"path": "notes.txt"}')
    fake.push(Reply(tool_calls=[call], prompt_tokens=9_500), when="chat")
    fake.push(Reply("Done after compacting."), when="chat")
    before = len(agent.incoming)
    assert await agent.prompt(sid, "read the notes") == "end_turn"
    assert fake.summary_requests == 1
    after = [m["params"]["update"] for m in agent.incoming[before:] if m.get("method")]
    kinds = [u["sessionUpdate"] for u in after]
    texts = [u["content"]["text"] for u in after if u["sessionUpdate"] == "agent_message_chunk"]
    notice = next(i for i, u in enumerate(after) if "Compacted" in str(u.get("content", "")))
    assert kinds.index("tool_call") < notice
    assert "Done after compacting." in "".join(texts)
    last_text = max(i for i, k in enumerate(kinds) if k == "agent_message_chunk")
    assert notice < last_text


async def test_a_compaction_by_another_process_reaches_this_client(
    tmp_path: Path, config_file: Path, fake: FakeOpenAI, workspace: Path
) -> None:
    db, env = tmp_path / "s.db", env_for(fake)
    async with (
        spawn(db, config_file, env, compaction=True) as watcher,
        spawn(db, config_file, env) as driver,
    ):
        sid = await driver.new(workspace)
        await driver.prompt(sid, "first")
        await watcher.conn.load_session(session_id=sid, cwd=str(workspace), mcp_servers=[])
        assert await driver.prompt(sid, "/compact") == "end_turn"
        await watcher.wait_until(
            lambda: (
                [u["status"] for u in watcher.updates(sid, "compaction_update")][-1:]
                == ["completed"]
            )
        )
        assert fake.summary_requests == 1


# --- bad input ----------------------------------------------------------------------------------


async def test_bad_input_gets_errors_and_the_agent_keeps_serving(
    agent: Agent, workspace: Path
) -> None:
    with pytest.raises(RequestError) as e:
        await agent.raw("session/nonsense", {})
    assert e.value.code == -32601
    with pytest.raises(RequestError) as e:
        await agent.raw("session/prompt", {"prompt": [{"type": "text", "text": "x"}]})
    assert e.value.code == -32602 and "sessionId" in str(e.value)
    with pytest.raises(RequestError) as e:
        await agent.raw("session/new", {"cwd": "relative/dir", "mcpServers": []})
    assert e.value.code == -32602 and "cwd" in str(e.value)
    assert agent.process.stdin is not None
    agent.process.stdin.write(b"this is not json\n")
    await agent.wait_until(
        lambda: any(m.get("error", {}).get("code") == -32700 for m in agent.incoming)
    )
    sid = await agent.new(workspace)
    assert await agent.prompt(sid, "still here?") == "end_turn"


async def test_a_one_megabyte_prompt(
    tmp_path: Path, config_file: Path, fake: FakeOpenAI, workspace: Path
) -> None:
    env = env_for(fake, SESSIONLSP_CONTEXT_LIMIT="2000000", SESSIONLSP_OUTPUT_LIMIT="1000")
    async with spawn(tmp_path / "s.db", config_file, env) as a:
        sid = await a.new(workspace)
        big = "word " * 200_000
        assert await a.prompt(sid, big) == "end_turn"
        assert len(fake.last_request.last_user_text) >= len(big) - 10


# --- config options -----------------------------------------------------------------------------


async def test_config_options_pick_the_model_and_turn_auto_compaction_off(
    agent: Agent, fake: FakeOpenAI, workspace: Path
) -> None:
    sid = await agent.new(workspace)
    other = await agent.new(workspace)
    r = await agent.conn.set_config_option(config_id="model", session_id=sid, value="fake-model")
    assert {o.id: o.current_value for o in r.config_options}["model"] == "fake-model"
    with pytest.raises(RequestError) as e:
        await agent.conn.set_config_option(config_id="model", session_id=sid, value="gpt-none")
    assert e.value.code == -32602
    r = await agent.conn.set_config_option(config_id="autoCompact", session_id=sid, value="false")
    assert {o.id: o.current_value for o in r.config_options}["autoCompact"] == "false"
    await agent.wait_until(lambda: agent.updates(other, "config_option_update"))
    fake.push(Reply("over the window", prompt_tokens=9_500), when="chat")
    assert await agent.prompt(sid, "big") == "end_turn"
    assert fake.summary_requests == 0


# --- permission questions (session/request_permission) -------------------------------------

EDIT = '{"path": "notes.txt", "oldString": "42", "newString": "43"}'
OPTIONS = [("once", "allow_once"), ("always", "allow_always"), ("reject", "reject_once")]


def questions(agent: Agent) -> list[dict[str, Any]]:
    return [m["params"] for m in agent.incoming if m.get("method") == "session/request_permission"]


def last_update(agent: Agent, session_id: str, call_id: str) -> dict[str, Any]:
    updates: list[dict[str, Any]] = agent.updates(session_id, "tool_call_update")
    return [u for u in updates if u["toolCallId"] == call_id][-1]


async def test_the_model_is_offered_the_editing_tools_over_acp(
    agent: Agent, workspace: Path, fake: FakeOpenAI
) -> None:
    sid = await agent.new(workspace)
    fake.push(Reply("Nothing to do."))
    assert await agent.prompt(sid, "hello") == "end_turn"
    offered = {t["function"]["name"] for t in fake.last_request.body.get("tools", [])}
    assert {"edit", "write", "apply_patch", "bash", "read_file"} <= offered


async def test_an_edit_asks_with_three_options_and_the_diff_and_once_applies_it(
    agent: Agent, workspace: Path, fake: FakeOpenAI
) -> None:
    sid = await agent.new(workspace)
    fake.push(Reply(tool_calls=[("call_1", "edit", EDIT)], finish="tool_calls"))
    fake.push(Reply("Changed it."))
    assert await agent.prompt(sid, "make it 43") == "end_turn"
    assert (workspace / "notes.txt").read_text() == "the answer is 43\n"

    [asked] = questions(agent)
    path = str(workspace / "notes.txt")
    diff = {"type": "diff", "path": path, "oldText": "the answer is 42\n"}
    diff["newText"] = "the answer is 43\n"
    assert asked["sessionId"] == sid
    assert [(o["optionId"], o["kind"]) for o in asked["options"]] == OPTIONS
    assert all(o["name"] for o in asked["options"])
    call = asked["toolCall"]
    assert call["kind"] == "edit" and call["status"] == "pending"
    assert call["rawInput"] == json.loads(EDIT)
    assert call["locations"] == [{"path": path}]
    assert call["content"] == [diff]

    [started] = agent.updates(sid, "tool_call")
    assert started["toolCallId"] == call["toolCallId"] and started["kind"] == "edit"
    done = last_update(agent, sid, call["toolCallId"])
    assert done["status"] == "completed" and done["kind"] == "edit"
    assert done["content"][0] == diff  # the planned diff, then what the model was told
    assert done["content"][1]["type"] == "content"


@pytest.mark.parametrize(
    ("answer", "error"),
    [("reject", "rejected by the user"), ("cancelled", "cancelled before it was answered")],
)
async def test_a_rejected_or_cancelled_question_leaves_the_file_alone(
    agent: Agent, workspace: Path, fake: FakeOpenAI, answer: str, error: str
) -> None:
    before = (workspace / "notes.txt").read_bytes()
    sid = await agent.new(workspace)
    agent.client.answer = answer
    fake.push(Reply(tool_calls=[("call_1", "edit", EDIT)], finish="tool_calls"))
    fake.push(Reply("Left it alone."))
    assert await agent.prompt(sid, "make it 43") == "end_turn"
    assert (workspace / "notes.txt").read_bytes() == before
    [asked] = questions(agent)
    done = last_update(agent, sid, asked["toolCall"]["toolCallId"])
    assert done["status"] == "failed"
    assert [c["type"] for c in done["content"]] == ["content"]  # no diff: nothing changed
    assert error in done["content"][0]["content"]["text"]
    sent = [m for m in fake.last_request.messages if m["role"] == "tool"]
    assert error in sent[-1]["content"]


async def test_cancel_while_asked_answers_cancelled_and_ignores_the_late_answer(
    agent: Agent, workspace: Path, fake: FakeOpenAI
) -> None:
    before = (workspace / "notes.txt").read_bytes()
    sid = await agent.new(workspace)
    agent.client.release.clear()  # the user has not answered yet
    fake.push(Reply(tool_calls=[("call_1", "edit", EDIT)], finish="tool_calls"))
    turn = asyncio.create_task(agent.prompt(sid, "make it 43"))
    await agent.wait_until(lambda: bool(questions(agent)))
    await agent.conn.cancel(session_id=sid)
    assert await asyncio.wait_for(turn, WAIT_S) == "cancelled"
    agent.client.release.set()  # "once", after the cancel: too late
    [asked] = questions(agent)
    call_id = asked["toolCall"]["toolCallId"]
    await agent.wait_until(lambda: last_update(agent, sid, call_id)["status"] == "failed")
    fake.push(Reply("Still here."))
    assert await agent.prompt(sid, "are you there?") == "end_turn"
    assert (workspace / "notes.txt").read_bytes() == before
    assert len(fake.requests) == 2  # the cancelled turn did not go on to the model
