"""SQL for permission questions (``permission_request``) and a session's remembered answers
(``permission_rule``).

A question is settled once, by the first answer: :meth:`PermissionOps.answer_permission` must run
in ``Store.write()`` (BEGIN IMMEDIATE), so that two clients answering at once (two editors, in two
processes) cannot both see it open; the loser is told it lost and changes nothing.

The store keeps the rows and knows nothing of what a key or a pattern means; the rules live in
server/permissions.py. The trap: remembering is a read-then-write (is it there already?), so it
must run inside ``Store.write()`` (BEGIN IMMEDIATE). In a deferred transaction two processes
answering "always" for the same pattern would both see nothing, and the second insert would
fail on the unique (session, key, pattern) index. A second "always" for a pattern already
remembered writes nothing and sends no event: nothing durable changed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

from store.base import Row, TxBase, dumps, loads
from store.errors import NotFound
from store.ids import new_id
from store.models import (
    PERMISSION_OPTIONS,
    Json,
    PermissionOption,
    PermissionRequest,
    PermissionRule,
    PermissionStatus,
)

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


_REQUEST_COLS = (
    "id, session_id, message_id, part_id, call_id, tool, title, input, diff, origin, status,"
    " option_id, answered_by, time_created, time_answered"
)


def _request(row: Row) -> PermissionRequest:
    return PermissionRequest(
        id=row[0],
        session_id=row[1],
        message_id=row[2],
        part_id=row[3],
        call_id=row[4],
        tool=row[5],
        title=row[6],
        input=loads(row[7]),
        diff=row[8],
        origin=row[9],
        status=cast(PermissionStatus, row[10]),
        option_id=cast(PermissionOption | None, row[11]),
        answered_by=row[12],
        time_created=row[13],
        time_answered=row[14],
    )


class PermissionOps(TxBase):
    def ask_permission(
        self,
        session_id: str,
        *,
        message_id: str,
        part_id: str,
        call_id: str,
        tool: str,
        title: str,
        input: Json,
        diff: str | None,
        origin: str,
    ) -> PermissionRequest:
        """Open a question about one tool call; emits ``permission.asked`` with it."""
        if self._row("SELECT 1 FROM session WHERE id = ?", (session_id,)) is None:
            raise NotFound("session", session_id)
        request = PermissionRequest(
            new_id("prq"),
            session_id,
            message_id,
            part_id,
            call_id,
            tool,
            title,
            input,
            diff,
            origin,
            "open",
            None,
            None,
            self.now(),
            None,
        )
        self._exec(
            f"INSERT INTO permission_request ({_REQUEST_COLS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request.id,
                session_id,
                message_id,
                part_id,
                call_id,
                tool,
                title,
                dumps(input),
                diff,
                origin,
                "open",
                None,
                None,
                request.time_created,
                None,
            ),
        )
        self._emit(session_id, "permission.asked", request.to_json())
        return request

    def get_permission_request(self, request_id: str) -> PermissionRequest | None:
        row = self._row(
            f"SELECT {_REQUEST_COLS} FROM permission_request WHERE id = ?", (request_id,)
        )
        return _request(row) if row is not None else None

    def open_permission_requests(self, session_id: str) -> list[PermissionRequest]:
        rows = self._rows(
            f"SELECT {_REQUEST_COLS} FROM permission_request"
            " WHERE session_id = ? AND status = 'open' ORDER BY id",
            (session_id,),
        )
        return [_request(r) for r in rows]

    def answer_permission(
        self, request_id: str, option_id: PermissionOption | None, by: str
    ) -> tuple[PermissionRequest, bool]:
        """Settle the question with ``option_id`` (None: cancelled) if it is still open, and
        emit ``permission.replied``. Returns the question as it now stands and whether this
        answer is the one that settled it (False: it was settled before; nothing written)."""
        if option_id is not None and option_id not in PERMISSION_OPTIONS:
            raise ValueError(f"unknown permission option {option_id!r}")
        current = self.get_permission_request(request_id)
        if current is None:
            raise NotFound("permission request", request_id)
        if current.status != "open":
            return current, False
        status: PermissionStatus = "cancelled" if option_id is None else "answered"
        now = self.now()
        self._exec(
            "UPDATE permission_request SET status = ?, option_id = ?, answered_by = ?,"
            " time_answered = ? WHERE id = ? AND status = 'open'",
            (status, option_id, by, now, request_id),
        )
        settled = replace(
            current, status=status, option_id=option_id, answered_by=by, time_answered=now
        )
        self._emit(current.session_id, "permission.replied", settled.reply_json())
        return settled, True

    def cancel_open_permissions(self, session_id: str, by: str) -> int:
        """Settle every open question of the session as cancelled (recovery after the asking
        process died). Returns how many there were."""
        open_ = self.open_permission_requests(session_id)
        for request in open_:
            self.answer_permission(request.id, None, by)
        return len(open_)

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
