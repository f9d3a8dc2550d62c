"""Opening the database file, transactions, and delivering the outbox after commit.

Each thread gets its own apsw connection. Writes go through :meth:`Store.write`, which runs in
``BEGIN IMMEDIATE``, so every read-modify-write holds the write lock from its first read; nested
writes are savepoints, and every connection also has apsw's ``transaction_mode = "IMMEDIATE"``.
Events written during the transaction are handed to subscribers only after the commit
succeeded. Reads go through :meth:`Store.read`, a deferred read-only snapshot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import platformdirs

from store.errors import driver_errors, from_driver
from store.migrations import migrate, refuse_unusable_file
from store.models import Event
from store.tx import Tx

log = logging.getLogger(__name__)

Clock = Callable[[], int]
Listener = Callable[[list[Event]], None]

DEFAULT_BUSY_TIMEOUT_MS = 5_000
DEFAULT_LEASE_TIMEOUT_MS = 30_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def default_db_path() -> Path:
    """``sessions.db`` in the user data directory (``$XDG_DATA_HOME/sessionlsp`` on Linux)."""
    return Path(platformdirs.user_data_dir("sessionlsp", appauthor=False)) / "sessions.db"


@dataclass(frozen=True)
class StatementProfile:
    sql: str
    vm_steps: int


class Store:
    """One database file. Safe to share between threads; open one per process."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        lease_timeout_ms: int = DEFAULT_LEASE_TIMEOUT_MS,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.busy_timeout_ms = busy_timeout_ms
        self.lease_timeout_ms = lease_timeout_ms
        self.clock = clock
        self._local = threading.local()
        self._all: list[apsw.Connection] = []
        self._all_lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._changed = threading.Condition()
        self._generation = 0  # bumped after every commit made through this Store
        self.path.parent.mkdir(parents=True, exist_ok=True)
        opening = f"cannot open database {self.path}: "
        try:
            with driver_errors(opening):
                refuse_unusable_file(self.path)
            with driver_errors(opening), self._write() as tx:
                migrate(tx.connection)
        except BaseException:
            self.close()
            raise

    # --- connections ----------------------------------------------------------------------------

    def _connection(self) -> apsw.Connection:
        conn: apsw.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = apsw.Connection(str(self.path))
                conn.set_busy_timeout(self.busy_timeout_ms)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
            except apsw.Error as e:
                raise from_driver(e, f"cannot open database {self.path}: ") from e
            conn.transaction_mode = "IMMEDIATE"
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _writable_connection(self) -> apsw.Connection:
        """This thread's connection for a new write transaction.

        SQLite opens a file it cannot write (immutable, on a read-only mount, a read-only
        mode) read-only, and a connection stays read-only for its life. So a connection that
        came up read-only is closed and a new one opened: once the fault clears, writes work
        again without a restart. While the fault lasts the new one is read-only too, and the
        write fails with SQLite's "attempt to write a readonly database".
        """
        conn = self._connection()
        if conn.readonly("main") and not conn.in_transaction:
            self._local.conn = None
            with self._all_lock, contextlib.suppress(ValueError):
                self._all.remove(conn)
            conn.close()
            conn = self._connection()
        return conn

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # --- transactions ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction (``BEGIN IMMEDIATE``). Nested calls become savepoints.

        Events emitted inside are published to subscribers after the outermost commit.
        The outermost ``BEGIN IMMEDIATE`` is issued as a statement rather than through apsw's
        context manager: a statement releases the GIL while SQLite waits for the write lock, so
        a writer waiting on another never freezes the rest of this process. The driver's
        errors leave as ``StoreError`` subclasses (store/errors.py).
        """
        with driver_errors(), self._write() as tx:
            yield tx

    @contextlib.contextmanager
    def _write(self) -> Iterator[Tx]:
        outbox: list[Event] | None = getattr(self._local, "outbox", None)
        if outbox is not None:  # nested: a savepoint inside the open transaction
            conn = self._connection()
            mark = len(outbox)
            try:
                with conn:
                    yield Tx(conn, outbox, self.clock, self.lease_timeout_ms, writable=True)
            except BaseException:
                del outbox[mark:]
                raise
            return
        conn = self._writable_connection()
        outbox = []
        self._local.outbox = outbox
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(conn, outbox, self.clock, self.lease_timeout_ms, writable=True)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            self._local.outbox = None
        self._committed(outbox)

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        """A consistent read-only snapshot (deferred: readers never block writers)."""
        with driver_errors(), self._read() as tx:
            yield tx

    @contextlib.contextmanager
    def _read(self) -> Iterator[Tx]:
        conn = self._connection()
        if conn.in_transaction:
            yield Tx(conn, [], self.clock, self.lease_timeout_ms, writable=False)
            return
        conn.execute("BEGIN DEFERRED")
        try:
            yield Tx(conn, [], self.clock, self.lease_timeout_ms, writable=False)
        finally:
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def profile(self) -> Iterator[list[StatementProfile]]:
        """Record each statement this thread runs while the block is open, with its work.

        ``vm_steps`` is SQLite's count of virtual-machine steps for the statement: a
        deterministic measure of how many rows and index entries it touched.
        """
        records: list[StatementProfile] = []

        def on_profile(event: dict[str, Any]) -> None:
            status = event.get("stmt_status") or {}
            steps = int(status.get("SQLITE_STMTSTATUS_VM_STEP", 0))
            records.append(StatementProfile(str(event.get("sql", "")), steps))

        conn = self._connection()
        conn.trace_v2(apsw.SQLITE_TRACE_PROFILE, on_profile, id="sessionlsp-profile")
        try:
            yield records
        finally:
            conn.trace_v2(0, None, id="sessionlsp-profile")

    # --- change notification ---------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(events)`` after each commit made through this Store that wrote events.

        Listeners run on the committing thread, after the commit; they must not block. Changes
        written by other processes are found with :meth:`data_version` and ``events_after``.
        """
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def _committed(self, events: list[Event]) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()
        if not events:
            return
        for listener in list(self._listeners):
            try:
                listener(events)
            except Exception:
                log.exception("outbox listener failed")

    def data_version(self) -> int:
        """Changes whenever another connection (any process) commits to the file."""
        with driver_errors():
            row = self._connection().execute("PRAGMA data_version").fetchone()
        return int(row[0]) if row else 0

    def wait_for_change(self, timeout: float, poll_interval: float = 0.02) -> None:
        """Return when something may have changed, or after ``timeout`` seconds.

        Commits through this Store wake the waiter at once; commits by other processes are seen
        by polling ``PRAGMA data_version`` every ``poll_interval`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            generation = self._generation
        version = self.data_version()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with self._changed:
                if self._generation != generation:
                    return
                self._changed.wait(min(left, poll_interval))
                if self._generation != generation:
                    return
            if self.data_version() != version:
                return
