"""``edit``: replace an exact string in a text file.

``oldString`` must occur exactly once, or ``replaceAll`` must be set: zero occurrences, or
several without ``replaceAll``, is an error that shows the nearest lines (or the lines where it
occurs), and the file is untouched. In a file with CRLF line endings, strings the model wrote
with ``\\n`` are matched and written with ``\\r\\n``, so the file keeps its line endings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.providers.base import ToolSpec
from server.tools.base import ToolError, quoted
from server.tools.edits import (
    FileChange,
    Plan,
    line_counts,
    line_ending,
    nearest_lines,
    numbered,
    read_current,
)
from server.tools.paths import Workspace

MAX_OCCURRENCES_SHOWN = 10

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {
            "type": "string",
            "description": "File to edit, relative to the workspace root.",
        },
        "oldString": {
            "type": "string",
            "minLength": 1,
            "description": "The exact text to replace, indentation included.",
        },
        "newString": {
            "type": "string",
            "description": "The text to put in its place.",
        },
        "replaceAll": {
            "type": "boolean",
            "description": "Replace every occurrence (default false: oldString must be unique).",
        },
    },
    "required": ["path", "oldString", "newString"],
    "additionalProperties": False,
}
SPEC = ToolSpec(
    name="edit",
    description=(
        "Replace exact text in a workspace text file. oldString must occur exactly once "
        "(add surrounding lines to make it unique) unless replaceAll is true."
    ),
    parameters=_PARAMETERS,
)


def plan(workspace: Workspace, args: Mapping[str, Any], title: str) -> Plan:
    given: str = args["path"]
    old: str = args["oldString"]
    new: str = args["newString"]
    replace_all: bool = args.get("replaceAll", False)
    if old == new:
        raise ToolError("oldString and newString are the same; there is nothing to change")
    entry = workspace.resolve(given)
    current = read_current(entry, given)
    text = current.text
    count, old_here, new_here = 0, old, new
    for spelled_old, spelled_new in _spellings(old, new, line_ending(text)):
        count = text.count(spelled_old)
        if count:
            old_here, new_here = spelled_old, spelled_new
            break
    if count == 0:
        raise ToolError(
            f"oldString was not found in {quoted(given)}; the file is unchanged. "
            "The nearest lines:\n"
            f"{nearest_lines(text, old)}\n"
            "Read the file again and copy the text exactly, indentation included."
        )
    if count > 1 and not replace_all:
        raise ToolError(
            f"oldString occurs {count} times in {quoted(given)}; the file is unchanged. "
            "Add surrounding lines to make it unique, or set replaceAll to replace every "
            f"occurrence. It occurs at:\n{_occurrences(text, old_here)}"
        )
    after = text.replace(old_here, new_here, -1 if replace_all else 1)
    change = FileChange(
        entry.shown, entry.real, text, after, before_bytes=current.raw, mode=current.mode
    )
    added, removed = line_counts(change)
    times = "1 replacement" if count == 1 or not replace_all else f"{count} replacements"
    summary = f"Edited {entry.shown}: {times} (+{added} -{removed} lines)."
    return Plan(SPEC.name, title, (change,), summary)


def _spellings(old: str, new: str, eol: str) -> list[tuple[str, str]]:
    """The strings to try, first with the file's line ending, then as the model wrote them."""
    if eol == "\n":
        return [(old, new)]

    def crlf(text: str) -> str:
        return text.replace("\r\n", "\n").replace("\n", "\r\n")

    return [(crlf(old), crlf(new)), (old, new)]


def _occurrences(text: str, old: str) -> str:
    """The first line of each occurrence of ``old``, numbered."""
    lines = text.split("\n")
    shown: list[str] = []
    start = 0
    while len(shown) < MAX_OCCURRENCES_SHOWN:
        at = text.find(old, start)
        if at < 0:
            break
        number = text.count("\n", 0, at) + 1
        shown.append(numbered([lines[number - 1]], number))
        start = at + len(old)
    more = text.count(old) - len(shown)
    return "\n".join(shown) + (f"\n(and {more} more)" if more > 0 else "")
