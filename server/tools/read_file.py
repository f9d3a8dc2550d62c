"""``read_file``: a text file's lines, numbered, from ``offset`` for ``limit`` lines."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

from server.providers.base import ToolSpec
from server.tools.base import (
    MAX_LINE_CHARS,
    MAX_OUTPUT_CHARS,
    MAX_OUTPUT_LINES,
    RunContext,
    ToolError,
    ToolOutcome,
    collect,
    join,
    quoted,
)
from server.tools.paths import Workspace
from server.tools.text import open_text, text_lines

DEFAULT_READ_LIMIT = 2_000

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {
            "type": "string",
            "description": "File to read, relative to the workspace root.",
        },
        "offset": {
            "type": "integer",
            "minimum": 1,
            "description": "First line to read, 1-based (default 1).",
        },
        "limit": {
            "type": "integer",
            "minimum": 1,
            "description": f"Number of lines to read (default {DEFAULT_READ_LIMIT}).",
        },
    },
    "required": ["path"],
    "additionalProperties": False,
}
SPEC = ToolSpec(
    name="read_file",
    description=(
        "Read a text file in the workspace. Lines come numbered like '   12| text'. "
        f"At most {MAX_OUTPUT_LINES} lines and {MAX_OUTPUT_CHARS} characters per call, "
        f"lines cut at {MAX_LINE_CHARS} characters; use offset and limit for more."
    ),
    parameters=_PARAMETERS,
)


def run(
    workspace: Workspace, args: Mapping[str, Any], title: str, context: RunContext
) -> ToolOutcome:
    given: str = args["path"]
    offset: int = args.get("offset", 1)
    limit: int = args.get("limit", DEFAULT_READ_LIMIT)
    with open_text(workspace.resolve(given), given) as handle:
        lines = text_lines(handle)
        before = sum(1 for _ in islice(lines, offset - 1))
        cut_lines: list[int] = []

        def numbered() -> Iterator[str]:
            for number, (text, extra) in enumerate(islice(lines, limit), start=offset):
                marker = f" … [line cut: {extra} more characters]" if extra else ""
                if extra:
                    cut_lines.append(number)
                yield f"{number:>5}| {text}{marker}"

        collected, ran_out = collect(numbered())
        goes_on = not ran_out or next(lines, None) is not None
    if not collected:
        if offset > 1:
            raise ToolError(
                f"offset {offset} is past the end of {quoted(given)}, which has {before} lines"
            )
        return ToolOutcome(output=f"({given} is empty)", title=title)

    def note(shown: int) -> str:
        last = offset + shown - 1
        span = f"line {offset}" if shown == 1 else f"lines {offset}-{last}"
        if shown < len(collected):
            return (
                f"(output capped at {MAX_OUTPUT_LINES} lines / {MAX_OUTPUT_CHARS} characters: "
                f"showing {span}; use offset={last + 1} to see more)"
            )
        return f"(showing {span}; the file goes on: use offset={last + 1} to read more)"

    output, shown = join(collected, note if goes_on else None)
    last = offset + shown - 1
    truncated = shown < len(collected) or any(n <= last for n in cut_lines)
    return ToolOutcome(output=output, title=title, truncated=truncated)
