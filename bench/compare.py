"""The side-by-side figures, sessionlsp against opencode, in one run against one fake provider.

``run`` starts the shared fake (bench/fake_provider.py), makes sure opencode is installed
(bench/opencode_install.py) and runs each figure's module in turn; every ratio in the report
compares numbers measured in this one run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import (
    fig_acp,
    fig_cold,
    fig_crash,
    fig_long,
    fig_overlap,
    fig_stream,
    fig_turns,
    opencode_install,
)
from bench.arena import Arena
from bench.fake_provider import FakeProvider

# In the order they run: the long sessions last, as they take the longest.
FIGURES = ("cold", "turns", "stream", "overlap", "crash", "acp", "long")


@dataclass
class Comparison:
    quick: bool
    peer_version: str
    cold: fig_cold.Cold | None = None
    turns: fig_turns.PerTurn | None = None
    stream: fig_stream.Streams | None = None
    overlap: fig_overlap.Overlaps | None = None
    crash: fig_crash.Crashes | None = None
    long: fig_long.Long | None = None
    acp: fig_acp.Acp | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)  # load averages when it started


def run(workdir: Path, quick: bool, only: set[str] | None = None) -> Comparison:
    binary = opencode_install.ensure()
    result = Comparison(quick, opencode_install.VERSION, load=os.getloadavg())
    runners: dict[str, Callable[[Arena], Any]] = {
        "cold": fig_cold.run,
        "turns": fig_turns.run,
        "stream": fig_stream.run,
        "overlap": fig_overlap.run,
        "crash": fig_crash.run,
        "long": fig_long.run,
        "acp": fig_acp.run,
    }
    with FakeProvider() as fake:
        arena = Arena(workdir, fake, binary, quick)
        for name in FIGURES:
            if only is not None and name not in only:
                continue
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            setattr(result, name, runners[name](arena))
            result.seconds[name] = time.perf_counter() - t0
    return result
