"""Named points where a test can make this process die, to prove recovery from each.

Set ``SESSIONLSP_CRASH_AT=<name>`` in a child process's environment and it kills itself with
SIGKILL on reaching that point; in-process tests install a hook with :func:`crash_hook` instead.
Unset, a crash point costs one environment lookup.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator

ENV = "SESSIONLSP_CRASH_AT"

POINTS = (
    "after_marker",  # the marker is committed; no summary attempt yet
    "after_summary_row",  # the summary assistant row is committed; the model not yet called
    "mid_summary",  # part of the summary text is stored; the model is still streaming
    "after_summary",  # the summary is finished; tail and continuation not yet written
    "after_bookkeeping",  # tailStartId is written; continuation and completion not yet
)

_hook: Callable[[str], None] | None = None


def crashpoint(name: str) -> None:
    if _hook is not None:
        _hook(name)
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def crash_hook(hook: Callable[[str], None]) -> Iterator[None]:
    """Call ``hook(name)`` at every crash point while the block runs (for in-process tests)."""
    global _hook
    previous, _hook = _hook, hook
    try:
        yield
    finally:
        _hook = previous
