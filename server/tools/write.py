"""``write``: create a text file, or overwrite one, with the content given; missing parent
directories are created. Binary files are not overwritten."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.providers.base import ToolSpec
from server.tools.base import ToolError, quoted
from server.tools.edits import FileChange, Plan, line_counts, read_current
from server.tools.paths import Entry, Workspace

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {
            "type": "string",
            "description": "File to write, relative to the workspace root.",
        },
        "content": {
            "type": "string",
            "description": "The whole new content of the file.",
        },
    },
    "required": ["path", "content"],
    "additionalProperties": False,
}
SPEC = ToolSpec(
    name="write",
    description=(
        "Create a text file in the workspace, or replace its whole content; missing parent "
        "directories are created. To change part of a file, use edit."
    ),
    parameters=_PARAMETERS,
)


def plan(workspace: Workspace, args: Mapping[str, Any], title: str) -> Plan:
    given: str = args["path"]
    content: str = args["content"]
    target = workspace.target(given)
    if target.is_dir:
        raise ToolError(f"{quoted(given)} is a directory, not a file")
    if not target.exists:
        change = FileChange(target.shown, target.real, None, content)
        lines = len(content.splitlines())
        summary = f"Created {target.shown} ({lines} lines)."
        return Plan(SPEC.name, title, (change,), summary)
    entry = Entry(target.shown, target.real.name, target.real, is_dir=False)
    current = read_current(entry, given, strict=False)
    change = FileChange(
        target.shown,
        target.real,
        current.text,
        content,
        before_bytes=current.raw,
        mode=current.mode,
    )
    if current.raw == content.encode("utf-8", "surrogatepass"):
        return Plan(SPEC.name, title, (change,), f"{target.shown} already holds this content.")
    added, removed = line_counts(change)
    summary = f"Wrote {target.shown} (+{added} -{removed} lines)."
    return Plan(SPEC.name, title, (change,), summary)
