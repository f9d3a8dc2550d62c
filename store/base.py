"""The shared core of a transaction view: running statements and writing outbox events."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import apsw

from store.errors import ReadOnlyView
from store.models import Event, Json

Row = tuple[Any, ...]
Params = Sequence[Any]


def dumps(data: Json) -> str:
    """``data`` as JSON text SQLite can store. The trap: a file name that is not UTF-8 reaches
    Python as a str with lone surrogates (``"caf\\udce9.txt"``), which cannot be encoded as
    UTF-8, so binding it fails the whole write. Such text is written with ``\\u`` escapes
    instead: still valid JSON, and it reads back as the very same str."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    return text


def loads(text: str) -> Json:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


class TxBase:
    """Statements run on one connection inside one transaction (or read snapshot)."""

    def __init__(
        self,
        conn: apsw.Connection,
        outbox: list[Event],
        clock: Callable[[], int],
        lease_timeout_ms: int,
        *,
        writable: bool,
    ) -> None:
        self._conn = conn
        self._outbox = outbox
        self._clock = clock
        self.lease_timeout_ms = lease_timeout_ms
        self.writable = writable

    @property
    def connection(self) -> apsw.Connection:
        """The underlying connection, for migrations and diagnostics only."""
        return self._conn

    def now(self) -> int:
        """Milliseconds since the epoch, from the store's clock."""
        return self._clock()

    def _rows(self, sql: str, params: Params = ()) -> list[Row]:
        return [tuple(r) for r in self._conn.execute(sql, params)]

    def _row(self, sql: str, params: Params = ()) -> Row | None:
        row = self._conn.execute(sql, params).fetchone()
        return tuple(row) if row is not None else None

    def _exec(self, sql: str, params: Params = ()) -> int:
        """Run a write statement; returns the number of rows it changed."""
        if not self.writable:
            raise ReadOnlyView(sql.split(None, 1)[0])
        self._conn.execute(sql, params)
        return self._conn.changes()

    def explain(self, sql: str, params: Params = ()) -> list[str]:
        """SQLite's query plan for ``sql``, one line per step (for tests and benchmarks)."""
        return [str(r[-1]) for r in self._conn.execute("EXPLAIN QUERY PLAN " + sql, params)]

    def _emit(self, session_id: str, type_: str, data: Json) -> Event:
        """Write one outbox event in this transaction; it is published after commit."""
        now = self.now()
        text = dumps(data)
        self._exec(
            "INSERT INTO event (session_id, type, data, time) VALUES (?, ?, ?, ?)",
            (session_id, type_, text, now),
        )
        event = Event(self._conn.last_insert_rowid(), session_id, type_, data, now)
        self._outbox.append(event)
        return event
