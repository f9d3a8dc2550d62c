"""SQL for the compaction table: one row per marker, the state machine's durable state."""

from __future__ import annotations

from dataclasses import replace

from store.base import Row, TxBase
from store.errors import NotFound
from store.models import Compaction, CompactionError

_COLS = (
    "marker_id, session_id, status, auto, overflow, instructions, replay_of, tail_plan,"
    " tail_set, summary_id, error_code, error_message, attempts, time_created, time_updated"
)


def _compaction(row: Row) -> Compaction:
    return Compaction(
        marker_id=row[0],
        session_id=row[1],
        status=row[2],
        auto=bool(row[3]),
        overflow=bool(row[4]),
        instructions=row[5],
        replay_of=row[6],
        tail_plan=row[7],
        tail_set=bool(row[8]),
        summary_id=row[9],
        error=CompactionError(row[10], row[11] or "") if row[10] else None,
        attempts=row[12],
        time_created=row[13],
        time_updated=row[14],
    )


def _values(c: Compaction) -> tuple[object, ...]:
    return (
        c.marker_id,
        c.session_id,
        c.status,
        int(c.auto),
        int(c.overflow),
        c.instructions,
        c.replay_of,
        c.tail_plan,
        int(c.tail_set),
        c.summary_id,
        c.error.code if c.error else None,
        c.error.message if c.error else None,
        c.attempts,
        c.time_created,
        c.time_updated,
    )


class CompactionOps(TxBase):
    def insert_compaction(self, c: Compaction) -> Compaction:
        self._exec(f"INSERT INTO compaction ({_COLS}) VALUES ({','.join('?' * 15)})", _values(c))
        self._emit(c.session_id, "compaction.updated", c.event_json())
        return c

    def save_compaction(self, c: Compaction) -> Compaction:
        """Write every field of an existing row and announce it."""
        c = replace(c, time_updated=max(self.now(), c.time_updated))
        changed = self._exec(
            f"UPDATE compaction SET ({_COLS}) = ({','.join('?' * 15)}) WHERE marker_id = ?",
            (*_values(c), c.marker_id),
        )
        if changed != 1:
            raise NotFound("compaction", c.marker_id)
        self._emit(c.session_id, "compaction.updated", c.event_json())
        return c

    def get_compaction(self, marker_id: str) -> Compaction | None:
        row = self._row(f"SELECT {_COLS} FROM compaction WHERE marker_id = ?", (marker_id,))
        return _compaction(row) if row else None

    def require_compaction(self, marker_id: str) -> Compaction:
        c = self.get_compaction(marker_id)
        if c is None:
            raise NotFound("compaction", marker_id)
        return c

    def active_compaction(self, session_id: str) -> Compaction | None:
        """The session's one pending or running compaction, if any."""
        row = self._row(
            f"SELECT {_COLS} FROM compaction WHERE session_id = ?"
            " AND status IN ('pending', 'running')",
            (session_id,),
        )
        return _compaction(row) if row else None

    def last_completed_compaction(self, session_id: str) -> Compaction | None:
        row = self._row(
            f"SELECT {_COLS} FROM compaction WHERE session_id = ? AND status = 'completed'"
            " ORDER BY marker_id DESC LIMIT 1",
            (session_id,),
        )
        return _compaction(row) if row else None

    def compactions(self, session_id: str, after_id: str = "") -> list[Compaction]:
        """The session's compactions with markers newer than ``after_id``, oldest first."""
        rows = self._rows(
            f"SELECT {_COLS} FROM compaction WHERE session_id = ? AND marker_id > ?"
            " ORDER BY marker_id",
            (session_id, after_id),
        )
        return [_compaction(r) for r in rows]
