"""One soak run: load, kills and restarts for a set time, then every invariant is checked.

Phases:

1. Two servers (openai provider against the loopback fake in fakeprovider/openai_server.py, a
   small context window so that automatic compactions happen, debug logs to files, a
   distinctive API key) share one database; eight clients run random operations.
2. Every ``kill_every`` seconds one server is SIGKILLed and at once restarted; its clients
   resume on the new process.
3. When the time is up the clients finish their operation, the fake stops scripting failures,
   every session gets one more prompt that must be answered (no session is stuck), every client
   waits for the events of the sessions it follows, and the servers shut down.
4. Checks: the database file (integrity, stored prompts, one finished summary per marker,
   nothing left open), each client's event stream (no gaps, no duplicates or disorder on a
   connection, nothing the outbox does not hold), and the API key is nowhere in the files or
   the error texts clients received.

A watchdog enforces a hard deadline: past it every process is killed and the run fails.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.rpc_client import RpcClosed, RpcError
from fakeprovider.openai_server import FakeOpenAI
from tests.lsp_support import write_config
from tests.soak import invariants
from tests.soak.actors import REQUEST_S, Registry, ServerSetup, Slot, SoakClient, wait_all
from tests.soak.leaks import files_under, make_key, scan, scan_text

log = logging.getLogger(__name__)

FINAL_PHASE_S = 300.0  # the most the end (last prompts, catch-up, shutdown, checks) may take
CATCH_UP_S = 60.0  # how long clients may take to receive the last events


@dataclass(frozen=True)
class SoakConfig:
    minutes: float = 3.0
    seed: int = 1
    clients: int = 8
    servers: int = 2
    kill_every: tuple[float, float] = (10.0, 30.0)  # seconds between kills, uniformly drawn
    workdir: Path | None = None  # default: a fresh temporary directory
    keep: bool = False  # keep the workdir (logs, frames, database) when the run passes
    context_limit: int = 3_000  # tokens: with output 500, compaction fires at 2 500
    output_limit: int = 500


@dataclass
class Report:
    seed: int
    minutes: float
    workdir: Path
    operations: Counter[str] = field(default_factory=Counter)
    interrupted: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    restarts: int = 0
    reconnects: int = 0
    events_applied: int = 0
    final_prompts: int = 0
    counts: invariants.RecoveryCounts | None = None
    violations: list[str] = field(default_factory=list)

    @property
    def recoveries(self) -> int:
        c = self.counts
        return 0 if c is None else c.interrupted_replies + c.interrupted_summaries

    @property
    def ok(self) -> bool:
        return not self.violations

    def render(self) -> str:
        def listing(counter: Counter[str]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"

        c = self.counts
        lines = [
            f"sessionlsp soak: seed {self.seed}, {self.minutes * 60:.0f} s of load,"
            f" workdir {self.workdir}",
            f"operations: {sum(self.operations.values())} ({listing(self.operations)})",
            f"  cut short by a kill: {sum(self.interrupted.values())}"
            f" ({listing(self.interrupted)})",
            f"  outcomes: {listing(self.outcomes)}",
            f"kills: {self.kills} (SIGKILL of a server process)",
            f"restarts: {self.restarts} (a new process in its place answered initialize"
            " and session/list)",
        ]
        if c is not None:
            lines += [
                f"recoveries: {self.recoveries} (assistant messages a killed server left"
                f" unfinished, closed as Interrupted by another process: {c.interrupted_replies}"
                f" replies, {c.interrupted_summaries} summary attempts);"
                f" compactions completed after an interrupted attempt:"
                f" {c.compactions_finished_after_a_crash}",
                f"database: {c.sessions} sessions, {c.messages} messages, {c.events} events,"
                f" compactions {dict(sorted(c.compactions.items()))}",
            ]
        lines += [
            f"client reconnects: {self.reconnects}; events applied by clients:"
            f" {self.events_applied}; last prompts answered: {self.final_prompts}",
            f"invariant violations: {len(self.violations)}",
        ]
        lines += [f"  - {v}" for v in self.violations[:50]]
        if len(self.violations) > 50:
            lines.append(f"  ... and {len(self.violations) - 50} more")
        return "\n".join(lines)


def make_project(path: Path) -> str:
    """The directory some sessions work in: it holds ``caf\\xe9.txt``, a name that is not
    UTF-8 (as old archives hold), so list_files and grep over it stay covered."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "notes.txt").write_text("needle in the notes\n")
    fd = os.open(os.path.join(os.fsencode(path), b"caf\xe9.txt"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"needle in a Latin-1 file\n")
    finally:
        os.close(fd)
    return str(path)


class Run:
    def __init__(self, config: SoakConfig) -> None:
        self.config = config
        self.workdir = config.workdir or Path(tempfile.mkdtemp(prefix="sessionlsp-soak-"))
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.db = self.workdir / "soak.db"
        self.key = make_key("soak")
        self.registry = Registry(project=make_project(self.workdir / "project"))
        self.stop = threading.Event()
        self.report = Report(config.seed, config.minutes, self.workdir)
        self.fake = FakeOpenAI(chunk_chars=6, delay_s=0.01, model="soak-model")
        self.slots: list[Slot] = []
        self.aborted = threading.Event()

    # -- setup and teardown -----------------------------------------------------------------------

    def setup(self) -> None:
        self.fake.start()
        config = write_config(
            self.workdir / "config.toml",
            {
                "provider": "openai",
                "model": "soak-model",
                "contextLimit": self.config.context_limit,
                "outputLimit": self.config.output_limit,
                "autoCompact": True,
            },
        )
        env = {"SESSIONLSP_BASE_URL": self.fake.base_url, "SESSIONLSP_API_KEY": self.key}
        setup = ServerSetup(self.db, config, self.logs, env)
        self.slots = [Slot(f"server{i}", setup) for i in range(self.config.servers)]
        for slot in self.slots:
            slot.start()

    def abort(self) -> None:
        """The hard deadline passed: kill everything so that every wait ends."""
        self.aborted.set()
        self.registry.violation("the run passed its hard deadline; every process was killed")
        self.stop.set()
        for slot in self.slots:
            slot.kill()
        self.fake.close()

    def teardown(self) -> None:
        self.stop.set()
        for slot in self.slots:
            slot.kill()
            slot.close()
        self.fake.close()

    # -- the load ---------------------------------------------------------------------------------

    def killer(self) -> None:
        rng = random.Random(self.config.seed * 7919 + 1)
        low, high = self.config.kill_every
        while not self.stop.wait(rng.uniform(low, high)):
            slot = rng.choice(self.slots)
            log.warning("killing %s", slot.name)
            slot.kill()
            self.report.kills += 1
            try:
                slot.start()
            except (RpcClosed, RpcError, TimeoutError, OSError) as e:
                self.registry.violation(f"{slot.name} did not come back after a kill: {e}")
                return
            self.report.restarts += 1

    def load(self) -> list[SoakClient]:
        clients = [
            SoakClient(
                f"client{i}",
                self.slots[i % len(self.slots)],
                self.slots,
                self.registry,
                self.fake,
                self.config.seed * 1000 + i,
                self.stop,
            )
            for i in range(self.config.clients)
        ]
        for client in clients:
            client.slot.clients.append(client)
            client.start()
        killer = threading.Thread(target=self.killer, name="killer", daemon=True)
        killer.start()
        self.stop.wait(self.config.minutes * 60)  # the run's length, not a synchronisation
        self.stop.set()
        killer.join(REQUEST_S)
        stuck = wait_all(clients, time.monotonic() + 2 * REQUEST_S)
        for client in stuck:
            self.registry.violation(f"{client.name} did not finish its last operation")
        return clients

    # -- the end ----------------------------------------------------------------------------------

    def ensure_servers(self) -> None:
        for slot in self.slots:
            process = slot.client.process if slot.client is not None else None
            if process is None or process.poll() is not None:
                slot.start()

    def final_prompts(self) -> None:
        """Every session answers one more prompt: none is stuck."""
        self.fake.clear()  # no more scripted failures
        _epoch, conn = self.slots[0].connection()
        listed = conn.request("session/list", {"limit": 10_000}, timeout=REQUEST_S)
        sessions = [str(s["id"]) for s in listed["sessions"]]
        with self.registry.lock:
            created = set(self.registry.sessions)
        for missing in sorted(created - set(sessions)):
            self.registry.violation(f"session {missing} is not listed")

        def ask(i: int, session: str) -> None:
            _epoch, server = self.slots[i % len(self.slots)].connection()
            params = {"sessionId": session, "prompt": [{"type": "text", "text": "final check"}]}
            try:
                result: dict[str, Any] = server.request("session/prompt", params, timeout=REQUEST_S)
            except (RpcError, RpcClosed, TimeoutError) as e:
                self.registry.violation(f"session {session} is stuck: the last prompt got {e}")
                return
            if result.get("stopReason") not in ("end_turn", "max_tokens"):
                self.registry.violation(f"session {session} is stuck: the last prompt got {result}")
                return
            with self.registry.lock:
                self.registry.prompt_ids[str(result["userMessageId"])] = session
                self.report.final_prompts += 1  # under the lock: eight threads count

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="final") as pool:
            for _ in pool.map(lambda pair: ask(*pair), enumerate(sessions)):
                pass

    def check_streams(self, clients: list[SoakClient]) -> None:
        """Every client saw every event of the sessions it follows, from where it started."""
        for client in clients:
            try:
                client.resume()  # a client whose last operation a kill cut short
            except (RpcClosed, RpcError, TimeoutError) as e:
                self.registry.violation(f"{client.name} could not resume: {e}")
        outbox = invariants.outbox_seqs(self.db)
        targets = {session: seqs[-1] for session, seqs in outbox.items()}
        for client in clients:
            if not client.wait_caught_up(targets, CATCH_UP_S):
                behind = {
                    s: f.high for s, f in client.follows.items() if f.high < targets.get(s, 0)
                }
                self.registry.violation(
                    f"{client.name} never received the last events of {len(behind)} sessions"
                    f" within {CATCH_UP_S} s: {dict(list(behind.items())[:3])}"
                )
            for session, lost in client.missing(outbox, targets).items():
                self.registry.violation(
                    f"{client.name}: {session} has a gap: events {lost[:10]} never arrived"
                )
            for session, odd in client.extra(outbox).items():
                self.registry.violation(
                    f"{client.name}: {session} got events {odd[:10]} the outbox does not hold"
                )
        with self.registry.lock:
            applied = self.registry.events_applied
        if not applied:
            self.registry.violation("no client applied any event: the stream check proves nothing")

    def check_database(self) -> None:
        r = self.registry
        problems = invariants.integrity(self.db)
        problems += invariants.user_messages_stored(
            self.db, r.prompt_ids, "returned by session/prompt"
        )
        problems += invariants.user_messages_stored(
            self.db, r.announced_prompts, "announced by session/sync"
        )
        if not r.announced_prompts:
            problems.append("no session/sync announced a prompt: that check proves nothing")
        problems += invariants.one_finished_summary_per_marker(self.db)
        problems += invariants.nothing_left_unfinished(self.db)
        problems += invariants.logged_errors(sorted(self.logs.glob("*.log")))
        for marker, n in sorted(r.created_markers.items()):
            if n > 1:
                problems.append(f"{n} session/compact calls were told they created {marker}")
        for problem in problems:
            r.violation(problem)
        self.report.counts = invariants.recovery_counts(self.db)

    def check_secrets(self) -> None:
        for leak in scan(files_under(self.workdir), self.key):
            self.registry.violation(str(leak))
        with self.registry.lock:
            texts = list(self.registry.error_texts)
        for text in scan_text(texts, self.key):
            self.registry.violation(f"a client received the API key in an error: {text[:200]}")
        sent = [
            r for r in self.fake.requests if r.headers.get("authorization") == f"Bearer {self.key}"
        ]
        if not sent:
            self.registry.violation(
                "the API key never reached the model: the leak check proves nothing"
            )

    # -- all of it --------------------------------------------------------------------------------

    def run(self) -> Report:
        deadline = self.config.minutes * 60 + FINAL_PHASE_S + 2 * REQUEST_S
        watchdog = threading.Timer(deadline, self.abort)
        watchdog.daemon = True
        watchdog.start()
        try:
            self.setup()
            clients = self.load()
            if not self.aborted.is_set():
                self.ensure_servers()
                self.final_prompts()
                self.check_streams(clients)
            for slot in self.slots:
                slot.close()  # shutdown and exit: the database is checkpointed and closed
            if not self.aborted.is_set():
                self.check_database()
                self.check_secrets()
        except Exception as e:
            log.exception("the soak run failed")
            self.registry.violation(f"the harness failed: {type(e).__name__}: {e}")
        finally:
            watchdog.cancel()
            self.teardown()
        r, report = self.registry, self.report
        with r.lock:
            report.operations = Counter(r.ops)
            report.interrupted = Counter(r.interrupted)
            report.outcomes = Counter(r.outcomes)
            report.reconnects = r.reconnects
            report.events_applied = r.events_applied
            report.violations = list(r.violations)
        if report.ok and not self.config.keep and self.config.workdir is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return report


def run(config: SoakConfig) -> Report:
    return Run(config).run()


__all__ = ["Report", "SoakConfig", "run"]
