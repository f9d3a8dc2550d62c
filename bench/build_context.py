"""How long build_context takes as history grows, with the last compaction 20 messages ago.

Baselines from the same run: the 100-message session, and reading the whole history (what
building the context would cost if it were not anchored on the last compaction).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.sessions import session_compacted_20_ago
from server.context import build_context
from store import Store

SIZES = (100, 1_000, 10_000, 50_000)
RUNS = 30


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float


def _time(fn: Callable[[], object], runs: int = RUNS) -> Timing:
    fn()  # warm the page cache and the statement cache
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    deciles = statistics.quantiles(samples, n=10)
    return Timing(statistics.median(samples), deciles[0], deciles[-1])


@dataclass(frozen=True)
class Row:
    messages: int
    context_messages: int
    build_context: Timing
    vm_steps: int
    full_history: Timing


def run(workdir: Path) -> list[Row]:
    rows = []
    for n in SIZES:
        store = Store(workdir / f"ctx-{n}.db")
        sid = session_compacted_20_ago(store, n)
        ctx = build_context(store, sid)
        with store.profile() as statements:
            build_context(store, sid)
        steps = sum(s.vm_steps for s in statements)

        def context(sid: str = sid, store: Store = store) -> None:
            build_context(store, sid)

        def whole(sid: str = sid, store: Store = store) -> None:
            with store.read() as tx:
                tx.history(sid)

        rows.append(
            Row(
                n,
                len(ctx.messages),
                _time(context),
                steps,
                _time(whole, runs=5 if n >= 10_000 else RUNS),
            )
        )
        store.close()
    return rows


def report(rows: list[Row]) -> str:
    base = rows[0].build_context.median_ms
    lines = [
        "| messages in session | messages in context | build_context median (p10-p90) ms "
        "| ratio to 100 msgs | SQLite VM steps | reading the whole history, median ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r.build_context
        lines.append(
            f"| {r.messages:,} | {r.context_messages} | {t.median_ms:.3f} "
            f"({t.p10_ms:.3f}-{t.p90_ms:.3f}) | {t.median_ms / base:.2f}x | {r.vm_steps:,} "
            f"| {r.full_history.median_ms:.1f} |"
        )
    return "\n".join(lines)
