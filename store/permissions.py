"""SQL for a session's remembered permission answers (the ``permission_rule`` table).

The store keeps the rows and knows nothing of what a key or a pattern means; the rules live in
server/permissions.py. The trap: remembering is a read-then-write (is it there already?), so it
must run inside ``Store.write()`` (BEGIN IMMEDIATE). In a deferred transaction two processes
answering "always" for the same pattern would both see nothing, and the second insert would
fail on the unique (session, key, pattern) index. A second "always" for a pattern already
remembered writes nothing and sends no event: nothing durable changed.
"""

from __future__ import annotations

from store.base import Row, TxBase
from store.errors import NotFound
from store.ids import new_id
from store.models import PermissionRule

_COLS = "id, session_id, key, pattern, action, time_created"


def _rule(row: Row) -> PermissionRule:
    return PermissionRule(
        id=row[0],
        session_id=row[1],
        key=row[2],
        pattern=row[3],
        action="allow",
        time_created=row[5],
    )


class PermissionOps(TxBase):
    def remember_permission(self, session_id: str, key: str, pattern: str) -> PermissionRule:
        """Remember that calls on ``key`` matching ``pattern`` are allowed in the session from
        now on, across restarts. Returns the stored rule (the earlier one when it was already
        remembered, in which case nothing is written and no event is sent)."""
        if not key or not pattern:
            raise ValueError("a remembered permission needs a key and a pattern")
        if self._row("SELECT 1 FROM session WHERE id = ?", (session_id,)) is None:
            raise NotFound("session", session_id)
        existing = self._row(
            f"SELECT {_COLS} FROM permission_rule WHERE session_id = ? AND key = ? AND pattern = ?",
            (session_id, key, pattern),
        )
        if existing is not None:
            return _rule(existing)
        rule = PermissionRule(new_id("prm"), session_id, key, pattern, "allow", self.now())
        self._exec(
            f"INSERT INTO permission_rule ({_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
            (rule.id, session_id, key, pattern, rule.action, rule.time_created),
        )
        self._emit(session_id, "permission.remembered", rule.to_json())
        return rule

    def remembered_permissions(self, session_id: str) -> list[PermissionRule]:
        """The session's remembered rules, oldest first (the order they are appended in)."""
        rows = self._rows(
            f"SELECT {_COLS} FROM permission_rule WHERE session_id = ? ORDER BY id",
            (session_id,),
        )
        return [_rule(r) for r in rows]
