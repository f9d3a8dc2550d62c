"""SQL for the session table."""

from __future__ import annotations

from store.base import Row, TxBase
from store.errors import NotFound
from store.ids import new_id
from store.models import Session

_COLS = "id, title, directory, time_created, time_updated"


def _session(row: Row) -> Session:
    return Session(
        id=row[0], title=row[1], directory=row[2], time_created=row[3], time_updated=row[4]
    )


class SessionOps(TxBase):
    def create_session(self, title: str = "", directory: str | None = None) -> Session:
        now = self.now()
        session = Session(new_id("ses"), title, directory, now, now)
        self._exec(
            f"INSERT INTO session ({_COLS}) VALUES (?, ?, ?, ?, ?)",
            (session.id, title, directory, now, now),
        )
        self._emit(session.id, "session.created", session.to_json())
        return session

    def get_session(self, session_id: str) -> Session | None:
        row = self._row(f"SELECT {_COLS} FROM session WHERE id = ?", (session_id,))
        return _session(row) if row else None

    def require_session(self, session_id: str) -> Session:
        session = self.get_session(session_id)
        if session is None:
            raise NotFound("session", session_id)
        return session

    def list_sessions(self, directory: str | None = None, limit: int = 100) -> list[Session]:
        """Newest activity first."""
        if directory is None:
            rows = self._rows(
                f"SELECT {_COLS} FROM session ORDER BY time_updated DESC, id DESC LIMIT ?",
                (limit,),
            )
        else:
            rows = self._rows(
                f"SELECT {_COLS} FROM session WHERE directory = ?"
                " ORDER BY time_updated DESC, id DESC LIMIT ?",
                (directory, limit),
            )
        return [_session(r) for r in rows]

    def update_session(self, session_id: str, *, title: str | None = None) -> Session:
        """Set the title (when given) and the time of last activity."""
        current = self.require_session(session_id)
        updated = Session(
            current.id,
            title if title is not None else current.title,
            current.directory,
            current.time_created,
            max(self.now(), current.time_updated),
        )
        self._exec(
            "UPDATE session SET title = ?, time_updated = ? WHERE id = ?",
            (updated.title, updated.time_updated, session_id),
        )
        self._emit(session_id, "session.updated", updated.to_json())
        return updated

    def request_cancel(self, session_id: str, origin: str | None = None) -> None:
        """Record that a client asked to stop the session's running work, for whichever
        process runs it: the ``session.cancel`` event is the request. ``origin`` names the
        process that already stopped its own work when the cancel arrived, so that process
        does not apply the request a second time to prompts that arrived after it."""
        self.require_session(session_id)
        payload = {"sessionId": session_id}
        if origin is not None:
            payload["origin"] = origin
        self._emit(session_id, "session.cancel", payload)

    def delete_session(self, session_id: str) -> None:
        """Remove the session and everything in it (its outbox events stay)."""
        self.require_session(session_id)
        self._exec("DELETE FROM session WHERE id = ?", (session_id,))
        self._emit(session_id, "session.deleted", {"id": session_id})
