"""Workspace tools the model may call: ``read_file``, ``list_files`` and ``grep``, and ``bash``,
which is in the table but not offered to the model yet (see :attr:`Tool.offered`).

:data:`TOOLS` is the one table of tools: each entry's spec (what the model is told), its run
function and its kind. :data:`TOOL_SPECS` is derived from it, and :func:`run_tool` looks the
name up there: a name that is not in the table is a tool error, never some other tool. Adding a
tool is one module here (its ``SPEC`` and ``run``) plus one line in :data:`TOOLS`.

Every path is relative to a root directory (the session's directory) and must stay inside it
(:mod:`server.tools.paths`). Output is capped at 50 000 characters and 2 000 lines, closing note
included; when the caps cut something, ``truncated`` is set and the last line says what was cut
and how to see more. :func:`run_tool` never raises for bad input: every problem becomes
``ToolOutcome.error``.

Two traps, both from text the model or the disk chooses:

* A file name that is not UTF-8 (``caf\\xe9.txt`` from an old archive) comes out of
  ``os.scandir`` as a str with a lone surrogate. Such a str cannot be encoded as UTF-8, so it
  must never reach the output, a title or a message: SQLite would refuse the write and the
  turn would fail with the tool part left ``running``. Names are shown with the odd bytes
  escaped (``caf\\xe9.txt``), and a path written that way finds the file again.
* A regular expression can backtrack for longer than the universe lasts (``(a+)+$``), and
  Python's ``re`` holds the GIL while it does: ``grep`` therefore runs in a child process
  (:mod:`server.tools.grep`), killed on a timeout or a cancel.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from server.providers.base import CancelToken, ToolSpec
from server.tools import bash, grep, list_files, read_file
from server.tools.base import (
    CHILD_TIMEOUT_S,
    MAX_OUTPUT_CHARS,
    MAX_OUTPUT_LINES,
    RunContext,
    Tool,
    ToolError,
    ToolOutcome,
    ToolSettings,
    parse_arguments,
    printable,
    quoted,
)
from server.tools.grep import MAX_GREP_MATCHES
from server.tools.list_files import MAX_LIST_ENTRIES
from server.tools.paths import Workspace

log = logging.getLogger(__name__)

GREP_TIMEOUT_S = CHILD_TIMEOUT_S  # wall-clock limit of one grep, in its child process

TOOLS: Mapping[str, Tool] = MappingProxyType(
    {
        tool.name: tool
        for tool in (
            Tool(read_file.SPEC, read_file.run, "read"),
            Tool(list_files.SPEC, list_files.run, "read"),
            Tool(grep.SPEC, grep.run, "search", title_from="pattern"),
            # Not offered: the permission gate of issue 8 (bash asks by default) is not wired
            # yet, and until it is, the model must not run commands.
            Tool(bash.SPEC, bash.run, "execute", title_from="command", offered=False),
        )
    }
)
# What the model is told: the offered tools only.
TOOL_SPECS: tuple[ToolSpec, ...] = tuple(tool.spec for tool in TOOLS.values() if tool.offered)


def run_tool(
    name: str,
    arguments: str,
    root: Path,
    *,
    cancel: CancelToken | None = None,
    grep_timeout_s: float = GREP_TIMEOUT_S,
    settings: ToolSettings | None = None,
    unoffered: bool = False,
) -> ToolOutcome:
    """Run tool ``name`` with ``arguments`` (the model's raw JSON text) inside ``root``.

    ``grep`` runs in a child process that is stopped after ``grep_timeout_s`` seconds or as
    soon as ``cancel`` is set; both come back as a tool error. ``bash`` is killed with its
    process group on its own timeout or on ``cancel``, and runs in the sandbox ``settings``
    name (by default, the configured defaults: bwrap when it is on PATH).

    A tool that is not offered to the model (``bash`` for now) is unknown here unless
    ``unoffered`` is set, so that a model calling it anyway runs nothing; tests set it.
    """
    tool = TOOLS.get(name)
    if tool is None or not (tool.offered or unoffered):
        known = ", ".join(spec.name for spec in TOOL_SPECS)
        error = f"unknown tool {quoted(name)}; the tools are {known}"
        return ToolOutcome(output="", title=printable(name), error=error)
    context = RunContext(cancel, grep_timeout_s, settings or ToolSettings())
    return call(tool, arguments, root, context)


def grep_here(arguments: str, root: Path) -> ToolOutcome:
    """``grep`` in this very process, unbounded in time: for ``server.tools.grep_worker`` only."""
    return call(replace(TOOLS["grep"], run=grep.run_here), arguments, root, RunContext())


def call(tool: Tool, arguments: str, root: Path, context: RunContext) -> ToolOutcome:
    """What every call does around ``tool.run``: check the arguments against the spec, title
    the call, open the workspace, and turn any failure into ``ToolOutcome.error``."""
    title = tool.name
    try:
        args = parse_arguments(tool.spec, arguments)
        title = printable(str(args.get(tool.title_from, ".")))
        return tool.run(Workspace.open(root), args, title, context)
    except ToolError as e:
        return ToolOutcome(output="", title=title, error=str(e))
    except Exception:
        log.exception("tool %s failed", tool.name)
        return ToolOutcome(output="", title=title, error=f"{tool.name} failed unexpectedly")


__all__ = [
    "GREP_TIMEOUT_S",
    "MAX_GREP_MATCHES",
    "MAX_LIST_ENTRIES",
    "MAX_OUTPUT_CHARS",
    "MAX_OUTPUT_LINES",
    "TOOLS",
    "TOOL_SPECS",
    "Tool",
    "ToolOutcome",
    "ToolSettings",
    "grep_here",
    "run_tool",
]
