"""Writing long histories straight into opencode's storage, in its own format.

Driving 50 000 real turns through opencode would take hours, so the long-session figure seeds
the history the way bench/sessions.py does for sessionlsp: short user/assistant turns, then a
completed manual compaction (marker + summary), then 10 more turns. opencode keeps sessions in
SQLite (``$XDG_DATA_HOME/opencode/opencode.db``): a ``message`` row and ``part`` rows per
message, each with a JSON ``data`` column shaped like what opencode itself writes (captured
from a real session of this version). Ids are opencode's: a prefix, 12 hex digits of
``time_ms * 4096 + counter`` (ascending, so id order is creation order) and 14 random base62
characters. The session itself is created through the HTTP API first, so its row and its event
sequence are opencode's own; the seeding runs while no opencode process is running, and the
benchmark then checks that ``GET /session/{id}/message`` lists every seeded message.
"""

from __future__ import annotations

import json
import random
import sqlite3
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.opencode_peer import MODEL, PROVIDER

_ALPHABET = string.digits + string.ascii_letters
_TOKENS = {
    "total": 200,
    "input": 100,
    "output": 100,
    "reasoning": 0,
    "cache": {"write": 0, "read": 0},
}
SUMMARY_TEXT = "## Objective\n- Answer the numbered questions.\n"


@dataclass(frozen=True)
class _Row:
    table: str
    values: tuple[Any, ...]


class _Ids:
    """Ascending opencode ids starting just after ``start_ms``."""

    def __init__(self, start_ms: int, seed: int) -> None:
        self._next = (start_ms + 1) * 4096
        self._random = random.Random(seed)

    def new(self, prefix: str) -> tuple[str, int]:
        """(id, its millisecond timestamp)."""
        value = self._next
        self._next += 1
        suffix = "".join(self._random.choice(_ALPHABET) for _ in range(14))
        return f"{prefix}_{value & 0xFFFFFFFFFFFF:012x}{suffix}", value // 4096


class _Writer:
    def __init__(self, session_id: str, directory: str, ids: _Ids) -> None:
        self.session_id = session_id
        self.directory = directory
        self.ids = ids
        self.last_id = ""  # the message written last

    def message(self, data: dict[str, Any], parts: list[dict[str, Any]]) -> Iterator[_Row]:
        message_id, ms = self.ids.new("msg")
        data = data | {"time": {key: ms for key in data["time"]}}
        yield _Row("message", (message_id, self.session_id, ms, ms, json.dumps(data)))
        for part in parts:
            part_id, part_ms = self.ids.new("prt")
            stored = part | {"time": {"start": part_ms, "end": part_ms}} if "time" in part else part
            values = (part_id, message_id, self.session_id, part_ms, part_ms, json.dumps(stored))
            yield _Row("part", values)
        self.last_id = message_id

    def user(self, parts: list[dict[str, Any]]) -> Iterator[_Row]:
        data: dict[str, Any] = {
            "role": "user",
            "time": {"created": 0},
            "agent": "build",
            "model": {"providerID": PROVIDER, "modelID": MODEL},
        }
        yield from self.message(data, parts)

    def assistant(self, parent: str, text: str, summary: bool = False) -> Iterator[_Row]:
        mode = "compaction" if summary else "build"
        data: dict[str, Any] = {
            "parentID": parent,
            "role": "assistant",
            "mode": mode,
            "agent": mode,
            "path": {"cwd": self.directory, "root": "/"},
            "cost": 0,
            "tokens": _TOKENS,
            "modelID": MODEL,
            "providerID": PROVIDER,
            "time": {"created": 0, "completed": 0},
            "finish": "stop",
        }
        if summary:
            data["summary"] = True
        parts: list[dict[str, Any]] = [
            {"type": "step-start"},
            {"type": "text", "text": text, "time": {}},
            {"type": "step-finish", "reason": "stop", "tokens": _TOKENS, "cost": 0},
        ]
        yield from self.message(data, parts)

    def turn(self, i: int) -> Iterator[_Row]:
        yield from self.user([{"type": "text", "text": f"question {i}: " + "q" * 200}])
        yield from self.assistant(self.last_id, f"answer {i}: " + "a" * 400)


def _rows(writer: _Writer, messages: int) -> Iterator[_Row]:
    for i in range((messages - 22) // 2):
        yield from writer.turn(i)
    yield from writer.user([{"type": "compaction", "auto": False}])
    yield from writer.assistant(writer.last_id, SUMMARY_TEXT, summary=True)
    for i in range(10):
        yield from writer.turn(messages + i)


def seed(db: Path, session_id: str, messages: int) -> None:
    """Append ``messages`` messages to an empty session, compacted 20 messages before the end."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        row = conn.execute(
            "SELECT directory, time_created FROM session WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"no opencode session {session_id}")
        directory, created = row
        writer = _Writer(session_id, directory, _Ids(int(created), seed=messages))
        batch: dict[str, list[tuple[Any, ...]]] = {"message": [], "part": []}
        for item in _rows(writer, messages):
            batch[item.table].append(item.values)
        with conn:
            conn.executemany(
                "INSERT INTO message (id, session_id, time_created, time_updated, data) "
                "VALUES (?, ?, ?, ?, ?)",
                batch["message"],
            )
            conn.executemany(
                "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                batch["part"],
            )
    finally:
        conn.close()
