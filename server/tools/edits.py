"""What the tools that change files share: a :class:`Plan` (every file's new content and diff,
computed with nothing written) and :func:`apply`, which writes a plan atomically.

Planning and applying are apart so that a permission question can show the diff before
anything changes: ``plan`` reads, checks and computes; ``apply`` writes. A tool's ``run`` is
``apply(plan(...))``.

* Every write is atomic: the new content goes to a temporary file in the same directory, is
  fsynced, gets the old file's permission bits (a new file gets the umask's), and replaces the
  file with ``os.replace``. A failure removes the temporary files.
* A plan of several files (``apply_patch``) is all or nothing as far as the disk allows: every
  new content is staged in its temporary file first, and only when all are staged are they
  moved into place. A failure while staging leaves every file as it was.
* :func:`apply` checks that each file still holds the bytes the plan read (or is still absent)
  and still resolves to the same place, so a file changed while the question was open is not
  overwritten with a stale edit.
* Files are UTF-8 text: binary files (a NUL byte) are refused, and so is a file to be edited
  that is not valid UTF-8 (writing it back would change bytes the edit did not touch).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from server.providers.base import ToolSpec
from server.tools.base import (
    MAX_LINE_CHARS,
    Planner,
    RunContext,
    Tool,
    ToolError,
    ToolOutcome,
    quoted,
)
from server.tools.paths import Entry, Workspace

log = logging.getLogger(__name__)

MAX_EDIT_FILE_BYTES = 10_000_000  # larger files are not changed by the edit tools
NEAREST_LINES = 12  # at most this many lines of context in a "not found" error
_DEFAULT_UMASK = 0o022

Action = Literal["add", "update", "move", "delete"]


@dataclass(frozen=True)
class FileChange:
    """One file's change. ``before`` is None for a new file, ``after`` None for a deletion."""

    shown: str  # the path as the model should write it (the new one for a move)
    real: Path  # where the new content goes, or the file deleted
    before: str | None
    after: str | None
    before_bytes: bytes | None = None  # what the plan read, checked again before writing
    mode: int | None = None  # permission bits to keep; None: a new file's (the umask's)
    moved_from: str | None = None  # shown path of the file moved here
    source: Path | None = None  # real path of the file moved here, removed once it is

    @property
    def action(self) -> Action:
        if self.after is None:
            return "delete"
        if self.before is None:
            return "add"
        return "move" if self.source is not None else "update"

    @property
    def diff(self) -> str:
        return unified_diff(self.moved_from or self.shown, self.shown, self.before, self.after)

    def describe(self) -> dict[str, Any]:
        """What a front end needs to show the change."""
        shown: dict[str, Any] = {
            "path": self.shown,
            "action": self.action,
            "diff": self.diff,
            "before": self.before,
        }
        if self.moved_from is not None:
            shown["movedFrom"] = self.moved_from
        return shown


@dataclass(frozen=True)
class Plan:
    """An edit computed and checked, nothing written yet."""

    tool: str
    title: str
    changes: tuple[FileChange, ...]
    summary: str  # what the model is told once it is applied
    metadata: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        for change in self.changes:
            if change.after is not None and not _encodable(change.after):
                raise ToolError(
                    f"the new text of {quoted(change.shown)} holds a lone surrogate "
                    "(an invalid \\ud800-\\udfff escape); write the character itself"
                )
        files = [change.describe() for change in self.changes]
        object.__setattr__(self, "metadata", {"files": files})


def edit_tool(spec: ToolSpec, planner: Planner, title_from: str | None = "path") -> Tool:
    """A :class:`Tool` that changes files: ``run`` is ``apply(plan(...))``. Not offered to the
    model: the permission gate (issue 8) must ask before a file changes, and until it is
    wired only :func:`server.tools.run_tool` with ``include_unoffered`` runs these."""

    def run(
        workspace: Workspace, args: Mapping[str, Any], title: str, context: RunContext
    ) -> ToolOutcome:
        return apply(planner(workspace, args, title))

    return Tool(spec, run, "edit", title_from=title_from, plan=planner)


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Current:
    """A text file as a plan read it."""

    text: str
    raw: bytes
    mode: int


def read_current(entry: Entry, given: str, *, strict: bool = True) -> Current:
    """The text of the file ``entry`` for changing it. Directories, special files, binary files
    and files over MAX_EDIT_FILE_BYTES are refused; so is text that is not UTF-8 when
    ``strict`` (an edit would rewrite bytes it did not touch)."""
    if entry.is_dir:
        raise ToolError(f"{quoted(given)} is a directory, not a file")
    try:
        info = entry.real.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{quoted(given)} is not a regular file")
        if info.st_size > MAX_EDIT_FILE_BYTES:
            raise ToolError(
                f"{quoted(given)} is over {MAX_EDIT_FILE_BYTES // 1_000_000} MB; "
                "the edit tools change smaller files only"
            )
        raw = entry.real.read_bytes()
    except OSError as e:
        raise ToolError(f"cannot read {quoted(given)}: {e.strerror}") from None
    if b"\0" in raw:
        raise ToolError(f"{quoted(given)} is a binary file; the edit tools change text files only")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        if strict:
            raise ToolError(
                f"{quoted(given)} is not UTF-8 text; the edit tools change UTF-8 files only"
            ) from None
        text = raw.decode("utf-8", "replace")
    return Current(text, raw, stat.S_IMODE(info.st_mode))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def line_ending(text: str) -> str:
    """The file's line ending: ``\\r\\n`` when it has any, else ``\\n``."""
    return "\r\n" if "\r\n" in text else "\n"


# --- messages --------------------------------------------------------------------------------


def numbered(lines: list[str], first: int) -> str:
    """``lines`` numbered from ``first`` like read_file's output, long lines cut."""
    shown = []
    for number, line in enumerate(lines, start=first):
        text = line.removesuffix("\r")
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " …"
        shown.append(f"{number:>5}| {text}")
    return "\n".join(shown)


def nearest_lines(text: str, wanted: str) -> str:
    """The lines of ``text`` most like ``wanted``, numbered: found by the most distinctive
    (longest) line of ``wanted``, widened to ``wanted``'s length."""
    lines = text.split("\n")
    if text == "":
        return "(the file is empty)"
    wanted_lines = wanted.replace("\r\n", "\n").split("\n")
    key_index = max(range(len(wanted_lines)), key=lambda i: len(wanted_lines[i].strip()))
    key = wanted_lines[key_index].strip()
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(key)
    best, best_ratio = 0, -1.0
    for index, line in enumerate(lines):
        matcher.set_seq1(line.strip())
        if matcher.real_quick_ratio() <= best_ratio or matcher.quick_ratio() <= best_ratio:
            continue
        ratio = matcher.ratio()
        if ratio > best_ratio:
            best, best_ratio = index, ratio
    start = max(0, best - key_index - 1)
    end = min(len(lines), start + min(len(wanted_lines) + 2, NEAREST_LINES))
    return numbered(lines[start:end], start + 1)


def _lines(text: str) -> list[str]:
    """``text`` split after each ``\\n`` (only: a ``\\r`` or form feed stays in its line)."""
    parts = text.split("\n")
    found = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        found.append(parts[-1])
    return found


def unified_diff(old_path: str, new_path: str, before: str | None, after: str | None) -> str:
    """The change as a unified diff (``/dev/null`` for a new or deleted file)."""
    diff = difflib.unified_diff(
        _lines(before or ""),
        _lines(after or ""),
        fromfile="/dev/null" if before is None else f"a/{old_path}",
        tofile="/dev/null" if after is None else f"b/{new_path}",
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in diff
    )


def line_counts(change: FileChange) -> tuple[int, int]:
    """Lines added and removed."""
    added = removed = 0
    for line in change.diff.splitlines()[2:]:
        if line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            removed += 1
    return added, removed


# --- applying --------------------------------------------------------------------------------


def apply(plan: Plan) -> ToolOutcome:
    """Write ``plan``: all its files or, failing that, none (see the module's docstring)."""
    changes = [
        c
        for c in plan.changes
        if c.after is None or c.source is not None or c.before_bytes != c.after.encode("utf-8")
    ]
    for change in changes:
        _check_unchanged(change)
    staged: list[tuple[Path, FileChange]] = []
    created: list[Path] = []
    try:
        for change in changes:
            if change.after is not None:
                tmp = _stage(change, created)
                staged.append((tmp, change))
    except BaseException:
        _discard(staged, created)
        raise
    done = 0
    try:
        for tmp, change in staged:
            os.replace(tmp, change.real)
            done += 1
            _sync_directory(change.real.parent)
        for change in changes:
            gone = change.real if change.after is None else change.source
            if gone is not None:
                gone.unlink()
                _sync_directory(gone.parent)
    except OSError as e:
        _discard(staged[done:], [])
        log.warning("%s applied only in part: %s", plan.tool, e)
        raise ToolError(
            f"{plan.tool} was applied only in part: {e.strerror}; read the files again"
        ) from None
    return ToolOutcome(output=plan.summary, title=plan.title, metadata=plan.metadata)


def _check_unchanged(change: FileChange) -> None:
    """Refuse a plan whose files changed, appeared, or moved behind a symlink since it was
    made."""
    _check_same(
        change.source or change.real, change.before_bytes, change.moved_from or change.shown
    )
    if change.source is not None:
        _check_same(change.real, None, change.shown)


def _check_same(path: Path, expected: bytes | None, shown: str) -> None:
    if Path(os.path.realpath(path)) != path:
        raise ToolError(f"{quoted(shown)} changed since the edit was planned; read it again")
    try:
        now: bytes | None = path.read_bytes()
    except FileNotFoundError:
        now = None
    except OSError as e:
        raise ToolError(f"cannot read {quoted(shown)}: {e.strerror}") from None
    if now != expected:
        what = "appeared" if expected is None else "changed"
        raise ToolError(f"{quoted(shown)} {what} since the edit was planned; read it again")


def _stage(change: FileChange, created: list[Path]) -> Path:
    """The new content in a temporary file beside its destination, fsynced, its mode set."""
    assert change.after is not None
    parent = change.real.parent
    try:
        _make_parents(parent, created)
        fd, name = tempfile.mkstemp(
            prefix=f".{change.real.name[:100]}.", suffix=".sessionlsp-tmp", dir=parent
        )
    except OSError as e:
        raise ToolError(f"cannot write {quoted(change.shown)}: {e.strerror}") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(change.after.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, change.mode if change.mode is not None else 0o666 & ~_umask())
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ToolError(f"cannot write {quoted(change.shown)}: {e.strerror}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def _make_parents(directory: Path, created: list[Path]) -> None:
    """Create ``directory`` and its missing parents, noting each one created."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _discard(staged: list[tuple[Path, FileChange]], created: list[Path]) -> None:
    for tmp, _ in staged:
        with contextlib.suppress(OSError):
            tmp.unlink()
    for directory in reversed(created):
        with contextlib.suppress(OSError):
            directory.rmdir()


def _sync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (best effort: not every OS can)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask, read without setting it (``os.umask`` would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _DEFAULT_UMASK
