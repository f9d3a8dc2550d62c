"""One turn: answering one prompt of one session, run by the holder of its lock and lease.

1. repair what a dead runner left (``CompactionEngine.recover``) and store the user's prompt;
2. each step: finish any compaction that is due, build the context, stream the provider's
   answer into a reply message (deltas go to the listener at once; the durable part is written at
   most every 250 ms and at the end of the step), then decide: tool calls → run them and go on;
   finished → end; usage over the usable window → automatic compaction; the provider says the
   request is too long → overflow compaction, then the prompt is replayed.

A turn knows no JSON-RPC and no runner: it is handed its collaborators (store, ownership, engine,
provider, settings), reports through a :class:`StatusPort`, leaves what a storage fault kept it
from writing to a :class:`FaultPort`, and returns a :class:`TurnOutcome`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from server.compaction import AnyCancel, CompactionEngine
from server.context import ModelContext, build_context
from server.errors import (
    CONTEXT_TOO_LARGE,
    INTERNAL_ERROR,
    PROVIDER_ERROR,
    STORAGE_ERROR,
)
from server.ownership import Ownership
from server.permission_gate import CANCELLED, NO_CLIENT, REJECTED, PermissionGate, Question
from server.permissions import (
    DEFAULT_RULES,
    Decision,
    Key,
    Rules,
    always_patterns,
    decide,
    key_for_tool,
)
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
from server.prune import PRUNE_MINIMUM_TOKENS, PRUNE_PROTECT_TOKENS, prune
from server.stream import Status, Step, StepSink
from server.summarizers import token_usage
from server.titles import title_from_prompt
from server.tokens import ModelLimits, estimate_text, is_overflow
from server.tools import (
    TOOL_SPECS,
    TOOLS,
    Plan,
    ToolOutcome,
    ToolSettings,
    apply_plan,
    plan_tool,
    run_tool,
)
from server.tools.base import ToolError, parse_arguments, printable
from store import LeaseLost, Store, StoreError
from store.models import (
    Json,
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


class TurnListener(Protocol):
    def delta(
        self, session_id: str, message_id: str, part_id: str, part_type: str, delta: str
    ) -> None: ...

    def status(self, status: SessionStatus) -> None: ...


@dataclass(frozen=True)
class TurnSettings:
    limits: ModelLimits
    auto_compact: bool = True
    flush_interval_ms: int = 250
    max_steps: int = 25  # model calls per turn before the turn stops itself
    lease_wait_s: float = 0.5  # longest sleep between looks at another runner's lease
    tools: ToolSettings = field(default_factory=ToolSettings)  # the configured sandbox, for bash
    permission: Rules = DEFAULT_RULES  # which tool calls run unasked (server/permissions.py)


class StatusPort:
    """What a turn tells the client about its session: status changes and streamed deltas."""

    def __init__(self, listener: TurnListener, session_id: str) -> None:
        self.listener = listener
        self.session_id = session_id

    def status(self, status: Status, notice: RetryNotice | None = None) -> None:
        if notice is None:
            self.listener.status(SessionStatus(self.session_id, status))
            return
        at = int((time.time() + notice.delay_s) * 1000)
        self.listener.status(SessionStatus(self.session_id, status, notice.attempt, at))

    def delta(self, message_id: str, part_id: str, part_type: str, delta: str) -> None:
        self.listener.delta(self.session_id, message_id, part_id, part_type, delta)

    @contextmanager
    def compacting(self) -> Iterator[None]:
        """Report ``compacting`` for the block, then ``busy`` again (the turn goes on)."""
        self.status("compacting")
        try:
            yield
        finally:
            self.status("busy")


class FaultPort(Protocol):
    """Where a turn leaves what a storage fault kept it from writing (the runner's settler)."""

    def close_reply_later(self, session_id: str, reply_id: str, error: MessageError) -> None: ...

    def settle(self, session_id: str) -> None: ...


class Turn:
    """One turn of one session, run by the lease holder."""

    def __init__(
        self,
        session_id: str,
        prompt: PromptInput,
        stop: threading.Event,
        lost: threading.Event,
        *,
        store: Store,
        ownership: Ownership,
        engine: CompactionEngine,
        provider: Provider,
        settings: TurnSettings,
        report: StatusPort,
        faults: FaultPort,
        gate: PermissionGate | None = None,
    ) -> None:
        self.session_id = session_id
        self.input = prompt
        self.stop = stop  # the user's cancel
        self.lost = lost  # set when another runner took the lease over
        self.cancel = AnyCancel(stop, lost)
        self.store = store
        self.ownership = ownership
        self.engine = engine
        self.provider = provider
        self.settings = settings
        self.report = report
        self.faults = faults
        self.gate = gate  # None: no client can answer a permission question
        self.prompt_id: str | None = None
        self.last_reply: str | None = None
        self.open_reply: str | None = None  # a reply not yet finished, or running its tools
        self.directory: str | None = None
        self.storage_fault = False  # the turn stopped because the store failed

    def outcome(self, reason: StopReason, error: TurnError | None = None) -> TurnOutcome:
        return TurnOutcome(reason, self.prompt_id, self.last_reply or self.prompt_id, error)

    def run(self) -> TurnOutcome:
        try:
            return self._run()
        except StoreError as e:  # LeaseLost is one
            if self.stop.is_set():  # e.g. the session was deleted under the turn
                return self.outcome("cancelled")
            log.warning("turn in %s stopped: %s", self.session_id, e)
            error = TurnError("StorageError", _brief(e), STORAGE_ERROR)
            if not isinstance(e, LeaseLost):
                self.storage_fault = True
                if self.open_reply is not None:
                    reply_error = MessageError("StorageError", error.message)
                    self.faults.close_reply_later(self.session_id, self.open_reply, reply_error)
            return self.outcome("error", error)

    def _run(self) -> TurnOutcome:
        self.faults.settle(self.session_id)  # what an earlier turn's storage fault left open
        self.engine.recover(self.session_id)
        self._drive_active()  # a pending compaction goes before the new prompt
        if self.stop.is_set():
            return self.outcome("cancelled")
        with self.store.write() as tx:
            # last activity; an untitled session takes its title from this prompt
            titled = tx.require_session(self.session_id).title
            title = None if titled else title_from_prompt(self.input.texts) or None
            self.directory = tx.update_session(self.session_id, title=title).directory
            prompt = tx.add_message(self.session_id, "prompt", model=self.input.model)
            for text in self.input.texts:
                tx.put_part(prompt.id, TextPart(text))
        self.prompt_id = prompt.id
        self.report.status("busy")
        overflowed = False
        for _ in range(self.settings.max_steps):
            ctx = self._context_for_step()
            if isinstance(ctx, TurnError):
                return self.outcome("error", ctx)
            if self.cancel.is_set():
                return self.outcome("cancelled")
            try:
                step = self._step(ctx)
            except ContextOverflow as e:
                if overflowed or not self.settings.auto_compact:
                    return self.outcome("error", _too_large(e.message))
                overflowed = True
                with self.report.compacting():
                    done = self.engine.compact_after_overflow(
                        self.session_id, prompt.id, cancel=self.stop
                    )
                if done.status != "completed":
                    if self.stop.is_set():
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
            self._prune(ctx)
            return self.outcome("max_tokens" if step.finish == "length" else "end_turn")
        return self.outcome(
            "error",
            TurnError(
                "TooManySteps",
                f"stopped after {self.settings.max_steps} model calls in one turn",
                INTERNAL_ERROR,
            ),
        )

    # --- compaction inside a turn -------------------------------------------------------------

    def _prune(self, ctx: ModelContext) -> None:
        """At the end of a turn, stop sending old tool outputs to the model (server/prune.py).
        Pruning only ever frees tool output beyond the newest 40 000 tokens, and only when that
        frees over 20 000: below that much context it can do nothing, so the usual turn skips
        the read it costs."""
        if ctx.tokens < PRUNE_PROTECT_TOKENS + PRUNE_MINIMUM_TOKENS:
            return
        pruned = prune(self.store, self.session_id)
        if pruned.parts:
            log.info("pruned %d tool outputs (%d tokens)", pruned.parts, pruned.tokens)

    def _context_for_step(self) -> ModelContext | TurnError:
        """The context the next model call gets: after driving a compaction someone requested,
        and after compacting when the context is over the usable window. An error when the
        conversation cannot be made to fit."""
        self._drive_active()
        ctx = build_context(self.store, self.session_id)
        usable = self.settings.limits.usable()
        if not self.settings.auto_compact or usable <= 0 or ctx.tokens < usable:
            return ctx
        with self.report.compacting():
            done = self.engine.compact(self.session_id, auto=True, cancel=self.stop)
        if done.status == "completed":
            return build_context(self.store, self.session_id)
        if self.stop.is_set():
            return ctx  # the turn stops before the model is called
        return _too_large(done.error.message if done.error else "compaction failed")

    def _drive_active(self) -> None:
        """Finish a compaction that was requested (here or elsewhere) or left by a crash."""
        with self.store.read() as tx:
            active = tx.active_compaction(self.session_id)
        if active is None:
            return
        with self.report.compacting():
            self.engine.run(self.session_id, active.marker_id, cancel=self.stop)

    def _after_step(self, step: Step) -> None:
        settings = self.settings
        if step.usage is None or not is_overflow(
            step.usage, settings.limits, auto_compact=settings.auto_compact
        ):
            return
        with self.report.compacting():
            self.engine.compact_if_needed(self.session_id, step.usage, cancel=self.stop)

    # --- one model call -------------------------------------------------------------------------

    def _step(self, ctx: ModelContext) -> Step | TurnError | None:
        """Stream one answer to ``ctx`` into a new reply message. None when cancelled."""
        tools = self._offered_tools()
        limits = self.settings.limits
        request = chat_request(
            ctx,
            directory=self.directory,
            tools=tools,
            max_tokens=limits.max_output(),
            model=self.input.model,
        )
        model = self.input.model or self.provider.info.model
        with self.store.write() as tx:
            reply = tx.add_message(
                self.session_id,
                "reply",
                parent_id=self.prompt_id,
                runner=self.ownership.runner.owner,
                model=model,
            )
        self.last_reply = self.open_reply = reply.id
        sink = StepSink(
            self.session_id,
            reply,
            store=self.store,
            ownership=self.ownership,
            report=self.report,
            interval_s=self.settings.flush_interval_ms / 1000,
        )
        try:
            with sink.flushing_while_silent():
                result = self.provider.chat(request, sink, self.cancel)
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
        except Exception as e:
            # A bug (or a fault while streaming): close the reply as failed so that followers
            # do not see it in progress until recovery calls it "Interrupted". Best effort: the
            # store may be what failed, and the original error is the one that is reported.
            try:
                with contextlib.suppress(Exception):
                    sink.flush()  # keep what was shown, if it can still be written
                storage = isinstance(e, StoreError)
                name = "StorageError" if storage else "InternalError"
                self._close(reply, MessageError(name, _brief(e)))
            except Exception:
                log.debug("could not close reply %s after a failure", reply.id, exc_info=True)
            raise
        if self.lost.is_set():
            return TurnError("LeaseLost", "another process took over this session", STORAGE_ERROR)
        return self._finish(reply, sink, result, ctx.tokens)

    def _finish(self, reply: Message, sink: StepSink, result: ChatResult, sent: int) -> Step:
        usage = token_usage(result.usage) or TokenUsage(
            input=sent, output=estimate_text(result.text)
        )
        calls = result.tool_calls if result.finish == "tool_calls" else ()
        tool_parts: list[tuple[str, ToolCall]] = []
        with self.store.write() as tx:
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
        return Step(reply.id, result.finish, usage, tuple(tool_parts))

    def _close(self, reply: Message, error: MessageError) -> None:
        with self.store.write() as tx:
            self.ownership.fence(tx, self.session_id)
            tx.update_message(replace(reply, error=error, time_completed=tx.now()))
        self.open_reply = None

    def _run_tools(self, step: Step) -> None:
        root = Path(self.directory) if self.directory else None
        for part_id, call in step.tool_calls:
            permit: ToolOutcome | Plan | None = None
            if root is not None:
                permit = self._permit(step.reply_id, part_id, call, root)
            started = int(time.time() * 1000)
            state = ToolState("running", _input(call), time_start=started)
            with self.store.write() as tx:
                self.ownership.fence(tx, self.session_id)
                tx.put_part(step.reply_id, ToolPart(call.id, call.name, state), part_id)
            if root is None:
                state = replace(state, status="error", error="no project directory")
            else:
                try:  # a tool that raises must end as an error part, never stay "running"
                    if isinstance(permit, ToolOutcome):  # denied, rejected, or cannot run
                        out = permit
                    elif isinstance(permit, Plan):  # the very change the user was shown
                        out = apply_plan(permit)
                    else:
                        out = run_tool(
                            call.name,
                            call.arguments,
                            root,
                            cancel=self.cancel,
                            settings=self.settings.tools,
                        )
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
                    metadata=_stored_metadata(out.metadata),
                )
            with self.store.write() as tx:
                self.ownership.fence(tx, self.session_id)
                state = replace(state, time_end=tx.now())
                tx.put_part(step.reply_id, ToolPart(call.id, call.name, state), part_id)
        self.open_reply = None

    # --- the permission gate ------------------------------------------------------------------

    def _offered_tools(self) -> tuple[ToolSpec, ...]:
        """What the model is told it may call: the offered tools, less those it could never use
        here. A tool whose calls would all be denied, or would all ask while no client can
        answer (an editor that does not declare the permissions capability), only leads the
        model into errors, so it is left out; it comes back once a rule allows some calls, an
        "always" answer was remembered, or a client can answer."""
        if not self.directory:
            return ()
        can_ask = self.gate is not None and self.gate.can_ask()
        remembered: set[str] | None = None

        def usable(key: Key) -> bool:
            nonlocal remembered
            actions = {rule.action for rule in self.settings.permission.for_key(key)}
            if "allow" in actions or (can_ask and "ask" in actions):
                return True
            if remembered is None:
                with self.store.read() as tx:
                    remembered = {r.key for r in tx.remembered_permissions(self.session_id)}
            return key in remembered

        return tuple(spec for spec in TOOL_SPECS if usable(key_for_tool(spec.name)))

    def _permit(
        self, reply_id: str, part_id: str, call: ToolCall, root: Path
    ) -> ToolOutcome | Plan | None:
        """Whether the call may run: None (run it), a :class:`Plan` (apply exactly this change),
        or the tool error it ends in (denied, rejected, nobody to ask, or it cannot be planned).
        A call the tools would refuse anyway (unknown or unoffered name, bad arguments) is left
        to :func:`run_tool`, which reports it without running anything."""
        tool = TOOLS.get(call.name)
        if tool is None or not tool.offered:
            return None
        try:
            args = parse_arguments(tool.spec, call.arguments)
        except ToolError:
            return None
        key = key_for_tool(call.name)
        plan: Plan | None = None
        if tool.plan is not None:
            planned = plan_tool(call.name, call.arguments, root)
            if isinstance(planned, ToolOutcome):
                return planned  # it would fail: nothing to ask about
            plan = planned
            subjects = [c.shown for c in plan.changes] + [
                c.moved_from for c in plan.changes if c.moved_from is not None
            ]
        elif key == "bash":
            subjects = [str(args["command"])]
        else:
            subjects = [str(args.get("path", "."))]
        with self.store.read() as tx:
            remembered = tx.remembered_permissions(self.session_id)
        rules = self.settings.permission
        decisions = [decide(rules, key, s, remembered) for s in subjects or ["."]]
        decision = max(decisions, key=_strictness)
        if decision.action == "deny":
            return ToolOutcome("", call.name, error=decision.tool_error())
        if decision.action == "allow":
            return plan
        shown = subjects[0] if subjects else call.name
        title = plan.title if plan is not None else printable(shown)
        diff = "".join(c.diff for c in plan.changes) if plan is not None else None
        question = Question(
            self.session_id, reply_id, part_id, call.id, call.name, title, _input(call), diff
        )
        log.info("asking before %s in %s: %s", call.name, self.session_id, decision.explain())
        if self.cancel.is_set():  # the turn is stopping: no question for a call it drops
            return ToolOutcome("", call.name, error=CANCELLED)
        answer: str
        if self.gate is None:
            answer = "unavailable"
        else:
            self.report.status("waiting")
            try:
                answer = self.gate.ask(question, self.stop, self.lost)
            finally:
                self.report.status("busy")
        if answer == "unavailable":
            return ToolOutcome("", call.name, error=NO_CLIENT)
        if answer == "reject":
            return ToolOutcome("", call.name, error=REJECTED)
        if answer == "cancelled":
            return ToolOutcome("", call.name, error=CANCELLED)
        if answer == "always":
            with self.store.write() as tx:
                for subject in subjects:
                    for pattern in always_patterns(key, subject):
                        tx.remember_permission(self.session_id, key, pattern)
        return plan


def _strictness(d: Decision) -> int:
    return {"allow": 0, "ask": 1, "deny": 2}[d.action]


def _input(call: ToolCall) -> dict[str, object]:
    try:
        value = json.loads(call.arguments) if call.arguments.strip() else {}
    except json.JSONDecodeError:
        return {"_raw": call.arguments[:2000]}
    return value if isinstance(value, dict) else {"_value": value}


MAX_STORED_BEFORE_CHARS = 200_000  # a file's old content kept on its edit part, at most


def _stored_metadata(metadata: dict[str, Any] | None) -> Json | None:
    """What a tool's metadata leaves on its part: every file's path, action and diff, and its
    content before the change when that is not large (every sync of the part carries it)."""
    if not metadata:
        return None

    def kept(entry: dict[str, Any]) -> dict[str, Any]:
        before = entry.get("before")
        if isinstance(before, str) and len(before) > MAX_STORED_BEFORE_CHARS:
            return {k: v for k, v in entry.items() if k != "before"}
        return entry

    return {**metadata, "files": [kept(e) for e in metadata.get("files", [])]}


def _too_large(reason: str) -> TurnError:
    return TurnError("ContextTooLarge", reason, CONTEXT_TOO_LARGE)


def _brief(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}"[:500] if text else type(e).__name__
