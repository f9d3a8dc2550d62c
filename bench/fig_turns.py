"""Figure 2: per-turn overhead, 50 turns in one session with an instant provider.

sessionlsp: ``session/prompt`` over its stdio protocol (LSP framing), answered when the turn is
done. opencode: ``POST /session/{id}/message`` on ``opencode serve``, answered when the turn is
done. One system at a time: opencode keeps working for a while after it has answered a turn
(it writes the session's diff and status), which would land in sessionlsp's next turn if the
two ran side by side on this 2-core machine. Each turn is timed at the client, from sending the
prompt to its answer; the
provider's own time is what the fake spent answering the turn's requests (from each request's
arrival to the end of its response, measured in the fake); the overhead is the difference.
Both sessions are created with a title (opencode would otherwise add a title request to the
first turn), and each server first answers {WARMUP} uncounted turns in another session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bench.arena import Arena
from bench.limits import ROOMY

TURNS, QUICK_TURNS = 50, 10
WARMUP = 3


@dataclass(frozen=True)
class Turn:
    wall_ms: float  # prompt sent -> its answer, at the client
    provider_ms: float  # the fake's time answering the turn's requests
    requests: int  # requests the turn made to the provider
    context: int  # messages in the turn's last chat request

    @property
    def overhead_ms(self) -> float:
        return self.wall_ms - self.provider_ms


@dataclass(frozen=True)
class PerTurn:
    sessionlsp: list[Turn]
    opencode: list[Turn]


class _Prompts(Protocol):
    def __call__(self, session_id: str, text: str) -> object: ...


def _turn(arena: Arena, prompt: _Prompts, session_id: str, text: str) -> Turn:
    mark = arena.fake.mark()
    t0 = time.perf_counter()
    prompt(session_id, text)
    wall = time.perf_counter() - t0
    requests = arena.fake.requests(mark)
    provider = sum(r.served_s for r in requests)
    chats = [r for r in requests if r.kind == "chat"]
    context = chats[-1].messages if chats else 0
    return Turn(wall * 1000, provider * 1000, len(requests), context)


def run(arena: Arena) -> PerTurn:
    turns = QUICK_TURNS if arena.quick else TURNS
    with arena.sessionlsp("turns", ROOMY) as ours:
        ours_turns = _series(arena, ours.new_session, ours.prompt, turns)
    with arena.opencode(arena.opencode_home("turns"), ROOMY) as peer:
        peer_turns = _series(arena, peer.create_session, peer.prompt, turns)
    return PerTurn(ours_turns, peer_turns)


def _series(
    arena: Arena, new_session: Callable[[str], str], prompt: _Prompts, turns: int
) -> list[Turn]:
    warm = new_session("warm-up")
    for i in range(WARMUP):
        prompt(warm, f"warm-up turn {i}")
    sid = new_session("per-turn overhead")
    return [_turn(arena, prompt, sid, f"turn number {i}") for i in range(turns)]
