"""Confinement: every path a tool takes is relative to the workspace root and stays inside it.

Absolute paths and ``..`` are refused, and so is anything whose real path (symlinks followed)
is outside the root's real path. Walks never follow directory symlinks, skip symlinks that lead
outside the root, and skip ``.git``, ``node_modules``, ``.venv`` and ``__pycache__``. Messages
name paths as the model gave them and never show anything outside the root, not even the root's
own absolute path.

A file name that is not UTF-8 (``caf\\xe9.txt`` from an old archive) comes out of
``os.scandir`` as a str with a lone surrogate, which must never reach the output (see
:mod:`server.tools`): names are shown with the odd bytes escaped, and a path written that way
finds the file again.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from server.tools.base import ToolError, printable, quoted

log = logging.getLogger(__name__)

MAX_WALK_ENTRIES = 100_000  # a walk stops after visiting this many entries
SKIPPED_NAMES = frozenset({".git", "node_modules", ".venv", "__pycache__"})

_ESCAPED_BYTE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")


def unescaped(given: str) -> str | None:
    """The name ``given`` stands for when it spells undecodable bytes as ``\\xNN`` (as
    :func:`printable` shows them), else None. Only bytes 0x80-0xff are taken: those are the
    only ones such names escape, and ``/`` or ``.`` can never be smuggled in this way."""
    if not _ESCAPED_BYTE.search(given):
        return None
    try:
        raw = given.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None
    raw = re.sub(rb"\\x([89a-fA-F][0-9a-fA-F])", lambda m: bytes([int(m[1], 16)]), raw)
    return raw.decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Entry:
    """Something found in the workspace."""

    shown: str  # the path relative to the root, as the model should write it
    name: str
    real: Path  # where it really is (inside the root)
    is_dir: bool
    descend: bool = False  # a real directory (not a symlink) that a walk enters


@dataclass(frozen=True)
class Target:
    """A path a tool may write: inside the root, existing or not."""

    shown: str  # the path relative to the root, as the model should write it
    real: Path  # where it is or will be (inside the root)
    exists: bool
    is_dir: bool


def _check_given(given: str) -> None:
    """Refuse what no tool path may be: empty, NUL, absolute, or containing ``..``."""
    if given == "":
        raise ToolError("path is empty; give a path relative to the workspace root")
    if "\0" in given:
        raise ToolError(f"path {quoted(given)} contains a NUL character")
    if PurePosixPath(given).is_absolute() or PureWindowsPath(given).anchor:
        raise ToolError(
            f"path {quoted(given)} is absolute; give a path relative to the workspace root"
        )
    if ".." in re.split(r"[\\/]", given):
        raise ToolError(f"path {quoted(given)} contains '..'; paths must stay in the workspace")


@dataclass(frozen=True)
class Workspace:
    root: Path  # the real path of the root

    @classmethod
    def open(cls, root: Path) -> Workspace:
        real = Path(os.path.realpath(root))
        if not real.is_dir():
            raise ToolError("the workspace root is not a directory")
        return cls(real)

    def contains(self, real: Path) -> bool:
        return real == self.root or real.is_relative_to(self.root)

    def resolve(self, given: str) -> Entry:
        """The existing file or directory ``given`` names, which must be inside the root."""
        _check_given(given)
        shown = printable(str(PurePosixPath(given.replace("\\", "/"))))
        found = self._find(given, given)
        if found is None:
            odd = unescaped(given)  # a name list_files showed escaped
            found = self._find(odd, given) if odd is not None else None
            shown = printable(str(PurePosixPath(odd))) if odd is not None else shown
        if found is None:
            raise ToolError(f"{quoted(given)} does not exist")
        real, mode = found
        return Entry(
            shown, printable(real.name), real, stat.S_ISDIR(mode), descend=stat.S_ISDIR(mode)
        )

    def target(self, given: str) -> Target:
        """Where a tool may write what ``given`` names: an existing file, or a new one whose
        missing parent directories will be created. Confined exactly as :meth:`resolve`: no
        absolute path, no ``..``, and the real path (symlinks followed, a dangling one too)
        inside the root. A name list_files showed escaped finds its file again."""
        _check_given(given)
        path, shown = given, printable(str(PurePosixPath(given.replace("\\", "/"))))
        odd = unescaped(given)
        if odd is not None and self._find(odd, given) is not None:
            path, shown = odd, printable(str(PurePosixPath(odd)))
        try:
            real = Path(os.path.realpath(self.root / path))
            os.fsencode(real)
        except UnicodeEncodeError:  # a lone surrogate that no file name can hold
            raise ToolError(f"path {quoted(given)} cannot be a file name") from None
        if not self.contains(real):
            raise ToolError(f"path {quoted(given)} leads outside the workspace")
        if real == self.root:
            raise ToolError(f"path {quoted(given)} is the workspace root, not a file")
        try:
            mode = real.stat().st_mode
        except FileNotFoundError:
            return Target(shown, real, exists=False, is_dir=False)
        except OSError as e:  # NotADirectoryError: a parent is a file
            raise ToolError(f"cannot write {quoted(given)}: {e.strerror}") from None
        return Target(shown, real, exists=True, is_dir=stat.S_ISDIR(mode))

    def _find(self, path: str, given: str) -> tuple[Path, int] | None:
        """The real path and mode of ``path`` inside the root; None when nothing is there."""
        try:
            real = Path(os.path.realpath(self.root / path))
            if not self.contains(real):
                raise ToolError(f"path {quoted(given)} leads outside the workspace")
            return real, real.stat().st_mode
        except (FileNotFoundError, UnicodeEncodeError):  # a surrogate no file name can hold
            return None
        except OSError as e:
            raise ToolError(f"cannot open {quoted(given)}: {e.strerror}") from None

    def walk(self, start: Entry) -> Walk:
        return Walk(self, start)


class Walk:
    """Everything under ``start``, depth first, each directory's entries sorted by name.
    Iterate it once; ``stopped_early`` then says whether MAX_WALK_ENTRIES cut it short."""

    def __init__(self, workspace: Workspace, start: Entry):
        self._workspace = workspace
        self._start = start
        self.stopped_early = False

    def __iter__(self) -> Iterator[Entry]:
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

    def _children(self, directory: Entry) -> list[Entry]:
        prefix = "" if directory.shown == "." else directory.shown + "/"
        try:
            with os.scandir(directory.real) as it:
                found = sorted(it, key=lambda e: e.name)
        except OSError as e:
            log.debug("cannot list %s: %s", directory.shown, e.strerror)
            return []
        children: list[Entry] = []
        for item in found:
            if item.name in SKIPPED_NAMES:
                continue
            name = printable(item.name)  # never a lone surrogate: see the module's docstring
            shown = prefix + name
            try:
                if item.is_symlink():
                    target = Path(os.path.realpath(item.path))
                    if not self._workspace.contains(target):
                        continue  # leads outside the root
                    mode = target.stat().st_mode  # raises (skipped) when it leads nowhere
                    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
                        children.append(Entry(shown, name, target, stat.S_ISDIR(mode)))
                elif item.is_dir(follow_symlinks=False):
                    path = Path(item.path)
                    children.append(Entry(shown, name, path, True, descend=True))
                elif item.is_file(follow_symlinks=False):
                    children.append(Entry(shown, name, Path(item.path), False))
            except OSError as e:
                log.debug("skipping %s: %s", shown, e.strerror)
        return children
