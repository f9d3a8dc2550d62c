"""Figure 1: cold start to first answer, ``sessionlsp chat MESSAGE`` vs ``opencode run MESSAGE``.

Each run is a new process with a one-prompt session: spawn, start up, create the session, send
the prompt to the fake (an instant answer of a few words), print the answer, exit. The clock
runs from ``Popen`` until the answer's last words are on the process's stdout (and, as a
detail, until it exits). Both keep their data from earlier runs (sessionlsp's database file,
opencode's data directory), as on a machine where they were used before; one uncounted run
each warms the page cache first. The runs alternate between the systems.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from bench import opencode_peer, sessionlsp_peer
from bench.arena import Arena
from bench.fake_provider import ANSWER_END
from bench.limits import ROOMY
from bench.procs import CliRun, time_cli

RUNS, QUICK_RUNS = 10, 3
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Cold:
    sessionlsp: list[CliRun]
    opencode: list[CliRun]
    sessionlsp_requests: dict[str, float]  # provider requests per run, by kind (mean)
    opencode_requests: dict[str, float]


def run(arena: Arena) -> Cold:
    runs = QUICK_RUNS if arena.quick else RUNS
    db = arena.db("cold")
    config = arena.config
    ours_env = arena.sessionlsp_env(ROOMY)
    home = arena.opencode_home("cold")
    peer_env = arena.opencode_env(home, ROOMY)
    fake = arena.fake
    results: dict[str, list[CliRun]] = {"sessionlsp": [], "opencode": []}
    kinds: dict[str, collections.Counter[str]] = {
        "sessionlsp": collections.Counter(),
        "opencode": collections.Counter(),
    }
    for i in range(runs + 1):
        message = f"cold start number {i}"
        for name in ("sessionlsp", "opencode"):
            mark = fake.mark()
            if name == "sessionlsp":
                argv = sessionlsp_peer.chat_argv(db, config, message)
                result = time_cli(argv, ours_env, arena.workdir, ANSWER_END, TIMEOUT_S)
            else:
                argv = opencode_peer.run_argv(arena.opencode_binary, message)
                result = time_cli(argv, peer_env, home.project, ANSWER_END, TIMEOUT_S)
            if i:  # run 0 warms up
                results[name].append(result)
                kinds[name].update(r.kind for r in fake.requests(mark))
    return Cold(
        results["sessionlsp"],
        results["opencode"],
        {k: v / runs for k, v in kinds["sessionlsp"].items()},
        {k: v / runs for k, v in kinds["opencode"].items()},
    )
