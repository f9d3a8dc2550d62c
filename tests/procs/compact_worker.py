"""A child process that compacts (or recovers) one session, for multi-process tests.

Run from the repository root as::

    python -m tests.procs.compact_worker DB SESSION compact [--auto] [--wait-go]
        [--announce-request] [--hold-before-chunk N]
    python -m tests.procs.compact_worker DB SESSION recover

It prints bare signal words on stdout as it goes (``ready``, ``requested``, ``holding``) and
ends with ONE JSON line: the outcome. Every signal is flushed at once, so the parent can wait
for it instead of guessing with sleeps. ``SESSIONLSP_CRASH_AT`` in the environment makes the
process SIGKILL itself at that crash point (see server/crashpoints.py).

``recover`` calls ``engine.recover()`` and, if a compaction is still active afterwards (its
summary must be regenerated), drives it to the end with ``engine.run()``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import CompactionEngine, CompactionOutcome, CompactionSettings
from server.crashpoints import ENV as CRASH_ENV
from server.summary import Summarizer
from server.tokens import ModelLimits
from store import Store

REPO = Path(__file__).resolve().parents[2]
MODULE = "tests.procs.compact_worker"
LIMITS = ModelLimits(context=16_000, output=4_000)


def worker_settings() -> CompactionSettings:
    return CompactionSettings(limits=LIMITS, flush_interval_ms=0)


class AnnouncingEngine(CompactionEngine):
    """Calls ``on_request`` each time ``request()`` has returned (used to gate tests)."""

    def __init__(
        self,
        store: Store,
        summarizer: Summarizer,
        settings: CompactionSettings,
        on_request: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(store, summarizer, settings)
        self.on_request = on_request or (lambda: None)

    def request(
        self,
        session_id: str,
        *,
        auto: bool = False,
        overflow: bool = False,
        instructions: str | None = None,
        replay_of: str | None = None,
    ) -> CompactionOutcome:
        out = super().request(
            session_id, auto=auto, overflow=overflow, instructions=instructions, replay_of=replay_of
        )
        self.on_request()
        return out


def say(word: str) -> None:
    print(word, flush=True)


def wait_for_parent() -> None:
    """Block until the parent writes a line (or closes our stdin)."""
    sys.stdin.readline()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=MODULE)
    p.add_argument("db", type=Path)
    p.add_argument("session")
    p.add_argument("action", choices=("compact", "recover"))
    p.add_argument("--auto", action="store_true", help="an automatic compaction")
    p.add_argument("--wait-go", action="store_true", help="print 'ready', wait for a line")
    p.add_argument("--announce-request", action="store_true", help="print 'requested'")
    p.add_argument(
        "--hold-before-chunk",
        type=int,
        default=None,
        metavar="N",
        help="before streaming chunk N, print 'holding' and wait for a line",
    )
    args = p.parse_args(argv)

    def before_chunk(i: int) -> None:
        if i == args.hold_before_chunk:
            say("holding")
            wait_for_parent()

    store = Store(args.db)
    summarizer = ScriptedSummarizer(before_chunk=before_chunk)
    announce = (lambda: say("requested")) if args.announce_request else None
    engine = AnnouncingEngine(store, summarizer, worker_settings(), announce)
    try:
        if args.wait_go:
            say("ready")
            wait_for_parent()
        recovered: str | None = None
        outcome: CompactionOutcome | None
        if args.action == "compact":
            outcome = engine.compact(args.session, auto=args.auto)
        else:
            outcome = engine.recover(args.session)
            recovered = outcome.status if outcome is not None else None
            if outcome is not None and outcome.marker_id and not _terminal(outcome):
                outcome = engine.run(args.session, outcome.marker_id)
        result = {
            "marker_id": outcome.marker_id if outcome else None,
            "created": outcome.created if outcome else False,
            "status": outcome.status if outcome else None,
            "summary_message_id": outcome.summary_message_id if outcome else None,
            "error": outcome.error.code if outcome and outcome.error else None,
            "model_calls": outcome.model_calls if outcome else 0,  # as the engine reports them
            "summarizer_calls": summarizer.calls,  # what this process's model really saw
            "recovered_status": recovered,  # recover only: the status right after recover()
        }
        print(json.dumps(result), flush=True)
    finally:
        store.close()
    return 0


def _terminal(outcome: CompactionOutcome) -> bool:
    return outcome.status in ("completed", "failed")


# --- for the parent -------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without a crash point, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    env.update(extra)
    return env


@contextlib.contextmanager
def spawned(
    db: Path,
    session_id: str,
    action: str,
    *flags: str,
    env: dict[str, str] | None = None,
    deadline_s: float = 60.0,
) -> Iterator[subprocess.Popen[str]]:
    """A running worker; killed after ``deadline_s`` (a hang fails, never blocks) and always
    reaped on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", MODULE, str(db), session_id, action, *flags],
        cwd=REPO,
        env=env if env is not None else clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(deadline_s, proc.kill)
    watchdog.start()
    try:
        yield proc
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


def signal_line(proc: subprocess.Popen[str]) -> str:
    """The next line the worker printed ("" if it died first)."""
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def expect_line(proc: subprocess.Popen[str], word: str) -> None:
    """Wait for the worker to print ``word``; if it prints anything else, fail with its stderr."""
    line = signal_line(proc)
    if line != word:
        proc.kill()
        assert proc.stderr is not None
        raise AssertionError(
            f"worker printed {line!r}, not {word!r}; stderr:\n{proc.stderr.read()}"
        )


def send(proc: subprocess.Popen[str], line: str = "go") -> None:
    """Write a line to the worker; a worker that already died fails later, on its outcome."""
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.write(line + "\n")
        proc.stdin.flush()


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Close the worker's stdin, read the rest of its output and reap it: (rc, stdout, stderr)."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    out = proc.stdout.read()
    err = proc.stderr.read()
    return proc.wait(), out, err


def parse_outcome(stdout: str) -> dict[str, Any]:
    """The worker's final JSON line (signal words before it are skipped)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "the worker printed no outcome"
    value = json.loads(lines[-1])
    assert isinstance(value, dict)
    return value


if __name__ == "__main__":
    raise SystemExit(main())
