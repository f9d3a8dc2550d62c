"""Many runners asking for the same compaction at once end with one marker and one summary.

Sixteen threads in this process and four worker processes call ``compact()`` on one session at
the same moment. The processes start up, print ``ready`` and block on stdin; the threads block on
an Event; the parent releases all of them together.

Whoever wins the lease is then held before it streams its first summary chunk until every caller
has its answer from ``request()``, so that every caller meets the marker while it is *active*:
that is the race under test. (A caller that arrives after completion gets the completed
compaction instead, because nothing new was said since; ``test_compaction_request`` pins that.)
The gate only delays the model call: the check-and-insert of the marker still happens at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import CompactionOutcome
from store import RunnerId, Store
from store.models import CompactionError
from tests.procs.compact_worker import (
    AnnouncingEngine,
    expect_line,
    finish,
    parse_outcome,
    send,
    spawned,
    worker_settings,
)
from tests.support import add_turn, new_session

THREADS = 16
PROCESSES = 4
PATIENCE_S = 20.0  # a broken build fails after this long instead of hanging (never reached)

pytestmark = pytest.mark.slow


class Callers:
    """The in-process callers: threads that wait for ``go`` and then call ``compact()``."""

    def __init__(self, store: Store, session_id: str, shared_engine: bool) -> None:
        self.store = store
        self.session_id = session_id
        self.go = threading.Event()
        self.release = threading.Event()  # lets the lease holder stream its summary
        self.answered = threading.Semaphore(0)  # one release per caller past request()
        self._local = threading.local()
        self.outcomes: list[CompactionOutcome] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        if shared_engine:
            one = self._engine()
            self.engines = [one] * THREADS
        else:
            self.engines = [self._engine() for _ in range(THREADS)]
        self.threads = [
            threading.Thread(target=self._call, args=(e,), daemon=True) for e in self.engines
        ]

    def _engine(self) -> AnnouncingEngine:
        summarizer = ScriptedSummarizer(before_chunk=self._hold_first_chunk)
        return AnnouncingEngine(self.store, summarizer, worker_settings(), self._answered)

    @property
    def model_calls(self) -> int:
        """Calls the in-process summarizers really received."""
        summarizers = {id(e.summarizer): e.summarizer for e in self.engines}.values()
        return sum(s.calls for s in summarizers if isinstance(s, ScriptedSummarizer))

    def _hold_first_chunk(self, i: int) -> None:
        if i == 0:
            self.release.wait(PATIENCE_S)

    def _answered(self) -> None:
        self._local.answered = True
        self.answered.release()

    def _call(self, engine: AnnouncingEngine) -> None:
        try:
            self.go.wait(PATIENCE_S)
            outcome = engine.compact(self.session_id)
            with self._lock:
                self.outcomes.append(outcome)
        except BaseException as e:
            with self._lock:
                self.errors.append(e)
            if not getattr(self._local, "answered", False):
                self.answered.release()  # it failed before its answer: do not wait for it

    def join(self, deadline: float) -> bool:
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def give_up(self) -> None:
        """After a failure: end the compaction by hand so that no thread waits on it forever."""
        self.go.set()
        self.release.set()
        if self.join(time.monotonic() + 1.0):
            return
        with contextlib.suppress(Exception), self.store.write() as tx:
            lease = tx.get_lease(self.session_id)
            if lease is not None:
                tx.release_lease(self.session_id, RunnerId(lease.owner, lease.host, lease.pid))
            active = tx.active_compaction(self.session_id)
            if active is not None:
                gave_up = CompactionError("test", "the test gave up")
                tx.save_compaction(replace(active, status="failed", error=gave_up))
        self.join(time.monotonic() + 10.0)


@pytest.mark.parametrize("engines", ["engine_per_thread", "one_shared_engine"])
def test_sixteen_threads_and_four_processes_make_one_marker_and_one_summary(
    tmp_path: Path, engines: str
) -> None:
    db = tmp_path / "sessions.db"
    store = Store(db)
    callers: Callers | None = None
    try:
        session_id = new_session(store)
        for i in range(3):
            add_turn(store, session_id, f"question {i} " * 20, f"answer {i} " * 100)
        callers = Callers(store, session_id, shared_engine=engines == "one_shared_engine")
        deadline = time.monotonic() + PATIENCE_S
        results: list[dict[str, Any]] = []
        with contextlib.ExitStack() as stack:
            stack.callback(callers.give_up)  # runs after the workers are reaped
            flags = ("--wait-go", "--announce-request", "--hold-before-chunk", "0")
            procs = [
                stack.enter_context(spawned(db, session_id, "compact", *flags))
                for _ in range(PROCESSES)
            ]
            for proc in procs:
                expect_line(proc, "ready")
            for t in callers.threads:
                t.start()

            # Everybody at once.
            for proc in procs:
                send(proc, "go")
            callers.go.set()

            # Every caller has its marker id before any summary may be streamed.
            answered = sum(
                callers.answered.acquire(timeout=max(0.0, deadline - time.monotonic()))
                for _ in range(THREADS)
            )
            assert answered == THREADS, f"{answered} callers answered; errors: {callers.errors}"
            for proc in procs:
                expect_line(proc, "requested")
            callers.release.set()
            for proc in procs:
                send(proc, "release")  # read only by a process that holds the lease

            assert callers.join(deadline), "a caller thread is still waiting"
            for proc in procs:
                rc, out, err = finish(proc)
                assert rc == 0, err
                results.append(parse_outcome(out))

        assert not callers.errors, callers.errors
        assert len(callers.outcomes) == THREADS
        assert len(results) == PROCESSES

        with store.read() as tx:
            messages = tx.messages(session_id)
            rows = tx.compactions(session_id)
            lease = tx.get_lease(session_id)
        markers = [m for m in messages if m.kind == "marker"]
        summaries = [m for m in messages if m.kind == "summary"]
        assert len(markers) == 1
        assert len(rows) == 1
        marker_id = markers[0].id
        row = rows[0]
        assert row.marker_id == marker_id
        assert row.status == "completed"
        assert row.attempts == 1

        assert len(summaries) == 1
        summary = summaries[0]
        assert summary.succeeded
        assert summary.parent_id == marker_id
        assert summary.compaction_id == marker_id
        assert row.summary_id == summary.id

        answers = [
            (o.marker_id, o.created, o.status, o.summary_message_id, o.model_calls)
            for o in callers.outcomes
        ] + [
            (r["marker_id"], r["created"], r["status"], r["summary_message_id"], r["model_calls"])
            for r in results
        ]
        assert {a[0] for a in answers} == {marker_id}
        assert [a[1] for a in answers].count(True) == 1
        assert {a[2] for a in answers} == {"completed"}
        assert {a[3] for a in answers} == {summary.id}
        assert sum(a[4] for a in answers) == 1
        # What the models really received agrees with what the engines reported.
        assert callers.model_calls + sum(r["summarizer_calls"] for r in results) == 1
        assert lease is None
    finally:
        if callers is None or not any(t.is_alive() for t in callers.threads):
            store.close()  # (a thread still inside the store would make close() raise)
