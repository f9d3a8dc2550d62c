"""``./dev bench``: run every benchmark and rewrite docs/benchmarks.md."""

from __future__ import annotations

import datetime
import os
import platform
import tempfile
from pathlib import Path

import apsw

from bench import build_context, server

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def _machine() -> str:
    mem_kib = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores, {mem_kib / 1024 / 1024:.0f} GiB, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"SQLite {apsw.sqlite_lib_version()}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sessionlsp-bench-") as tmp:
        rows = build_context.run(Path(tmp))
        served = server.run(Path(tmp))
    text = f"""# Benchmarks

Written by `./dev bench` on {datetime.date.today().isoformat()}. Machine: {_machine()}.
Figures are medians with the 10th-90th percentile range, over the runs each section states;
ratios are against baselines measured in the same run.

## build_context as history grows

A session of N messages (short user/assistant turns) whose last completed compaction was 20
messages ago. `build_context` reads from the compaction's tail on, so its cost should not depend
on N. Baselines: the 100-message session (the ratio column), and reading the whole history,
which is what the context would cost if it were not anchored on the last compaction. The VM
step count is SQLite's own count of work done by the statements, independent of timing noise.
{build_context.RUNS} runs of each timing.

{build_context.report(rows)}

## The server as an editor sees it

{server.describe()}

{server.report(served)}
"""
    DOC.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
