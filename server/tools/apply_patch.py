"""``apply_patch``: several file changes in one envelope, the format opencode and Codex use::

    *** Begin Patch
    *** Add File: path          every line of the new file follows, each starting with "+"
    *** Update File: path
    *** Move to: new/path       optional: the updated file moves there
    @@ optional context line    a hunk: lines starting " " (kept), "-" (removed), "+" (added)
    *** End of File             optional: the hunk ends at the end of the file
    *** Delete File: path
    *** End Patch

Each hunk is looked for after the previous one (after its ``@@`` line when that names one),
first exactly, then ignoring trailing, then surrounding whitespace. All or nothing: the whole
patch is planned before anything is written, and any hunk that does not match, any path that
is refused, fails the whole patch with every file untouched. A file keeps its line endings
(CRLF files stay CRLF) and its final newline, or lack of one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.providers.base import ToolSpec
from server.tools.base import ToolError, printable, quoted
from server.tools.edits import FileChange, Plan, line_ending, nearest_lines, read_current
from server.tools.paths import Workspace

BEGIN, END = "*** Begin Patch", "*** End Patch"
ADD, UPDATE, DELETE, MOVE = (
    "*** Add File: ",
    "*** Update File: ",
    "*** Delete File: ",
    "*** Move to: ",
)
END_OF_FILE = "*** End of File"
MAX_TITLE_CHARS = 120

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "patchText": {
            "type": "string",
            "minLength": 1,
            "description": "The whole patch, from '*** Begin Patch' to '*** End Patch'.",
        },
    },
    "required": ["patchText"],
    "additionalProperties": False,
}
SPEC = ToolSpec(
    name="apply_patch",
    description=(
        "Add, update, move and delete workspace text files in one patch: '*** Begin Patch', "
        "then '*** Add File: path' (lines prefixed '+'), '*** Update File: path' (optionally "
        "'*** Move to: path') with '@@' hunks of ' ' context, '-' removed and '+' added lines, "
        "or '*** Delete File: path', then '*** End Patch'. All or nothing."
    ),
    parameters=_PARAMETERS,
)


@dataclass
class Hunk:
    context: str | None  # the "@@ line" to find first, if any
    lines: list[tuple[str, str]] = field(default_factory=list)  # (" ", "-" or "+", text)
    at_end: bool = False  # "*** End of File"

    @property
    def old(self) -> list[str]:
        return [text for op, text in self.lines if op != "+"]

    @property
    def new(self) -> list[str]:
        return [text for op, text in self.lines if op != "-"]

    def replacement(self, found: list[str]) -> list[str]:
        """The new lines, where ``found`` is what the old lines matched in the file: context
        lines keep the file's own spelling (its whitespace, when matched loosely)."""
        result: list[str] = []
        taken = 0
        for op, text in self.lines:
            if op == " ":
                result.append(found[taken])
            if op != "+":
                taken += 1
            else:
                result.append(text)
        return result


@dataclass
class Operation:
    kind: str  # "add", "update" or "delete"
    path: str
    move_to: str | None = None
    added: list[str] = field(default_factory=list)  # the new file's lines (add)
    hunks: list[Hunk] = field(default_factory=list)


# --- parsing ---------------------------------------------------------------------------------


def parse(text: str) -> list[Operation]:
    """The operations of a patch; a :class:`ToolError` names the first line that is wrong."""
    lines = text.strip().replace("\r\n", "\n").split("\n")
    if lines[0].strip() != BEGIN:
        raise ToolError(f"the patch must start with {quoted(BEGIN)}")
    if lines[-1].strip() != END:
        raise ToolError(f"the patch must end with {quoted(END)}")
    body = lines[1:-1]
    operations: list[Operation] = []
    index = 0
    while index < len(body):
        line = body[index]
        number = index + 2  # 1-based, counting the Begin line
        if line.startswith(ADD):
            operation = Operation("add", _path(line, ADD, number))
            index += 1
            while index < len(body) and not body[index].startswith("*** "):
                if body[index].strip() == "" and _only_blank_until_marker(body, index):
                    index += 1
                    continue
                if not body[index].startswith("+"):
                    raise ToolError(
                        f"line {index + 2} of the patch: every line of an added file must "
                        f"start with '+', got {_shown(body[index])}"
                    )
                operation.added.append(body[index][1:])
                index += 1
        elif line.startswith(DELETE):
            operation = Operation("delete", _path(line, DELETE, number))
            index += 1
        elif line.startswith(UPDATE):
            operation = Operation("update", _path(line, UPDATE, number))
            index += 1
            if index < len(body) and body[index].startswith(MOVE):
                operation.move_to = _path(body[index], MOVE, index + 2)
                index += 1
            index = _parse_hunks(body, index, operation)
        elif line.strip() == "":
            index += 1
            continue
        else:
            raise ToolError(
                f"line {number} of the patch: expected '*** Add File: ', '*** Update File: ' "
                f"or '*** Delete File: ', got {_shown(line)}"
            )
        operations.append(operation)
    if not operations:
        raise ToolError("the patch changes no file")
    return operations


def _parse_hunks(body: list[str], index: int, operation: Operation) -> int:
    hunk: Hunk | None = None
    while index < len(body):
        line = body[index]
        if line == END_OF_FILE or line.startswith(END_OF_FILE):
            if hunk is None:
                raise ToolError(f"line {index + 2} of the patch: '{END_OF_FILE}' before any hunk")
            hunk.at_end = True
            index += 1
            continue
        if line.startswith("*** "):
            break
        if line.startswith("@@"):
            hunk = Hunk(line[2:].strip() or None)
            operation.hunks.append(hunk)
        else:
            if hunk is None:  # the first hunk may come without its "@@" line
                hunk = Hunk(None)
                operation.hunks.append(hunk)
            if line.startswith(("+", "-", " ")):
                hunk.lines.append((line[0], line[1:]))
            elif line == "":
                hunk.lines.append((" ", ""))
            else:
                raise ToolError(
                    f"line {index + 2} of the patch: a hunk line must start with ' ', '-' or "
                    f"'+', got {_shown(line)}"
                )
        index += 1
    if not operation.hunks and operation.move_to is None:
        raise ToolError(f"'*** Update File: {printable(operation.path)}' has no hunks")
    for number, each in enumerate(operation.hunks, start=1):
        if not each.lines:
            raise ToolError(f"hunk {number} of {quoted(operation.path)} is empty")
    return index


def _only_blank_until_marker(body: list[str], index: int) -> bool:
    """Whether only blank lines come between ``index`` and the next '*** ' line or the end."""
    for line in body[index:]:
        if line.startswith("*** "):
            return True
        if line.strip() != "":
            return False
    return True


def _path(line: str, marker: str, number: int) -> str:
    path = line[len(marker) :].strip()
    if not path:
        raise ToolError(f"line {number} of the patch: {quoted(marker.strip())} names no file")
    return path


def _shown(line: str) -> str:
    return quoted(line if len(line) <= 80 else line[:80] + "…")


# --- applying hunks to text ------------------------------------------------------------------

_LOOSER: tuple[Callable[[str], str], ...] = (lambda s: s, str.rstrip, str.strip)


def _seek(lines: list[str], wanted: list[str], start: int, at_end: bool) -> int | None:
    """Where ``wanted`` occurs in ``lines`` from ``start``: exactly, else ignoring trailing,
    else surrounding whitespace. An ``at_end`` hunk is tried at the very end first."""
    if not wanted:
        return start
    last = len(lines) - len(wanted)
    for norm in _LOOSER:
        goal = [norm(line) for line in wanted]
        if at_end and last >= start and [norm(x) for x in lines[last:]] == goal:
            return last
        for at in range(start, last + 1):
            if all(norm(lines[at + i]) == goal[i] for i in range(len(goal))):
                return at
    return None


def apply_hunks(text: str, hunks: list[Hunk], shown: str) -> str:
    """``text`` with ``hunks`` applied, in the file's line endings."""
    eol = line_ending(text)
    lines = text.replace("\r\n", "\n").split("\n")
    final_newline = text == "" or lines[-1] == ""
    if lines[-1] == "":
        lines.pop()
    replacements: list[tuple[int, int, list[str]]] = []
    start = 0
    for number, given_hunk in enumerate(hunks, start=1):
        hunk = given_hunk
        if hunk.context is not None:
            found = _seek(lines, [hunk.context], start, at_end=False)
            if found is None:
                raise ToolError(
                    f"hunk {number} of {quoted(shown)}: the '@@' line {_shown(hunk.context)} "
                    f"was not found; nothing was changed. The nearest lines:\n"
                    f"{nearest_lines(text, hunk.context)}"
                )
            start = found + 1
        if not hunk.old:  # only additions: after the '@@' line, else at the end of the file
            replacements.append((start if hunk.context is not None else len(lines), 0, hunk.new))
            continue
        at = _seek(lines, hunk.old, start, hunk.at_end)
        if at is None and hunk.lines[-1] == (" ", ""):  # a blank line the file lacks
            hunk = Hunk(hunk.context, hunk.lines[:-1], hunk.at_end)
            at = _seek(lines, hunk.old, start, hunk.at_end) if hunk.old else None
        if at is None:
            expected = "\n".join(hunk.old)
            raise ToolError(
                f"hunk {number} of {quoted(shown)} does not match the file; nothing was "
                f"changed. It expects:\n{expected}\nThe nearest lines in the file:\n"
                f"{nearest_lines(text, expected)}"
            )
        length = len(hunk.old)
        replacements.append((at, length, hunk.replacement(lines[at : at + length])))
        start = at + length
    for at, length, new in sorted(replacements, key=lambda r: r[0], reverse=True):
        lines[at : at + length] = new
    return eol.join(lines) + (eol if final_newline and lines else "")


# --- the plan --------------------------------------------------------------------------------


def plan(workspace: Workspace, args: Mapping[str, Any], title: str) -> Plan:
    operations = parse(args["patchText"])
    changes: list[FileChange] = []
    touched: dict[str, str] = {}  # real path -> the path the patch named it by

    def claim(real: object, given: str) -> None:
        key = str(real)
        if key in touched:
            raise ToolError(
                f"the patch changes {quoted(given)} twice; put all its hunks in one "
                "'*** Update File:' section"
            )
        touched[key] = given

    for operation in operations:
        given = operation.path
        if operation.kind == "add":
            target = workspace.target(given)
            if target.exists:
                raise ToolError(
                    f"{quoted(given)} already exists; use '*** Update File:' to change it"
                )
            claim(target.real, given)
            content = "\n".join(operation.added) + "\n" if operation.added else ""
            changes.append(FileChange(target.shown, target.real, None, content))
            continue
        entry = workspace.resolve(given)
        current = read_current(entry, given, strict=operation.kind != "delete")
        claim(entry.real, given)
        if operation.kind == "delete":
            changes.append(
                FileChange(entry.shown, entry.real, current.text, None, before_bytes=current.raw)
            )
            continue
        after = apply_hunks(current.text, operation.hunks, given)
        if operation.move_to is None:
            changes.append(
                FileChange(
                    entry.shown,
                    entry.real,
                    current.text,
                    after,
                    before_bytes=current.raw,
                    mode=current.mode,
                )
            )
            continue
        target = workspace.target(operation.move_to)
        if target.real == entry.real:
            raise ToolError(f"'*** Move to: {printable(operation.move_to)}' is the same file")
        if target.exists:
            raise ToolError(
                f"cannot move {quoted(given)} to {quoted(operation.move_to)}: it already exists"
            )
        claim(target.real, operation.move_to)
        changes.append(
            FileChange(
                target.shown,
                target.real,
                current.text,
                after,
                before_bytes=current.raw,
                mode=current.mode,
                moved_from=entry.shown,
                source=entry.real,
            )
        )
    letters = {"add": "A", "update": "M", "move": "R", "delete": "D"}
    listed = [
        f"{letters[c.action]} {c.moved_from} -> {c.shown}"
        if c.moved_from
        else f"{letters[c.action]} {c.shown}"
        for c in changes
    ]
    names = ", ".join(c.shown for c in changes)
    if len(names) > MAX_TITLE_CHARS:
        names = names[:MAX_TITLE_CHARS] + "…"
    summary = "Applied the patch:\n" + "\n".join(listed)
    return Plan(SPEC.name, names, tuple(changes), summary)
