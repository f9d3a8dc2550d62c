"""Figure 4: overlapping compaction triggers.

Both systems run with a context window of 8 000 tokens and an output limit of 1 000, so both
compact automatically once a step reports 7 000 tokens or more. A session gets 3 ordinary
turns; then the fake is told to answer the next chat request slowly (about a second of
streaming) and to report {REPORTED} prompt tokens for it, so an automatic compaction is due as soon
as that turn's step ends. While that answer streams, {CLIENTS} clients each ask for a manual
compaction at the same moment:

* sessionlsp: {CLIENTS} more ``sessionlsp serve`` processes on the same database (one per editor,
  as when several editors have the session open), each sending ``session/compact``;
* opencode: {CLIENTS} concurrent ``POST /session/{id}/summarize`` to the one ``opencode serve``
  (its clients share one server).

When every call and the turn have returned and the session is idle, the fake's count of summary
requests since the turn started and the compaction markers in the session's history are
recorded. The first summary answer is streamed slowly too, so the triggers overlap.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.arena import Arena
from bench.fake_provider import FakeProvider
from bench.history import History, from_opencode
from bench.limits import TIGHT
from bench.sessionlsp_peer import SessionlspServer
from fakeprovider.openai_server import DEFAULT_SUMMARY

CLIENTS = 4
RUNS, QUICK_RUNS = 3, 1
TIMEOUT_S = 120.0
SLOW_MS = 25.0  # before each chunk of the slow answer and of the slow summary
REPORTED = TIGHT.usable + 500  # prompt tokens the turn near the window reports
SLOW_ANSWER = "This answer streams slowly while the clients ask for a compaction. " * 2


@dataclass(frozen=True)
class Overlap:
    summary_requests: int
    history: History
    prompt_ok: bool  # the turn that made the automatic compaction due ended normally
    manual: list[str]  # what each manual call answered, briefly


@dataclass(frozen=True)
class Overlaps:
    clients: int
    sessionlsp: list[Overlap]
    opencode: list[Overlap]


def _arm(fake: FakeProvider) -> int:
    """Queue the slow, over-the-window answer and a slow summary; returns the request mark."""
    mark = fake.mark()
    fake.push_reply("chat", SLOW_ANSWER, prompt_tokens=REPORTED, delay_ms=SLOW_MS)
    fake.push_reply("summary", DEFAULT_SUMMARY, delay_ms=SLOW_MS)
    return mark


def _wait_for_turn(fake: FakeProvider, mark: int) -> None:
    if not fake.wait_requests(mark, 1, "chat", TIMEOUT_S):
        raise RuntimeError("the turn near the window never reached the provider")


def _describe_compact(result: Any) -> str:
    if isinstance(result, dict):
        return f"{result.get('status')}, created={result.get('created')}"
    return repr(result)


def _sessionlsp_run(
    arena: Arena, main: SessionlspServer, clients: list[SessionlspServer]
) -> Overlap:
    sid = main.new_session("overlapping triggers")
    for i in range(3):
        main.prompt(sid, f"ordinary turn {i}")
    mark = _arm(arena.fake)
    turn = main.prompt_async(sid, "the turn that fills the window")
    _wait_for_turn(arena.fake, mark)
    calls: list[Future[Any]] = [client.compact_async(sid) for client in clients]
    manual = [_describe_compact(call.result(TIMEOUT_S)) for call in calls]
    result = turn.result(TIMEOUT_S)
    arena.fake.clear()  # a queued step nobody took must not reach the next run
    history = main.history(sid)
    return Overlap(
        arena.fake.count("summary", mark),
        history,
        result.get("stopReason") == "end_turn",
        manual,
    )


def _opencode_call(call: Callable[[], tuple[int, Any]]) -> str:
    try:
        status, body = call()
    except OSError as exc:
        return f"{type(exc).__name__}"
    return f"HTTP {status} {str(body)[:60]}"


def run(arena: Arena) -> Overlaps:
    runs = QUICK_RUNS if arena.quick else RUNS
    ours: list[Overlap] = []
    with contextlib.ExitStack() as stack:
        main = stack.enter_context(arena.sessionlsp("overlap", TIGHT))
        clients = [stack.enter_context(arena.sessionlsp("overlap", TIGHT)) for _ in range(CLIENTS)]
        for _ in range(runs):
            ours.append(_sessionlsp_run(arena, main, clients))
    peer: list[Overlap] = []
    home = arena.opencode_home("overlap")
    # The server stops before the pool is joined: on an error a call still waiting on it
    # then ends at once instead of at its timeout.
    with ThreadPoolExecutor(CLIENTS + 1) as pool, arena.opencode(home, TIGHT) as server:
        for _ in range(runs):
            sid = server.create_session("overlapping triggers")
            for i in range(3):
                server.prompt(sid, f"ordinary turn {i}")
            mark = _arm(arena.fake)
            turn = pool.submit(server.prompt, sid, "the turn that fills the window")
            _wait_for_turn(arena.fake, mark)
            go = threading.Barrier(CLIENTS)

            def summarize(sid: str = sid, go: threading.Barrier = go) -> tuple[int, Any]:
                go.wait(TIMEOUT_S)
                return server.summarize(sid)

            calls = [pool.submit(_opencode_call, summarize) for _ in range(CLIENTS)]
            manual = [call.result(TIMEOUT_S) for call in calls]
            prompt_ok = True
            try:
                turn.result(TIMEOUT_S)
            except Exception:
                prompt_ok = False
            if not server.wait_idle(sid, TIMEOUT_S):
                raise RuntimeError("opencode's session stayed busy after the overlap")
            arena.fake.clear()
            history = from_opencode(server.messages(sid))
            peer.append(Overlap(arena.fake.count("summary", mark), history, prompt_ok, manual))
    return Overlaps(CLIENTS, ours, peer)
