"""``./dev bench``: run every benchmark and rewrite docs/benchmarks.md (and its plots).

``--quick`` shrinks the run counts and skips the 50 000-message session, for development; the
document then says so. ``--only NAMES`` (comma-separated: context, server, cold, turns, stream,
overlap, crash, acp, long) runs just those and prints their report without touching docs/.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import apsw

from bench import build_context, compare, compare_report, plots, server

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC = DOCS / "benchmarks.md"
OWN = ("context", "server")


def _machine() -> str:
    mem_kib = 0
    cpu = ""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            mem_kib = int(f.readline().split()[1])
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores{f' ({cpu})' if cpu else ''}, {mem_kib / 1024 / 1024:.0f} GiB "
        f"memory, {platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"SQLite {apsw.sqlite_lib_version()}"
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs, no 50 000 messages")
    parser.add_argument("--only", help="comma-separated figures; prints, does not write docs/")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    only = {name.strip() for name in args.only.split(",")} if args.only else None
    known = {*OWN, *compare.FIGURES}
    if only and not only <= known:
        sys.exit(f"unknown figures: {', '.join(sorted(only - known))}; known: {sorted(known)}")
    t0 = time.perf_counter()
    runs = server.QUICK if args.quick else server.Runs()
    with tempfile.TemporaryDirectory(prefix="sessionlsp-bench-") as tmp:
        work = Path(tmp)
        rows = build_context.run(work) if not only or "context" in only else None
        served = server.run(work, runs) if not only or "server" in only else None
        peer_only = None if only is None else only & set(compare.FIGURES)
        compared = compare.run(work, args.quick, peer_only) if peer_only != set() else None
        written = plots.write(compared, DOCS / "images") if compared and not only else {}
    minutes = (time.perf_counter() - t0) / 60
    text = _document(rows, served, runs, compared, written, args.quick, minutes)
    if only is None:
        DOC.write_text(text, encoding="utf-8")
    print(text)


def _document(
    rows: list[build_context.Row] | None,
    served: server.Results | None,
    runs: server.Runs,
    compared: compare.Comparison | None,
    plots_written: dict[str, str],
    quick: bool,
    minutes: float,
) -> str:
    mode = (
        " **Quick run** (`--quick`: fewer runs, no 50 000-message session): for development, "
        "not for quoting."
        if quick
        else ""
    )
    peer = f"opencode {compared.peer_version}" if compared else "opencode (not run)"
    head = f"""# Benchmarks

Written by `./dev bench` on {datetime.date.today().isoformat()} in {minutes:.0f} minutes.{mode}

- **Machine**: {_machine()}.
- **Peer**: {peer} (`opencode-linux-x64` from npm), run side by side with sessionlsp
  {_version()} against the same fake provider, in the same run.
- Figures are medians with their spread: the 10th-90th percentile range from 10 samples on,
  the minimum-maximum range below that, with the sample count `n`. Ratios compare medians
  measured in the same run.
"""
    parts = [head]
    if compared:
        load = compared.load
        parts.append(
            "## Summary: sessionlsp and opencode side by side\n\n"
            + compare_report.summary_table(compared)
            + "\n\n"
            + compare_report.fill(
                "Ratio = sessionlsp ÷ opencode of the medians: below 1.00x sessionlsp takes "
                "less time or memory; for deltas per second above 1.00x it delivers more; for "
                "durable commits above 1.00x it writes more often. Figures 4, 5 and 8's "
                "`/compact` row are counts (n = runs; a range when the runs differ). The 1-minute "
                "load average was "
                f"{load[0]:.2f} when the side-by-side figures started."
            )
        )
        parts.append("## Where sessionlsp is slower, and why\n\n" + compare_report.slower(compared))
        parts.append(
            "## The figures\n\n"
            + compare_report.provider_note()
            + "\n\n"
            + compare_report.sections(compared, plots_written)
        )
    if rows is not None or served is not None:
        parts.append("## sessionlsp alone")
    if rows is not None:
        parts.append(
            "### build_context as history grows\n\n"
            + compare_report.fill(
                "A session of N messages (short user/assistant turns) whose last completed "
                "compaction was 20 messages ago. `build_context` reads from the compaction's "
                "tail on, so its cost should not depend on N. Baselines: the 100-message "
                "session (the ratio column), and reading the whole history, which is what the "
                "context would cost if it were not anchored on the last compaction. The VM step "
                "count is SQLite's own count of work done by the statements, independent of "
                f"timing noise. {build_context.RUNS} runs of each timing."
            )
            + "\n\n"
            + build_context.report(rows)
        )
    if served is not None:
        parts.append(
            "### The server as an editor sees it\n\n"
            + server.describe(runs)
            + "\n\n"
            + server.report(served)
        )
    return "\n\n".join(parts) + "\n"


def _version() -> str:
    try:
        return version("sessionlsp")
    except PackageNotFoundError:
        return "(not installed)"


if __name__ == "__main__":
    main()
