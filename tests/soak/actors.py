"""The soak's moving parts: server slots that are killed and restarted, and the clients.

A ``sessionlsp serve`` process serves one connection (stdio), so the eight clients are eight
independent actors sharing the two connections, four per server, as four panes of one editor
would: every ``session/sync`` a connection receives goes to each of its clients that follows
the session. A client keeps, per session it follows, the ``seq`` it started from and every
``seq`` it applied, live or through ``session/events``. Across a kill it resumes as
docs/protocol.md §7 tells a client to: ``session/events`` after the last ``seq`` it applied,
``session/load`` to follow again, one more ``session/events``, deduplicating by ``seq``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.rpc_client import RpcClient, RpcClosed, RpcError
from fakeprovider.openai_server import Cut, FakeOpenAI, HttpError, Reply, Stall, is_summary_request
from server.errors import REQUEST_CANCELLED
from tests.soak.servers import Outputs, spawn

log = logging.getLogger(__name__)

REQUEST_S = 120.0  # the longest any request may take; prompts wait for leases and compactions
START_S = 60.0  # the longest a server may take to start and answer initialize
EVENTS_PAGE = 500
_VOCABULARY = (
    "parser lexer token grammar module test fixture build cache index query schema migration"
    " session compaction summary marker lease cursor event stream delta frame header request"
    " response error retry cancel load prompt reply model context window"
)
WORDS = tuple(_VOCABULARY.split())


# --- what all clients share ------------------------------------------------------------------


@dataclass
class Registry:
    """Everything the clients learn, for the final checks. Guarded by ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sessions: dict[str, str] = field(default_factory=dict)  # id -> who created or found it
    prompt_ids: dict[str, str] = field(default_factory=dict)  # userMessageId -> session
    announced_prompts: dict[str, str] = field(default_factory=dict)  # seen in session/sync
    created_markers: Counter[str] = field(default_factory=Counter)  # created: true per marker
    ops: Counter[str] = field(default_factory=Counter)
    interrupted: Counter[str] = field(default_factory=Counter)  # requests cut by a kill
    outcomes: Counter[str] = field(default_factory=Counter)  # stop reasons, compaction results
    violations: list[str] = field(default_factory=list)
    error_texts: list[str] = field(default_factory=list)  # every error message clients got
    reconnects: int = 0
    events_applied: int = 0
    project: str | None = None  # a directory some sessions get, with a name that is not UTF-8

    def violation(self, text: str) -> None:
        log.error("VIOLATION %s", text)
        with self.lock:
            self.violations.append(text)

    def count(self, counter: str, key: str, n: int = 1) -> None:
        with self.lock:
            getattr(self, counter)[key] += n


# --- server slots ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSetup:
    db: Path
    config: Path
    logs: Path
    env: dict[str, str]


class Slot:
    """One server position. Each process started in it is a new epoch (a new connection)."""

    def __init__(self, name: str, setup: ServerSetup) -> None:
        self.name = name
        self.setup = setup
        self.lock = threading.RLock()  # guards the fields below and event dispatch
        self.ready = threading.Condition(self.lock)
        self.epoch = 0
        self.client: RpcClient | None = None
        self.clients: list[SoakClient] = []
        self.received: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}  # this epoch's
        self.all_clients: list[RpcClient] = []  # every connection ever opened, to close

    def start(self) -> None:
        """Start a fresh process in this slot and connect to it (a new epoch)."""
        with self.lock:
            epoch = self.epoch + 1
        name = f"{self.name}-{epoch}"
        env = dict(self.setup.env) | {
            "SESSIONLSP_LOG_FILE": str(self.setup.logs / f"{name}.log"),
            "SESSIONLSP_LOG_LEVEL": "debug",
        }
        client = spawn(self.setup.db, self.setup.config, Outputs.under(self.setup.logs, name), env)
        with self.lock:
            self.all_clients.append(client)
        client.on_notification("session/sync", lambda _m, p: self._on_sync(epoch, p))
        client.initialize(capabilities={"window": {"workDoneProgress": True}}, timeout=START_S)
        client.request("session/list", {"limit": 1}, timeout=START_S)
        with self.lock:
            self.epoch, self.client, self.received = epoch, client, {}
            self.ready.notify_all()

    def kill(self) -> None:
        """SIGKILL the running process; its connection closes."""
        with self.lock:
            client, self.client = self.client, None
        if client is not None and client.process is not None:
            client.process.kill()
            client.process.wait()

    def connection(self, timeout: float = START_S) -> tuple[int, RpcClient]:
        """The current epoch and connection, waiting while the slot restarts."""
        with self.lock:
            if not self.ready.wait_for(lambda: self.client is not None, timeout):
                raise RpcClosed(f"{self.name} did not come back within {timeout} s")
            assert self.client is not None
            return self.epoch, self.client

    def _on_sync(self, epoch: int, params: Any) -> None:
        """Runs on the connection's reader thread, in arrival order."""
        seq, session = params["seq"], params["sessionId"]
        with self.lock:
            if epoch != self.epoch:
                return
            event = (int(seq), str(params["type"]), params.get("data") or {})
            self.received.setdefault(str(session), []).append(event)
            for client in self.clients:
                client.on_event(epoch, str(session), *event)

    def close(self) -> None:
        with self.lock:
            clients = list(self.all_clients)
            self.client = None
        for client in clients:
            client.close(timeout=10)


# --- clients ------------------------------------------------------------------------------------


@dataclass
class Follow:
    """One client's view of one session's event stream."""

    start: int  # events with seq above this are this client's to see
    epoch: int  # the connection it currently follows on
    since: int  # on that connection, events at or below this came some other way
    last_live: int  # the last seq applied live on that connection
    applied: set[int] = field(default_factory=set)

    @property
    def high(self) -> int:
        return max(self.applied, default=self.start)


class SoakClient(threading.Thread):
    """One client: random operations on its slot's connection until ``stop`` is set."""

    def __init__(
        self,
        name: str,
        slot: Slot,
        slots: list[Slot],
        registry: Registry,
        fake: FakeOpenAI,
        seed: int,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.slot = slot
        self.slots = slots
        self.registry = registry
        self.fake = fake
        self.rng = random.Random(seed)
        self.stop = stop
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.follows: dict[str, Follow] = {}
        self.epoch = 0  # the connection this client has resumed on
        self.conn: RpcClient | None = None
        self.prompts = 0

    # -- events ---------------------------------------------------------------------------------

    def on_event(
        self, epoch: int, session: str, seq: int, type_: str, data: dict[str, Any]
    ) -> None:
        """A live event from this client's connection (called with the slot's lock held)."""
        with self.lock:
            f = self.follows.get(session)
            if f is None or f.epoch != epoch or seq <= f.since:
                return
            if seq <= f.last_live:
                self.registry.violation(
                    f"{self.name}: {session} event {seq} arrived after {f.last_live}"
                    " (out of order or twice on one connection)"
                )
            f.last_live = seq
            self._apply(session, f, seq, type_, data)

    def _apply(self, session: str, f: Follow, seq: int, type_: str, data: dict[str, Any]) -> None:
        if seq <= f.start:
            return
        if seq not in f.applied:
            f.applied.add(seq)
            with self.registry.lock:
                self.registry.events_applied += 1
        if type_ == "message.updated" and data.get("kind") == "prompt":
            with self.registry.lock:
                self.registry.announced_prompts[str(data["id"])] = session
        self.changed.notify_all()

    def follow(self, session: str, start: int, since: int, epoch: int) -> None:
        """Follow ``session`` on connection ``epoch`` from ``since`` (its load's seq, or 0
        after creating it); ``start`` counts only the first time. Replays what the
        connection already delivered above ``since``."""
        with self.slot.lock, self.lock:
            f = self.follows.get(session)
            if f is None:
                f = self.follows[session] = Follow(start, epoch, since, since)
            else:
                f.epoch, f.since, f.last_live = epoch, since, since
            if epoch != self.slot.epoch:
                return  # that connection is gone already: the next resume covers it
            for seq, type_, data in self.slot.received.get(session, []):
                if seq > since:
                    f.last_live = seq
                    self._apply(session, f, seq, type_, data)

    def backfill(self, conn: RpcClient, session: str, after: int) -> None:
        """``session/events`` after ``after``, page by page."""
        while True:
            page = conn.request(
                "session/events",
                {"after": after, "sessionId": session, "limit": EVENTS_PAGE},
                timeout=REQUEST_S,
            )
            events = page["events"]
            with self.lock:
                f = self.follows[session]
                for e in events:
                    self._apply(session, f, int(e["seq"]), str(e["type"]), e.get("data") or {})
            if len(events) < EVENTS_PAGE:
                return
            after = int(events[-1]["seq"])

    def resume(self) -> RpcClient:
        """The connection to use; when it changed (a kill), first catch up every followed
        session and follow it again on the new one."""
        epoch, conn = self.slot.connection()
        with self.lock:
            if self.epoch == epoch and self.conn is conn:
                return conn
            sessions = list(self.follows)
            first = self.conn is None
        for session in sessions:
            with self.lock:
                after = self.follows[session].high
            self.backfill(conn, session, after)
            with self.lock:
                after = self.follows[session].high  # events up to here are applied
            loaded = conn.request("session/load", {"sessionId": session}, timeout=REQUEST_S)
            self.follow(session, 0, int(loaded["seq"]), epoch)
            # Following starts at the load's seq; what was committed between the first
            # catch-up and the load is read now (duplicates are dropped by seq).
            self.backfill(conn, session, after)
        with self.lock:
            self.epoch, self.conn = epoch, conn
        if not first:
            with self.registry.lock:
                self.registry.reconnects += 1
        return conn

    def missing(
        self, outbox: dict[str, list[int]], upto: dict[str, int] | None = None
    ) -> dict[str, list[int]]:
        """Per followed session, the outbox seqs above its start (up to ``upto`` or this
        client's last applied seq) that this client never applied."""
        gaps: dict[str, list[int]] = {}
        with self.lock:
            for session, f in self.follows.items():
                top = f.high if upto is None else upto.get(session, f.high)
                lost = [
                    s for s in outbox.get(session, []) if f.start < s <= top and s not in f.applied
                ]
                if lost:
                    gaps[session] = lost
        return gaps

    def extra(self, outbox: dict[str, list[int]]) -> dict[str, list[int]]:
        """Seqs applied that the outbox does not hold for that session."""
        out: dict[str, list[int]] = {}
        with self.lock:
            for session, f in self.follows.items():
                known = set(outbox.get(session, []))
                odd = sorted(s for s in f.applied if s not in known)
                if odd:
                    out[session] = odd
        return out

    def wait_caught_up(self, targets: dict[str, int], timeout: float) -> bool:
        """Wait until every followed session's events up to its target have been applied."""

        def done() -> bool:
            return all(f.high >= targets.get(s, 0) for s, f in self.follows.items())

        with self.lock:
            return self.changed.wait_for(done, timeout)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> None:
        ops: list[tuple[str, Callable[[RpcClient], object], int]] = [
            ("prompt", self.op_prompt, 40),
            ("compact", self.op_compact, 6),
            ("cancel", self.op_cancel, 8),
            ("cancel then prompt", self.op_cancel_then_prompt, 4),
            ("load", self.op_load, 12),
            ("new", self.op_new, 3),
            ("list", self.op_list, 8),
            ("events", self.op_events, 8),
            ("context", self.op_context, 7),
        ]
        names = [o[0] for o in ops]
        weights = [o[2] for o in ops]
        table = {o[0]: o[1] for o in ops}
        while not self.stop.is_set():
            name = self.rng.choices(names, weights)[0]
            try:
                conn = self.resume()
                self.registry.count("ops", name)
                table[name](conn)
            except RpcClosed:
                self.registry.count("interrupted", name)  # the server was killed: resume
                with contextlib.suppress(RpcClosed):
                    if not self.stop.is_set():
                        self.slot.connection()
            except RpcError as e:
                self.rpc_error(name, e)
            except TimeoutError as e:
                self.registry.violation(f"{self.name}: {name} got no answer: {e}")
            except Exception as e:
                self.registry.violation(f"{self.name}: {name} failed: {type(e).__name__}: {e}")

    def rpc_error(self, op: str, e: RpcError) -> None:
        with self.registry.lock:
            self.registry.error_texts.append(e.message)
        if e.code == REQUEST_CANCELLED:
            return
        self.registry.violation(f"{self.name}: {op} answered with error {e.code}: {e.message}")

    # -- choosing sessions ----------------------------------------------------------------------

    def pick_followed(self, conn: RpcClient) -> str:
        with self.lock:
            mine = list(self.follows)
        if not mine:
            return self.op_new(conn)
        return self.rng.choice(mine)

    def pick_any(self) -> str | None:
        with self.registry.lock:
            known = list(self.registry.sessions)
        return self.rng.choice(known) if known else None

    # -- operations -----------------------------------------------------------------------------

    def op_new(self, conn: RpcClient) -> str:
        params: dict[str, Any] = {"title": f"{self.name} {len(self.follows)}"}
        if self.registry.project is not None and self.rng.random() < 0.5:
            params["directory"] = self.registry.project  # where the "tools" scenario looks
        created = conn.request("session/new", params, timeout=REQUEST_S)
        session = str(created["sessionId"])
        with self.registry.lock:
            self.registry.sessions[session] = self.name
        self.follow(session, 0, 0, self.epoch)
        return session

    def op_load(self, conn: RpcClient) -> None:
        session = self.pick_any() if self.rng.random() < 0.6 else self.pick_followed(conn)
        if session is None:
            return
        with self.registry.lock:
            expected = {m for m, s in self.registry.prompt_ids.items() if s == session}
        loaded = conn.request("session/load", {"sessionId": session}, timeout=REQUEST_S)
        stored = {m["info"]["id"] for m in loaded["messages"]}
        for message_id in sorted(expected - stored):
            self.registry.violation(f"{self.name}: load of {session} lacks prompt {message_id}")
        with self.lock:
            followed = session in self.follows and self.follows[session].epoch == self.epoch
        if not followed:
            seq = int(loaded["seq"])
            self.follow(session, seq, seq, self.epoch)

    def op_list(self, conn: RpcClient) -> None:
        listed = conn.request("session/list", {"limit": 1000}, timeout=REQUEST_S)
        with self.registry.lock:
            for s in listed["sessions"]:
                self.registry.sessions.setdefault(str(s["id"]), "list")

    def op_context(self, conn: RpcClient) -> None:
        conn.request("session/context", {"sessionId": self.pick_followed(conn)}, timeout=REQUEST_S)

    def op_events(self, conn: RpcClient) -> None:
        """Reads the outbox and checks that nothing up to what this client applied is lost."""
        session = self.pick_followed(conn)
        with self.lock:
            f = self.follows[session]
            start, high = f.start, f.high
        page = conn.request(
            "session/events",
            {"after": start, "sessionId": session, "limit": 10_000},
            timeout=REQUEST_S,
        )
        seqs = [int(e["seq"]) for e in page["events"]]
        gaps = self.missing({session: seqs}, {session: high})
        for s, lost in gaps.items():
            self.registry.violation(
                f"{self.name}: {s} events {lost[:10]} never reached this client"
            )

    def op_cancel(self, conn: RpcClient) -> None:
        session = self.pick_followed(conn)
        other = self.rng.choice(self.slots)  # cancels reach turns other processes run
        _epoch, target = other.connection()
        result = target.request("session/cancel", {"sessionId": session}, timeout=REQUEST_S)
        stopped = int(result["cancelled"])
        self.registry.count("outcomes", f"cancel stopped {stopped if stopped < 2 else '2+'}")

    def op_cancel_then_prompt(self, conn: RpcClient) -> None:
        """A cancel (notification, or request not waited for) and at once a prompt, on an idle
        session: the cancel arrived first, so it must not stop the prompt."""
        created = conn.request("session/new", {"title": f"{self.name} cancel"}, timeout=REQUEST_S)
        session = str(created["sessionId"])
        with self.registry.lock:
            self.registry.sessions[session] = self.name
        cancel: Future[Any] | None = None
        if self.rng.random() < 0.5:
            conn.notify("session/cancel", {"sessionId": session})
        else:
            cancel = conn.request_async("session/cancel", {"sessionId": session})
        self.prompts += 1
        nonce = f"{self.name}-{self.prompts}"
        self.script("plain", nonce)
        params = {"sessionId": session, "prompt": [{"type": "text", "text": f"[{nonce}] go"}]}
        result = conn.request("session/prompt", params, timeout=REQUEST_S)
        if cancel is not None:
            cancel.result(REQUEST_S)
        if result["stopReason"] == "cancelled":
            # Only a second cancel (another client found the session meanwhile) may stop it.
            found = conn.request(
                "session/events", {"after": 0, "sessionId": session}, timeout=REQUEST_S
            )
            cancels = [e for e in found["events"] if e["type"] == "session.cancel"]
            if len(cancels) <= 1:
                self.registry.violation(
                    f"{self.name}: a prompt sent right after a cancel in {session} was cancelled"
                )
        self.turn_result(session, "plain", result)

    def op_compact(self, conn: RpcClient) -> None:
        session = self.pick_followed(conn)
        params: dict[str, Any] = {"sessionId": session}
        if self.rng.random() < 0.3:
            params["instructions"] = f"Keep {self.rng.choice(WORDS)} names."
        result = conn.request("session/compact", params, timeout=REQUEST_S)
        with self.registry.lock:
            if result.get("created"):
                self.registry.created_markers[str(result["markerId"])] += 1
            error = result.get("error") or {}
            self.registry.outcomes[
                f"compaction {result['status']} {error.get('code', '')}".strip()
            ] += 1
            if error.get("message"):
                self.registry.error_texts.append(str(error["message"]))

    def op_prompt(self, conn: RpcClient) -> None:
        session = self.pick_followed(conn)
        self.prompts += 1
        nonce = f"{self.name}-{self.prompts}"
        scenario = self.rng.choices(
            ["plain", "stall", "retry", "unauthorized", "cut", "long", "tools"],
            [50, 10, 8, 4, 5, 18, 5],
        )[0]
        self.script(scenario, nonce)
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(5, 250)))
        params = {"sessionId": session, "prompt": [{"type": "text", "text": f"[{nonce}] {words}"}]}
        patient = scenario != "stall" and self.rng.random() > 0.1
        future: Future[Any] = conn.request_async("session/prompt", params)
        try:
            result = future.result(REQUEST_S if patient else self.rng.uniform(0.3, 4.0))
        except TimeoutError:
            if patient:
                raise
            other = self.rng.choice(self.slots)
            _epoch, target = other.connection()
            target.request("session/cancel", {"sessionId": session}, timeout=REQUEST_S)
            self.registry.count("ops", "cancel (impatient)")
            result = future.result(REQUEST_S)
        self.turn_result(session, scenario, result)

    def turn_result(self, session: str, scenario: str, result: dict[str, Any]) -> None:
        reason = str(result["stopReason"])
        error = result.get("error") or {}
        name = str(error.get("name", ""))
        self.registry.count("outcomes", f"turn {reason} {name}".strip())
        with self.registry.lock:
            if result.get("userMessageId"):
                self.registry.prompt_ids[str(result["userMessageId"])] = session
            if error.get("message"):
                self.registry.error_texts.append(str(error["message"]))
        if name in ("InternalError", "TooManySteps") or (
            name in ("ProviderError", "StorageError") and scenario in ("plain", "long", "tools")
        ):
            self.registry.violation(
                f"{self.name}: a {scenario} turn in {session} ended with {error}"
            )

    def script(self, scenario: str, nonce: str) -> None:
        """What the fake model does with this prompt's first call."""

        def mine(body: dict[str, Any]) -> bool:
            if is_summary_request(body):
                return False
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            return bool(users) and f"[{nonce}]" in str(users[-1].get("content"))

        if scenario == "stall":
            self.fake.push(Stall(after_chunks=self.rng.randint(0, 3)), when=mine)
        elif scenario == "retry":
            self.fake.push(
                HttpError(
                    429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}, echo_auth=True
                ),
                when=mine,
            )
        elif scenario == "unauthorized":
            self.fake.push(
                HttpError(401, {"error": {"message": "invalid api key"}}, echo_auth=True), when=mine
            )
        elif scenario == "cut":
            self.fake.push(
                Cut(after_chunks=self.rng.randint(0, 4), reset=self.rng.random() < 0.5), when=mine
            )
        elif scenario == "long":
            text = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(60, 200)))
            self.fake.push(Reply(text), when=mine)
        elif scenario == "tools":  # walks over the project's file name that is not UTF-8
            calls = [
                ("call_1", "list_files", "{}"),
                ("call_2", "grep", '{"pattern": "caf|needle"}'),
            ]
            self.fake.push(Reply(tool_calls=calls), when=mine)
            self.fake.push(Reply("Looked around."), when=mine)


def wait_all(clients: list[SoakClient], deadline: float) -> list[SoakClient]:
    """Join the client threads until ``deadline`` (monotonic); those still running."""
    for client in clients:
        client.join(max(0.0, deadline - time.monotonic()))
    return [c for c in clients if c.is_alive()]


__all__ = ["Registry", "ServerSetup", "Slot", "SoakClient", "wait_all"]
