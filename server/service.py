"""What a client can ask of sessionlsp, as plain methods: no JSON-RPC here.

``Sidecar`` owns the store, the provider, the compaction engine, the prompt runner and the sync
pump of one server process. The protocol handlers (server/protocol.py) validate params and call
these methods; an Agent Client Protocol front end can call the same ones.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Protocol

from server.compaction import CompactionEngine, CompactionOutcome, CompactionSettings
from server.config import Config
from server.context import ModelContext, build_context
from server.errors import PROVIDER_NOT_CONFIGURED, UNKNOWN_SESSION, RpcFailure
from server.ownership import Ownership
from server.permission_gate import PermissionGate
from server.providers.base import Provider, ProviderNotConfigured
from server.providers.registry import PROVIDERS, build
from server.runner import PromptRunner
from server.summarizers import OfflineSummarizer, ProviderSummarizer
from server.summary import Summarizer
from server.sync import SyncPump
from server.tokens import ModelLimits
from server.tools import ToolSettings
from server.tools.bash import sandbox_warning
from server.turn import PromptInput, TurnListener, TurnOutcome, TurnSettings
from store import ReadOnly, Store, StoreError
from store.models import Compaction, Event, MessageWithParts, Session

log = logging.getLogger(__name__)


class SidecarListener(TurnListener, Protocol):
    def event(self, event: Event) -> None: ...


@dataclass(frozen=True)
class Loaded:
    session: Session
    messages: list[MessageWithParts]
    compactions: list[Compaction]  # every compaction's state, oldest marker first
    seq: int  # the outbox cursor this history is current to


@dataclass(frozen=True)
class ContextView:
    context: ModelContext
    limits: ModelLimits


@dataclass(frozen=True)
class ProviderSetup:
    provider: Provider | None  # None when the configured provider cannot be used
    summarizer: Summarizer
    limits: ModelLimits
    problem: str | None = None  # why ``provider`` is None


def make_provider(config: Config) -> ProviderSetup:
    """The configured provider, from the registry, and the summarizer compaction uses with it:
    the provider itself when it is a language model, else (and when it cannot be used) the
    offline summarizer."""
    limits = ModelLimits(config.context_limit, config.output_limit)
    try:
        provider = build(config.provider, config)
    except ProviderNotConfigured as e:
        return ProviderSetup(None, OfflineSummarizer(limits), limits, e.message)
    if not PROVIDERS[config.provider].language_model:
        return ProviderSetup(provider, OfflineSummarizer(limits), limits)
    return ProviderSetup(provider, ProviderSummarizer(provider), limits)


class Sidecar:
    def __init__(self, config: Config, listener: SidecarListener) -> None:
        self.config = config
        warning = sandbox_warning(config.sandbox)
        if warning is not None:  # once per start: bash would run unconfined, or not at all
            log.warning("%s", warning)
        self.store = Store(config.db)
        setup = make_provider(config)
        self.setup = setup
        settings = CompactionSettings(limits=setup.limits, auto_compact=config.auto_compact)
        self.ownership = Ownership(self.store, heartbeat_interval_ms=settings.heartbeat_interval_ms)
        self.engine = CompactionEngine(
            self.store, setup.summarizer, settings, ownership=self.ownership
        )
        self.gate = PermissionGate(self.store, self.ownership.runner.owner)
        self.runner: PromptRunner | None = None
        if setup.provider is not None:
            self.runner = PromptRunner(
                self.store,
                self.ownership,
                self.engine,
                setup.provider,
                TurnSettings(
                    limits=setup.limits,
                    auto_compact=config.auto_compact,
                    tools=ToolSettings(sandbox=config.sandbox),
                    permission=config.permission,
                ),
                listener,
                self.gate,
            )
        self.listener = listener
        self.pump = SyncPump(self.store, listener.event, observe=self._observe)
        self.gate.follows = self.pump.follows  # questions other processes ask, for our client
        self._recovery: threading.Thread | None = None

    def start(self) -> None:
        self.pump.start()
        self._recovery = threading.Thread(target=self.recover_all, name="recovery", daemon=True)
        self._recovery.start()

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        self.pump.stop()
        self.store.close()

    def recover_all(self) -> int:
        """Repair the sessions dead runners left behind (live runners' sessions are left
        alone). Returns how many sessions were looked at."""
        with self.store.read() as tx:
            sessions = tx.sessions_to_recover()
        for s in sessions:
            try:
                self.engine.recover(s)
            except Exception:
                log.exception("recovery of %s failed", s)
        return len(sessions)

    # --- sessions ---------------------------------------------------------------------------------

    def new_session(self, title: str, directory: str | None) -> Session:
        with self.store.read() as tx:
            before = tx.last_seq()
        with self.store.write() as tx:
            session = tx.create_session(title, directory)
        self.pump.follow(session.id, after=before)
        return session

    def list_sessions(self, directory: str | None, limit: int) -> list[Session]:
        with self.store.read() as tx:
            return tx.list_sessions(directory, limit)

    def load(self, session_id: str) -> Loaded:
        with self._existing(session_id):
            try:
                if self.runner is not None:  # before recovery would call them "Interrupted"
                    with contextlib.suppress(StoreError):
                        self.runner.settle(session_id)
                self.engine.recover(session_id)
            except ReadOnly as e:  # nothing can be repaired; show the history as is
                log.warning("cannot repair %s in a read-only database: %s", session_id, e)
        with self.store.read() as tx:
            session = tx.require_session(session_id)
            messages = tx.history(session_id)
            compactions = tx.compactions(session_id)
            seq = tx.last_seq()
        self.pump.follow(session_id, after=seq)
        return Loaded(session, messages, compactions, seq)

    def context(self, session_id: str) -> ContextView:
        with self._existing(session_id):
            return ContextView(build_context(self.store, session_id), self.setup.limits)

    def delete(self, session_id: str) -> None:
        with self._existing(session_id):
            self.pump.follow(session_id)
            if self.runner is not None:
                self.runner.cancel(session_id)
            with self.store.write() as tx:
                tx.delete_session(session_id)
        self.pump.unfollow(session_id)

    def events(self, after: int, session_id: str | None, limit: int) -> tuple[list[Event], int]:
        with self.store.read() as tx:
            events = tx.events_after(after, session_id, limit)
            last = tx.last_seq()
        seq = events[-1].seq if len(events) == limit else last
        return events, seq

    # --- turns and compaction ---------------------------------------------------------------

    def prompt(
        self, session_id: str, texts: tuple[str, ...], model: str | None
    ) -> Future[TurnOutcome]:
        if self.runner is None:
            raise RpcFailure(
                PROVIDER_NOT_CONFIGURED,
                f"provider not configured: {self.setup.problem} (see `sessionlsp config`)",
            )
        self._require(session_id)
        self.pump.follow(session_id)
        return self.runner.submit(session_id, PromptInput(texts, model))

    def stop_here(self, session_id: str) -> int:
        """Stop what this process runs or has queued for the session, at once: call it where
        requests arrive, in arrival order, so a prompt that arrives after the cancel is not
        stopped by it. Returns how many turns and compactions were told to stop."""
        return self.runner.cancel(session_id) if self.runner is not None else 0

    def request_cancel(self, session_id: str) -> None:
        """Ask every other process (through the outbox) to stop the session's work that was
        submitted before this request committed. This process's own work is stopped by
        :meth:`stop_here`; the event carries our runner id so we do not apply it again."""
        with self._existing(session_id), self.store.write() as tx:
            tx.request_cancel(session_id, origin=self.ownership.runner.owner)

    def _observe(self, event: Event) -> None:
        """Every outbox event, from any process: act on cancel requests for work run here, and
        on permission questions (asked elsewhere, or answered)."""
        if event.type.startswith("permission."):
            self.gate.observe(event)
            return
        if event.type != "session.cancel" or self.runner is None:
            return
        if event.data.get("origin") == self.ownership.runner.owner:
            return  # stopped by arrival order when it came in (stop_here)
        self.runner.cancel(event.session_id, before_ms=event.time)

    def stop_token(self, session_id: str) -> threading.Event | None:
        """Register a manual compaction as it arrives, so a cancel sent after it stops it even
        before a worker runs it; pass the token to :meth:`compact`."""
        return self.runner.stop_token(session_id) if self.runner is not None else None

    def compact(
        self, session_id: str, instructions: str | None, cancel: threading.Event | None = None
    ) -> CompactionOutcome:
        try:
            with self._existing(session_id):
                self.pump.follow(session_id)
                if self.runner is not None:
                    return self.runner.compact(session_id, instructions, cancel)
                return self.engine.compact(session_id, instructions=instructions)
        finally:
            if cancel is not None and self.runner is not None:
                self.runner.forget_token(session_id, cancel)

    def set_auto_compact(self, on: bool) -> None:
        """Turn automatic compaction on or off for this process's turns from now on (the ACP
        front end's ``autoCompact`` option; one ACP client per process)."""
        self.config = replace(self.config, auto_compact=on)
        self.engine.settings = replace(self.engine.settings, auto_compact=on)
        if self.runner is not None:
            self.runner.settings = replace(self.runner.settings, auto_compact=on)

    def sync_now(self) -> None:
        """Send every event committed so far, by any process. Commits made here are sent as
        they happen; this is for other processes' commits, which are otherwise polled."""
        self.pump.catch_up()

    def _require(self, session_id: str) -> None:
        with self.store.read() as tx:
            if tx.get_session(session_id) is None:
                raise RpcFailure(UNKNOWN_SESSION, f"unknown session: {session_id}")

    @contextlib.contextmanager
    def _existing(self, session_id: str) -> Iterator[None]:
        """The session must exist; when the work fails because the session was deleted
        meanwhile (here or by another process), that is an unknown session, not a storage
        error (a foreign key, or an unknown compaction)."""
        self._require(session_id)
        try:
            yield
        except StoreError as e:
            try:
                self._require(session_id)
            except RpcFailure:
                raise RpcFailure(UNKNOWN_SESSION, f"unknown session: {session_id}") from None
            except Exception:
                raise e from None
            raise


__all__ = ["ContextView", "Loaded", "Sidecar", "SidecarListener", "make_provider"]
