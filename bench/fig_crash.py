"""Figure 5: a crash while the summary streams, a restart, and the session carried on.

The same method for both systems: a session gets 3 turns; the fake is told to stall the next
summary request after {STALL_CHUNKS} chunks (it then holds the connection open, silent); a manual
compaction is requested (sessionlsp ``session/compact``, opencode ``POST .../summarize``); as
soon as the fake has sent those chunks, the server's whole process group gets SIGKILL. A new
server is started on the same data; the history is read (sessionlsp ``session/load``, opencode
``GET .../message``), a prompt is sent, the history is read again. When the interrupted
compaction has still not completed then, a manual compaction is requested once more, as a user
would, and the history read a last time. Recorded: whether the interrupted compaction completed
without that help, the markers and summary requests it took in all, unfinished summaries and
orphan markers left, and whether the prompt after the restart was answered.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.arena import Arena
from bench.history import History, from_opencode
from bench.limits import TIGHT

STALL_CHUNKS = 12
RUNS, QUICK_RUNS = 3, 1
TIMEOUT_S = 120.0
PROMPT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Crash:
    after_restart: History  # read first thing after the restart
    answered: bool  # the prompt after the restart ended normally
    finished_by_itself: bool  # the interrupted marker has a completed summary before any retry
    retried: bool  # a second manual compaction was needed
    final: History
    summary_requests: int  # since the compaction was requested, retries included


@dataclass(frozen=True)
class Crashes:
    sessionlsp: list[Crash]
    opencode: list[Crash]


def _arm(arena: Arena) -> tuple[int, int]:
    """Queue the stalling summary; returns (request mark, stalls so far)."""
    stalls = arena.fake.stalls()
    mark = arena.fake.mark()
    arena.fake.push_stall("summary", STALL_CHUNKS)
    return mark, stalls


def _wait_mid_summary(arena: Arena, stalls: int) -> None:
    if not arena.fake.wait_stalls(stalls + 1, TIMEOUT_S):
        raise RuntimeError("the summary never started streaming")


def _interrupted_marker(history: History) -> str:
    if not history.markers:
        raise RuntimeError(f"no compaction marker after the crash: {history.describe()}")
    return history.markers[-1]


def _sessionlsp_run(arena: Arena, run: int) -> Crash:
    name = "crash"
    with arena.sessionlsp(name, TIGHT) as first:
        sid = first.new_session(f"crash {run}")
        for i in range(3):
            first.prompt(sid, f"ordinary turn {i}")
        mark, stalls = _arm(arena)
        first.compact_async(sid)
        _wait_mid_summary(arena, stalls)
        first.kill()
    with arena.sessionlsp(name, TIGHT) as second:
        after_restart = second.history(sid)
        marker = _interrupted_marker(after_restart)
        try:
            answered = (
                second.prompt_async(sid, "are you still there?")
                .result(PROMPT_TIMEOUT_S)
                .get("stopReason")
                == "end_turn"
            )
        except Exception:
            answered = False
        history = second.history(sid)
        finished = history.marker_completed(marker)
        if not finished:
            second.compact_async(sid).result(TIMEOUT_S)
            history = second.history(sid)
    arena.fake.clear()
    summaries = arena.fake.count("summary", mark)
    return Crash(after_restart, answered, finished, not finished, history, summaries)


def _opencode_run(arena: Arena, run: int, pool: ThreadPoolExecutor) -> Crash:
    home = arena.opencode_home(f"crash-{run}")
    with arena.opencode(home, TIGHT) as first:
        sid = first.create_session(f"crash {run}")
        for i in range(3):
            first.prompt(sid, f"ordinary turn {i}")
        mark, stalls = _arm(arena)
        call = pool.submit(first.summarize, sid)
        _wait_mid_summary(arena, stalls)
        first.kill()
        with contextlib.suppress(Exception):  # the killed server's answer: a closed connection
            call.result(TIMEOUT_S)
    with arena.opencode(home, TIGHT) as second:
        after_restart = from_opencode(second.messages(sid))
        marker = _interrupted_marker(after_restart)
        answered = True
        try:
            second.prompt(sid, "are you still there?", timeout=PROMPT_TIMEOUT_S)
        except Exception:
            answered = False
        second.wait_idle(sid, TIMEOUT_S)
        history = from_opencode(second.messages(sid))
        finished = history.marker_completed(marker)
        if not finished:
            status: Any = second.summarize(sid)
            if status[0] != 200:
                raise RuntimeError(f"opencode's summarize after the restart failed: {status}")
            second.wait_idle(sid, TIMEOUT_S)
            history = from_opencode(second.messages(sid))
    arena.fake.clear()
    summaries = arena.fake.count("summary", mark)
    return Crash(after_restart, answered, finished, not finished, history, summaries)


def run(arena: Arena) -> Crashes:
    runs = QUICK_RUNS if arena.quick else RUNS
    ours = [_sessionlsp_run(arena, i) for i in range(runs)]
    with ThreadPoolExecutor(2) as pool:
        peer = [_opencode_run(arena, i, pool) for i in range(runs)]
    return Crashes(ours, peer)
