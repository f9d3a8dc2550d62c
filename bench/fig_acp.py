"""Figure 8: the Agent Client Protocol front ends, ``sessionlsp acp`` against ``opencode acp``.

One ACP client script (the Python SDK, ``acp.spawn_agent_process`` and an ``acp.Client``
subclass) drives both agents the same way, one system after the other, {RUNS} runs each (a new
process per run; one uncounted run each warms the page cache first). sessionlsp runs as
``sessionlsp acp --db DB --config EMPTY`` with the openai provider pointed at the fake, opencode
as ``opencode acp`` in its temporary home with the fake configured (as in every figure). Per run
the clock reads: spawn to the ``initialize`` answer; spawn to the ``session/new`` answer; the
first prompt sent to its first ``agent_message_chunk``; then {TURNS} more prompts in the session,
each timed from sending to its answer, less the fake's own time answering the turn's requests
(the overhead, as in figure 2). Last, {COMPACTS} ``/compact`` prompts are sent at once on the
session; the fake counts the summary requests they caused, and each system's store is read for
the compaction markers the session holds (sessionlsp: its compaction table through
``store.Store``; opencode: the ``compaction`` parts of the session in its SQLite database).
One summary request and one marker per run is what a single compaction leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acp import Client, spawn_agent_process, text_block
from acp.connection import StreamDirection, StreamEvent
from acp.schema import (
    ClientCapabilities,
    DeniedOutcome,
    PermissionOption,
    RequestPermissionResponse,
    ToolCallUpdate,
)

from bench import sessionlsp_peer
from bench.arena import Arena
from bench.fake_provider import FakeProvider
from bench.limits import ROOMY
from store import Store

RUNS, QUICK_RUNS = 10, 3
TURNS = 5
COMPACTS = 5
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Run:
    init_ms: float  # spawn -> initialize answered
    new_ms: float  # spawn -> session/new answered
    first_chunk_ms: float  # first prompt sent -> its first agent_message_chunk
    turn_ms: list[float]  # each later turn at the client
    overhead_ms: list[float]  # each later turn less the fake's time
    summary_requests: int  # at the fake, caused by the concurrent /compact prompts
    markers: int | None  # compaction markers in the session's store; None: not readable
    compact_answers: list[str]  # stop reasons (or errors) of the concurrent /compact prompts


@dataclass
class System:
    runs: list[Run] = field(default_factory=list)
    error: str | None = None  # why it could not be measured (nothing is faked then)


@dataclass(frozen=True)
class Acp:
    sessionlsp: System
    opencode: System


class _Client(Client):
    """Denies every permission; updates are read from the connection's observer."""

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        pass

    async def request_permission(
        self,
        session_id: str,
        tool_call: ToolCallUpdate,
        options: list[PermissionOption],
        **kwargs: Any,
    ) -> RequestPermissionResponse:
        return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))


def _sessionlsp_markers(db: Path, session_id: str) -> int | None:
    store = Store(db)
    try:
        with store.read() as tx:
            return len(tx.compactions(session_id))
    finally:
        store.close()


def _opencode_markers(db: Path, session_id: str) -> int | None:
    """``compaction`` parts of the session in opencode's database; None when the ACP session id
    is not a session there."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        known = conn.execute("SELECT count(*) FROM session WHERE id = ?", (session_id,)).fetchone()
        if not known[0]:
            return None
        row = conn.execute(
            "SELECT count(*) FROM part WHERE session_id = ? "
            "AND json_extract(data, '$.type') = 'compaction'",
            (session_id,),
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


async def _one(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    stderr: Path,
    fake: FakeProvider,
    markers: Callable[[str], int | None],
) -> Run:
    first_chunk: dict[str, float] = {}

    async def observe(event: StreamEvent) -> None:
        if event.direction is not StreamDirection.INCOMING:
            return
        message = event.message
        if message.get("method") != "session/update" or "chunk" in first_chunk:
            return
        update = message["params"]["update"]
        if update.get("sessionUpdate") == "agent_message_chunk":
            first_chunk["chunk"] = time.perf_counter()

    def wait(coro: Any) -> Any:
        return asyncio.wait_for(coro, TIMEOUT_S)

    client = _Client()  # type: ignore[abstract]  # the methods an agent calls here are defined
    with stderr.open("ab") as err:
        t0 = time.perf_counter()
        async with spawn_agent_process(
            client,
            argv[0],
            *argv[1:],
            env=env,
            cwd=cwd,
            transport_kwargs={"stderr": err.fileno(), "limit": 16 * 1024 * 1024},
            observers=[observe],
        ) as (conn, _process):
            caps = ClientCapabilities()
            await wait(conn.initialize(protocol_version=1, client_capabilities=caps))
            init = time.perf_counter()
            session = await wait(conn.new_session(cwd=str(cwd), mcp_servers=[]))
            new = time.perf_counter()
            sid = str(session.session_id)
            sent = time.perf_counter()
            await wait(conn.prompt(session_id=sid, prompt=[text_block("first prompt")]))
            if "chunk" not in first_chunk:
                raise RuntimeError("the first prompt was answered without an agent_message_chunk")
            turns: list[float] = []
            overheads: list[float] = []
            for i in range(TURNS):
                mark = fake.mark()
                t = time.perf_counter()
                await wait(conn.prompt(session_id=sid, prompt=[text_block(f"turn number {i}")]))
                wall = (time.perf_counter() - t) * 1000
                provider = sum(r.served_s for r in fake.requests(mark)) * 1000
                turns.append(wall)
                overheads.append(wall - provider)
            mark = fake.mark()
            answers = await asyncio.gather(
                *(
                    wait(conn.prompt(session_id=sid, prompt=[text_block("/compact")]))
                    for _ in range(COMPACTS)
                ),
                return_exceptions=True,
            )
            summary_requests = fake.count("summary", mark)
            stops = [
                str(a.stop_reason) if not isinstance(a, BaseException) else type(a).__name__
                for a in answers
            ]
        # The agent has exited (stdin closed, then waited for): its store is settled.
        return Run(
            (init - t0) * 1000,
            (new - t0) * 1000,
            (first_chunk["chunk"] - sent) * 1000,
            turns,
            overheads,
            summary_requests,
            markers(sid),
            stops,
        )


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-1500:]
    return ""


def _series(
    runs: int,
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    stderr: Path,
    fake: FakeProvider,
    markers: Callable[[str], int | None],
) -> System:
    system = System()
    for i in range(runs + 1):
        try:
            run = asyncio.run(_one(argv, env, cwd, stderr, fake, markers))
        except Exception as exc:
            system.error = f"{type(exc).__name__}: {exc}; its stderr ends with: {_tail(stderr)}"
            return system
        if i:  # run 0 warms up
            system.runs.append(run)
    return system


def run(arena: Arena) -> Acp:
    runs = QUICK_RUNS if arena.quick else RUNS
    db = arena.db("acp")
    project = arena.workdir / "acp-project"
    project.mkdir(exist_ok=True)
    ours_argv = [*sessionlsp_peer._script(), "acp", "--db", str(db), "--config", str(arena.config)]
    ours = _series(
        runs,
        ours_argv,
        arena.sessionlsp_env(ROOMY),
        project,
        arena.workdir / "acp-sessionlsp.stderr",
        arena.fake,
        lambda sid: _sessionlsp_markers(db, sid),
    )
    home = arena.opencode_home("acp")
    peer = _series(
        runs,
        [str(arena.opencode_binary), "acp"],
        arena.opencode_env(home, ROOMY),
        home.project,
        arena.workdir / "acp-opencode.stderr",
        arena.fake,
        lambda sid: _opencode_markers(home.db, sid),
    )
    return Acp(ours, peer)
