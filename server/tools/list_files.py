"""``list_files``: what a directory holds, recursively, sorted, optionally filtered by a glob."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from itertools import islice
from typing import Any

from server.providers.base import ToolSpec
from server.tools.base import RunContext, ToolError, ToolOutcome, join, quoted
from server.tools.paths import Workspace

MAX_LIST_ENTRIES = 500

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {
            "type": "string",
            "description": 'Directory to list, relative to the workspace root (default ".").',
        },
        "pattern": {
            "type": "string",
            "description": 'Glob such as "*.py", matched against each relative path and name.',
        },
    },
    "additionalProperties": False,
}
SPEC = ToolSpec(
    name="list_files",
    description=(
        "List files and directories under a workspace directory, recursively, sorted, "
        f"directories ending in '/'. At most {MAX_LIST_ENTRIES} entries."
    ),
    parameters=_PARAMETERS,
)


def run(
    workspace: Workspace, args: Mapping[str, Any], title: str, context: RunContext
) -> ToolOutcome:
    given: str = args.get("path", ".")
    pattern: str | None = args.get("pattern")
    start = workspace.resolve(given)
    if not start.is_dir:
        raise ToolError(f"{quoted(given)} is not a directory; use read_file to read a file")
    walk = workspace.walk(start)
    matching = (
        entry.shown + ("/" if entry.is_dir else "")
        for entry in walk
        if pattern is None or fnmatchcase(entry.shown, pattern) or fnmatchcase(entry.name, pattern)
    )
    entries = list(islice(matching, MAX_LIST_ENTRIES + 1))
    more = len(entries) > MAX_LIST_ENTRIES or walk.stopped_early
    entries = entries[:MAX_LIST_ENTRIES]
    if not entries and not more:
        what = "no entries" if pattern is None else f"no entries match {quoted(pattern)}"
        return ToolOutcome(output=f"({what} in {given})", title=title)

    def note(shown: int) -> str:
        return f"({shown} entries shown; there are more: list a subdirectory or give a pattern)"

    output, shown = join(entries, note if more else None)
    return ToolOutcome(output=output, title=title, truncated=more or shown < len(entries))
