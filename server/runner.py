"""The prompt runner: one runner thread per session, answering queued prompts in order.

Each prompt is a :class:`server.turn.Turn`, run while holding the session's thread lock (this
process) and lease (all processes) through :class:`server.ownership.Ownership`. The runner also
cancels turns and manual compactions, and settles what a storage fault left open
(:class:`Settler`).

The runner knows no JSON-RPC: it reports through :class:`server.turn.TurnListener` and returns
:class:`server.turn.TurnOutcome` values through futures.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field, replace

from server.compaction import (
    CANCELLED,
    CompactionEngine,
    CompactionOutcome,
)
from server.errors import (
    INTERNAL_ERROR,
    STORAGE_ERROR,
)
from server.ownership import Ownership, Wait
from server.permission_gate import PermissionGate
from server.providers.base import Provider
from server.stream import Status
from server.turn import (
    PromptInput,
    StatusPort,
    Turn,
    TurnError,
    TurnListener,
    TurnOutcome,
    TurnSettings,
    _brief,
)
from store import NotFound, Store, StoreError, Tx
from store.models import CompactionError, MessageError, ToolPart

log = logging.getLogger(__name__)


@dataclass
class _Job:
    prompt: PromptInput
    submitted_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    future: Future[TurnOutcome] = field(default_factory=Future)
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Queue:
    jobs: deque[_Job] = field(default_factory=deque)
    current: _Job | None = None
    worker: threading.Thread | None = None


class PromptRunner:
    """Runs the turns of every session this process is asked to answer."""

    def __init__(
        self,
        store: Store,
        ownership: Ownership,
        engine: CompactionEngine,
        provider: Provider,
        settings: TurnSettings,
        listener: TurnListener,
        gate: PermissionGate | None = None,
    ) -> None:
        self.store = store
        self.gate = gate
        self.ownership = ownership
        self.engine = engine
        self.provider = provider
        self.settings = settings
        self.listener = listener
        self._queues: dict[str, _Queue] = {}
        self._compact_cancels: dict[str, set[threading.Event]] = {}
        self.settler = Settler(store, ownership)
        self._guard = threading.Lock()
        self._closed = False

    # --- the public surface ----------------------------------------------------------------------

    def submit(self, session_id: str, prompt: PromptInput) -> Future[TurnOutcome]:
        """Queue a prompt; the future resolves when its turn has ended."""
        job = _Job(prompt)
        # A cancelled future (the client's $/cancelRequest) stops the turn like session/cancel.
        job.future.add_done_callback(lambda f: job.cancel.set() if f.cancelled() else None)
        with self._guard:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            q = self._queues.setdefault(session_id, _Queue())
            q.jobs.append(job)
            if q.worker is None:
                q.worker = threading.Thread(
                    target=self._work, args=(session_id, q), name=f"turns-{session_id}", daemon=True
                )
                q.worker.start()
        return job.future

    def cancel(self, session_id: str, before_ms: int | None = None) -> int:
        """Stop the running turn, the queued ones and any compaction run for the session here.

        With ``before_ms`` (a cancel requested at that time by another process), prompts
        submitted later are left alone. Returns how many turns and compactions were told to stop.
        """
        with self._guard:
            q = self._queues.get(session_id)
            jobs = ([q.current] if q and q.current else []) + (list(q.jobs) if q else [])
            if before_ms is not None:
                jobs = [j for j in jobs if j.submitted_ms <= before_ms]
            events = [j.cancel for j in jobs] + list(self._compact_cancels.get(session_id, ()))
        for e in events:
            e.set()
        return len(events)

    def busy(self, session_id: str) -> bool:
        with self._guard:
            q = self._queues.get(session_id)
            return bool(q and (q.current or q.jobs))

    def stop_token(self, session_id: str) -> threading.Event:
        """A cancel token for a manual compaction about to be asked for, registered at once so
        that a ``session/cancel`` arriving after the request (but before a worker picks it up)
        stops it. Pass it to :meth:`compact`, which unregisters it."""
        cancel = threading.Event()
        with self._guard:
            self._compact_cancels.setdefault(session_id, set()).add(cancel)
        return cancel

    def forget_token(self, session_id: str, cancel: threading.Event) -> None:
        with self._guard:
            self._compact_cancels.get(session_id, set()).discard(cancel)

    def compact(
        self, session_id: str, instructions: str | None, cancel: threading.Event | None = None
    ) -> CompactionOutcome:
        """A manual compaction. When a turn is running here, its runner drives the marker at
        its next step boundary and this call waits for the result."""
        if cancel is None:
            cancel = self.stop_token(session_id)
        try:
            if cancel.is_set():
                stopped = CompactionError(CANCELLED, "cancelled before it started")
                return CompactionOutcome(None, False, "failed", error=stopped)
            requested = self.engine.request(session_id, instructions=instructions)
            if requested.marker_id is None:
                return requested
            self._status(session_id, "compacting")
            done = self.engine.run(session_id, requested.marker_id, cancel=cancel)
            return replace(done, created=requested.created)
        finally:
            self.forget_token(session_id, cancel)
            if not self.busy(session_id):
                self._status(session_id, "idle")

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything and wait (bounded) for the runners to stop."""
        with self._guard:
            self._closed = True
            workers = [q.worker for q in self._queues.values() if q.worker]
            sessions = set(self._queues) | set(self._compact_cancels)
        for s in sessions:
            self.cancel(s)
        deadline = time.monotonic() + timeout
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
        self.settler.close(max(0.0, deadline - time.monotonic()))

    # --- the runner thread -----------------------------------------------------------------------

    def _work(self, session_id: str, q: _Queue) -> None:
        while True:
            with self._guard:
                if not q.jobs:
                    q.worker = None
                    q.current = None
                    return
                job = q.current = q.jobs.popleft()
            unknown: NotFound | None = None
            try:
                outcome = self._run_job(session_id, job)
            except StoreError as e:  # e.g. locked or full while taking the lease
                if isinstance(e, NotFound) and e.what == "session":  # deleted before the turn
                    unknown, outcome = e, TurnOutcome("cancelled", None, None)
                else:
                    log.warning("turn in %s stopped: %s", session_id, e)
                    error = TurnError("StorageError", _brief(e), STORAGE_ERROR)
                    outcome = TurnOutcome("error", None, None, error)
            except Exception as e:  # a bug: answer the prompt rather than leave it hanging
                log.exception("turn failed in session %s", session_id)
                outcome = TurnOutcome(
                    "error", None, None, TurnError("InternalError", _brief(e), INTERNAL_ERROR)
                )
            with self._guard:
                q.current = None
                idle = not q.jobs
            if idle:
                self._status(session_id, "idle")
            with contextlib.suppress(InvalidStateError):  # cancelled by the client meanwhile
                if unknown is not None:
                    job.future.set_exception(unknown)  # answered as an unknown session
                else:
                    job.future.set_result(outcome)

    def _run_job(self, session_id: str, job: _Job) -> TurnOutcome:
        if job.cancel.is_set():
            return TurnOutcome("cancelled", None, None)

        def exists(tx: Tx) -> bool:
            tx.require_session_exists(session_id)
            return True

        wait = Wait(
            job.cancel, self.settings.lease_wait_s, lambda: self._status(session_id, "busy")
        )
        with self.ownership.hold(
            session_id, wait=wait, gate=exists, heartbeat=True, unreleased=self.settler.later
        ) as held:
            if held is None:
                return TurnOutcome("cancelled", None, None)
            held.keep = True  # until the turn returns: then the lease is released
            turn = Turn(
                session_id,
                job.prompt,
                job.cancel,
                held.lost,
                store=self.store,
                ownership=self.ownership,
                engine=self.engine,
                provider=self.provider,
                settings=self.settings,
                report=StatusPort(self.listener, session_id),
                faults=self.settler,
                gate=self.gate,
            )
            outcome = turn.run()
            held.keep = turn.storage_fault
            return outcome

    def settle(self, session_id: str) -> None:
        """Close the replies a storage fault left open (see :meth:`Settler.settle`)."""
        self.settler.settle(session_id)

    def _status(self, session_id: str, status: Status) -> None:
        StatusPort(self.listener, session_id).status(status)


class Settler:
    """Settles what a storage fault left open: a turn stopped by one may leave its reply open and
    the lease held, since the writes that would settle them fail too. Closes those replies with
    the storage error and gives the lease up once writes work again."""

    def __init__(self, store: Store, ownership: Ownership) -> None:
        self.store = store
        self.ownership = ownership
        # session -> replies to close, and why
        self._unsettled: dict[str, dict[str, MessageError]] = {}
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._closed = False
        self._stopping = threading.Event()

    def close(self, timeout: float) -> None:
        """Stop retrying, and wait (bounded) for a write in progress: the store is closed next,
        and closing a connection another thread is using fails."""
        self._stopping.set()
        with self._guard:
            self._closed = True
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def close_reply_later(self, session_id: str, reply_id: str, error: MessageError) -> None:
        """Close ``reply_id`` with ``error`` as soon as a write succeeds again (followers are
        told through the outbox then), instead of leaving it for recovery to call it
        "Interrupted" though no process died."""
        with self._guard:
            self._unsettled.setdefault(session_id, {})[reply_id] = error

    def settle(self, session_id: str) -> None:
        """Close the replies a storage fault left open and give the lease up, if this thread
        may (it holds the session lock). Raises the store's error while the fault lasts."""
        with self._guard:
            replies = dict(self._unsettled.get(session_id, {}))
            if session_id not in self._unsettled:
                return
        with self.store.write() as tx:
            for reply_id, error in replies.items():
                _close_with(tx, reply_id, self.ownership.runner.owner, error)
        with self._guard:
            left = self._unsettled.get(session_id, {})
            for reply_id in replies:
                left.pop(reply_id, None)
            if not left:
                self._unsettled.pop(session_id, None)

    def later(self, session_id: str) -> None:
        """Settle the session as soon as writes work again, on the settler thread."""
        with self._guard:
            self._unsettled.setdefault(session_id, {})
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._settle_all, name="settler", daemon=True)
            self._thread.start()

    def _settle_all(self) -> None:
        """Retry, with a growing pause, until every faulted session is settled."""
        pause = 0.05
        while True:
            with self._guard:
                sessions = list(self._unsettled)
                if not sessions or self._closed:
                    self._thread = None
                    return
            for session_id in sessions:
                lock = self.ownership.lock(session_id)
                if not lock.acquire(blocking=False):
                    continue  # a turn runs here: it settles the session before it starts
                try:
                    self.settle(session_id)
                    self.ownership.release_if_held(session_id)
                except StoreError as e:
                    log.debug("session %s not settled yet: %s", session_id, e)
                finally:
                    lock.release()
            if self._stopping.wait(pause):
                continue
            pause = min(pause * 2, 2.0)


def _close_with(tx: Tx, reply_id: str, owner: str, error: MessageError) -> None:
    """Close a reply this runner wrote, and its tool calls still pending or running, with
    ``error``; nothing when someone already finished it (or it is gone)."""
    reply = tx.get_message(reply_id)
    if reply is None or reply.runner != owner:
        return
    for part in tx.parts_of(reply_id):
        body = part.body
        if isinstance(body, ToolPart) and body.state.status in ("pending", "running"):
            state = replace(body.state, status="error", error=error.message, time_end=tx.now())
            tx.put_part(reply_id, replace(body, state=state), part.id)
    if reply.time_completed is None:
        tx.update_message(replace(reply, error=error, time_completed=tx.now()))
