"""``sessionlsp acp`` processes sharing one database with each other and with ``sessionlsp
serve`` processes: concurrent compactions from both front ends, and an agent killed
mid-summary whose compaction a fresh agent finishes.

The ACP side is driven as in tests/test_acp.py (the official SDK's ``spawn_agent_process``), the
LSP side as in tests/test_server_multiprocess.py (pytest-lsp); the result is read back from the
database file with :class:`store.Store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fakeprovider.openai_server import FakeOpenAI, Stall
from store import Store
from store.models import Compaction, MessageWithParts
from tests.lsp_support import Session, start
from tests.test_acp import Agent, env_for, spawn

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

WAIT_S = 30.0
CALLERS = 5  # of each front end


class GatedSummaries(FakeOpenAI):
    """Summary requests are recorded as they arrive, then held until :attr:`gate` is set."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = threading.Event()

    def _take(self, body: dict[str, Any], headers: dict[str, str], path: str) -> Any:
        taken = super()._take(body, headers, path)
        if self.is_summary(body):
            self.gate.wait(WAIT_S)
        return taken


@pytest.fixture
def gated() -> Iterator[GatedSummaries]:
    fake = GatedSummaries(chunk_chars=8, prompt_tokens=50, completion_tokens=10)
    with fake:
        yield fake


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunk_chars=8, prompt_tokens=50, completion_tokens=10) as f:
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
    return root


def read_back(db: Path, sid: str) -> tuple[list[MessageWithParts], list[Compaction]]:
    store = Store(db)
    try:
        with store.read() as tx:
            return tx.history(sid), tx.compactions(sid)
    finally:
        store.close()


def summaries(db: Path, marker_id: str) -> list[Any]:
    store = Store(db)
    try:
        with store.read() as tx:
            return tx.summaries_of(marker_id)
    finally:
        store.close()


def saw_compaction(agent: Agent, sid: str, marker_id: str, capable: bool) -> bool:
    """Whether ``agent``'s client was shown the compaction ``marker_id`` as finished: a
    ``compaction_update`` with the capability, else the text notice carrying the marker's id."""
    if capable:
        return any(
            u["compactionId"] == marker_id and u["status"] == "completed"
            for u in agent.updates(sid, "compaction_update")
        )
    return any(
        u["messageId"] == marker_id and u["content"]["text"].startswith("Compacted")
        for u in agent.updates(sid, "agent_message_chunk")
    )


async def test_ten_concurrent_compacts_from_acp_and_lsp_make_one_marker_and_one_summary(
    tmp_path: Path, config_file: Path, gated: GatedSummaries, workspace: Path
) -> None:
    """5 ACP agents (``/compact``) and 5 LSP servers (``session/compact``) on one database ask
    at once, while the summary is held back: one marker, one summary request, and every caller
    is answered with that compaction."""
    db, env = tmp_path / "shared.db", env_for(gated)
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(spawn(db, config_file, env))
        sid = await first.new(workspace)
        for i in range(3):
            assert await first.prompt(sid, f"turn {i}") == "end_turn"

        # Half the ACP clients declare session.compaction (compaction_update), half do not
        # (a text notice); half load the session, half resume it.
        capable = [i % 2 == 0 for i in range(CALLERS)]
        agents: list[Agent] = []
        for i in range(CALLERS):
            a = await stack.enter_async_context(spawn(db, config_file, env, compaction=capable[i]))
            if i % 2 == 0:
                await a.conn.load_session(session_id=sid, cwd=str(workspace), mcp_servers=[])
            else:
                await a.conn.resume_session(session_id=sid, cwd=str(workspace), mcp_servers=[])
            agents.append(a)
        servers: list[Session] = []
        for _ in range(CALLERS):
            server = await start(db, config=config_file, env=env)
            stack.push_async_callback(server.close)
            servers.append(server)

        before = len(gated.requests)
        lsp_calls = [s.send("session/compact", {"sessionId": sid}) for s in servers]
        acp_calls = [asyncio.create_task(a.prompt(sid, "/compact")) for a in agents]
        # Every request is on its way; hold the summary until one reached the provider and the
        # capable ACP clients were told a compaction is in progress (they joined it), then a
        # little longer for the rest to arrive.
        assert await asyncio.to_thread(gated.wait_for_requests, before + 1, WAIT_S)
        for a, c in zip(agents, capable, strict=True):
            if c:
                await a.wait_until(lambda a=a: bool(a.updates(sid, "compaction_update")), WAIT_S)
        await asyncio.sleep(1.0)
        assert gated.summary_requests == 1
        gated.gate.set()

        lsp_results = await asyncio.wait_for(asyncio.gather(*lsp_calls), WAIT_S)
        acp_results = await asyncio.wait_for(asyncio.gather(*acp_calls), WAIT_S)

        history, compactions = read_back(db, sid)
        [compaction] = compactions
        marker_id = compaction.marker_id
        assert compaction.status == "completed"
        assert [m.info.id for m in history if m.info.kind == "marker"] == [marker_id]
        good = [m for m in history if m.info.is_summary and m.info.succeeded]
        assert [m.info.id for m in good] == [compaction.summary_id]
        assert gated.summary_requests == 1

        assert {r["markerId"] for r in lsp_results} == {marker_id}
        assert {r["status"] for r in lsp_results} == {"completed"}
        assert {r["summaryMessageId"] for r in lsp_results} == {compaction.summary_id}
        # One caller made the marker; it may have been an ACP agent (its answer does not say).
        assert sum(1 for r in lsp_results if r["created"]) <= 1
        assert acp_results == ["end_turn"] * CALLERS
        for a, c in zip(agents, capable, strict=True):
            assert saw_compaction(a, sid, marker_id, c)


async def test_an_agent_killed_mid_summary_is_finished_by_a_fresh_one(
    tmp_path: Path, config_file: Path, fake: FakeOpenAI, workspace: Path
) -> None:
    """``/compact`` in one agent, SIGKILLed while the summary streams; a new ``sessionlsp acp``
    loads the session and its next prompt finishes that compaction, once."""
    db, env = tmp_path / "shared.db", env_for(fake)
    async with spawn(db, config_file, env) as doomed:
        sid = await doomed.new(workspace)
        for text in ("remember src/app.py", "and the failing test"):
            assert await doomed.prompt(sid, text) == "end_turn"
        fake.push(Stall(after_chunks=3, text="## Objective\nFix the failing"), when="summary")
        compact = asyncio.create_task(doomed.prompt(sid, "/compact"))
        assert await asyncio.to_thread(fake.wait_for_stalls, 1, WAIT_S)
        [running] = read_back(db, sid)[1]
        assert running.status == "running"
        doomed.process.kill()  # SIGKILL
        assert await asyncio.wait_for(doomed.process.wait(), WAIT_S) == -9
        compact.cancel()
        with contextlib.suppress(BaseException):
            await compact
    assert fake.summary_requests == 1
    marker_id = running.marker_id
    [interrupted] = summaries(db, marker_id)
    assert not interrupted.succeeded

    async with spawn(db, config_file, env, compaction=True) as fresh:
        await fresh.conn.load_session(session_id=sid, cwd=str(workspace), mcp_servers=[])
        assert await fresh.prompt(sid, "carry on") == "end_turn"
        assert fake.summary_requests == 2
        assert fresh.text(sid).endswith("Echo: carry on")
        finished = [u for u in fresh.updates(sid, "compaction_update") if u["status"] != "failed"]
        assert [(u["compactionId"], u["status"]) for u in finished][-1] == (marker_id, "completed")

    history, compactions = read_back(db, sid)
    [compaction] = compactions  # the interrupted compaction, finished: not a new one
    assert compaction.marker_id == marker_id and compaction.status == "completed"
    assert [m.info.id for m in history if m.info.kind == "marker"] == [marker_id]
    attempts = summaries(db, marker_id)
    assert [m.id for m in attempts if m.succeeded] == [compaction.summary_id]
    assert len(attempts) == 2
    assert [m.info.kind for m in history][-2:] == ["prompt", "reply"]
