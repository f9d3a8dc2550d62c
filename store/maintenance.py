"""SQL for looking after the file itself: integrity and sizes."""

from __future__ import annotations

from dataclasses import dataclass

from store.base import TxBase
from store.messages import OPEN_TOOL_WHERE
from store.migrations import current_version

TABLES = ("session", "message", "part", "compaction", "lease", "event")


@dataclass(frozen=True)
class StoreStats:
    schema_version: int
    integrity: list[str]  # ["ok"] when the file is sound
    rows: dict[str, int]
    active_compactions: int


class MaintenanceOps(TxBase):
    def stats(self) -> StoreStats:
        integrity = [str(r[0]) for r in self._rows("PRAGMA integrity_check")]
        rows = {}
        for table in TABLES:
            row = self._row(f"SELECT COUNT(*) FROM {table}")
            rows[table] = int(row[0]) if row else 0
        active = self._row("SELECT COUNT(*) FROM compaction WHERE status IN ('pending', 'running')")
        return StoreStats(
            schema_version=current_version(self._conn),
            integrity=integrity,
            rows=rows,
            active_compactions=int(active[0]) if active else 0,
        )

    def sessions_to_recover(self) -> list[str]:
        """Sessions a runner may have left unfinished: a lease row, an active compaction, an
        assistant message that never finished, or a tool call left pending or running (also
        under a message that finished). Recovery decides whether that runner is dead."""
        rows = self._rows(
            "SELECT session_id FROM lease"
            " UNION SELECT session_id FROM compaction WHERE status IN ('pending', 'running')"
            " UNION SELECT session_id FROM message"
            " WHERE finish IS NULL AND error IS NULL AND kind IN ('reply', 'summary')"
            f" UNION SELECT session_id FROM part INDEXED BY part_tool_open WHERE {OPEN_TOOL_WHERE}"
        )
        return [str(r[0]) for r in rows]
