"""Property-based test: the compaction state machine keeps its guarantees under random crashes.

A hypothesis ``RuleBasedStateMachine`` drives one real database file (a fresh temporary
directory per run) with one or two sessions through random sequences of: user prompts (small
or large enough to make automatic compaction due), assistant replies (finished, failed, with or
without a big tool output, or interrupted by the process dying), compaction requests (manual,
automatic, overflow; with or without instructions), runs of the active marker, recovery, and
summarizer failures (``SummaryFailed`` -> extractive fallback, ``SummaryTooLarge`` -> failed
compaction, empty answer -> extractive fallback).

Crashes: an engine call may be given a crash point; a :func:`server.crashpoints.crash_hook`
raises :class:`SimulatedCrash` (a ``BaseException``, so the engine's ``except Exception`` cannot
swallow it) when that point is reached. From then on the crashed "process" can no longer touch
the database (its :class:`ProcessStore` refuses every read and write, so ``finally`` blocks
cannot release its lease the way a SIGKILLed process could not either). A restart is a new
store connection, a new engine with a fresh runner id, and the fake store clock moved past the
lease timeout so the dead runner's lease counts as dead.

After every step these invariants are checked against the database itself: at most one active
compaction per session; at most one successful summary per marker, every summary answering its
own marker, one summary row per attempt; a completed compaction has its summary, ``tail_set``,
the marker's ``tailStartId`` equal to its tail plan and exactly one continuation or replay if
automatic (none if manual), a failed one an error code; no prompt or reply is ever deleted or
changed; outbox ``seq`` strictly increases and announces every message; the model context holds
only the last completed marker and its summary, in order, with every prompt after the marker
and in its tail, and never a message an overflow compaction replaced by its replay; after a
``recover()`` no unfinished assistant message is left in the session.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import apsw
import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import (
    CANCELLED,
    NO_PROGRESS,
    STALE,
    SUMMARY_TOO_LARGE,
    TOO_MANY_ATTEMPTS,
    CompactionEngine,
    CompactionOutcome,
    CompactionSettings,
)
from server.context import build_context
from server.crashpoints import POINTS, crash_hook
from server.summary import SummaryFailed, SummaryTooLarge
from server.tokens import ModelLimits
from store import RunnerId, Store, Tx
from store.models import (
    Compaction,
    CompactionPart,
    Message,
    TextPart,
    TokenUsage,
    ToolPart,
    ToolState,
)
from tests.support import add_prompt, add_reply

pytestmark = pytest.mark.slow  # hypothesis: many examples, each on a fresh store

T = TypeVar("T")

# A small chat model: usable window 16 000 - 4 000 = 12 000 tokens (48 000 characters).
LIMITS = ModelLimits(context=16_000, output=4_000)
LEASE_TIMEOUT_MS = 30_000
SETTINGS = CompactionSettings(
    limits=LIMITS,
    flush_interval_ms=0,  # every streamed chunk is flushed, so "mid_summary" is reachable
    heartbeat_interval_ms=3_600_000,  # no heartbeat thread writes during a (fast) test step
    wait_interval_s=0.01,
)
RUN_TIMEOUT_S = 10.0  # wall-clock safety net: the only live runner must finish well before
SUMMARY_TEXT = "## Objective\nShip the feature.\n## Next Move\nRun the tests in src/app.py."
FAILED_CODES = {STALE, NO_PROGRESS, SUMMARY_TOO_LARGE, CANCELLED, TOO_MANY_ATTEMPTS}

SESSION = st.integers(min_value=0, max_value=1)  # index into the machine's sessions (mod count)
CRASH = st.one_of(st.none(), st.none(), st.sampled_from(POINTS))  # a crash one call in three
MODE = st.sampled_from(["ok", "ok", "failed", "too_large", "empty"])
KIND = st.sampled_from(["manual", "auto", "overflow"])
INSTRUCTIONS = st.none() | st.sampled_from(["Keep the file paths.", "Focus on the tests.", "  "])
SIZE = st.sampled_from([20, 300, 2_000, 20, 300, 9_000, 30_000, 60_000])  # characters, mostly small
TOOL_SIZE = st.none() | st.sampled_from([100, 5_000, 40_000])


@dataclass(frozen=True)
class RequestState:
    active: Compaction | None  # the session's active compaction
    stale: bool  # ... which a later finished reply made stale
    done: str | None  # the last completed marker, when nothing new came after it (manual only)


class SimulatedCrash(BaseException):
    """The process died at a crash point (a BaseException, like the signal that would kill it)."""


class FakeClock:
    """The store's millisecond clock: ticks on every reading, jumps when told to."""

    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        self.now += 1
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


class ProcessStore(Store):
    """The database as one simulated process sees it; once that process is dead, it is inert."""

    dead = False

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        if self.dead:
            raise SimulatedCrash("a dead process cannot write")
        with super().write() as tx:
            yield tx

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        if self.dead:
            raise SimulatedCrash("a dead process cannot read")
        with super().read() as tx:
            yield tx


def _text(label: str, size: int) -> str:
    head = f"{label}: look at src/pkg/module_{size % 7}.py and `run_checks`."
    if size <= len(head):
        return head
    filler = " lorem ipsum dolor sit amet"
    return head + (filler * (size // len(filler) + 1))[: size - len(head)]


class CompactionUnderRandomCrashes(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="sessionlsp-props-"))
        self.path = self.dir / "sessions.db"
        self.clock = FakeClock()
        self.summarizer = ScriptedSummarizer(text=SUMMARY_TEXT)
        # The editor's side (prompts, replies, reads) and the invariant checker's raw view.
        self.client = Store(self.path, clock=self.clock, lease_timeout_ms=LEASE_TIMEOUT_MS)
        self.sql = apsw.Connection(str(self.path))
        self.proc = self._open_process()
        self.engine = CompactionEngine(self.proc, self.summarizer, SETTINGS, RunnerId.fresh())
        self.sessions: list[str] = []
        self.prompts: dict[str, str] = {}  # every prompt ever written -> its text
        self.originals: set[str] = set()  # every prompt and reply ever written
        self.recovered: str | None = None  # session just recovered by a live, idle engine

    def teardown(self) -> None:
        self.proc.close()
        self.client.close()
        self.sql.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- plumbing -------------------------------------------------------------------------------

    def _open_process(self) -> ProcessStore:
        return ProcessStore(self.path, clock=self.clock, lease_timeout_ms=LEASE_TIMEOUT_MS)

    def _restart(self) -> None:
        """The process is gone; a new one starts with a new runner id, after the lease timeout."""
        self.proc.dead = True
        self.proc.close()
        self.clock.advance(LEASE_TIMEOUT_MS + 1)
        self.proc = self._open_process()
        self.engine = CompactionEngine(self.proc, self.summarizer, SETTINGS, RunnerId.fresh())

    def _call(self, crash_at: str | None, fn: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``fn``; if it reaches ``crash_at`` the process dies there and is restarted."""
        fired: list[str] = []

        def hook(name: str) -> None:
            if name == crash_at and not fired:
                fired.append(name)
                self.proc.dead = True
                raise SimulatedCrash(name)

        try:
            with crash_hook(hook):
                return False, fn()
        except SimulatedCrash:
            assert fired, "only the crash hook kills the process"
            event(f"crashed at {fired[0]}")
            self._restart()
            return True, None

    def _summarize_as(self, mode: str) -> None:
        s = self.summarizer
        s.fail_with = None
        s.text = SUMMARY_TEXT
        if mode == "failed":
            s.fail_with = SummaryFailed("HTTP 503 from provider")
        elif mode == "too_large":
            s.fail_with = SummaryTooLarge("context_length_exceeded")
        elif mode == "empty":
            s.text = ""

    def _sid(self, index: int) -> str:
        return self.sessions[index % len(self.sessions)]

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.sql.execute(sql, params)]

    def _active(self, sid: str) -> Compaction | None:
        with self.client.read() as tx:
            return tx.active_compaction(sid)

    def _compaction(self, marker_id: str) -> Compaction:
        with self.client.read() as tx:
            return tx.require_compaction(marker_id)

    def _message(self, message_id: str) -> Message:
        with self.client.read() as tx:
            return tx.require_message(message_id)

    def _latest_prompt(self, sid: str) -> str:
        with self.client.read() as tx:
            m = tx.latest_of_kind(sid, ("prompt",))
        assert m is not None, "every session starts with a prompt"
        return m.id

    def _is_stale(self, c: Compaction) -> bool:
        with self.client.read() as tx:
            return c.summary_id is None and tx.reply_succeeded_after(c.session_id, c.marker_id)

    def _auto_ran_since_prompt(self, sid: str) -> bool:
        prompt = self._latest_prompt(sid)
        rows = self._rows(
            "SELECT 1 FROM compaction WHERE session_id = ? AND marker_id > ? AND auto = 1"
            " AND (error_code IS NULL OR error_code != ?)",
            (sid, prompt, STALE),
        )
        return bool(rows)

    def _any_active(self) -> bool:
        return bool(self._rows("SELECT 1 FROM compaction WHERE status IN ('pending', 'running')"))

    def _check_outcome(self, out: CompactionOutcome, mode: str, calls: int) -> None:
        """What one engine call that ran to the end must have produced."""
        assert out.model_calls == calls <= 1, "one run makes at most one summarizer call"
        if out.marker_id is None:
            assert out.status == "failed" and out.error is not None
            return
        c = self._compaction(out.marker_id)
        assert c.terminal, f"the only live runner left {c.marker_id} {c.status}"
        assert out.status == c.status and out.summary_message_id == c.summary_id
        if calls == 0:
            return
        if mode == "too_large":
            assert c.status == "failed" and c.error is not None
            assert c.error.code == SUMMARY_TOO_LARGE and c.summary_id is None
            return
        assert c.summary_id is not None
        expected_kind = "model" if mode == "ok" else "extractive"
        assert self._message(c.summary_id).summary_kind == expected_kind
        assert c.status == "completed" or (c.error is not None and c.error.code == NO_PROGRESS)

    def _before_request(self, sid: str, manual: bool) -> RequestState:
        """What decides a request's answer, read just before it is made."""
        active = self._active(sid)
        stale = active is not None and self._is_stale(active)
        done: str | None = None
        if manual:
            with self.client.read() as tx:
                last = tx.last_completed_compaction(sid)
            if last is not None and not self._rows(
                "SELECT 1 FROM message WHERE session_id = ? AND kind IN ('prompt', 'reply')"
                " AND id > ?",
                (sid, last.marker_id),
            ):
                done = last.marker_id
        return RequestState(active, stale, done)

    def _check_request(self, sid: str, before: RequestState, out: CompactionOutcome) -> None:
        """A request returns the live active marker, or the last completed one when nothing is
        new since it (manual only), or creates a marker, or refuses an automatic loop."""
        if before.active is not None and not before.stale:
            assert out.marker_id == before.active.marker_id and not out.created
            return
        if before.active is not None:
            after = self._compaction(before.active.marker_id)
            assert after.status == "failed" and after.error is not None
            assert after.error.code == STALE
        if before.done is not None:
            assert out.marker_id == before.done and not out.created
            assert out.status == "completed"
            return
        if out.marker_id is None:
            assert out.error is not None and out.error.code == "auto_loop"
            assert self._auto_ran_since_prompt(sid)
        else:
            assert out.created

    # --- rules ----------------------------------------------------------------------------------

    @initialize(count=st.integers(min_value=1, max_value=2), size=SIZE)
    def open_sessions(self, count: int, size: int) -> None:
        for i in range(count):
            with self.client.write() as tx:
                sid = tx.create_session(f"session {i}", "/work/project").id
            self.sessions.append(sid)
            m = add_prompt(self.client, sid, _text("first prompt", size))
            self.prompts[m.id] = _text("first prompt", size)
            self.originals.add(m.id)

    @rule(s=SESSION, size=SIZE)
    def user_prompt(self, s: int, size: int) -> None:
        self.recovered = None
        sid = self._sid(s)
        text = _text(f"prompt {len(self.prompts)}", size)
        m = add_prompt(self.client, sid, text)
        self.prompts[m.id] = text
        self.originals.add(m.id)

    @rule(
        s=SESSION,
        size=SIZE,
        errored=st.booleans(),
        tool=TOOL_SIZE,
        tool_failed=st.booleans(),
    )
    def assistant_reply(
        self, s: int, size: int, errored: bool, tool: int | None, tool_failed: bool
    ) -> None:
        self.recovered = None
        sid = self._sid(s)
        output = _text("tool output", tool) if tool is not None else None
        m = add_reply(
            self.client,
            sid,
            self._latest_prompt(sid),
            _text("reply", size),
            tool_output=output if not tool_failed else None,
            tool_error=output if tool_failed else None,
            usage=TokenUsage(input=size // 4, output=50),
            finished=not errored,
            error=errored,
        )
        self.originals.add(m.id)

    @rule(s=SESSION, tool=TOOL_SIZE)
    def reply_interrupted_by_a_crash(self, s: int, tool: int | None) -> None:
        """The runner dies while a reply streams: an unfinished reply with a running tool."""
        self.recovered = None
        sid = self._sid(s)
        with self.client.write() as tx:
            m = tx.add_message(
                sid, "reply", parent_id=self._latest_prompt(sid), runner=self.engine.runner.owner
            )
            state = ToolState(status="running", input={"path": "src/app.py"}, time_start=tx.now())
            tx.put_part(m.id, ToolPart(call_id=f"call-{m.id}", tool="read_file", state=state))
            if tool is not None:
                tx.put_part(m.id, TextPart(_text("partial reply", tool)))
        self.originals.add(m.id)
        event("crashed while a reply streamed")
        self._restart()

    @rule(s=SESSION, kind=KIND, instructions=INSTRUCTIONS, crash=CRASH)
    def request_compaction(
        self, s: int, kind: str, instructions: str | None, crash: str | None
    ) -> None:
        self.recovered = None
        sid = self._sid(s)
        before = self._before_request(sid, manual=kind == "manual")
        replay_of = self._latest_prompt(sid) if kind == "overflow" else None
        crashed, out = self._call(
            crash,
            lambda: self.engine.request(
                sid,
                auto=kind != "manual",
                overflow=kind == "overflow",
                instructions=instructions,
                replay_of=replay_of,
            ),
        )
        if not crashed:
            assert out is not None
            self._check_request(sid, before, out)
            if out.marker_id is not None and out.marker_id != before.done:
                assert self._compaction(out.marker_id).active

    @rule(s=SESSION, auto=st.booleans(), instructions=INSTRUCTIONS, mode=MODE, crash=CRASH)
    def compact(
        self, s: int, auto: bool, instructions: str | None, mode: str, crash: str | None
    ) -> None:
        sid = self._sid(s)
        self._compact(
            sid,
            not auto,
            mode,
            crash,
            lambda: self.engine.compact(sid, auto=auto, instructions=instructions),
        )

    @rule(s=SESSION, mode=MODE, crash=CRASH)
    def compact_after_overflow(self, s: int, mode: str, crash: str | None) -> None:
        """The provider rejected the latest prompt as too long: compact, then replay it."""
        sid = self._sid(s)
        prompt = self._latest_prompt(sid)
        self._compact(
            sid,
            False,
            mode,
            crash,
            lambda: self.engine.compact_after_overflow(sid, replay_of=prompt),
        )

    def _compact(
        self,
        sid: str,
        manual: bool,
        mode: str,
        crash: str | None,
        go: Callable[[], CompactionOutcome],
    ) -> None:
        self.recovered = None
        self._summarize_as(mode)
        before = self._before_request(sid, manual)
        calls = self.summarizer.calls
        crashed, out = self._call(crash, go)
        if not crashed:
            assert out is not None
            self._check_request(sid, before, out)
            self._check_outcome(out, mode, self.summarizer.calls - calls)

    @rule(s=SESSION, mode=MODE, crash=CRASH)
    def auto_compact_after_a_step(self, s: int, mode: str, crash: str | None) -> None:
        """After a step, the step's usage (the context's size) decides whether to compact."""
        self.recovered = None
        sid = self._sid(s)
        self._summarize_as(mode)
        usage = TokenUsage(input=build_context(self.client, sid).tokens, output=20)
        due = usage.count() >= LIMITS.usable()
        event(f"auto compaction due: {due}")
        calls = self.summarizer.calls
        crashed, out = self._call(crash, lambda: self.engine.compact_if_needed(sid, usage))
        if not crashed:
            assert (out is not None) == due
            if out is not None:
                self._check_outcome(out, mode, self.summarizer.calls - calls)

    @precondition(lambda self: self._any_active())
    @rule(s=SESSION, mode=MODE, crash=CRASH)
    def run_active_marker(self, s: int, mode: str, crash: str | None) -> None:
        self.recovered = None
        actives = [c for c in (self._active(sid) for sid in self.sessions) if c is not None]
        c = actives[s % len(actives)]
        self._summarize_as(mode)
        calls = self.summarizer.calls
        crashed, out = self._call(
            crash, lambda: self.engine.run(c.session_id, c.marker_id, timeout=RUN_TIMEOUT_S)
        )
        if not crashed:
            assert out is not None
            self._check_outcome(out, mode, self.summarizer.calls - calls)
            if c.summary_id is not None:
                assert self.summarizer.calls == calls, "a finished summary is never redone"

    @rule(s=SESSION, crash=CRASH)
    def recover(self, s: int, crash: str | None) -> None:
        self.recovered = None
        sid = self._sid(s)
        before = self._active(sid)
        calls = self.summarizer.calls
        crashed, _ = self._call(crash, lambda: self.engine.recover(sid))
        if crashed:
            return
        assert self.summarizer.calls == calls, "recovery never calls the model"
        if before is not None and before.summary_id is not None:
            assert self._compaction(before.marker_id).terminal, "bookkeeping finished on recovery"
        self.recovered = sid

    @rule()
    def restart_process(self) -> None:
        self.recovered = None
        self._restart()

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def at_most_one_active_compaction_per_session(self) -> None:
        rows = self._rows(
            "SELECT session_id, COUNT(*) FROM compaction WHERE status IN ('pending', 'running')"
            " GROUP BY session_id HAVING COUNT(*) > 1"
        )
        assert rows == [], f"several active compactions: {rows}"

    @invariant()
    def summaries_bind_to_their_marker_once(self) -> None:
        rows = self._rows(
            "SELECT compaction_id, COUNT(*) FROM message WHERE kind = 'summary'"
            " AND finish IS NOT NULL AND error IS NULL GROUP BY compaction_id HAVING COUNT(*) > 1"
        )
        assert rows == [], f"markers with several successful summaries: {rows}"
        for mid, parent, marker, mkind in self._rows(
            "SELECT s.id, s.parent_id, s.compaction_id, m.kind FROM message s"
            " LEFT JOIN message m ON m.id = s.compaction_id WHERE s.kind = 'summary'"
        ):
            assert parent == marker, f"summary {mid} answers {parent}, not its marker {marker}"
            assert mkind == "marker", f"summary {mid} belongs to {marker} ({mkind})"
        for marker, attempts, summaries in self._rows(
            "SELECT c.marker_id, c.attempts,"
            " (SELECT COUNT(*) FROM message s WHERE s.compaction_id = c.marker_id"
            "  AND s.kind = 'summary') FROM compaction c"
        ):
            assert attempts == summaries, f"{marker}: {attempts} attempts, {summaries} summaries"

    @invariant()
    def terminal_compactions_are_consistent(self) -> None:
        with self.client.read() as tx:
            for sid in self.sessions:
                for c in tx.compactions(sid):
                    self._check_compaction(tx, c)

    def _check_compaction(self, tx: Tx, c: Compaction) -> None:
        (part,) = [p.body for p in tx.parts_of(c.marker_id) if isinstance(p.body, CompactionPart)]
        conts = [
            m for m in tx.messages(c.session_id, c.marker_id) if m.compaction_id == c.marker_id
        ]
        conts = [m for m in conts if m.kind in ("continuation", "replay")]
        if c.summary_id is not None:
            summary = tx.require_message(c.summary_id)
            assert summary.kind == "summary" and summary.succeeded
            assert summary.compaction_id == c.marker_id
        if c.status == "completed":
            assert c.summary_id is not None and c.tail_set and c.error is None
            assert c.tail_plan is not None
            assert part.tail_start_id == (c.tail_plan or None), (part, c.tail_plan)
            if c.auto:
                assert len(conts) == 1, f"auto compaction {c.marker_id} has {len(conts)} follow-ups"
                expected = "replay" if c.overflow and c.replay_of else "continuation"
                assert conts[0].kind == expected
            else:
                assert conts == [], "a manual compaction writes no continuation"
        else:
            assert conts == [], f"{c.status} compaction {c.marker_id} wrote a continuation"
        if c.status == "failed":
            assert c.error is not None and c.error.code in FAILED_CODES, c.error
        if c.active:
            assert c.error is None

    @invariant()
    def history_is_never_destroyed(self) -> None:
        with self.client.read() as tx:
            for mid in self.originals:
                assert tx.get_message(mid) is not None, f"message {mid} was deleted"
            for mid, text in self.prompts.items():
                stored = "".join(
                    p.body.text for p in tx.parts_of(mid) if isinstance(p.body, TextPart)
                )
                assert stored == text, f"prompt {mid} was changed"

    @invariant()
    def outbox_announces_every_message_in_order(self) -> None:
        with self.client.read() as tx:
            events = tx.events_after(0)
        seqs = [e.seq for e in events]
        assert all(a < b for a, b in itertools.pairwise(seqs)), "seq not increasing"
        announced = {e.data["id"] for e in events if e.type == "message.updated"}
        missing = [mid for (mid,) in self._rows("SELECT id FROM message") if mid not in announced]
        assert missing == [], f"messages never announced: {missing}"

    @invariant()
    def context_holds_only_the_last_completed_anchor(self) -> None:
        for sid in self.sessions:
            self._check_context(sid)

    def _check_context(self, sid: str) -> None:
        ctx = build_context(self.client, sid)
        ids = [m.message_id for m in ctx.messages]
        assert len(ids) == len(set(ids)), "a message appears twice in the context"
        kinds = dict(self._rows("SELECT id, kind FROM message WHERE session_id = ?", (sid,)))
        with self.client.read() as tx:
            last = tx.last_completed_compaction(sid)
            compactions = tx.compactions(sid)
        markers = [i for i in ids if kinds[i] == "marker"]
        summaries = [i for i in ids if kinds[i] == "summary"]
        prompts = [i for i in self.prompts if kinds.get(i) == "prompt"]
        if last is None:
            assert markers == [] and summaries == []
            assert ctx.marker_id is None and ctx.summary_message_id is None
            rest = ids
            kept = prompts
        else:
            assert markers == [last.marker_id], f"markers in context: {markers}"
            assert summaries == [last.summary_id], f"summaries in context: {summaries}"
            assert ids[:2] == [last.marker_id, last.summary_id]
            assert ctx.marker_id == last.marker_id
            assert ctx.summary_message_id == last.summary_id
            rest = ids[2:]
            tail_end = last.replay_of or last.marker_id
            kept = [
                p
                for p in prompts
                if p > last.marker_id or (last.tail_plan and last.tail_plan <= p < tail_end)
            ]
        assert rest == sorted(rest), "context messages out of order"
        # An overflow compaction replaces the messages from the one that overflowed up to its
        # marker by a replay after the marker: those originals must never come back.
        replaced = {
            i: c.marker_id
            for c in compactions
            if c.status == "completed" and c.replay_of
            for i in kinds
            if c.replay_of <= i < c.marker_id
        }
        back = {i: replaced[i] for i in rest if i in replaced}
        assert back == {}, f"messages replaced by an overflow replay are in the context: {back}"
        lost = [p for p in kept if p not in ids and p not in replaced]
        assert lost == [], f"prompts missing from the context: {lost}"

    @invariant()
    def recovery_leaves_no_unfinished_assistant(self) -> None:
        if self.recovered is None:
            return
        with self.client.read() as tx:
            unfinished = tx.unfinished_assistants(self.recovered)
        assert unfinished == [], f"unfinished after recover(): {[m.id for m in unfinished]}"


CompactionUnderRandomCrashes.TestCase.settings = settings(
    max_examples=100, stateful_step_count=25, deadline=None
)
TestCompactionInvariantsUnderRandomCrashes = CompactionUnderRandomCrashes.TestCase
