"""Workspace tools: ``read_file``, ``list_files`` and ``grep``, which the model may call;
``edit``, ``write`` and ``apply_patch``, which change files, and ``bash``, which runs a command:
these are in the table but not offered to the model until the permission gate (issue 8) asks
before each change or command (see :attr:`Tool.offered`).

:data:`TOOLS` is the one table of tools: each entry's spec (what the model is told), its run
function, its kind and whether it is offered. :data:`TOOL_SPECS` (what the model is offered)
is derived from it, and :func:`run_tool` looks the name up there: a name that is not in the
table, or not offered, is a tool error, never some other tool. Adding a tool is one module here
(its ``SPEC`` and ``run``, or ``plan`` for a tool that changes files) plus one line in
:data:`TOOLS`. Arguments are checked against the spec's JSON schema before anything runs.

A tool that changes files is planned, then applied (:mod:`server.tools.edits`):
:func:`plan_tool` computes each file's new content and diff with nothing written, so the
permission question can show them, and :func:`apply_plan` writes the plan atomically.

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
from typing import Any

from server.providers.base import CancelToken, ToolSpec
from server.tools import apply_patch, bash, edit, grep, list_files, read_file, write
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
from server.tools.edits import Plan, apply, edit_tool
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
            # The tools that change files and bash are not offered to the model
            # (offered=False) until the permission gate of issue 8 asks before each change or
            # command; see edits.edit_tool.
            edit_tool(edit.SPEC, edit.plan),
            edit_tool(write.SPEC, write.plan),
            edit_tool(apply_patch.SPEC, apply_patch.plan, title_from=None),
            Tool(bash.SPEC, bash.run, "execute", title_from="command"),
        )
    }
)
# What the model is offered: the read and search tools only, for now (see above).
TOOL_SPECS: tuple[ToolSpec, ...] = tuple(tool.spec for tool in TOOLS.values() if tool.offered)


def run_tool(
    name: str,
    arguments: str,
    root: Path,
    *,
    cancel: CancelToken | None = None,
    grep_timeout_s: float = GREP_TIMEOUT_S,
    settings: ToolSettings | None = None,
    include_unoffered: bool = False,
) -> ToolOutcome:
    """Run tool ``name`` with ``arguments`` (the model's raw JSON text) inside ``root``.

    Only the tools offered to the model run, unless ``include_unoffered``: the turn runs what
    the model names, and a model must not reach the file-changing tools or ``bash`` by
    guessing their names before the permission gate asks. ``grep`` runs in a child process
    that is stopped after ``grep_timeout_s`` seconds or as soon as ``cancel`` is set; both
    come back as a tool error. ``bash`` is killed with its process group on its own timeout
    or on ``cancel``, and runs in the sandbox ``settings`` name (by default, the configured
    default: bwrap when it is on PATH).
    """
    tool = _find(name, include_unoffered)
    if isinstance(tool, ToolOutcome):
        return tool
    context = RunContext(cancel, grep_timeout_s, settings or ToolSettings())
    return call(tool, arguments, root, context)


def plan_tool(name: str, arguments: str, root: Path) -> Plan | ToolOutcome:
    """What tool ``name`` would change, computed with nothing written: a :class:`Plan` (each
    file's new content and diff, for the permission question), or the error the call would
    end in. Planning writes nothing, so unoffered tools are planned too."""
    tool = _find(name, include_unoffered=True)
    if isinstance(tool, ToolOutcome):
        return tool
    planner = tool.plan
    if planner is None:
        return ToolOutcome(output="", title=tool.name, error=f"{tool.name} changes no file")
    title = _title(tool, {})
    try:
        args = parse_arguments(tool.spec, arguments)
        title = _title(tool, args)
        return planner(Workspace.open(root), args, title)
    except ToolError as e:
        return ToolOutcome(output="", title=title, error=str(e))
    except Exception:
        log.exception("planning %s failed", tool.name)
        return ToolOutcome(output="", title=title, error=f"{tool.name} failed unexpectedly")


def apply_plan(plan: Plan) -> ToolOutcome:
    """Write what :func:`plan_tool` planned (atomically; refused if a file changed since)."""
    try:
        return apply(plan)
    except ToolError as e:
        return ToolOutcome(output="", title=plan.title, error=str(e))
    except Exception:
        log.exception("applying %s failed", plan.tool)
        return ToolOutcome(output="", title=plan.title, error=f"{plan.tool} failed unexpectedly")


def _find(name: str, include_unoffered: bool) -> Tool | ToolOutcome:
    tool = TOOLS.get(name)
    if tool is None or not (tool.offered or include_unoffered):
        known = ", ".join(n for n, t in TOOLS.items() if t.offered or include_unoffered)
        error = f"unknown tool {quoted(name)}; the tools are {known}"
        return ToolOutcome(output="", title=printable(name), error=error)
    return tool


def _title(tool: Tool, args: Mapping[str, Any]) -> str:
    if tool.title_from is None:
        return tool.name
    return printable(str(args.get(tool.title_from, ".")))


def grep_here(arguments: str, root: Path) -> ToolOutcome:
    """``grep`` in this very process, unbounded in time: for ``server.tools.grep_worker`` only."""
    return call(replace(TOOLS["grep"], run=grep.run_here), arguments, root, RunContext())


def call(tool: Tool, arguments: str, root: Path, context: RunContext) -> ToolOutcome:
    """What every call does around ``tool.run``: check the arguments against the spec, title
    the call, open the workspace, and turn any failure into ``ToolOutcome.error``."""
    title = tool.name
    try:
        args = parse_arguments(tool.spec, arguments)
        title = _title(tool, args)
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
    "Plan",
    "Tool",
    "ToolOutcome",
    "ToolSettings",
    "apply_plan",
    "grep_here",
    "plan_tool",
    "run_tool",
]
