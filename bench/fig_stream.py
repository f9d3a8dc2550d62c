"""Figure 6: streaming a 20 000-token answer, and the durable writes it costs.

The fake streams 80 000 characters in 4-character chunks (one SSE event each, no pauses) for
the prompt ``bench-long 80000``. The client counts the deltas it receives for the answer and
stamps the first and the last; the rate is deltas per second from sending the prompt to the
last delta (opencode sometimes holds its deltas back and sends them in a burst after the
provider has finished, so a first-to-last rate alone would flatter it):

* sessionlsp: ``session/delta`` notifications on stdio (bench/server.py's ``long_answer``);
* opencode: ``message.part.delta`` events on ``GET /event`` (SSE).

Durable commits of the answer's text part: for sessionlsp its outbox events for the part
(``message.part.delta`` while streaming, ``message.part.updated`` at the end); for opencode the
rows its event log (table ``event``, which records every durable change it makes) gained for
the part. The joined deltas are checked against the text the fake sent. Each answer is in a
new session; one uncounted answer each first; one system at a time (the other's server is not
running).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import server as ours_bench
from bench.arena import Arena
from bench.fake_provider import LONG_PREFIX, long_text
from bench.limits import ROOMY
from bench.opencode_peer import OpenCodeServer

RUNS, QUICK_RUNS = 5, 2
CHARS = ours_bench.LONG_CHARS
TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Stream:
    deltas: int
    first_s: float  # prompt sent -> first delta, at the client
    last_s: float  # prompt sent -> last delta
    turn_s: float  # prompt sent -> its answer
    commits: int  # durable writes of the answer's text part
    matches: bool  # joined deltas == the fake's text

    @property
    def deltas_per_s(self) -> float:
        """Deltas delivered per second of the turn: prompt sent to last delta received."""
        return self.deltas / self.last_s

    @property
    def burst_per_s(self) -> float:
        """Deltas per second from the first delta to the last."""
        span = self.last_s - self.first_s
        return (self.deltas - 1) / span if span else 0.0


@dataclass(frozen=True)
class Streams:
    sessionlsp: list[Stream]
    opencode: list[Stream]


def _opencode_commits(db: Path, session_id: str, part_id: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        (count,) = conn.execute(
            "SELECT count(*) FROM event WHERE aggregate_id = ? AND type LIKE 'message.part.%' "
            "AND instr(data, ?) > 0",
            (session_id, part_id),
        ).fetchone()
    finally:
        conn.close()
    return int(count)


class _Deltas:
    """The text deltas of one session's answer, gathered from opencode's event stream."""

    def __init__(self) -> None:
        self.session_id = ""
        self.pieces: list[str] = []
        self.parts: set[str] = set()
        self.first = self.last = 0.0
        self.size = 0
        self.complete = threading.Event()

    def reset(self, session_id: str) -> None:
        self.session_id = session_id
        self.pieces, self.parts, self.size = [], set(), 0
        self.complete.clear()

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != "message.part.delta":
            return
        props = event.get("properties") or {}
        if props.get("sessionID") != self.session_id or props.get("field") != "text":
            return
        now = time.perf_counter()
        if not self.pieces:
            self.first = now
        self.last = now
        self.pieces.append(props["delta"])
        self.parts.add(props["partID"])
        self.size += len(props["delta"])
        if self.size >= CHARS:
            self.complete.set()


def _opencode_answer(server: OpenCodeServer, deltas: _Deltas, run: int) -> Stream:
    sid = server.create_session(f"long answer {run}")
    deltas.reset(sid)
    t0 = time.perf_counter()
    server.prompt(sid, f"{LONG_PREFIX}{CHARS}", timeout=TIMEOUT_S)
    turn = time.perf_counter() - t0
    if not deltas.complete.wait(TIMEOUT_S) or len(deltas.parts) != 1:
        raise RuntimeError(f"opencode streamed {deltas.size} characters in {deltas.parts}")
    (part,) = deltas.parts
    return Stream(
        deltas=len(deltas.pieces),
        first_s=deltas.first - t0,
        last_s=deltas.last - t0,
        turn_s=turn,
        commits=_opencode_commits(server.home.db, sid, part),
        matches="".join(deltas.pieces) == long_text(CHARS),
    )


def run(arena: Arena) -> Streams:
    runs = QUICK_RUNS if arena.quick else RUNS
    ours: list[Stream] = []
    with arena.sessionlsp("stream", ROOMY) as mine:
        for run in range(runs + 1):
            a = ours_bench.long_answer(mine.client, run)
            if run:  # run 0 warms up
                last = a.first_s + a.span_s
                ours.append(Stream(a.deltas, a.first_s, last, a.turn_s, a.text_commits, a.matches))
    peer: list[Stream] = []
    with arena.opencode(arena.opencode_home("stream"), ROOMY) as theirs:
        deltas = _Deltas()
        events = theirs.events(deltas)
        try:
            for run in range(runs + 1):
                b = _opencode_answer(theirs, deltas, run)
                if run:
                    peer.append(b)
        finally:
            events.close()
    return Streams(ours, peer)
