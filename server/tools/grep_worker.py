"""The child process that runs one ``grep`` for :mod:`server.tools.grep`.

Why a child: Python's ``re`` backtracks without bound on patterns such as ``(a+)+$`` and
holds the GIL while it does, so a grep in the server's own process would freeze every client
and could not be cancelled. Here it costs only this process, which the parent kills on a
timeout or a cancel. The trap: this process must never outlive a parent that was killed
itself, so it also limits its own CPU time and address space before it searches.

Reads one JSON request on stdin ``{"root", "arguments", "cpu_s", "memory_bytes"}`` and writes
one JSON :class:`~server.tools.base.ToolOutcome` on stdout (ASCII, so odd names survive the pipe).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from server.tools import grep_here
from server.tools.base import ToolOutcome
from server.tools.grep import outcome_json


def _limit(kind: int, value: int) -> None:
    try:
        _, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, hard))
    except (ValueError, OSError):  # not supported here (e.g. RLIMIT_AS on macOS)
        pass


def main() -> int:
    request = json.loads(sys.stdin.buffer.read())
    _limit(resource.RLIMIT_CPU, int(request["cpu_s"]))
    _limit(resource.RLIMIT_AS, int(request["memory_bytes"]))
    try:
        outcome = grep_here(str(request["arguments"]), Path(str(request["root"])))
    except MemoryError:
        outcome = ToolOutcome(output="", title="grep", error="grep ran out of memory")
    sys.stdout.write(outcome_json(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
