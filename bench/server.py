"""The server as an editor sees it: start-up, first delta, streaming rate and durable commits.

Everything runs as separate processes talking over pipes and loopback TCP, as in use: the
``sessionlsp serve`` process, the fake OpenAI provider (bench/fake_provider.py, its own process)
and this process as the client (client/rpc_client.py). Baselines are measured in the same run:

* start-up: ``python -c pass`` (spawn to exit) and a minimal pygls 2 server with one ``echo``
  request (bench/echo_server.py), spawn to its ``initialize`` answer;
* first delta: the round trip of an ``echo`` request to that pygls server, timed the same way;
* streaming: the fake's own send rate to a plain HTTP reader that only drains the SSE stream;
* durable commits: the bound the 250 ms flush interval allows.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fake_provider import LONG_PREFIX, FakeProvider, long_text
from bench.stats import Spread, spread
from client.rpc_client import RpcClient

ROOT = Path(__file__).resolve().parent.parent
PROMPT_WARMUP = 3
LONG_TOKENS = 20_000
CHARS_PER_TOKEN = 4
LONG_CHARS = LONG_TOKENS * CHARS_PER_TOKEN
CHUNK_CHARS = 4
FLUSH_INTERVAL_S = 0.25  # TurnSettings.flush_interval_ms
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Runs:
    """How many times each figure is measured."""

    spawn: int = 15
    prompt: int = 30
    long: int = 7


QUICK = Runs(spawn=3, prompt=10, long=2)

SESSIONLSP = [sys.executable, "-m", "server.cli", "serve"]
ECHO = [sys.executable, "-m", "bench.echo_server"]
BARE = [sys.executable, "-c", "pass"]


def _env(**extra: str) -> dict[str, str]:
    """Our environment without the user's sessionlsp or OpenAI settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SESSIONLSP_", "OPENAI_"))}
    return env | {"SESSIONLSP_OFFLINE_DELAY_MS": "0"} | extra  # offline provider unpaced


def _spawn(argv: list[str], env: dict[str, str]) -> RpcClient:
    return RpcClient.spawn(argv, env=env, cwd=ROOT, stderr=subprocess.PIPE)


def _fail(client: RpcClient, what: str) -> RuntimeError:
    tail = "\n".join(client.stderr_tail()[-10:])
    return RuntimeError(f"{what}; the server's stderr ends with:\n{tail}")


# --- 1. spawn to the initialize answer -------------------------------------------------------


@dataclass(frozen=True)
class Startup:
    sessionlsp: Spread
    bare_python: Spread
    pygls_echo: Spread


def _initialize_ms(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    client = _spawn(argv, env)
    try:
        client.initialize(timeout=TIMEOUT_S)
        elapsed = time.perf_counter() - t0
    finally:
        client.close()
    return elapsed * 1000


def _bare_ms() -> float:
    t0 = time.perf_counter()
    subprocess.run(BARE, check=True, cwd=ROOT)
    return (time.perf_counter() - t0) * 1000


def startup(workdir: Path, runs: int) -> Startup:
    config = workdir / "empty.toml"
    config.write_text("", encoding="utf-8")
    db = workdir / "startup.db"
    sessionlsp = [*SESSIONLSP, "--db", str(db), "--config", str(config)]
    env = _env()
    samples: dict[str, list[float]] = {"sessionlsp": [], "bare": [], "echo": []}
    measures: dict[str, Callable[[], float]] = {
        "sessionlsp": lambda: _initialize_ms(sessionlsp, env),
        "bare": _bare_ms,
        "echo": lambda: _initialize_ms(ECHO, env),
    }
    # Round-robin so that drift on the machine hits all three alike; run 0 warms the page
    # cache, the bytecode caches and creates the database, and is not counted.
    for run in range(runs + 1):
        for name, measure in measures.items():
            ms = measure()
            if run:
                samples[name].append(ms)
    return Startup(spread(samples["sessionlsp"]), spread(samples["bare"]), spread(samples["echo"]))


# --- the fake provider -------------------------------------------------------------------------


@contextmanager
def fake_provider(chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """Start bench/fake_provider.py; yields its base URL."""
    with FakeProvider(chunk_chars) as fake:
        yield fake.base_url


def _provider_env(provider: str, base_url: str | None) -> dict[str, str]:
    extra = {
        "SESSIONLSP_PROVIDER": provider,
        "SESSIONLSP_CONTEXT_LIMIT": "1000000",  # no compaction during the benchmark
        "SESSIONLSP_OUTPUT_LIMIT": "32000",
    }
    if base_url is not None:
        extra |= {"SESSIONLSP_BASE_URL": base_url, "SESSIONLSP_MODEL": "fake-model"}
    return _env(**extra)


@contextmanager
def sessionlsp(workdir: Path, name: str, env: dict[str, str]) -> Iterator[RpcClient]:
    config = workdir / "empty.toml"
    config.write_text("", encoding="utf-8")
    argv = [*SESSIONLSP, "--db", str(workdir / f"{name}.db"), "--config", str(config)]
    client = _spawn(argv, env)
    try:
        client.initialize(timeout=TIMEOUT_S)
        yield client
    finally:
        client.close()


def _new_session(client: RpcClient, title: str) -> str:
    return str(client.request("session/new", {"title": title}, timeout=TIMEOUT_S)["sessionId"])


def _prompt(session_id: str, text: str) -> dict[str, Any]:
    return {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}


# --- 2. session/prompt to the first session/delta --------------------------------------------


@dataclass(frozen=True)
class FirstDelta:
    openai: Spread  # ms, prompt sent -> first delta received
    openai_turn: Spread  # ms, prompt sent -> its answer
    offline: Spread
    offline_turn: Spread
    echo: Spread  # ms, echo request sent -> its answer, pygls echo server
    session_list: Spread  # ms, session/list sent -> its answer, sessionlsp


def _stamp_answer(future: Future[Any], stamps: list[float]) -> None:
    future.add_done_callback(lambda _: stamps.append(time.perf_counter()))


def _first_delta(client: RpcClient, session_id: str, text: str) -> tuple[float, float]:
    """(ms to the first delta, ms to the answer) for one prompt."""
    first: list[float] = []
    seen = threading.Event()

    def on_delta(method: str, params: Any) -> None:
        if params.get("sessionId") == session_id and not seen.is_set():
            first.append(time.perf_counter())
            seen.set()

    unsubscribe = client.on_notification("session/delta", on_delta)
    answered: list[float] = []
    try:
        t0 = time.perf_counter()
        future = client.request_async("session/prompt", _prompt(session_id, text))
        _stamp_answer(future, answered)
        result = future.result(TIMEOUT_S)
        if result.get("stopReason") != "end_turn" or not seen.wait(TIMEOUT_S):
            raise _fail(client, f"the prompt did not stream an answer: {result}")
    finally:
        unsubscribe()
    return (first[0] - t0) * 1000, (answered[0] - t0) * 1000


def _round_trip_ms(client: RpcClient, method: str, params: Any) -> float:
    answered: list[float] = []
    t0 = time.perf_counter()
    future = client.request_async(method, params)
    _stamp_answer(future, answered)
    future.result(TIMEOUT_S)
    return (answered[0] - t0) * 1000


def _prompt_series(client: RpcClient, runs: int) -> tuple[Spread, Spread, Spread]:
    """(first delta, whole turn, session/list round trip) over ``runs`` prompts."""
    session_id = _new_session(client, "first delta")
    firsts: list[float] = []
    turns: list[float] = []
    lists: list[float] = []
    for i in range(PROMPT_WARMUP + runs):
        first, turn = _first_delta(client, session_id, f"prompt number {i}")
        listed = _round_trip_ms(client, "session/list", {"limit": 1})
        if i >= PROMPT_WARMUP:
            firsts.append(first)
            turns.append(turn)
            lists.append(listed)
    return spread(firsts), spread(turns), spread(lists)


def _echo_series(runs: int) -> Spread:
    client = _spawn(ECHO, _env())
    try:
        client.initialize(timeout=TIMEOUT_S)
        samples = [
            _round_trip_ms(client, "echo", {"text": f"prompt number {i}"})
            for i in range(PROMPT_WARMUP + runs)
        ]
    finally:
        client.close()
    return spread(samples[PROMPT_WARMUP:])


# --- 3 and 4. a 20 000-token answer --------------------------------------------------------------


@dataclass(frozen=True)
class LongAnswer:
    deltas: int
    chars: int
    span_s: float  # first delta -> last delta, at the client
    first_s: float  # prompt sent -> first delta
    turn_s: float  # prompt sent -> its answer
    text_commits: int  # message.part.delta/updated events of the reply's text part
    commit_bound: int  # floor(turn / 250 ms) + 1 final write
    outbox_events: int  # every event the turn wrote
    outbox_types: dict[str, int]
    syncs: int  # session/sync notifications received for the session during the turn
    sync_bytes: int  # their JSON size: each text commit carries the whole text so far
    matches: bool  # deltas joined == the stored text == what the fake sent

    @property
    def deltas_per_s(self) -> float:
        return (self.deltas - 1) / self.span_s

    @property
    def chars_per_s(self) -> float:
        return self.chars / self.span_s


def _events_after(client: RpcClient, session_id: str, after: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = client.request(
            "session/events",
            {"after": after, "sessionId": session_id, "limit": 1000},
            timeout=TIMEOUT_S,
        )
        found += page["events"]
        if len(page["events"]) < 1000:
            return found
        after = page["seq"]


def long_answer(client: RpcClient, run: int) -> LongAnswer:
    session_id = _new_session(client, f"long answer {run}")
    cursor = int(
        client.request("session/load", {"sessionId": session_id}, timeout=TIMEOUT_S)["seq"]
    )
    pieces: list[str] = []
    parts: set[str] = set()
    stamps: list[float] = []  # first and latest delta
    syncs: list[int] = []

    def on_delta(method: str, params: Any) -> None:
        if params.get("sessionId") != session_id:
            return
        now = time.perf_counter()
        if stamps:
            stamps[1] = now
        else:
            stamps.extend((now, now))
        pieces.append(params["delta"])
        parts.add(params["partId"])

    def on_sync(method: str, params: Any) -> None:
        if params.get("sessionId") == session_id:
            syncs.append(len(json.dumps(params)))

    unsubscribe = [
        client.on_notification("session/delta", on_delta),
        client.on_notification("session/sync", on_sync),
    ]
    answered: list[float] = []
    try:
        t0 = time.perf_counter()
        future = client.request_async(
            "session/prompt", _prompt(session_id, f"{LONG_PREFIX}{LONG_CHARS}")
        )
        _stamp_answer(future, answered)
        result = future.result(TIMEOUT_S)
    finally:
        for stop in unsubscribe:
            stop()
    if result.get("stopReason") != "end_turn" or len(parts) != 1:
        raise _fail(client, f"the long answer did not stream as one text part: {result}")
    turn_s = answered[0] - t0
    (text_part,) = parts
    events = _events_after(client, session_id, cursor)
    types = collections.Counter(e["type"] for e in events)
    writes = ("message.part.delta", "message.part.updated")
    commits = sum(1 for e in events if e["type"] in writes and e["data"]["id"] == text_part)
    loaded = client.request("session/load", {"sessionId": session_id}, timeout=TIMEOUT_S)
    stored = "".join(
        p["text"]
        for m in loaded["messages"]
        if m["info"]["id"] == result["messageId"]
        for p in m["parts"]
        if p["type"] == "text"
    )
    streamed = "".join(pieces)
    return LongAnswer(
        deltas=len(pieces),
        chars=len(streamed),
        span_s=stamps[1] - stamps[0],
        first_s=stamps[0] - t0,
        turn_s=turn_s,
        text_commits=commits,
        commit_bound=int(turn_s / FLUSH_INTERVAL_S) + 1,
        outbox_events=len(events),
        outbox_types=dict(types),
        syncs=len(syncs),
        sync_bytes=sum(syncs),
        matches=streamed == stored == long_text(LONG_CHARS),
    )


@dataclass(frozen=True)
class FakeRate:
    chunks: int
    span_s: float  # first byte -> last byte of the SSE stream

    @property
    def chunks_per_s(self) -> float:
        return (self.chunks - 1) / self.span_s

    @property
    def chars_per_s(self) -> float:
        return self.chunks * CHUNK_CHARS / self.span_s


def fake_rate(base_url: str) -> FakeRate:
    """Drain one streamed 20 000-token answer with http.client, doing nothing with it."""
    url = urllib.parse.urlsplit(base_url)
    body = json.dumps(
        {
            "model": "fake-model",
            "stream": True,
            "messages": [{"role": "user", "content": f"{LONG_PREFIX}{LONG_CHARS}"}],
        }
    ).encode()
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=TIMEOUT_S)
    try:
        conn.request(
            "POST",
            url.path + "/chat/completions",
            body,
            {"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        received: list[bytes] = []
        first = last = 0.0
        while chunk := resp.read1(64 * 1024):
            last = time.perf_counter()
            if not received:
                first = last
            received.append(chunk)
    finally:
        conn.close()
    data = b"".join(received)
    # Only the content deltas (the first event carries the role, the last ones the finish).
    chunks = data.count(b'"delta": {"content": ')
    if chunks * CHUNK_CHARS < LONG_CHARS:
        raise RuntimeError(f"the fake sent {chunks} content chunks")
    return FakeRate(chunks, last - first)


# --- the whole section ------------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    runs: Runs
    startup: Startup
    first_delta: FirstDelta
    long: list[LongAnswer]
    fake: list[FakeRate]
    seconds: float
    load: tuple[float, float, float]  # the 1, 5 and 15 minute load averages at the start


def run(workdir: Path, runs: Runs) -> Results:
    t0 = time.perf_counter()
    load = os.getloadavg()
    boot = startup(workdir, runs.spawn)
    echo = _echo_series(runs.prompt)
    with sessionlsp(workdir, "offline", _provider_env("offline", None)) as client:
        offline, offline_turn, _ = _prompt_series(client, runs.prompt)
    with fake_provider() as base_url:
        fake_rate(base_url)  # warm-up
        fakes = [fake_rate(base_url) for _ in range(runs.long)]
        with sessionlsp(workdir, "openai", _provider_env("openai", base_url)) as client:
            openai, openai_turn, session_list = _prompt_series(client, runs.prompt)
            long_answer(client, 0)  # warm-up
            longs = [long_answer(client, run) for run in range(1, runs.long + 1)]
    first = FirstDelta(openai, openai_turn, offline, offline_turn, echo, session_list)
    return Results(runs, boot, first, longs, fakes, time.perf_counter() - t0, load)


def describe(runs: Runs) -> str:
    """What the section measures and how, wrapped for the doc."""
    intro = (
        "Three processes, as in use: `sessionlsp serve` over stdio with LSP framing, the fake "
        "OpenAI server of fakeprovider/openai_server.py in a process of its own "
        "(bench/fake_provider.py, no pauses between chunks), and the benchmark as the client "
        "(client/rpc_client.py). Times are `time.perf_counter()` in the client; notifications "
        "and answers are stamped on the client's reader thread as they are dispatched."
    )
    items = [
        "**Spawn to `initialize` answer**: from `Popen` of `python -m server.cli serve --db DB "
        "--config empty.toml` (offline provider, the database already created) to the "
        f"`initialize` result; {runs.spawn} runs, round-robin with the baselines after one "
        "uncounted round. Baselines: `python -c pass` from spawn to exit, and a minimal pygls 2 "
        "server with one `echo` request (bench/echo_server.py) from spawn to its `initialize` "
        "result.",
        f"**`session/prompt` to first `session/delta`**: {runs.prompt} prompts in one session "
        f"after {PROMPT_WARMUP} uncounted ones, with the openai provider pointed at the fake (an "
        f"instant answer of a few words in {CHUNK_CHARS}-character chunks), and again with the "
        "offline provider. Baseline: an `echo` request to the pygls server, from sending it to "
        "its answer, timed the same way; the ratio is what the prompt path adds over a bare "
        "pygls round trip. For reference, the details give a cheap sessionlsp request "
        "(`session/list`) and the whole turn (prompt to its answer).",
        f"**Streaming a {LONG_TOKENS:,}-token answer**: the fake streams {LONG_CHARS:,} "
        f"characters in {CHUNK_CHARS}-character chunks, one SSE event each, and sessionlsp "
        "sends one `session/delta` per chunk; the client counts them and times the first to "
        f"the last. {runs.long} answers, each in a new session, after an uncounted one. "
        "Baseline: the fake's own rate to a plain `http.client` reader that only drains the "
        f"SSE stream ({runs.long} runs). The joined deltas are checked against the stored text "
        "(`session/load`) and against the text the fake sent.",
        "**Durable commits per answer**: the `message.part.delta` (while streaming) and "
        "`message.part.updated` (the final write) events of the reply's text "
        "part in the outbox (`session/events` after the cursor of a `session/load` taken "
        f"before the prompt). The text is written at most every {FLUSH_INTERVAL_S * 1000:.0f} "
        "ms while it streams and once at the end, so a turn of T seconds (prompt to answer, "
        "at the client) may commit it at most floor(T / 0.25) + 1 times. Each streaming commit "
        "stores the whole text in the row but announces only the new text (with its offset); "
        "each is also sent as a `session/sync` notification.",
    ]
    bullets = [
        textwrap.fill(item, width=96, initial_indent="- ", subsequent_indent="  ") for item in items
    ]
    return textwrap.fill(intro, width=96) + "\n\n" + "\n".join(bullets)


def _ratio(a: Spread, b: Spread) -> str:
    return f"{a.median / b.median:.2f}x"


def report(r: Results) -> str:
    s, f = r.startup, r.first_delta
    dps = spread([x.deltas_per_s for x in r.long])
    cps = spread([x.chars_per_s for x in r.long])
    fake_cps = spread([x.chunks_per_s for x in r.fake])
    fake_chars = spread([x.chars_per_s for x in r.fake])
    commits = spread([float(x.text_commits) for x in r.long])
    bound = spread([float(x.commit_bound) for x in r.long])
    events = spread([float(x.outbox_events) for x in r.long])
    span = spread([x.span_s * 1000 for x in r.long])
    turn = spread([x.turn_s * 1000 for x in r.long])
    syncs = spread([float(x.syncs) for x in r.long])
    sync_kib = spread([x.sync_bytes / 1024 for x in r.long])
    deltas = {x.deltas for x in r.long}
    types: collections.Counter[str] = collections.Counter()
    for x in r.long:
        types.update(x.outbox_types)
    per_turn = ", ".join(
        f"{name} {count / len(r.long):.1f}" for name, count in sorted(types.items())
    )
    lines = [
        "| figure | sessionlsp, median (p10-p90) | baseline, median (p10-p90) | ratio |",
        "|---|---:|---:|---:|",
        f"| spawn to `initialize` answer, ms | {s.sessionlsp.show()} "
        f"| `python -c pass`, spawn to exit: {s.bare_python.show()} "
        f"| {_ratio(s.sessionlsp, s.bare_python)} |",
        f"| spawn to `initialize` answer, ms | {s.sessionlsp.show()} "
        f"| pygls echo server: {s.pygls_echo.show()} | {_ratio(s.sessionlsp, s.pygls_echo)} |",
        f"| `session/prompt` to first `session/delta`, openai provider (fake), ms "
        f"| {f.openai.show(2)} | pygls `echo` round trip: {f.echo.show(2)} "
        f"| {_ratio(f.openai, f.echo)} |",
        f"| `session/prompt` to first `session/delta`, offline provider, ms "
        f"| {f.offline.show(2)} | pygls `echo` round trip: {f.echo.show(2)} "
        f"| {_ratio(f.offline, f.echo)} |",
        f"| deltas/s delivered, 20 000-token answer | {dps.show(0)} "
        f"| fake's chunks/s to a plain HTTP reader: {fake_cps.show(0)} | {_ratio(dps, fake_cps)} |",
        f"| characters/s delivered, same answer | {cps.show(0)} "
        f"| fake's characters/s: {fake_chars.show(0)} | {_ratio(cps, fake_chars)} |",
        f"| durable commits of the text part per answer | {commits.show(0)} "
        f"| bound: turn / 250 ms + 1 final write: {bound.show(0)} "
        f"| {_ratio(commits, bound)} |",
        f"| outbox events per 20 000-token turn | {events.show(0)} | | |",
    ]
    details = [
        "| detail | median (p10-p90) |",
        "|---|---:|",
        f"| `session/list` round trip on sessionlsp, ms | {f.session_list.show(2)} |",
        f"| `session/prompt` to its answer (whole turn), openai provider (fake), ms "
        f"| {f.openai_turn.show(2)} |",
        f"| `session/prompt` to its answer (whole turn), offline provider, ms "
        f"| {f.offline_turn.show(2)} |",
        f"| 20 000-token answer: first to last delta, ms | {span.show(0)} |",
        f"| 20 000-token answer: `session/prompt` to its answer, ms | {turn.show(0)} |",
        f"| 20 000-token answer: `session/sync` notifications | {syncs.show(0)} |",
        f"| 20 000-token answer: `session/sync` payload, KiB | {sync_kib.show(0)} |",
    ]
    mismatched = sum(1 for x in r.long if not x.matches)
    checked = (
        "equal the stored text and the fake's text in every run"
        if not mismatched
        else f"DO NOT equal the stored text or the fake's text in {mismatched} runs of "
        f"{r.runs.long}"
    )
    note = (
        f"Deltas per {LONG_TOKENS:,}-token answer: {', '.join(f'{d:,}' for d in sorted(deltas))}; "
        f"the joined deltas {checked}. Outbox events per turn by type (mean): {per_turn}. This "
        f"section took {r.seconds:.0f} s; the 1-minute load average was {r.load[0]:.2f} when it "
        "started."
    )
    return "\n".join(lines) + "\n\n" + "\n".join(details) + "\n\n" + textwrap.fill(note, 96)
