"""Looking for an API key in what a run left behind: database files, logs, captured frames.

A key is searched for whole and by a distinctive middle part (16 characters of its random
hex), so that a truncated or partly masked copy is found too.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def make_key(label: str) -> str:
    """A key no other text contains by chance: ``sk-<label>-<32 hex digits>``."""
    return f"sk-{label}-{secrets.token_hex(16)}"


def needles(key: str) -> dict[str, bytes]:
    """The whole key and its middle part (16 characters from the random hex tail)."""
    tail = key.rsplit("-", 1)[-1]
    middle = tail[len(tail) // 2 - 8 : len(tail) // 2 + 8]
    assert len(middle) == 16, key
    return {"key": key.encode(), "middle part": middle.encode()}


@dataclass(frozen=True)
class Leak:
    path: Path
    what: str  # "key" or "middle part"
    offset: int

    def __str__(self) -> str:
        return f"the API key ({self.what}) is in {self.path} at byte {self.offset}"


def files_under(*roots: Path) -> list[Path]:
    """Every regular file under the roots (a root may itself be a file)."""
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found.extend(p for p in sorted(root.rglob("*")) if p.is_file())
    return found


def scan(paths: Iterable[Path], key: str) -> list[Leak]:
    """Every place where the key (or its middle part) appears in these files' raw bytes."""
    leaks: list[Leak] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue  # gone meanwhile (a -wal removed at close)
        for what, needle in needles(key).items():
            at = data.find(needle)
            if at >= 0:
                leaks.append(Leak(path, what, at))
    return leaks


def scan_text(texts: Iterable[str], key: str) -> list[str]:
    """Texts (e.g. error messages a client received) that contain the key or its middle."""
    marks = [n.decode() for n in needles(key).values()]
    return [t for t in texts if any(m in t for m in marks)]


__all__ = ["Leak", "files_under", "make_key", "needles", "scan", "scan_text"]
