"""SQL for reading the outbox."""

from __future__ import annotations

from store.base import TxBase, loads
from store.models import Event


class EventOps(TxBase):
    def events_after(
        self, seq: int, session_id: str | None = None, limit: int | None = None
    ) -> list[Event]:
        """Every event with a larger ``seq``, oldest first. ``limit`` caps how many."""
        cap = -1 if limit is None else limit
        if session_id is None:
            rows = self._rows(
                "SELECT seq, session_id, type, data, time FROM event"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, cap),
            )
        else:
            rows = self._rows(
                "SELECT seq, session_id, type, data, time FROM event"
                " WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (session_id, seq, cap),
            )
        return [Event(r[0], r[1], r[2], loads(r[3]), r[4]) for r in rows]

    def last_seq(self) -> int:
        row = self._row("SELECT COALESCE(MAX(seq), 0) FROM event")
        return int(row[0]) if row else 0
