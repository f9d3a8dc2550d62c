"""Live sync: the outbox, in ``seq`` order and without gaps, for the sessions a client follows.

Every durable change writes an event row in its own transaction (store/), and writers are
serialised, so ``seq`` order is commit order. The pump keeps one cursor and reads forward from it:

* after each commit made through this process's Store, on the committing thread (so a
  ``session/sync`` is queued before any ``session/delta`` that thread sends next);
* when another process commits, noticed by polling ``PRAGMA data_version`` every 50 ms from a
  background thread that otherwise sleeps.

``follow(session, after)`` starts delivery for a session from the cursor the client already has
(the ``seq`` of its ``session/load``, or the one before it created the session): events the
pump passed earlier are read back, events the client already has are skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from store import Store
from store.models import Event

log = logging.getLogger(__name__)

BATCH = 500


class SyncPump:
    def __init__(
        self,
        store: Store,
        send: Callable[[Event], None],
        poll_interval_s: float = 0.05,
        observe: Callable[[Event], None] | None = None,
    ) -> None:
        self.store = store
        self.send = send
        self.observe = observe  # sees every event once, followed session or not
        self.poll_interval_s = poll_interval_s
        self._lock = threading.RLock()
        self._followed: dict[str, int] = {}  # session -> events up to this seq are known
        with store.read() as tx:
            self._cursor = tx.last_seq()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe = store.subscribe(self._on_commit)

    @property
    def cursor(self) -> int:
        with self._lock:
            return self._cursor

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="sync-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._unsubscribe()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def follows(self, session_id: str) -> bool:
        with self._lock:
            return session_id in self._followed

    def follow(self, session_id: str, after: int | None = None) -> None:
        """Deliver the session's events with ``seq > after`` (default: from now on)."""
        with self._lock:
            if session_id in self._followed:
                return
            known = self._cursor if after is None else after
            self._followed[session_id] = known
            if known < self._cursor:
                with self.store.read() as tx:
                    missed = tx.events_after(known, session_id)
                for e in missed:
                    if e.seq <= self._cursor:
                        self._deliver(e)

    def unfollow(self, session_id: str) -> None:
        with self._lock:
            self._followed.pop(session_id, None)

    def catch_up(self) -> None:
        """Deliver everything committed so far (by any process)."""
        with self._lock:
            while True:
                with self.store.read() as tx:
                    events = tx.events_after(self._cursor, limit=BATCH)
                self._dispatch(events)
                if len(events) < BATCH:
                    return

    def _on_commit(self, events: list[Event]) -> None:
        with self._lock:
            if events and events[0].seq == self._cursor + 1:
                self._dispatch(events)  # the usual case: nothing from elsewhere in between
            else:
                self.catch_up()

    def _dispatch(self, events: list[Event]) -> None:
        for e in events:
            if e.seq <= self._cursor:
                continue
            self._cursor = e.seq
            if self.observe is not None:
                try:
                    self.observe(e)
                except Exception:
                    log.exception("event observer failed on %s", e.seq)
            if e.session_id is not None and e.session_id in self._followed:
                self._deliver(e)

    def _deliver(self, e: Event) -> None:
        assert e.session_id is not None
        if e.seq <= self._followed[e.session_id]:
            return
        self._followed[e.session_id] = e.seq
        try:
            self.send(e)
        except Exception:
            log.exception("could not send event %s", e.seq)

    def _poll(self) -> None:
        version = self._version()
        while not self._stop.wait(self.poll_interval_s):
            now = self._version()
            if now == version:
                continue
            version = now
            try:
                self.catch_up()
            except Exception:
                log.exception("sync pump could not read the outbox")

    def _version(self) -> int:
        try:
            return self.store.data_version()
        except Exception:
            log.exception("could not read data_version")
            return -1
