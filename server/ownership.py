"""Who works on a session: this process's thread lock, the runner lease, its heartbeat and fence.

The lease says which process (runner) owns a session; the per-session thread lock says which of
the runner's threads does. Every writer that needs the session — a turn, a compaction, recovery —
takes both through :meth:`Ownership.hold`, and fences its writes with :meth:`Ownership.fence`.
One :class:`Ownership` per process, shared by the compaction engine and the prompt runner.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from store import LeaseLost, RunnerId, Store, StoreError, Tx

log = logging.getLogger(__name__)


@contextmanager
def tick(interval_s: float, fn: Callable[[], bool], name: str) -> Iterator[None]:
    """Call ``fn`` on a background thread every ``interval_s`` until the block exits (or ``fn``
    returns False)."""
    done = threading.Event()

    def run() -> None:
        while not done.wait(interval_s):
            if not fn():
                return

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@dataclass(frozen=True)
class Wait:
    """How :meth:`Ownership.hold` waits for a session another thread or runner holds."""

    cancel: threading.Event  # stop waiting once set
    interval_s: float  # longest sleep between looks
    on_wait: Callable[[], None] = lambda: None  # called once, when another runner holds the lease


@dataclass
class Held:
    """A hold on a session's lock and lease, yielded by :meth:`Ownership.hold`."""

    session_id: str
    release: bool  # give the lease up on exit
    lost: threading.Event = field(default_factory=threading.Event)  # set when taken over
    keep: bool = False  # set by the holder to keep the lease on exit (to be settled later)


class Ownership:
    """The sessions this runner (this process) holds, and how it holds them."""

    def __init__(
        self, store: Store, runner: RunnerId | None = None, heartbeat_interval_ms: int | None = None
    ) -> None:
        self.store = store
        self.runner = runner or RunnerId.fresh()
        self.heartbeat_interval_ms = heartbeat_interval_ms  # default: a third of the timeout
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()

    def lock(self, session_id: str) -> threading.RLock:
        """Held by whichever thread of this process is working on the session.

        The lease says which process (runner) owns a session; this lock says which of the
        runner's threads does, so two threads sharing one engine never drive the same marker.
        It is re-entrant: the prompt runner holds it for a whole turn and drives compactions from
        inside that turn on the same thread.
        """
        with self._locks_guard:
            return self._locks.setdefault(session_id, threading.RLock())

    def fence(self, tx: Tx, session_id: str) -> None:
        if not tx.holds_lease(session_id, self.runner):
            raise LeaseLost(f"runner {self.runner.owner} no longer holds {session_id}")

    @contextmanager
    def hold(
        self,
        session_id: str,
        *,
        wait: Wait | None = None,
        gate: Callable[[Tx], bool] | None = None,
        heartbeat: bool = False,
        unreleased: Callable[[str], None] | None = None,
    ) -> Iterator[Held | None]:
        """Take the session's thread lock and lease for the block; None when not taken.

        Without ``wait``, both are taken only if free now, and the lease is given up on exit only
        if this runner did not already hold it (a compaction run inside a turn leaves the turn's
        lease alone). With ``wait`` (a turn: the outermost holder), waits for both until
        ``wait.cancel`` is set, and gives the lease up on exit even if it held it already (a turn
        a storage fault stopped leaves it held). ``gate`` runs in the transaction that takes the
        lease, first: False leaves the lease alone. ``heartbeat`` keeps the lease fresh during
        the block and sets ``Held.lost`` if it was taken over. With ``unreleased``, a lease the
        holder keeps (``Held.keep``) or that cannot be given up for a storage fault is handed to
        it instead of raising.
        """
        lock = self.lock(session_id)
        if not self._lock(lock, wait):
            yield None
            return
        try:
            held = self._take(session_id, wait, gate)
            if held is None:
                yield None
                return
            try:
                if heartbeat:
                    with self.keep_fresh(session_id, held.lost):
                        yield held
                else:
                    yield held
            finally:
                if held.keep and unreleased is not None:
                    unreleased(session_id)
                elif held.release:
                    self._release(session_id, unreleased)
        finally:
            lock.release()

    def _lock(self, lock: threading.RLock, wait: Wait | None) -> bool:
        if wait is None:
            return lock.acquire(blocking=False)
        while not lock.acquire(timeout=wait.interval_s):
            if wait.cancel.is_set():
                return False
        return True

    def _take(
        self, session_id: str, wait: Wait | None, gate: Callable[[Tx], bool] | None
    ) -> Held | None:
        announced = False
        while True:
            with self.store.write() as tx:
                if gate is not None and not gate(tx):
                    return None
                held_before = tx.holds_lease(session_id, self.runner) if wait is None else False
                if tx.acquire_lease(session_id, self.runner):
                    return Held(session_id, release=not held_before)
            if wait is None or wait.cancel.is_set():
                return None
            if not announced:
                wait.on_wait()
                announced = True
            self.store.wait_for_change(wait.interval_s)

    def _release(self, session_id: str, unreleased: Callable[[str], None] | None) -> None:
        """Give the lease up; with ``unreleased``, a failure must not replace the holder's result
        (it would lose the ids of what was stored): it is handed over to try again later."""
        if unreleased is None:
            with self.store.write() as tx:
                tx.release_lease(session_id, self.runner)
            return
        try:
            with self.store.write() as tx:
                tx.release_lease(session_id, self.runner)
        except StoreError as e:
            log.warning("could not release the lease of %s yet: %s", session_id, e)
            unreleased(session_id)

    def release_if_held(self, session_id: str) -> None:
        with self.store.write() as tx:
            if tx.holds_lease(session_id, self.runner):
                tx.release_lease(session_id, self.runner)

    @contextmanager
    def keep_fresh(self, session_id: str, lost: threading.Event) -> Iterator[None]:
        """Keep the lease fresh while the block runs; set ``lost`` if it was taken over."""
        interval = (self.heartbeat_interval_ms or self.store.lease_timeout_ms // 3) / 1000

        def beat() -> bool:
            try:
                with self.store.write() as tx:
                    if not tx.heartbeat(session_id, self.runner):
                        lost.set()
                        return False
            except Exception:
                log.exception("lease heartbeat failed")
            return True

        with tick(interval, beat, f"heartbeat-{session_id}"):
            yield
