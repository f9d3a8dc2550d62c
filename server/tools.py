"""Read-only workspace tools the model may call: ``read_file``, ``list_files`` and ``grep``.

Every path is relative to a root directory (the session's directory) and must stay inside it:
absolute paths and ``..`` are refused, and so is anything whose real path (symlinks followed)
is outside the root's real path. Walks (``list_files``, ``grep``) never follow directory
symlinks, skip symlinks that lead outside the root, and skip ``.git``, ``node_modules``,
``.venv`` and ``__pycache__``. Messages name paths as the model gave them and never show
anything outside the root, not even the root's own absolute path.

Output is capped at 50 000 characters and 2 000 lines, closing note included; when the caps
cut something, ``truncated`` is set and the last line says what was cut and how to see more.
:func:`run_tool` never raises for bad input: every problem becomes ``ToolOutcome.error``.

Two traps, both from text the model or the disk chooses:

* A file name that is not UTF-8 (``caf\\xe9.txt`` from an old archive) comes out of
  ``os.scandir`` as a str with a lone surrogate. Such a str cannot be encoded as UTF-8, so it
  must never reach the output, a title or a message: SQLite would refuse the write and the
  turn would fail with the tool part left ``running``. Names are shown with the odd bytes
  escaped (``caf\\xe9.txt``), and a path written that way finds the file again.
* A regular expression can backtrack for longer than the universe lasts (``(a+)+$``), and
  Python's ``re`` holds the GIL while it does: the whole server would freeze and no cancel
  could reach it. ``grep`` therefore runs in a child process (``server.grep_worker``, same
  code, same semantics), limited in wall-clock time, CPU and memory, polled for cancellation,
  and killed with its whole process group when either comes first.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from itertools import islice
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO, Protocol

from server.providers.base import ToolSpec

log = logging.getLogger(__name__)

MAX_OUTPUT_CHARS = 50_000
MAX_OUTPUT_LINES = 2_000
MAX_LINE_CHARS = 2_000  # longer lines are cut, in read_file and in grep's output
DEFAULT_READ_LIMIT = 2_000
MAX_GREP_MATCHES = 200
MAX_GREP_FILE_BYTES = 1_000_000
MAX_LIST_ENTRIES = 500
MAX_WALK_ENTRIES = 100_000  # a walk stops after visiting this many entries
BINARY_SNIFF_BYTES = 8_192
SKIPPED_NAMES = frozenset({".git", "node_modules", ".venv", "__pycache__"})
GREP_TIMEOUT_S = 10.0  # wall-clock limit of one grep, in its child process
GREP_MEMORY_BYTES = 1 << 30  # address-space limit of that child
GREP_POLL_S = 0.05  # how often a running grep looks at its cancel token
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # where ``server`` can be imported from

_READ_FILE: dict[str, Any] = {
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
_LIST_FILES: dict[str, Any] = {
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
_GREP: dict[str, Any] = {
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

TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="read_file",
        description=(
            "Read a text file in the workspace. Lines come numbered like '   12| text'. "
            f"At most {MAX_OUTPUT_LINES} lines and {MAX_OUTPUT_CHARS} characters per call, "
            f"lines cut at {MAX_LINE_CHARS} characters; use offset and limit for more."
        ),
        parameters=_READ_FILE,
    ),
    ToolSpec(
        name="list_files",
        description=(
            "List files and directories under a workspace directory, recursively, sorted, "
            f"directories ending in '/'. At most {MAX_LIST_ENTRIES} entries."
        ),
        parameters=_LIST_FILES,
    ),
    ToolSpec(
        name="grep",
        description=(
            "Search text files in the workspace for a regular expression. Prints "
            f"'path:line: text' for each matching line, at most {MAX_GREP_MATCHES} matches; "
            f"files over {MAX_GREP_FILE_BYTES // 1_000_000} MB and binary files are skipped."
        ),
        parameters=_GREP,
    ),
)
_SPECS = {spec.name: spec for spec in TOOL_SPECS}


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool call produced. ``error`` is set (and ``output`` empty) when it failed."""

    output: str
    title: str
    error: str | None = None
    truncated: bool = False


class _ToolError(Exception):
    """A failure to report to the model; the message is safe to show."""


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


_GrepRunner = Callable[["_Workspace", Mapping[str, Any], str], ToolOutcome]


def run_tool(
    name: str,
    arguments: str,
    root: Path,
    *,
    cancel: CancelToken | None = None,
    grep_timeout_s: float = GREP_TIMEOUT_S,
) -> ToolOutcome:
    """Run tool ``name`` with ``arguments`` (the model's raw JSON text) inside ``root``.

    ``grep`` runs in a child process that is stopped after ``grep_timeout_s`` seconds or as
    soon as ``cancel`` is set; both come back as a tool error.
    """

    def grep(workspace: _Workspace, args: Mapping[str, Any], title: str) -> ToolOutcome:
        return _grep_in_child(workspace, args, title, cancel, grep_timeout_s)

    return _run(name, arguments, root, grep)


def grep_here(arguments: str, root: Path) -> ToolOutcome:
    """``grep`` in this very process, unbounded in time: for ``server.grep_worker`` only."""
    return _run("grep", arguments, root, _grep)


def _run(name: str, arguments: str, root: Path, grep: _GrepRunner) -> ToolOutcome:
    title = name
    try:
        spec = _SPECS.get(name)
        if spec is None:
            known = ", ".join(_SPECS)
            raise _ToolError(f"unknown tool {_q(name)}; the tools are {known}")
        args = _parse_arguments(spec, arguments)
        title = _title(name, args)
        workspace = _Workspace.open(root)
        if name == "read_file":
            return _read_file(workspace, args, title)
        if name == "list_files":
            return _list_files(workspace, args, title)
        return grep(workspace, args, title)
    except _ToolError as e:
        return ToolOutcome(output="", title=title, error=str(e))
    except Exception:
        log.exception("tool %s failed", name)
        return ToolOutcome(output="", title=title, error=f"{name} failed unexpectedly")


def _q(text: str) -> str:
    """``text`` quoted for messages."""
    return json.dumps(_printable(text), ensure_ascii=False)


def _printable(text: str) -> str:
    """``text`` with what cannot be written as UTF-8 escaped: the bytes of a name that is not
    UTF-8 as ``\\xe9``, any other lone surrogate as ``\\udXXX``. Valid text is unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes os.scandir decoded
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


_ESCAPED_BYTE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")


def _unescaped(given: str) -> str | None:
    """The name ``given`` stands for when it spells undecodable bytes as ``\\xNN`` (as
    :func:`_printable` shows them), else None. Only bytes 0x80-0xff are taken: those are the
    only ones such names escape, and ``/`` or ``.`` can never be smuggled in this way."""
    if not _ESCAPED_BYTE.search(given):
        return None
    try:
        raw = given.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None
    raw = re.sub(rb"\\x([89a-fA-F][0-9a-fA-F])", lambda m: bytes([int(m[1], 16)]), raw)
    return raw.decode("utf-8", "surrogateescape")


def _title(name: str, args: Mapping[str, Any]) -> str:
    if name == "grep":
        return _printable(str(args["pattern"]))
    return _printable(str(args.get("path", ".")))


# --- arguments -------------------------------------------------------------------------------


def _parse_arguments(spec: ToolSpec, arguments: str) -> dict[str, Any]:
    """The arguments checked against the spec's schema; null optional values are dropped."""
    text = arguments.strip() if isinstance(arguments, str) else arguments
    if not isinstance(text, str):
        raise _ToolError("arguments must be a JSON object")
    if text == "":
        raw: object = {}
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise _ToolError(
                f"arguments are not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
            ) from None
    if not isinstance(raw, dict):
        raise _ToolError("arguments must be a JSON object")
    properties: Mapping[str, Mapping[str, Any]] = spec.parameters["properties"]
    required: Iterable[str] = spec.parameters.get("required", ())
    args: dict[str, Any] = {}
    for key, value in raw.items():
        schema = properties.get(key)
        if schema is None:
            takes = ", ".join(properties)
            raise _ToolError(f"unknown argument {_q(key)}; {spec.name} takes {takes}")
        if value is None:
            continue
        args[key] = _check_value(key, value, schema)
    for key in required:
        if key not in args:
            raise _ToolError(f"missing required argument {_q(key)}")
    return args


def _check_value(key: str, value: object, schema: Mapping[str, Any]) -> object:
    kind = schema["type"]
    if kind == "string":
        if not isinstance(value, str):
            raise _ToolError(f"argument {_q(key)} must be a string")
        return value
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _ToolError(f"argument {_q(key)} must be an integer")
        minimum = schema.get("minimum")
        if minimum is not None and value < minimum:
            raise _ToolError(f"argument {_q(key)} must be at least {minimum}, got {value}")
        return value
    raise AssertionError(f"schema type {kind} is not handled")


# --- confinement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """Something found in the workspace."""

    shown: str  # the path relative to the root, as the model should write it
    name: str
    real: Path  # where it really is (inside the root)
    is_dir: bool
    descend: bool = False  # a real directory (not a symlink) that a walk enters


@dataclass(frozen=True)
class _Workspace:
    root: Path  # the real path of the root

    @classmethod
    def open(cls, root: Path) -> _Workspace:
        real = Path(os.path.realpath(root))
        if not real.is_dir():
            raise _ToolError("the workspace root is not a directory")
        return cls(real)

    def contains(self, real: Path) -> bool:
        return real == self.root or real.is_relative_to(self.root)

    def resolve(self, given: str) -> _Entry:
        """The existing file or directory ``given`` names, which must be inside the root."""
        if given == "":
            raise _ToolError("path is empty; give a path relative to the workspace root")
        if "\0" in given:
            raise _ToolError(f"path {_q(given)} contains a NUL character")
        if PurePosixPath(given).is_absolute() or PureWindowsPath(given).anchor:
            raise _ToolError(
                f"path {_q(given)} is absolute; give a path relative to the workspace root"
            )
        if ".." in re.split(r"[\\/]", given):
            raise _ToolError(f"path {_q(given)} contains '..'; paths must stay in the workspace")
        shown = _printable(str(PurePosixPath(given.replace("\\", "/"))))
        found = self._find(given, given)
        if found is None:
            odd = _unescaped(given)  # a name list_files showed escaped
            found = self._find(odd, given) if odd is not None else None
            shown = _printable(str(PurePosixPath(odd))) if odd is not None else shown
        if found is None:
            raise _ToolError(f"{_q(given)} does not exist")
        real, mode = found
        return _Entry(
            shown, _printable(real.name), real, stat.S_ISDIR(mode), descend=stat.S_ISDIR(mode)
        )

    def _find(self, path: str, given: str) -> tuple[Path, int] | None:
        """The real path and mode of ``path`` inside the root; None when nothing is there."""
        try:
            real = Path(os.path.realpath(self.root / path))
            if not self.contains(real):
                raise _ToolError(f"path {_q(given)} leads outside the workspace")
            return real, real.stat().st_mode
        except (FileNotFoundError, UnicodeEncodeError):  # a surrogate no file name can hold
            return None
        except OSError as e:
            raise _ToolError(f"cannot open {_q(given)}: {e.strerror}") from None

    def walk(self, start: _Entry) -> _Walk:
        return _Walk(self, start)


class _Walk:
    """Everything under ``start``, depth first, each directory's entries sorted by name.
    Iterate it once; ``stopped_early`` then says whether MAX_WALK_ENTRIES cut it short."""

    def __init__(self, workspace: _Workspace, start: _Entry):
        self._workspace = workspace
        self._start = start
        self.stopped_early = False

    def __iter__(self) -> Iterator[_Entry]:
        visited = 0
        stack = [iter(self._children(self._start))]
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                continue
            visited += 1
            if visited > MAX_WALK_ENTRIES:
                self.stopped_early = True
                return
            yield entry
            if entry.descend:
                stack.append(iter(self._children(entry)))

    def _children(self, directory: _Entry) -> list[_Entry]:
        prefix = "" if directory.shown == "." else directory.shown + "/"
        try:
            with os.scandir(directory.real) as it:
                found = sorted(it, key=lambda e: e.name)
        except OSError as e:
            log.debug("cannot list %s: %s", directory.shown, e.strerror)
            return []
        children: list[_Entry] = []
        for item in found:
            if item.name in SKIPPED_NAMES:
                continue
            name = _printable(item.name)  # never a lone surrogate: see the module's docstring
            shown = prefix + name
            try:
                if item.is_symlink():
                    target = Path(os.path.realpath(item.path))
                    if not self._workspace.contains(target):
                        continue  # leads outside the root
                    mode = target.stat().st_mode  # raises (skipped) when it leads nowhere
                    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
                        children.append(_Entry(shown, name, target, stat.S_ISDIR(mode)))
                elif item.is_dir(follow_symlinks=False):
                    path = Path(item.path)
                    children.append(_Entry(shown, name, path, True, descend=True))
                elif item.is_file(follow_symlinks=False):
                    children.append(_Entry(shown, name, Path(item.path), False))
            except OSError as e:
                log.debug("skipping %s: %s", shown, e.strerror)
        return children


# --- output caps -----------------------------------------------------------------------------


def _collect(lines: Iterable[str]) -> tuple[list[str], bool]:
    """Lines up to one past the caps, and whether ``lines`` ran out before the caps."""
    taken: list[str] = []
    size = 0
    for line in lines:
        taken.append(line)
        size += len(line) + 1
        if len(taken) > MAX_OUTPUT_LINES or size > MAX_OUTPUT_CHARS + 1:
            return taken, False
    return taken, True


def _join(lines: list[str], note: Callable[[int], str] | None) -> tuple[str, int]:
    """``lines`` and the closing ``note(shown)`` within the caps, dropping lines from the end
    to make room; also returns how many lines were shown."""
    shown = len(lines)
    size = sum(len(line) + 1 for line in lines)
    while True:
        tail = note(shown) if note is not None else None
        total_lines = shown + (tail is not None)
        total_chars = size + (len(tail) + 1 if tail is not None else 0) - 1
        if shown == 0 or (total_lines <= MAX_OUTPUT_LINES and total_chars <= MAX_OUTPUT_CHARS):
            break
        shown -= 1
        size -= len(lines[shown]) + 1
    body = lines[:shown] + ([tail] if tail is not None else [])
    return "\n".join(body), shown


def _cut(text: str) -> tuple[str, bool]:
    if len(text) <= MAX_LINE_CHARS:
        return text, False
    extra = len(text) - MAX_LINE_CHARS
    return f"{text[:MAX_LINE_CHARS]} … [line cut: {extra} more characters]", True


# --- reading text ----------------------------------------------------------------------------


def _is_binary(handle: BinaryIO) -> bool:
    head = handle.read(BINARY_SNIFF_BYTES)
    handle.seek(0)
    return b"\0" in head


def _lines(handle: BinaryIO) -> Iterator[tuple[str, int]]:
    """The lines of a UTF-8 text file (\\n, \\r\\n or \\r ended), each cut at MAX_LINE_CHARS
    characters, with how many characters were cut; memory stays bounded on huge lines."""
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline=None)
    while True:
        chunk = text.readline(MAX_LINE_CHARS + 1)
        if chunk == "":
            return
        if chunk.endswith("\n"):
            yield chunk[:-1], 0
            continue
        if len(chunk) <= MAX_LINE_CHARS:
            yield chunk, 0  # the last line, without a newline
            continue
        extra = len(chunk) - MAX_LINE_CHARS
        while True:
            rest = text.readline(65_536)
            if rest.endswith("\n"):
                extra += len(rest) - 1
                break
            extra += len(rest)
            if rest == "":
                break
        yield chunk[:MAX_LINE_CHARS], extra


def _open_text(entry: _Entry, given: str) -> BinaryIO:
    if entry.is_dir:
        raise _ToolError(f"{_q(given)} is a directory; use list_files to see what it holds")
    try:
        mode = entry.real.stat().st_mode
        if not stat.S_ISREG(mode):
            raise _ToolError(f"{_q(given)} is not a regular file")
        handle = entry.real.open("rb")
    except OSError as e:
        raise _ToolError(f"cannot read {_q(given)}: {e.strerror}") from None
    if _is_binary(handle):
        handle.close()
        raise _ToolError(f"{_q(given)} is a binary file; these tools read text files only")
    return handle


# --- the tools -------------------------------------------------------------------------------


def _read_file(workspace: _Workspace, args: Mapping[str, Any], title: str) -> ToolOutcome:
    given: str = args["path"]
    offset: int = args.get("offset", 1)
    limit: int = args.get("limit", DEFAULT_READ_LIMIT)
    with _open_text(workspace.resolve(given), given) as handle:
        lines = _lines(handle)
        before = sum(1 for _ in islice(lines, offset - 1))
        cut_lines: list[int] = []

        def numbered() -> Iterator[str]:
            for number, (text, extra) in enumerate(islice(lines, limit), start=offset):
                marker = f" … [line cut: {extra} more characters]" if extra else ""
                if extra:
                    cut_lines.append(number)
                yield f"{number:>5}| {text}{marker}"

        collected, ran_out = _collect(numbered())
        goes_on = not ran_out or next(lines, None) is not None
    if not collected:
        if offset > 1:
            raise _ToolError(
                f"offset {offset} is past the end of {_q(given)}, which has {before} lines"
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

    output, shown = _join(collected, note if goes_on else None)
    last = offset + shown - 1
    truncated = shown < len(collected) or any(n <= last for n in cut_lines)
    return ToolOutcome(output=output, title=title, truncated=truncated)


def _list_files(workspace: _Workspace, args: Mapping[str, Any], title: str) -> ToolOutcome:
    given: str = args.get("path", ".")
    pattern: str | None = args.get("pattern")
    start = workspace.resolve(given)
    if not start.is_dir:
        raise _ToolError(f"{_q(given)} is not a directory; use read_file to read a file")
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
        what = "no entries" if pattern is None else f"no entries match {_q(pattern)}"
        return ToolOutcome(output=f"({what} in {given})", title=title)

    def note(shown: int) -> str:
        return f"({shown} entries shown; there are more: list a subdirectory or give a pattern)"

    output, shown = _join(entries, note if more else None)
    return ToolOutcome(output=output, title=title, truncated=more or shown < len(entries))


def _grep(workspace: _Workspace, args: Mapping[str, Any], title: str) -> ToolOutcome:
    pattern: str = args["pattern"]
    given: str = args.get("path", ".")
    include: str | None = args.get("include")
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise _ToolError(f"invalid regular expression {_q(pattern)}: {e}") from None
    start = workspace.resolve(given)
    walk: _Walk | None = None
    files: Iterable[_Entry]
    if start.is_dir:
        walk = files = workspace.walk(start)
    else:
        if _too_big(start):
            raise _ToolError(f"{_q(given)} is over 1 MB; grep skips such files, use read_file")
        _open_text(start, given).close()  # refuses binary and special files
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
            line, cut = _cut(text)
            cut_any = cut_any or cut
            matches.append(f"{entry.shown}:{number}: {line}")
        if len(matches) > MAX_GREP_MATCHES:
            break
    more = len(matches) > MAX_GREP_MATCHES or (walk is not None and walk.stopped_early)
    collected, ran_out = _collect(matches[:MAX_GREP_MATCHES])
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
    output, shown = _join(collected, note if needs_note else None)
    truncated = needs_note or shown < len(collected) or cut_any
    return ToolOutcome(output=output, title=title, truncated=truncated)


def _grep_in_child(
    workspace: _Workspace,
    args: Mapping[str, Any],
    title: str,
    cancel: CancelToken | None,
    timeout_s: float,
) -> ToolOutcome:
    """:func:`_grep` run by ``server.grep_worker`` in a child process of its own group, so a
    runaway pattern costs that child, never this process's GIL, and can be killed."""
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
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.grep_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,  # never this process's stdout: that is the protocol
            stderr=subprocess.PIPE,
            cwd=_PACKAGE_ROOT,
            env=env,
            start_new_session=True,  # its own process group, killed as one
        )
    except OSError as e:
        raise _ToolError(f"grep could not start: {e.strerror}") from None
    deadline = time.monotonic() + timeout_s
    data: bytes | None = request
    try:
        while True:
            try:
                out, err = proc.communicate(data, timeout=GREP_POLL_S)
                break
            except subprocess.TimeoutExpired:
                data = None  # sent on the first call
            if cancel is not None and cancel.is_set():
                raise _ToolError("grep cancelled")
            if time.monotonic() >= deadline:
                raise _ToolError(
                    f"grep timed out after {timeout_s:g} s; "
                    "use a simpler pattern or search fewer files"
                )
    finally:
        if proc.returncode is None:
            _kill(proc)
    if err:
        log.debug("grep worker said: %s", err.decode("utf-8", "replace")[-2_000:])
    if proc.returncode != 0:
        if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            raise _ToolError(f"grep was stopped after using {int(timeout_s) + 2} s of CPU")
        raise _ToolError(f"grep failed unexpectedly (exit status {proc.returncode})")
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
        raise _ToolError("grep failed unexpectedly") from None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child's whole process group and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.communicate()


def outcome_json(outcome: ToolOutcome) -> str:
    """The outcome as ASCII JSON, as ``server.grep_worker`` answers."""
    return json.dumps(asdict(outcome))


def _too_big(entry: _Entry) -> bool:
    try:
        return entry.real.stat().st_size > MAX_GREP_FILE_BYTES
    except OSError:
        return True


def _search(entry: _Entry, regex: re.Pattern[str]) -> Iterator[tuple[int, str]]:
    """Matching lines of a text file under the size cap; binary or unreadable files yield
    nothing."""
    try:
        handle = entry.real.open("rb")
    except OSError as e:
        log.debug("grep cannot open %s: %s", entry.shown, e.strerror)
        return
    with handle:
        if _is_binary(handle):
            return
        text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline=None)
        for number, raw in enumerate(text, start=1):
            line = raw.removesuffix("\n")
            if regex.search(line):
                yield number, line
