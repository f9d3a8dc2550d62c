"""The prompt runner: one runner per session, answering queued prompts in order.

A turn, run while holding the session's thread lock (this process) and lease (all processes):

1. repair what a dead runner left (``CompactionEngine.recover``) and store the user's prompt;
2. each step: finish any compaction that is due, build the context, stream the provider's
   answer into a reply message (deltas go to the listener at once; the durable part is written at
   most every 250 ms and at the end of the step), then decide: tool calls → run them and loop;
   finished → end; usage over the usable window → automatic compaction; the provider says the
   request is too long → overflow compaction, then the prompt is replayed.

The loop knows no JSON-RPC: it reports through :class:`LoopListener` and returns
:class:`TurnOutcome` values through futures.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol

import apsw

from server.compaction import (
    CANCELLED,
    AnyCancel,
    CompactionEngine,
    CompactionOutcome,
)
from server.context import ModelContext, build_context
from server.errors import (
    CONTEXT_TOO_LARGE,
    INTERNAL_ERROR,
    PROVIDER_ERROR,
    STORAGE_ERROR,
)
from server.ownership import Ownership, Wait, tick
from server.prompting import chat_request
from server.providers.base import (
    ChatResult,
    ContextOverflow,
    Provider,
    ProviderCancelled,
    ProviderError,
    RetryNotice,
    ToolCall,
    ToolSpec,
)
from server.summarizers import token_usage
from server.tokens import ModelLimits, estimate_text, is_overflow
from server.tools import TOOL_SPECS, ToolOutcome, run_tool
from store import LeaseLost, NotFound, Store, StoreError, Tx
from store.ids import new_id
from store.models import (
    CompactionError,
    Message,
    MessageError,
    ReasoningPart,
    StepFinishPart,
    TextPart,
    TokenUsage,
    ToolPart,
    ToolState,
)

log = logging.getLogger(__name__)

StopReason = Literal["end_turn", "cancelled", "max_tokens", "error"]
Status = Literal["idle", "busy", "compacting", "retry"]


@dataclass(frozen=True)
class SessionStatus:
    session_id: str
    status: Status
    attempt: int | None = None
    next_retry_at: int | None = None  # ms since the epoch


@dataclass(frozen=True)
class TurnError:
    name: str  # stable: ProviderError, ContextTooLarge, StorageError, LeaseLost, TooManySteps,
    # InternalError
    message: str
    code: int  # the JSON-RPC error code documented for this kind of failure
    status: int | None = None  # the provider's HTTP status, when there was one
    retryable: bool | None = None


@dataclass(frozen=True)
class TurnOutcome:
    stop_reason: StopReason
    user_message_id: str | None
    message_id: str | None  # the turn's last assistant message (its prompt when there is none)
    error: TurnError | None = None


@dataclass(frozen=True)
class PromptInput:
    texts: tuple[str, ...]
    model: str | None = None


class LoopListener(Protocol):
    def delta(
        self, session_id: str, message_id: str, part_id: str, part_type: str, delta: str
    ) -> None: ...

    def status(self, status: SessionStatus) -> None: ...


@dataclass(frozen=True)
class LoopSettings:
    limits: ModelLimits
    auto_compact: bool = True
    flush_interval_ms: int = 250
    max_steps: int = 25  # model calls per turn before the loop stops itself
    lease_wait_s: float = 0.5  # longest sleep between looks at another runner's lease


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
        settings: LoopSettings,
        listener: LoopListener,
    ) -> None:
        self.store = store
        self.ownership = ownership
        self.engine = engine
        self.provider = provider
        self.settings = settings
        self.listener = listener
        self._queues: dict[str, _Queue] = {}
        self._compact_cancels: dict[str, set[threading.Event]] = {}
        # A turn stopped by a storage fault may leave its reply open and the lease held, since
        # the writes that would settle them fail too: session -> replies to close, and why.
        self._unsettled: dict[str, dict[str, MessageError]] = {}
        self._settler: threading.Thread | None = None
        self._guard = threading.Lock()
        self._closed = False
        self._stopping = threading.Event()

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
        self._stopping.set()
        with self._guard:
            self._closed = True
            workers = [q.worker for q in self._queues.values() if q.worker]
            sessions = set(self._queues) | set(self._compact_cancels)
        for s in sessions:
            self.cancel(s)
        deadline = time.monotonic() + timeout
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))

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
            except (StoreError, apsw.Error) as e:  # e.g. locked or full while taking the lease
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
            session_id, wait=wait, gate=exists, heartbeat=True, unreleased=self._settle_later
        ) as held:
            if held is None:
                return TurnOutcome("cancelled", None, None)
            held.keep = True  # until the turn returns: then the lease is released
            turn = _Turn(self, session_id, job, held.lost)
            outcome = turn.run()
            held.keep = turn.storage_fault
            return outcome

    # --- settling what a storage fault left open ------------------------------------------------

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

    def _settle_later(self, session_id: str) -> None:
        with self._guard:
            self._unsettled.setdefault(session_id, {})
            if self._settler is not None or self._closed:
                return
            self._settler = threading.Thread(target=self._settle_all, name="settler", daemon=True)
            self._settler.start()

    def _settle_all(self) -> None:
        """Retry, with a growing pause, until every faulted session is settled."""
        pause = 0.05
        while True:
            with self._guard:
                sessions = list(self._unsettled)
                if not sessions or self._closed:
                    self._settler = None
                    return
            for session_id in sessions:
                lock = self.ownership.lock(session_id)
                if not lock.acquire(blocking=False):
                    continue  # a turn runs here: it settles the session before it starts
                try:
                    self.settle(session_id)
                    self.ownership.release_if_held(session_id)
                except (StoreError, apsw.Error) as e:
                    log.debug("session %s not settled yet: %s", session_id, e)
                finally:
                    lock.release()
            if self._stopping.wait(pause):
                continue
            pause = min(pause * 2, 2.0)

    def _status(self, session_id: str, status: Status, notice: RetryNotice | None = None) -> None:
        if notice is None:
            self.listener.status(SessionStatus(session_id, status))
            return
        at = int((time.time() + notice.delay_s) * 1000)
        self.listener.status(SessionStatus(session_id, status, notice.attempt, at))


class _Turn:
    """One turn of one session, run by the lease holder."""

    def __init__(self, runner: PromptRunner, session_id: str, job: _Job, lost: threading.Event):
        self.r = runner
        self.session_id = session_id
        self.job = job
        self.lost = lost
        self.cancel = AnyCancel(job.cancel, lost)
        self.prompt_id: str | None = None
        self.last_reply: str | None = None
        self.open_reply: str | None = None  # a reply not yet finished, or running its tools
        self.directory: str | None = None
        self.storage_fault = False  # the turn stopped because the store failed

    @property
    def engine(self) -> CompactionEngine:
        return self.r.engine

    @property
    def ownership(self) -> Ownership:
        return self.r.ownership

    def outcome(self, reason: StopReason, error: TurnError | None = None) -> TurnOutcome:
        return TurnOutcome(reason, self.prompt_id, self.last_reply or self.prompt_id, error)

    def run(self) -> TurnOutcome:
        try:
            return self._run()
        except (LeaseLost, StoreError, apsw.Error) as e:
            if self.job.cancel.is_set():  # e.g. the session was deleted under the turn
                return self.outcome("cancelled")
            log.warning("turn in %s stopped: %s", self.session_id, e)
            error = TurnError("StorageError", _brief(e), STORAGE_ERROR)
            if not isinstance(e, LeaseLost):
                self.storage_fault = True
                if self.open_reply is not None:
                    reply_error = MessageError("StorageError", error.message)
                    self.r.close_reply_later(self.session_id, self.open_reply, reply_error)
            return self.outcome("error", error)

    def _run(self) -> TurnOutcome:
        self.r.settle(self.session_id)  # what an earlier turn's storage fault left open
        self.engine.recover(self.session_id)
        self._drive_active()  # a pending compaction goes before the new prompt
        if self.job.cancel.is_set():
            return self.outcome("cancelled")
        with self.r.store.write() as tx:
            self.directory = tx.update_session(self.session_id).directory  # last activity
            prompt = tx.add_message(self.session_id, "prompt", model=self.job.prompt.model)
            for text in self.job.prompt.texts:
                tx.put_part(prompt.id, TextPart(text))
        self.prompt_id = prompt.id
        self.r._status(self.session_id, "busy")
        overflowed = False
        for _ in range(self.r.settings.max_steps):
            ctx = self._context_for_step()
            if isinstance(ctx, TurnError):
                return self.outcome("error", ctx)
            if self.cancel.is_set():
                return self.outcome("cancelled")
            try:
                step = self._step(ctx)
            except ContextOverflow as e:
                if overflowed or not self.r.settings.auto_compact:
                    return self.outcome("error", _too_large(e.message))
                overflowed = True
                self.r._status(self.session_id, "compacting")
                done = self.engine.compact_after_overflow(
                    self.session_id, prompt.id, cancel=self.job.cancel
                )
                self.r._status(self.session_id, "busy")
                if done.status != "completed":
                    if self.job.cancel.is_set():
                        return self.outcome("cancelled")
                    reason = done.error.message if done.error else "compaction failed"
                    return self.outcome("error", _too_large(reason))
                continue
            if step is None:
                return self.outcome("cancelled")
            if isinstance(step, TurnError):
                return self.outcome("error", step)
            if step.finish == "tool_calls" and step.tool_calls:
                self._run_tools(step)
                self._after_step(step)
                continue
            self._after_step(step)
            return self.outcome("max_tokens" if step.finish == "length" else "end_turn")
        return self.outcome(
            "error",
            TurnError(
                "TooManySteps",
                f"stopped after {self.r.settings.max_steps} model calls in one turn",
                INTERNAL_ERROR,
            ),
        )

    # --- compaction inside a turn -------------------------------------------------------------

    def _context_for_step(self) -> ModelContext | TurnError:
        """The context the next model call gets: after driving a compaction someone requested,
        and after compacting when the context is over the usable window. An error when the
        conversation cannot be made to fit."""
        self._drive_active()
        ctx = build_context(self.r.store, self.session_id)
        usable = self.r.settings.limits.usable()
        if not self.r.settings.auto_compact or usable <= 0 or ctx.tokens < usable:
            return ctx
        self.r._status(self.session_id, "compacting")
        done = self.engine.compact(self.session_id, auto=True, cancel=self.job.cancel)
        self.r._status(self.session_id, "busy")
        if done.status == "completed":
            return build_context(self.r.store, self.session_id)
        if self.job.cancel.is_set():
            return ctx  # the turn stops before the model is called
        return _too_large(done.error.message if done.error else "compaction failed")

    def _drive_active(self) -> None:
        """Finish a compaction that was requested (here or elsewhere) or left by a crash."""
        with self.r.store.read() as tx:
            active = tx.active_compaction(self.session_id)
        if active is None:
            return
        self.r._status(self.session_id, "compacting")
        self.engine.run(self.session_id, active.marker_id, cancel=self.job.cancel)
        self.r._status(self.session_id, "busy")

    def _after_step(self, step: _Step) -> None:
        settings = self.r.settings
        if step.usage is None or not is_overflow(
            step.usage, settings.limits, auto_compact=settings.auto_compact
        ):
            return
        self.r._status(self.session_id, "compacting")
        try:
            self.engine.compact_if_needed(self.session_id, step.usage, cancel=self.job.cancel)
        finally:
            self.r._status(self.session_id, "busy")

    # --- one model call -------------------------------------------------------------------------

    def _step(self, ctx: ModelContext) -> _Step | TurnError | None:
        """Stream one answer to ``ctx`` into a new reply message. None when cancelled."""
        tools: tuple[ToolSpec, ...] = TOOL_SPECS if self.directory else ()
        limits = self.r.settings.limits
        request = chat_request(
            ctx,
            directory=self.directory,
            tools=tools,
            max_tokens=limits.max_output(),
            model=self.job.prompt.model,
        )
        model = self.job.prompt.model or self.r.provider.info.model
        with self.r.store.write() as tx:
            reply = tx.add_message(
                self.session_id,
                "reply",
                parent_id=self.prompt_id,
                runner=self.ownership.runner.owner,
                model=model,
            )
        self.last_reply = self.open_reply = reply.id
        sink = _StepSink(self, reply)
        try:
            with sink.flushing_while_silent():
                result = self.r.provider.chat(request, sink, self.cancel)
        except ProviderCancelled:
            sink.flush()
            self._close(reply, MessageError("Cancelled", "cancelled before the answer ended"))
            return None
        except ContextOverflow as e:
            sink.flush()
            self._close(reply, MessageError("ContextOverflow", e.message))
            raise
        except ProviderError as e:
            sink.flush()
            self._close(reply, MessageError("ProviderError", e.message))
            return TurnError("ProviderError", e.message, PROVIDER_ERROR, e.status, e.retryable)
        if self.lost.is_set():
            return TurnError("LeaseLost", "another process took over this session", STORAGE_ERROR)
        return self._finish(reply, sink, result, ctx.tokens)

    def _finish(self, reply: Message, sink: _StepSink, result: ChatResult, sent: int) -> _Step:
        usage = token_usage(result.usage) or TokenUsage(
            input=sent, output=estimate_text(result.text)
        )
        calls = result.tool_calls if result.finish == "tool_calls" else ()
        tool_parts: list[tuple[str, ToolCall]] = []
        with self.r.store.write() as tx:
            self.ownership.fence(tx, self.session_id)
            if result.reasoning or sink.reasoning_chunks:
                text = result.reasoning or "".join(sink.reasoning_chunks)
                tx.put_part(reply.id, ReasoningPart(text), sink.reasoning_id)
            if result.text or sink.text_chunks:
                tx.put_part(
                    reply.id, TextPart(result.text or "".join(sink.text_chunks)), sink.text_id
                )
            for call in calls:
                part = tx.put_part(
                    reply.id, ToolPart(call.id, call.name, ToolState("pending", _input(call)))
                )
                tool_parts.append((part.id, call))
            tx.put_part(reply.id, StepFinishPart(usage, 0.0, result.finish))
            tx.update_message(
                replace(
                    reply,
                    finish=result.finish,
                    tokens=usage,
                    model=result.model or reply.model,
                    time_completed=tx.now(),
                )
            )
        self.open_reply = reply.id if tool_parts else None  # its tools are still to run
        return _Step(reply.id, result.finish, usage, tuple(tool_parts))

    def _close(self, reply: Message, error: MessageError) -> None:
        with self.r.store.write() as tx:
            self.ownership.fence(tx, self.session_id)
            tx.update_message(replace(reply, error=error, time_completed=tx.now()))
        self.open_reply = None

    def _run_tools(self, step: _Step) -> None:
        root = Path(self.directory) if self.directory else None
        for part_id, call in step.tool_calls:
            started = int(time.time() * 1000)
            state = ToolState("running", _input(call), time_start=started)
            with self.r.store.write() as tx:
                self.ownership.fence(tx, self.session_id)
                tx.put_part(step.reply_id, ToolPart(call.id, call.name, state), part_id)
            if root is None:
                state = replace(state, status="error", error="no project directory")
            else:
                try:  # a tool that raises must end as an error part, never stay "running"
                    out = run_tool(call.name, call.arguments, root, cancel=self.cancel)
                except Exception as e:
                    log.exception("tool %s failed in %s", call.name, self.session_id)
                    out = ToolOutcome("", call.name, error=f"{call.name} failed: {_brief(e)}")
                status: Literal["completed", "error"] = "error" if out.error else "completed"
                state = replace(
                    state,
                    status=status,
                    output=out.output or None,
                    error=out.error,
                    title=out.title,
                )
            with self.r.store.write() as tx:
                self.ownership.fence(tx, self.session_id)
                state = replace(state, time_end=tx.now())
                tx.put_part(step.reply_id, ToolPart(call.id, call.name, state), part_id)
        self.open_reply = None


@dataclass(frozen=True)
class _Step:
    reply_id: str
    finish: str
    usage: TokenUsage | None
    tool_calls: tuple[tuple[str, ToolCall], ...]


class _StepSink:
    """Streams deltas to the listener at once and makes them durable at most every interval."""

    def __init__(self, turn: _Turn, reply: Message) -> None:
        self.turn = turn
        self.reply = reply
        # Ids sort in creation order and clients order parts by id: reasoning comes before the
        # answer it leads to.
        self.reasoning_id = new_id("prt")
        self.text_id = new_id("prt")
        self.text_chunks: list[str] = []
        self.reasoning_chunks: list[str] = []
        self.text_stored = 0  # characters already written (and announced) durably
        self.reasoning_stored = 0
        self.last_flush = time.monotonic()
        self.dirty = False
        self.retrying = False
        self._flush_lock = threading.Lock()  # the runner thread and the silence flusher

    @property
    def interval_s(self) -> float:
        return self.turn.r.settings.flush_interval_ms / 1000

    def flushing_while_silent(self) -> AbstractContextManager[None]:
        """Also write streamed text when the provider goes quiet: writes happen on the next
        chunk otherwise, so a stalled stream would leave what was shown unsaved."""
        return tick(self.interval_s, self._flush_if_silent, "flush-while-silent")

    def _flush_if_silent(self) -> bool:
        if self.dirty and time.monotonic() - self.last_flush >= self.interval_s:
            try:
                self.flush()
            except Exception:  # the runner's own writes report the failure
                log.debug("background flush failed", exc_info=True)
        return True

    def _emit(self, part_id: str, part_type: str, delta: str) -> None:
        if self.retrying:
            self.retrying = False
            self.turn.r._status(self.turn.session_id, "busy")
        self.turn.r.listener.delta(self.turn.session_id, self.reply.id, part_id, part_type, delta)
        self.dirty = True
        if time.monotonic() - self.last_flush >= self.interval_s:
            self.flush()

    def text(self, delta: str) -> None:
        if delta:
            self.text_chunks.append(delta)
            self._emit(self.text_id, "text", delta)

    def reasoning(self, delta: str) -> None:
        if delta:
            self.reasoning_chunks.append(delta)
            self._emit(self.reasoning_id, "reasoning", delta)

    def retry(self, notice: RetryNotice) -> None:
        self.retrying = True
        self.turn.r._status(self.turn.session_id, "retry", notice)

    def flush(self) -> None:
        """Write what has streamed so far (fenced by the lease)."""
        with self._flush_lock:
            if not self.dirty:
                return
            self.dirty = False  # a chunk arriving during the write sets it again
            reasoning = "".join(self.reasoning_chunks)
            text = "".join(self.text_chunks)
            try:
                with self.turn.r.store.write() as tx:
                    self.turn.ownership.fence(tx, self.turn.session_id)
                    if len(reasoning) > self.reasoning_stored:
                        body = ReasoningPart(reasoning)
                        start = self.reasoning_stored
                        tx.append_part_text(self.reply.id, body, self.reasoning_id, start)
                    if len(text) > self.text_stored:
                        body_t = TextPart(text)
                        tx.append_part_text(self.reply.id, body_t, self.text_id, self.text_stored)
            except BaseException:
                self.dirty = True
                raise
            self.reasoning_stored, self.text_stored = len(reasoning), len(text)
            self.last_flush = time.monotonic()


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


def _input(call: ToolCall) -> dict[str, object]:
    try:
        value = json.loads(call.arguments) if call.arguments.strip() else {}
    except json.JSONDecodeError:
        return {"_raw": call.arguments[:2000]}
    return value if isinstance(value, dict) else {"_value": value}


def _too_large(reason: str) -> TurnError:
    return TurnError("ContextTooLarge", reason, CONTEXT_TOO_LARGE)


def _brief(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}"[:500] if text else type(e).__name__
