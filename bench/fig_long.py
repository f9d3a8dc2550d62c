"""Figures 3 and 7: the cost of one turn in a long session, and the server's peak memory after.

For each size N (100, 1 000, 10 000, 50 000 messages) each system gets a session of N messages:
short user/assistant turns (a 200-character question, a 400-character answer), a completed
compaction 20 messages before the end, then 10 more turns. sessionlsp's is written with its
store (bench/sessions.py); opencode's straight into its SQLite storage in its own format
(bench/opencode_seed.py). Then a fresh server of each system answers one uncounted turn and a
few counted ones in that session, timed at the client; the fake records how many messages each
chat request carried (what the model was sent). After the turns the server's peak resident set
(``VmHWM``) is read, and only then is the whole history listed once through each system's API
(sessionlsp ``session/load``, opencode ``GET /session/{id}/message``), to check that every
seeded message is there and that the compaction reads as completed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from bench import opencode_seed
from bench.arena import Arena
from bench.history import History, from_opencode
from bench.limits import ROOMY
from bench.procs import Memory, memory
from bench.sessions import session_compacted_20_ago
from store import Store

SIZES = (100, 1_000, 10_000, 50_000)
QUICK_SIZES = (100, 1_000, 10_000)
TURNS = {100: 5, 1_000: 5, 10_000: 3, 50_000: 3}
QUICK_TURNS = 1
TURN_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Size:
    messages: int
    turn_ms: list[float]
    context_messages: int  # messages in the last chat request
    memory: Memory  # the server after the turns
    listed: int  # messages the API listed afterwards
    list_ms: float  # how long that took
    history: History  # compaction state in that listing
    seed_s: float

    @property
    def expected(self) -> int:
        """Seeded messages plus a prompt and an answer per turn."""
        return self.messages + 2 * (len(self.turn_ms) + 1)


@dataclass(frozen=True)
class Long:
    sessionlsp: list[Size]
    opencode: list[Size]


def _turns(arena: Arena, size: int) -> int:
    return QUICK_TURNS if arena.quick else TURNS[size]


class _Prompts(Protocol):
    def __call__(self, session_id: str, text: str, timeout: float) -> object: ...


def _measure(arena: Arena, prompt: _Prompts, sid: str, turns: int) -> tuple[list[float], int]:
    """(ms of each counted turn, messages in the last chat request) after one warm-up turn."""
    samples: list[float] = []
    context = 0
    for i in range(turns + 1):
        mark = arena.fake.mark()
        t0 = time.perf_counter()
        prompt(sid, f"turn {i} in a long session", timeout=TURN_TIMEOUT_S)
        elapsed = (time.perf_counter() - t0) * 1000
        if i:
            samples.append(elapsed)
        context = [r for r in arena.fake.requests(mark) if r.kind == "chat"][-1].messages
    return samples, context


def _sessionlsp(arena: Arena, size: int) -> Size:
    name = f"long-{size}"
    t0 = time.perf_counter()
    store = Store(arena.db(name))
    try:
        sid = session_compacted_20_ago(store, size)
    finally:
        store.close()
    seeded = time.perf_counter() - t0
    with arena.sessionlsp(name, ROOMY) as server:
        samples, context = _measure(arena, server.prompt, sid, _turns(arena, size))
        used = memory(server.pid)
        t0 = time.perf_counter()
        history = server.history(sid)
        listed_ms = (time.perf_counter() - t0) * 1000
    return Size(size, samples, context, used, history.messages, listed_ms, history, seeded)


def _opencode(arena: Arena, size: int) -> Size:
    home = arena.opencode_home(f"long-{size}")
    with arena.opencode(home, ROOMY) as server:
        sid = server.create_session(f"long session of {size} messages")
    t0 = time.perf_counter()
    opencode_seed.seed(home.db, sid, size)
    seeded = time.perf_counter() - t0
    with arena.opencode(home, ROOMY) as server:
        samples, context = _measure(arena, server.prompt, sid, _turns(arena, size))
        used = memory(server.pid)
        t0 = time.perf_counter()
        history = from_opencode(server.messages(sid, timeout=TURN_TIMEOUT_S))
        listed_ms = (time.perf_counter() - t0) * 1000
    return Size(size, samples, context, used, history.messages, listed_ms, history, seeded)


def run(arena: Arena) -> Long:
    sizes = QUICK_SIZES if arena.quick else SIZES
    ours: list[Size] = []
    peer: list[Size] = []
    for size in sizes:
        ours.append(_sessionlsp(arena, size))
        peer.append(_opencode(arena, size))
    for result in (*ours, *peer):
        if result.listed != result.expected or result.history.completed != 1:
            raise RuntimeError(
                f"a seeded session of {result.messages} messages did not read back as seeded: "
                f"{result.listed} messages listed (expected {result.expected}), "
                f"{result.history.describe()}"
            )
    return Long(ours, peer)
