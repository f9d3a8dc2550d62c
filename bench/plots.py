"""The benchmark's plots, as PNG files under docs/images/ (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.compare import Comparison
from bench.stats import spread

OURS = ("sessionlsp", "#1f77b4")
PEER = ("opencode", "#d62728")


def _long(c: Comparison, path: Path) -> None:
    assert c.long is not None
    fig, (turns, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (name, color), sizes in ((OURS, c.long.sessionlsp), (PEER, c.long.opencode)):
        xs = [s.messages for s in sizes]
        stats = [spread(s.turn_ms) for s in sizes]
        medians = [s.median for s in stats]
        errors = [
            [s.median - s.p10 for s in stats],
            [s.p90 - s.median for s in stats],
        ]
        turns.errorbar(xs, medians, yerr=errors, marker="o", capsize=4, color=color, label=name)
        peaks = [s.memory.peak_kib / 1024 for s in sizes]
        memory.plot(xs, peaks, marker="o", color=color, label=name)
    turns.set(
        xscale="log",
        yscale="log",
        xlabel="messages in the session (compacted 20 messages ago)",
        ylabel="one turn, ms (median, min-max)",
        title="3. Cost of one turn as the session grows",
    )
    memory.set(
        xscale="log",
        xlabel="messages in the session",
        ylabel="peak RSS of the server, MiB",
        title="7. Server memory after the turns",
    )
    memory.set_ylim(bottom=0)
    for ax in (turns, memory):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _speed(c: Comparison, path: Path) -> None:
    assert c.cold is not None and c.turns is not None
    fig, (cold, turns) = plt.subplots(1, 2, figsize=(11, 4.2))
    cold_data = [
        [r.answer_s * 1000 for r in c.cold.sessionlsp],
        [r.answer_s * 1000 for r in c.cold.opencode],
    ]
    turn_data = [
        [t.overhead_ms for t in c.turns.sessionlsp],
        [t.overhead_ms for t in c.turns.opencode],
    ]
    labels = ["sessionlsp chat", "opencode run"]
    for ax, data, names, title, ylabel in (
        (cold, cold_data, labels, "1. Cold start to first answer", "spawn to answer, ms"),
        (
            turns,
            turn_data,
            ["sessionlsp (stdio)", "opencode (HTTP)"],
            "2. Per-turn overhead, instant provider",
            "turn minus provider time, ms",
        ),
    ):
        box = ax.boxplot(data, patch_artist=True, widths=0.5)
        ax.set_xticks([1, 2], names)
        for patch, (_, color) in zip(box["boxes"], (OURS, PEER), strict=True):
            patch.set_facecolor(color)
            patch.set_alpha(0.5)
        ax.set(title=title, ylabel=ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(c: Comparison, images: Path) -> dict[str, str]:
    """Write the plots the comparison has data for; their paths relative to docs/."""
    images.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    if c.long is not None:
        _long(c, images / "bench-long-sessions.png")
        written["long"] = "images/bench-long-sessions.png"
    if c.cold is not None and c.turns is not None:
        _speed(c, images / "bench-cold-start-per-turn.png")
        written["speed"] = "images/bench-cold-start-per-turn.png"
    return written
