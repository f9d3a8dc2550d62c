"""``grep``: lines matching a regular expression, in one file or every text file under a directory.

A regular expression can backtrack for longer than the universe lasts (``(a+)+$``), and
Python's ``re`` holds the GIL while it does: the whole server would freeze and no cancel could
reach it. :func:`run` therefore searches in a child process (``server.tools.grep_worker``, which
calls :func:`run_here`: same code, same semantics), limited in wall-clock time, CPU and memory,
polled for cancellation, and killed with its whole process group when either comes first.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict
from fnmatch import fnmatchcase
from itertools import islice
from pathlib import Path
from typing import Any

from server.providers.base import ToolSpec
from server.tools import child
from server.tools.base import RunContext, ToolError, ToolOutcome, collect, join, quoted
from server.tools.paths import Entry, Walk, Workspace
from server.tools.text import cut, is_binary, open_text

log = logging.getLogger(__name__)

MAX_GREP_MATCHES = 200
MAX_GREP_FILE_BYTES = 1_000_000
GREP_MEMORY_BYTES = 1 << 30  # address-space limit of the child
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # where ``server`` can be imported from

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "pattern": {
            "type": "string",
            "description": "Python regular expression searched for in each line.",
        },
        "path": {
            "type": "string",
            "description": 'File or directory to search, relative to the root (default ".").',
        },
        "include": {
            "type": "string",
            "description": 'Glob on file names, such as "*.py", to search only those files.',
        },
    },
    "required": ["pattern"],
    "additionalProperties": False,
}

SPEC = ToolSpec(
    name="grep",
    description=(
        "Search text files in the workspace for a regular expression. Prints "
        f"'path:line: text' for each matching line, at most {MAX_GREP_MATCHES} matches; "
        f"files over {MAX_GREP_FILE_BYTES // 1_000_000} MB and binary files are skipped."
    ),
    parameters=_PARAMETERS,
)


def run(
    workspace: Workspace, args: Mapping[str, Any], title: str, context: RunContext
) -> ToolOutcome:
    """:func:`run_here` run by ``server.tools.grep_worker`` in a child process of its own group,
    so a runaway pattern costs that child, never this process's GIL, and can be killed. It is
    stopped after ``context.timeout_s`` seconds or as soon as ``context.cancel`` is set."""
    cancel, timeout_s = context.cancel, context.timeout_s
    request = json.dumps(
        {
            "root": str(workspace.root),
            "arguments": json.dumps(dict(args)),
            "cpu_s": int(timeout_s) + 2,
            "memory_bytes": GREP_MEMORY_BYTES,
        }
    ).encode("ascii")  # ensure_ascii: a root that is not UTF-8 travels as \\u escapes
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
    )
    proc = child.start(
        "grep",
        [sys.executable, "-m", "server.tools.grep_worker"],
        stdin=subprocess.PIPE,
        cwd=_PACKAGE_ROOT,
        env=env,
    )
    watch = child.Watch(cancel, timeout_s)
    data: bytes | None = request
    try:
        while True:
            try:
                out, err = proc.communicate(data, timeout=child.POLL_S)
                break
            except subprocess.TimeoutExpired:
                data = None  # sent on the first call
            if watch.cancelled():
                raise ToolError("grep cancelled")
            if watch.expired():
                raise ToolError(
                    f"grep timed out after {timeout_s:g} s; "
                    "use a simpler pattern or search fewer files"
                )
    finally:
        if proc.returncode is None:
            child.kill_group(proc)
            proc.communicate()  # closes the pipes
    if err:
        log.debug("grep worker said: %s", err.decode("utf-8", "replace")[-2_000:])
    if proc.returncode != 0:
        if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            raise ToolError(f"grep was stopped after using {int(timeout_s) + 2} s of CPU")
        raise ToolError(f"grep failed unexpectedly (exit status {proc.returncode})")
    try:
        answer = json.loads(out)
        return ToolOutcome(
            output=str(answer["output"]),
            title=title,
            error=None if answer["error"] is None else str(answer["error"]),
            truncated=bool(answer["truncated"]),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("grep worker answered %r", out[:200])
        raise ToolError("grep failed unexpectedly") from None


def run_here(
    workspace: Workspace, args: Mapping[str, Any], title: str, context: RunContext
) -> ToolOutcome:
    """The search itself, in this very process and unbounded in time: for the child only."""
    pattern: str = args["pattern"]
    given: str = args.get("path", ".")
    include: str | None = args.get("include")
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ToolError(f"invalid regular expression {quoted(pattern)}: {e}") from None
    start = workspace.resolve(given)
    walk: Walk | None = None
    files: Iterable[Entry]
    if start.is_dir:
        walk = files = workspace.walk(start)
    else:
        if _too_big(start):
            raise ToolError(f"{quoted(given)} is over 1 MB; grep skips such files, use read_file")
        open_text(start, given).close()  # refuses binary and special files
        files = (start,)
    matches: list[str] = []
    skipped: list[str] = []  # files over the size cap
    cut_any = False
    for entry in files:
        if entry.is_dir or (include is not None and not fnmatchcase(entry.name, include)):
            continue
        if _too_big(entry):
            skipped.append(entry.shown)
            continue
        for number, text in islice(_search(entry, regex), MAX_GREP_MATCHES + 1 - len(matches)):
            line, was_cut = cut(text)
            cut_any = cut_any or was_cut
            matches.append(f"{entry.shown}:{number}: {line}")
        if len(matches) > MAX_GREP_MATCHES:
            break
    more = len(matches) > MAX_GREP_MATCHES or (walk is not None and walk.stopped_early)
    collected, ran_out = collect(matches[:MAX_GREP_MATCHES])
    capped = more or not ran_out

    def note(shown: int) -> str:
        parts = []
        if capped:
            parts.append(
                f"{shown} matches shown; there are more: narrow the pattern, path or include"
            )
        if skipped:
            listed = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
            parts.append(f"skipped {len(skipped)} files over 1 MB: {listed}")
        return "(" + "; ".join(parts) + ")"

    needs_note = capped or bool(skipped)
    if not collected:
        output = "No matches." + (f"\n{note(0)}" if needs_note else "")
        return ToolOutcome(output=output, title=title, truncated=needs_note)
    output, shown = join(collected, note if needs_note else None)
    truncated = needs_note or shown < len(collected) or cut_any
    return ToolOutcome(output=output, title=title, truncated=truncated)


def outcome_json(outcome: ToolOutcome) -> str:
    """The outcome as ASCII JSON, as ``server.tools.grep_worker`` answers."""
    return json.dumps(asdict(outcome))


def _too_big(entry: Entry) -> bool:
    try:
        return entry.real.stat().st_size > MAX_GREP_FILE_BYTES
    except OSError:
        return True


def _search(entry: Entry, regex: re.Pattern[str]) -> Iterator[tuple[int, str]]:
    """Matching lines of a text file under the size cap; binary or unreadable files yield
    nothing."""
    try:
        handle = entry.real.open("rb")
    except OSError as e:
        log.debug("grep cannot open %s: %s", entry.shown, e.strerror)
        return
    with handle:
        if is_binary(handle):
            return
        text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline=None)
        for number, raw in enumerate(text, start=1):
            line = raw.removesuffix("\n")
            if regex.search(line):
                yield number, line
