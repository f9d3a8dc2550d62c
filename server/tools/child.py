"""Child processes of the tools that run one (``grep``, ``bash``): started in a process group of
their own, so that a timeout or a cancel kills the child and everything it spawned at once, and
watched for the turn's cancel token and a wall-clock deadline.

The trap: killing only the child's pid leaves its own children (a ``sleep`` put in the
background, a test runner's workers) running, holding the output pipe open and the CPU busy.
:func:`kill_group` sends SIGKILL to the whole group instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from server.providers.base import CancelToken
from server.tools.base import ToolError

POLL_S = 0.05  # how often a running child's caller looks at its cancel token and deadline


def start(
    what: str,
    argv: Sequence[str],
    *,
    cwd: Path | str,
    env: Mapping[str, str],
    stdin: int | IO[bytes] | None,
    stderr: int | IO[bytes] | None = subprocess.PIPE,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """``argv`` started as the leader of a new session (so a new process group), its stdout a
    pipe (never this process's stdout: that is the protocol). Raises :class:`ToolError` naming
    ``what`` when it cannot start."""
    try:
        return subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,  # its own process group, killed as one
            pass_fds=tuple(pass_fds),
        )
    except OSError as e:
        raise ToolError(f"{what} could not start: {e.strerror or e}") from None


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole process group (the group outlives a leader that already
    exited, as long as a member is left) and reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if proc.returncode is None:
            proc.kill()
    proc.wait()


class Watch:
    """The reasons to stop waiting for a child: the turn's cancel token and a deadline."""

    def __init__(self, cancel: CancelToken | None, timeout_s: float) -> None:
        self.cancel = cancel
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline
