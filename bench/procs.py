"""Measuring processes from the outside: a CLI run until its answer appears, and peak memory."""

from __future__ import annotations

import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CliRun:
    answer_s: float  # spawn -> the sentinel has appeared on stdout
    exit_s: float  # spawn -> the process exited
    returncode: int


def time_cli(
    argv: list[str], env: dict[str, str], cwd: Path, sentinel: str, timeout: float
) -> CliRun:
    """Spawn ``argv`` and time it until ``sentinel`` is on its stdout, then until it exits."""
    stderr_path = cwd / ".cli-stderr"
    with open(stderr_path, "wb") as stderr:
        t0 = time.perf_counter()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    assert process.stdout is not None
    wanted = sentinel.encode()
    seen = b""
    answer = None
    deadline = t0 + timeout
    try:
        fd = process.stdout.fileno()
        while (left := deadline - time.perf_counter()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
            if answer is None and wanted in seen:
                answer = time.perf_counter() - t0
        returncode = process.wait(max(1.0, deadline - time.perf_counter()))
        exited = time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        returncode = -1
        exited = time.perf_counter() - t0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
    if answer is None or returncode != 0:
        tail = stderr_path.read_text(errors="replace")[-1500:]
        raise RuntimeError(
            f"{argv[0]} {argv[1]} exited {returncode} without printing {sentinel!r}; stdout "
            f"ends {seen[-300:]!r}; stderr ends:\n{tail}"
        )
    return CliRun(answer, exited, returncode)


@dataclass(frozen=True)
class Memory:
    peak_kib: int  # VmHWM of the process: its peak resident set
    rss_kib: int  # VmRSS now
    children: int  # processes it has started that are still running


def memory(pid: int) -> Memory:
    """The peak and current resident set of ``pid`` (``/proc/PID/status``)."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                fields[name] = int(value.split()[0])
    return Memory(fields["VmHWM"], fields["VmRSS"], len(_descendants(pid)))


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces and parentheses.
            parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found
