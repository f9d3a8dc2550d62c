"""Compaction state read from a session's history, the same way for both systems.

sessionlsp (``session/load``): a marker is a message of ``kind: "marker"``; a summary has
``summary: true`` and ``parentId`` = its marker. opencode (``GET /session/{id}/message``): a
marker is a user message holding a ``compaction`` part; a summary is an assistant message with
``summary: true`` and ``parentID`` = its marker. For both, a summary is **completed** when it has
a ``finish`` and no ``error``, **failed** when it has an ``error`` (interrupted ones included),
and **unfinished** when it has neither: nothing will ever finish it unless the system repairs
it. A marker with no completed summary is an **orphan**; a completed summary whose parent is not
a marker is **misbound**.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Summary:
    id: str
    marker: str | None
    completed: bool
    failed: bool

    @property
    def unfinished(self) -> bool:
        return not self.completed and not self.failed


@dataclass(frozen=True)
class History:
    messages: int
    markers: tuple[str, ...]
    summaries: tuple[Summary, ...]

    @property
    def completed(self) -> int:
        return sum(1 for s in self.summaries if s.completed)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.summaries if s.failed)

    @property
    def unfinished(self) -> int:
        return sum(1 for s in self.summaries if s.unfinished)

    @property
    def misbound(self) -> int:
        """Completed summaries whose parent is not a compaction marker."""
        markers = set(self.markers)
        return sum(1 for s in self.summaries if s.completed and s.marker not in markers)

    @property
    def orphan_markers(self) -> int:
        done = {s.marker for s in self.summaries if s.completed}
        return sum(1 for m in self.markers if m not in done)

    def marker_completed(self, marker: str) -> bool:
        return any(s.marker == marker and s.completed for s in self.summaries)

    def describe(self) -> str:
        return (
            f"{len(self.markers)} marker(s), {self.completed} completed summary(ies), "
            f"{self.failed} failed/interrupted, {self.unfinished} unfinished, "
            f"{self.orphan_markers} orphan marker(s), {self.misbound} summary(ies) bound to a "
            "message that is not a marker"
        )


def _summary(info: dict[str, Any], parent_key: str) -> Summary:
    parent = info.get(parent_key)
    error = info.get("error")
    return Summary(
        id=str(info["id"]),
        marker=str(parent) if parent else None,
        completed=bool(info.get("finish")) and not error,
        failed=bool(error),
    )


def _read(
    messages: Iterable[dict[str, Any]],
    is_marker: Callable[[dict[str, Any]], bool],
    is_summary: Callable[[dict[str, Any]], bool],
    parent_key: str,
) -> History:
    markers: list[str] = []
    summaries: list[Summary] = []
    count = 0
    for message in messages:
        count += 1
        info = message["info"]
        if is_marker(message):
            markers.append(str(info["id"]))
        if is_summary(info):
            summaries.append(_summary(info, parent_key))
    return History(count, tuple(markers), tuple(summaries))


def from_sessionlsp(messages: Iterable[dict[str, Any]]) -> History:
    return _read(
        messages,
        lambda m: m["info"].get("kind") == "marker",
        lambda info: bool(info.get("summary")),
        "parentId",
    )


def _opencode_marker(message: dict[str, Any]) -> bool:
    parts = message.get("parts") or []
    return message["info"].get("role") == "user" and any(
        p.get("type") == "compaction" for p in parts
    )


def from_opencode(messages: Iterable[dict[str, Any]]) -> History:
    return _read(
        messages,
        _opencode_marker,
        lambda info: info.get("role") == "assistant" and bool(info.get("summary")),
        "parentID",
    )
