"""The compaction state machine.

A compaction is a marker (a user message holding a compaction part) and one row in the
``compaction`` table. Its status moves ``pending -> running -> completed | failed``; every step
is a separate IMMEDIATE transaction that re-reads the row, so any step can be repeated by a
later process after a crash and does its work exactly once:

1. ``request``: check-and-insert the marker (or merge into the active one).
2. ``attempt``: plan the tail, write an unfinished summary assistant row (parent = marker).
3. stream the summary into that row, flushing at most every 250 ms.
4. ``summarized``: finish the summary and record it on the row.
5. ``tail``: write ``tailStartId`` on the marker's compaction part.
6. ``complete``: check progress, write the continuation (or replay), mark completed.

Only the holder of the session's runner lease does steps 2-6; everybody else waits for the
row to reach a terminal status. ``recover`` closes what dead runners left behind and finishes
steps 5-6 of a marker whose summary already succeeded, without calling the model again.
The guarantees and the tests that prove them are listed in docs/compaction.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from server.context import load_conversation, plan_tail, render, tail_budget
from server.crashpoints import crashpoint
from server.ownership import Ownership
from server.providers.base import CancelToken
from server.summary import (
    Summarizer,
    SummaryCancelled,
    SummaryReply,
    SummaryRequest,
    SummaryTooLarge,
    build_summary_request,
    fallback_summary,
)
from server.tokens import ModelLimits, is_overflow
from store import LeaseLost, RunnerId, Store, Tx
from store.ids import new_id
from store.models import (
    Compaction,
    CompactionError,
    CompactionPart,
    CompactionStatus,
    FilePart,
    Message,
    MessageError,
    MessageWithParts,
    Part,
    SummaryKind,
    TextPart,
    TokenUsage,
    ToolPart,
)

log = logging.getLogger(__name__)

CONTINUATION_TEXT = (
    "[The conversation was compacted to fit the model's context.] Carry on with the next step "
    "if there is one; otherwise stop and say what you need from me."
)

# Stable error codes carried by failed compactions (see docs/compaction.md).
STALE = "stale"
NO_PROGRESS = "no_progress"
SUMMARY_TOO_LARGE = "summary_too_large"
CANCELLED = "cancelled"
AUTO_LOOP = "auto_loop"
AUTO_DISABLED = "auto_disabled"
TOO_MANY_ATTEMPTS = "too_many_attempts"


@dataclass(frozen=True)
class CompactionSettings:
    limits: ModelLimits  # the chat model's limits: they define the usable window
    auto_compact: bool = True
    auto_per_prompt: int = 1  # automatic compactions allowed between two user prompts
    max_attempts: int = 3  # summary attempts per marker before it fails (each one costs a call)
    flush_interval_ms: int = 250  # how often streamed summary text is made durable
    heartbeat_interval_ms: int | None = None  # default: a third of the lease timeout
    wait_interval_s: float = 0.5  # longest a waiter sleeps between looks at the row


@dataclass(frozen=True)
class CompactionOutcome:
    """What a caller learns: the marker, whether this call created it, and where it ended."""

    marker_id: str | None
    created: bool
    status: CompactionStatus
    summary_message_id: str | None = None
    error: CompactionError | None = None
    model_calls: int = 0  # summarizer calls made by this call (not by other runners)


def _outcome(c: Compaction, created: bool = False, calls: int = 0) -> CompactionOutcome:
    return CompactionOutcome(c.marker_id, created, c.status, c.summary_id, c.error, calls)


def _refused(code: str, message: str) -> CompactionOutcome:
    return CompactionOutcome(None, False, "failed", None, CompactionError(code, message))


def _merge_instructions(current: str | None, new: str | None) -> str | None:
    if not new or not new.strip():
        return current
    if not current:
        return new.strip()
    if new.strip() in current:
        return current
    return f"{current}\n\n{new.strip()}"


class CompactionEngine:
    """Compacts the sessions of one store. One engine per process (or per runner) is enough."""

    def __init__(
        self,
        store: Store,
        summarizer: Summarizer,
        settings: CompactionSettings,
        runner: RunnerId | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        self.store = store
        self.summarizer = summarizer
        self.settings = settings
        self.ownership = ownership or Ownership(store, runner, settings.heartbeat_interval_ms)

    @property
    def runner(self) -> RunnerId:
        return self.ownership.runner

    # --- 1. request ---------------------------------------------------------------------------

    def request(
        self,
        session_id: str,
        *,
        auto: bool = False,
        overflow: bool = False,
        instructions: str | None = None,
        replay_of: str | None = None,
    ) -> CompactionOutcome:
        """Create the session's marker, or return the active one (``created=False``).

        Check and insert run in one IMMEDIATE transaction, so concurrent requests from any
        number of threads and processes end with one marker. A stale active marker is closed
        first. A manual request when no prompt or reply was added since the last completed
        compaction gets that compaction (``created=False``): there is nothing new to summarize.
        An automatic request is refused (status ``failed``, no marker) when automatic
        compaction is off or already ran since the last user prompt.
        """
        with self.store.write() as tx:
            tx.require_session_exists(session_id)
            active = tx.active_compaction(session_id)
            if active is not None and self._is_stale(tx, active):
                self._fail(tx, active, STALE, "a later reply finished after this marker")
                active = None
            if active is not None:
                merged = _merge_instructions(active.instructions, instructions)
                if merged != active.instructions:
                    active = tx.save_compaction(replace(active, instructions=merged))
                    self._update_marker_part(tx, active, lambda b: replace(b, instructions=merged))
                return _outcome(active)
            if auto:
                refusal = self._auto_refusal(tx, session_id)
                if refusal is not None:
                    return refusal
            else:
                done = tx.last_completed_compaction(session_id)
                if done is not None and not tx.has_conversation_after(session_id, done.marker_id):
                    # Nothing new since the last compaction: a late duplicate of the request
                    # that made it (or a repeated click) gets that one, not a paid copy.
                    return _outcome(done)
            instructions = _merge_instructions(None, instructions)
            marker = tx.add_message(session_id, "marker")
            tx.put_part(marker.id, CompactionPart(auto, overflow, None, instructions))
            c = tx.insert_compaction(
                Compaction(
                    marker_id=marker.id,
                    session_id=session_id,
                    status="pending",
                    auto=auto,
                    overflow=overflow,
                    instructions=instructions,
                    replay_of=replay_of if overflow else None,
                    tail_plan=None,
                    tail_set=False,
                    summary_id=None,
                    error=None,
                    attempts=0,
                    time_created=marker.time_created,
                    time_updated=marker.time_created,
                )
            )
        crashpoint("after_marker")
        return _outcome(c, created=True)

    def _auto_refusal(self, tx: Tx, session_id: str) -> CompactionOutcome | None:
        if not self.settings.auto_compact:
            return _refused(
                AUTO_DISABLED,
                "context too large: the conversation no longer fits the model's window and "
                "automatic compaction is off (compact manually or turn autoCompact on)",
            )
        prompt = tx.latest_of_kind(session_id, ("prompt",))
        since = tx.compactions(session_id, after_id=prompt.id if prompt else "")
        autos = [c for c in since if c.auto and not (c.error and c.error.code == STALE)]
        if len(autos) >= self.settings.auto_per_prompt:
            return _refused(
                AUTO_LOOP,
                "context too large: automatic compaction already ran since the last user "
                "message and the conversation still does not fit; stopping instead of "
                "compacting again",
            )
        return None

    def _is_stale(self, tx: Tx, c: Compaction) -> bool:
        return c.summary_id is None and tx.reply_succeeded_after(c.session_id, c.marker_id)

    # --- driving a marker to the end -------------------------------------------------------------

    def compact(
        self,
        session_id: str,
        *,
        auto: bool = False,
        overflow: bool = False,
        instructions: str | None = None,
        replay_of: str | None = None,
        cancel: threading.Event | None = None,
    ) -> CompactionOutcome:
        """Request a compaction and return once it has completed or failed."""
        requested = self.request(
            session_id, auto=auto, overflow=overflow, instructions=instructions, replay_of=replay_of
        )
        if requested.marker_id is None:
            return requested
        done = self.run(session_id, requested.marker_id, cancel=cancel)
        return replace(done, created=requested.created)

    def compact_if_needed(
        self, session_id: str, usage: TokenUsage, cancel: threading.Event | None = None
    ) -> CompactionOutcome | None:
        """After a step: compact automatically when its usage reached the usable window."""
        limits, auto = self.settings.limits, self.settings.auto_compact
        if not is_overflow(usage, limits, auto_compact=auto):
            return None
        return self.compact(session_id, auto=True, cancel=cancel)

    def compact_after_overflow(
        self, session_id: str, replay_of: str, cancel: threading.Event | None = None
    ) -> CompactionOutcome:
        """The provider said the request was too long: compact, then send ``replay_of`` again."""
        return self.compact(
            session_id, auto=True, overflow=True, replay_of=replay_of, cancel=cancel
        )

    def run(
        self,
        session_id: str,
        marker_id: str,
        *,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> CompactionOutcome:
        """Drive the marker to a terminal status, or wait while another live runner does.

        With ``timeout``, returns the current (possibly still active) status when it expires.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        calls = 0
        while True:
            c, drove = self._try_drive(session_id, marker_id, cancel)
            calls += drove
            if c is not None:
                return _outcome(c, calls=calls)
            with self.store.read() as tx:
                c = tx.require_compaction(marker_id)
            if c.terminal or (deadline is not None and time.monotonic() >= deadline):
                return _outcome(c, calls=calls)
            self.store.wait_for_change(self.settings.wait_interval_s)

    def _try_drive(
        self, session_id: str, marker_id: str, cancel: threading.Event | None
    ) -> tuple[Compaction | None, int]:
        """The terminal row, or drive it if the session lock and lease are free or ours.

        Returns (row if terminal else None, model calls made).
        """
        terminal: list[Compaction] = []

        def not_done(tx: Tx) -> bool:
            c = tx.require_compaction(marker_id)
            if c.terminal:
                terminal.append(c)
            return not c.terminal

        calls = 0
        with self.ownership.hold(session_id, gate=not_done) as held:
            if terminal:
                return terminal[0], 0
            if held is None:
                return None, 0
            try:
                calls = self._drive(session_id, marker_id, cancel)
            except LeaseLost:
                log.warning("lost the lease of %s; waiting for its new owner", session_id)
        with self.store.read() as tx:
            c = tx.require_compaction(marker_id)
        return (c if c.terminal else None), calls

    # --- recovery -------------------------------------------------------------------------------

    def recover(self, session_id: str) -> CompactionOutcome | None:
        """Repair what dead runners left behind, if this runner can take the session's lease.

        Returns the active (or just completed) compaction's outcome, or None when there is
        nothing to do or a live runner holds the session.
        """
        with self.store.read() as tx:  # usually nothing to repair: then write nothing
            if (
                tx.get_lease(session_id) is None
                and tx.active_compaction(session_id) is None
                and not tx.unfinished_assistants(session_id)
                and not tx.open_tool_parts(session_id)
            ):
                return None
        with self.ownership.hold(session_id) as held:
            if held is None:
                return None
            marker_id = self._recover_held(session_id)
            if marker_id is None:
                return None
            with self.store.read() as tx:
                return _outcome(tx.require_compaction(marker_id))

    def _recover_held(self, session_id: str) -> str | None:
        """Recovery by the lease holder, which is running nothing else in the session."""
        with self.store.write() as tx:
            for m in tx.unfinished_assistants(session_id):
                self._close_interrupted(tx, m)
            for part in tx.open_tool_parts(session_id):  # under a message that had finished
                _close_tool(tx, part, "interrupted")
            # a question the dead runner was waiting on: no client may answer it any more
            tx.cancel_open_permissions(session_id, "interrupted")
            c = tx.active_compaction(session_id)
            if c is None:
                return None
            if self._is_stale(tx, c):
                self._fail(tx, c, STALE, "a later reply finished after this marker")
                return c.marker_id
            if c.status == "running" and c.summary_id is None:
                tx.save_compaction(replace(c, status="pending"))
        if c.summary_id is not None:
            self._bookkeeping(session_id, c.marker_id)
        return c.marker_id

    def _close_interrupted(self, tx: Tx, m: Message) -> None:
        error = MessageError(
            "Interrupted", "the process writing this message stopped before it finished"
        )
        for part in tx.parts_of(m.id):
            body = part.body
            if isinstance(body, ToolPart) and body.state.status in ("pending", "running"):
                state = replace(body.state, status="error", error=error.message, time_end=tx.now())
                tx.put_part(m.id, replace(body, state=state), part.id)
        tx.update_message(replace(m, error=error, time_completed=tx.now()))

    # --- 2-4. one summary attempt, by the lease holder ------------------------------------------

    def _drive(self, session_id: str, marker_id: str, cancel: threading.Event | None) -> int:
        """Run the marker to its end while holding the lease. Returns model calls made."""
        self._recover_held(session_id)
        with self.store.write() as tx:
            c = tx.require_compaction(marker_id)
            if c.terminal:
                return 0
            if cancel is not None and cancel.is_set():
                self._fail(tx, c, CANCELLED, "compaction cancelled before it started")
                return 0
            if c.attempts >= self.settings.max_attempts:
                self._fail(
                    tx,
                    c,
                    TOO_MANY_ATTEMPTS,
                    f"{c.attempts} summary attempts were interrupted; not trying again",
                )
                return 0
            conv = load_conversation(tx, session_id)
            # The new tail is planned among the messages after the previous marker only: the
            # tail is stored as an id range, and a range reaching back past that marker would
            # take in messages the previous compaction left out (an overflow's replaced turn).
            end = c.replay_of or c.marker_id
            recent = tuple(m for m in conv.after if m.info.id < end)
            if c.tail_plan is None:
                tail = plan_tail(recent, tail_budget(self.settings.limits))
                c = replace(c, tail_plan=tail or "")
            kept = c.tail_plan
            head = conv.tail + tuple(m for m in recent if not kept or m.info.id < kept)
            previous = _summary_text(conv.summary)
            summary = tx.add_message(
                session_id,
                "summary",
                parent_id=marker_id,
                compaction_id=marker_id,
                runner=self.ownership.runner.owner,
            )
            c = tx.save_compaction(replace(c, status="running", attempts=c.attempts + 1))
        crashpoint("after_summary_row")
        request = build_summary_request(head, previous, c.instructions, self.summarizer.limits)
        stream = _SummaryStream(self, session_id, summary)
        lost = threading.Event()
        try:
            with self.ownership.keep_fresh(session_id, lost):
                reply, kind = self._call_summarizer(request, stream, cancel, lost, head, previous)
        except SummaryTooLarge as e:
            self._end_attempt(
                summary,
                c,
                "ContextTooLarge",
                SUMMARY_TOO_LARGE,
                f"session too large to compact: the summary request does not fit the "
                f"summarizer model ({e})",
            )
            return 1
        except SummaryCancelled:
            self._end_attempt(summary, c, "Cancelled", CANCELLED, "compaction cancelled")
            return 1
        with self.store.write() as tx:
            self.ownership.fence(tx, session_id)
            tx.put_part(summary.id, TextPart(reply.text), stream.part_id)
            tx.update_message(
                replace(
                    summary,
                    finish="stop",
                    time_completed=tx.now(),
                    tokens=reply.tokens,
                    model=reply.model,
                    summary_kind=kind,
                )
            )
            tx.save_compaction(replace(tx.require_compaction(marker_id), summary_id=summary.id))
        crashpoint("after_summary")
        self._bookkeeping(session_id, marker_id)
        return 1

    def _call_summarizer(
        self,
        request: SummaryRequest,
        stream: _SummaryStream,
        cancel: threading.Event | None,
        lost: threading.Event,
        head: tuple[MessageWithParts, ...],
        previous: str | None,
    ) -> tuple[SummaryReply, SummaryKind]:
        """The model's summary, or an extractive one when the model cannot produce it."""
        try:
            reply = self.summarizer.summarize(request, stream.on_text, AnyCancel(cancel, lost))
        except (SummaryTooLarge, SummaryCancelled, LeaseLost):
            raise
        except Exception as e:
            if lost.is_set():
                raise LeaseLost("lease lost while summarizing") from e
            if cancel is not None and cancel.is_set():
                raise SummaryCancelled() from e
            log.warning("summarizer failed (%s); writing an extractive summary", type(e).__name__)
            return SummaryReply(fallback_summary(head, previous, _reason(e))), "extractive"
        if lost.is_set():
            raise LeaseLost("lease lost while summarizing")
        if not reply.text.strip():
            reason = "the model returned an empty summary"
            return SummaryReply(
                fallback_summary(head, previous, reason), reply.tokens
            ), "extractive"
        return reply, reply.kind

    def _end_attempt(
        self, summary: Message, c: Compaction, name: str, code: str, message: str
    ) -> None:
        with self.store.write() as tx:
            self.ownership.fence(tx, c.session_id)
            tx.update_message(
                replace(summary, error=MessageError(name, message), time_completed=tx.now())
            )
            self._fail(tx, tx.require_compaction(c.marker_id), code, message)

    # --- 5-6. bookkeeping ---------------------------------------------------------------------

    def _bookkeeping(self, session_id: str, marker_id: str) -> None:
        """Write tailStartId, then the continuation and the final status. Each step once."""
        with self.store.write() as tx:
            self.ownership.fence(tx, session_id)
            c = tx.require_compaction(marker_id)
            if c.terminal or c.summary_id is None:
                return
            if not c.tail_set:
                tail = c.tail_plan or None
                self._update_marker_part(tx, c, lambda b: replace(b, tail_start_id=tail))
                tx.save_compaction(replace(c, tail_set=True))
        crashpoint("after_bookkeeping")
        with self.store.write() as tx:
            self.ownership.fence(tx, session_id)
            c = tx.require_compaction(marker_id)
            if c.terminal:
                return
            after = render(load_conversation(tx, session_id, anchor=c))
            usable = self.settings.limits.usable()
            if usable > 0 and after.tokens >= usable:
                self._fail(
                    tx,
                    c,
                    NO_PROGRESS,
                    f"the context is still {after.tokens} tokens after compaction, at or over "
                    f"the usable window of {usable}; stopping instead of compacting again",
                )
                return
            if c.auto and tx.continuation_of(marker_id) is None:
                self._write_continuation(tx, c)
            tx.save_compaction(replace(c, status="completed", error=None))

    def _write_continuation(self, tx: Tx, c: Compaction) -> None:
        if c.overflow and c.replay_of:
            original = tx.parts_of(c.replay_of)
            replay = tx.add_message(c.session_id, "replay", compaction_id=c.marker_id)
            for part in original:
                if isinstance(part.body, TextPart | FilePart):
                    tx.put_part(replay.id, part.body)
            return
        cont = tx.add_message(c.session_id, "continuation", compaction_id=c.marker_id)
        tx.put_part(cont.id, TextPart(CONTINUATION_TEXT, synthetic=True))

    # --- helpers --------------------------------------------------------------------------------

    def _fail(self, tx: Tx, c: Compaction, code: str, message: str) -> Compaction:
        return tx.save_compaction(replace(c, status="failed", error=CompactionError(code, message)))

    def _update_marker_part(
        self, tx: Tx, c: Compaction, change: Callable[[CompactionPart], CompactionPart]
    ) -> None:
        """Rewrite the marker's compaction part with ``change`` and announce it."""
        for part in tx.parts_of(c.marker_id):
            if isinstance(part.body, CompactionPart):
                tx.put_part(c.marker_id, change(part.body), part.id)


class _SummaryStream:
    """Collects streamed summary text and makes it durable at most every flush interval."""

    def __init__(self, engine: CompactionEngine, session_id: str, summary: Message) -> None:
        self.engine = engine
        self.session_id = session_id
        self.summary = summary
        self.part_id = new_id("prt")
        self.chunks: list[str] = []
        self.stored = 0  # characters already written durably
        self.last_flush = time.monotonic()
        self.flushes = 0

    def on_text(self, delta: str) -> None:
        self.chunks.append(delta)
        interval = self.engine.settings.flush_interval_ms / 1000
        if time.monotonic() - self.last_flush >= interval:
            self.flush()

    def flush(self) -> None:
        text = "".join(self.chunks)
        with self.engine.store.write() as tx:
            self.engine.ownership.fence(tx, self.session_id)
            tx.append_part_text(self.summary.id, TextPart(text), self.part_id, self.stored)
        self.stored = len(text)
        self.last_flush = time.monotonic()
        self.flushes += 1
        if self.flushes == 1:
            crashpoint("mid_summary")


class AnyCancel:
    """A cancel token that is set when any of its tokens is (None tokens are left out): the
    user's cancel, or the lease lost under a runner."""

    def __init__(self, *tokens: CancelToken | None) -> None:
        self._tokens = [t for t in tokens if t is not None]

    def is_set(self) -> bool:
        return any(t.is_set() for t in self._tokens)


def _close_tool(tx: Tx, part: Part, error: str) -> None:
    """End a tool call nobody is running any more as an error (with its outbox event)."""
    body = part.body
    if isinstance(body, ToolPart):
        state = replace(body.state, status="error", error=error, time_end=tx.now())
        tx.put_part(part.message_id, replace(body, state=state), part.id)


def _summary_text(m: MessageWithParts | None) -> str | None:
    if m is None:
        return None
    text = "\n".join(p.body.text for p in m.parts if isinstance(p.body, TextPart)).strip()
    return text or None


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
