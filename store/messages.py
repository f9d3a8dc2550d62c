"""SQL for messages and their parts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from store.base import Row, TxBase, dumps, loads
from store.errors import NotFound
from store.ids import new_id
from store.models import (
    Message,
    MessageError,
    MessageKind,
    MessageWithParts,
    Part,
    PartBody,
    ReasoningPart,
    TextPart,
    body_from_json,
    body_to_json,
    tokens_from_json,
)

_MCOLS = (
    "id, session_id, kind, time_created, time_completed, parent_id, compaction_id,"
    " finish, error, runner, data"
)
_PCOLS = "id, message_id, session_id, type, data"
# The WHERE clause of the part_tool_open index (migration_3.sql), word for word.
OPEN_TOOL_WHERE = "type = 'tool' AND json_extract(data, '$.state.status') IN ('pending', 'running')"


def _message(row: Row) -> Message:
    data = loads(row[10])
    err = loads(row[8]) if row[8] else None
    return Message(
        id=row[0],
        session_id=row[1],
        kind=row[2],
        time_created=row[3],
        time_completed=row[4],
        parent_id=row[5],
        compaction_id=row[6],
        finish=row[7],
        error=MessageError(err["name"], err["message"]) if err else None,
        runner=row[9],
        tokens=tokens_from_json(data["tokens"]) if "tokens" in data else None,
        cost=data.get("cost"),
        model=data.get("model"),
        summary_kind=data.get("summaryKind"),
    )


def _part(row: Row) -> Part:
    return Part(
        id=row[0], message_id=row[1], session_id=row[2], body=body_from_json(row[3], loads(row[4]))
    )


def _with_parts(messages: list[Message], parts: Iterable[Part]) -> list[MessageWithParts]:
    by_message: dict[str, list[Part]] = defaultdict(list)
    for part in parts:
        by_message[part.message_id].append(part)
    return [MessageWithParts(m, tuple(by_message.get(m.id, ()))) for m in messages]


class MessageOps(TxBase):
    # --- messages -------------------------------------------------------------------------------

    def add_message(
        self,
        session_id: str,
        kind: MessageKind,
        *,
        parent_id: str | None = None,
        compaction_id: str | None = None,
        runner: str | None = None,
        model: str | None = None,
    ) -> Message:
        """Append a message. Its id sorts after every message already in the session."""
        self.require_session_exists(session_id)
        last = self.last_message_id(session_id)
        message = Message(
            id=new_id("msg", after=last),
            session_id=session_id,
            kind=kind,
            time_created=self.now(),
            parent_id=parent_id,
            compaction_id=compaction_id,
            runner=runner,
            model=model,
        )
        self._exec(
            f"INSERT INTO message ({_MCOLS}, role) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message.id,
                session_id,
                kind,
                message.time_created,
                None,
                parent_id,
                compaction_id,
                None,
                None,
                runner,
                dumps(message.data_json()),
                message.role,
            ),
        )
        self._emit(session_id, "message.updated", message.to_json())
        return message

    def update_message(self, message: Message) -> Message:
        """Store the message's mutable fields (finish, error, completion time, usage)."""
        changed = self._exec(
            "UPDATE message SET time_completed = ?, finish = ?, error = ?, data = ? WHERE id = ?",
            (
                message.time_completed,
                message.finish,
                dumps(message.error.to_json()) if message.error else None,
                dumps(message.data_json()),
                message.id,
            ),
        )
        if changed != 1:
            raise NotFound("message", message.id)
        self._emit(message.session_id, "message.updated", message.to_json())
        return message

    def remove_message(self, message_id: str) -> None:
        """Delete a message and its parts; one ``message.removed`` event stands for both."""
        message = self.require_message(message_id)
        self._exec("DELETE FROM message WHERE id = ?", (message_id,))
        self._emit(
            message.session_id,
            "message.removed",
            {"sessionId": message.session_id, "messageId": message_id},
        )

    def get_message(self, message_id: str) -> Message | None:
        row = self._row(f"SELECT {_MCOLS} FROM message WHERE id = ?", (message_id,))
        return _message(row) if row else None

    def require_message(self, message_id: str) -> Message:
        message = self.get_message(message_id)
        if message is None:
            raise NotFound("message", message_id)
        return message

    def require_session_exists(self, session_id: str) -> None:
        if self._row("SELECT 1 FROM session WHERE id = ?", (session_id,)) is None:
            raise NotFound("session", session_id)

    def last_message_id(self, session_id: str) -> str | None:
        row = self._row(
            "SELECT id FROM message WHERE session_id = ? ORDER BY id DESC LIMIT 1", (session_id,)
        )
        return row[0] if row else None

    def messages(self, session_id: str, from_id: str | None = None) -> list[Message]:
        """Messages oldest first, starting at ``from_id`` (inclusive) when given."""
        rows = self._rows(
            f"SELECT {_MCOLS} FROM message WHERE session_id = ? AND id >= ? ORDER BY id",
            (session_id, from_id or ""),
        )
        return [_message(r) for r in rows]

    def latest_of_kind(self, session_id: str, kinds: tuple[MessageKind, ...]) -> Message | None:
        marks = ",".join("?" * len(kinds))
        row = self._row(
            f"SELECT {_MCOLS} FROM message WHERE session_id = ? AND kind IN ({marks})"
            " ORDER BY id DESC LIMIT 1",
            (session_id, *kinds),
        )
        return _message(row) if row else None

    def has_conversation_after(self, session_id: str, message_id: str) -> bool:
        """Whether a prompt or reply was added after the id (markers and summaries aside)."""
        row = self._row(
            "SELECT 1 FROM message WHERE session_id = ? AND kind IN ('prompt', 'reply')"
            " AND id > ? LIMIT 1",
            (session_id, message_id),
        )
        return row is not None

    def reply_succeeded_after(self, session_id: str, message_id: str) -> bool:
        """Whether an assistant reply (not a summary) finished without error after the id."""
        row = self._row(
            "SELECT 1 FROM message WHERE session_id = ? AND kind = 'reply' AND id > ?"
            " AND finish IS NOT NULL AND error IS NULL LIMIT 1",
            (session_id, message_id),
        )
        return row is not None

    def summaries_of(self, marker_id: str) -> list[Message]:
        """Every summary attempt for a marker, oldest first."""
        rows = self._rows(
            f"SELECT {_MCOLS} FROM message WHERE compaction_id = ? AND kind = 'summary'"
            " ORDER BY id",
            (marker_id,),
        )
        return [_message(r) for r in rows]

    def continuation_of(self, marker_id: str) -> Message | None:
        row = self._row(
            f"SELECT {_MCOLS} FROM message WHERE compaction_id = ?"
            " AND kind IN ('continuation', 'replay')",
            (marker_id,),
        )
        return _message(row) if row else None

    def unfinished_assistants(self, session_id: str) -> list[Message]:
        # Every turn asks this first, so it must not read the history: without statistics
        # SQLite would walk message_by_session to avoid sorting the (few) unfinished rows.
        rows = self._rows(
            f"SELECT {_MCOLS} FROM message INDEXED BY message_unfinished"
            " WHERE session_id = ? AND kind IN ('reply', 'summary')"
            " AND finish IS NULL AND error IS NULL ORDER BY id",
            (session_id,),
        )
        return [_message(r) for r in rows]

    # --- parts ----------------------------------------------------------------------------------

    def open_tool_parts(self, session_id: str) -> list[Part]:
        """Tool parts still ``pending`` or ``running``, oldest first. Every turn asks this
        first (through recovery), so it reads the part_tool_open index, never the history."""
        rows = self._rows(
            f"SELECT {_PCOLS} FROM part INDEXED BY part_tool_open"
            f" WHERE session_id = ? AND {OPEN_TOOL_WHERE} ORDER BY message_id, id",
            (session_id,),
        )
        return [_part(r) for r in rows]

    def new_part_id(self) -> str:
        return new_id("prt")

    def put_part(self, message_id: str, body: PartBody, part_id: str | None = None) -> Part:
        """Insert a part, or replace the body of an existing one."""
        part = self._store_part(message_id, body, part_id)
        self._emit(part.session_id, "message.part.updated", part.to_json())
        return part

    def append_part_text(
        self, message_id: str, body: TextPart | ReasoningPart, part_id: str, offset: int
    ) -> Part:
        """Store a streaming part whose text so far is ``body.text``, announcing only the text
        after ``offset`` (what earlier calls already announced) as ``message.part.delta``.

        While an answer streams, each periodic write would otherwise put the whole text so far
        in the outbox: quadratic in the answer's length.
        """
        part = self._store_part(message_id, body, part_id)
        self._emit(
            part.session_id,
            "message.part.delta",
            {
                "id": part.id,
                "messageId": message_id,
                "sessionId": part.session_id,
                "type": part.type,
                "field": "text",
                "offset": offset,
                "delta": body.text[offset:],
            },
        )
        return part

    def _store_part(self, message_id: str, body: PartBody, part_id: str | None) -> Part:
        message = self.require_message(message_id)
        part = Part(part_id or self.new_part_id(), message_id, message.session_id, body)
        self._exec(
            f"INSERT INTO part ({_PCOLS}) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET type = excluded.type, data = excluded.data",
            (part.id, message_id, part.session_id, part.type, dumps(body_to_json(body))),
        )
        return part

    def remove_part(self, part_id: str) -> None:
        part = self.get_part(part_id)
        if part is None:
            raise NotFound("part", part_id)
        self._exec("DELETE FROM part WHERE id = ?", (part_id,))
        self._emit(
            part.session_id,
            "message.part.removed",
            {"sessionId": part.session_id, "messageId": part.message_id, "partId": part_id},
        )

    def get_part(self, part_id: str) -> Part | None:
        row = self._row(f"SELECT {_PCOLS} FROM part WHERE id = ?", (part_id,))
        return _part(row) if row else None

    def parts_of(self, message_id: str) -> list[Part]:
        rows = self._rows(
            f"SELECT {_PCOLS} FROM part WHERE message_id = ? ORDER BY id", (message_id,)
        )
        return [_part(r) for r in rows]

    def history(self, session_id: str, from_id: str | None = None) -> list[MessageWithParts]:
        """Messages with their parts, oldest first, from ``from_id`` (inclusive) when given.

        Both queries walk the session's indexes from ``from_id``, so the cost depends on what is
        read, not on how much history lies before it.
        """
        start = from_id or ""
        messages = self.messages(session_id, start)
        rows = self._rows(
            f"SELECT {_PCOLS} FROM part WHERE session_id = ? AND message_id >= ?"
            " ORDER BY message_id, id",
            (session_id, start),
        )
        return _with_parts(messages, (_part(r) for r in rows))
