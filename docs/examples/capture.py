"""Capture real sessionlsp traffic for docs/protocol.md.

Runs ``sessionlsp serve`` (the offline provider, and the openai provider pointed at the loopback
fake in fakeprovider/openai_server.py) through client/rpc_client.py and records every frame in
both directions, in the order the client wrote or read it. Each scenario is written to
``<out>/<name>.txt``, one message per line:

    -->  client to server          <--  server to client          ##  a note

Usage, from the repository root::

    .venv/bin/python docs/examples/capture.py [OUT_DIR [SCENARIO ...]]

OUT_DIR defaults to /tmp/sessionlsp-capture; SCENARIO names (the functions in SCENARIOS, e.g.
``offline_basics`` or ``tools``) limit the run to those. It takes about a minute.

The examples in docs/protocol.md are taken from these files (trimmed, never edited otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from client.rpc_client import RpcClient, RpcError  # noqa: E402
from fakeprovider.openai_server import FakeOpenAI, HttpError, Reply, Stall  # noqa: E402
from server.lsp_stdio import MAX_FRAME_BYTES  # noqa: E402
from store import Store  # noqa: E402
from store.models import FilePart, TextPart  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")


# --- recording ---------------------------------------------------------------------------------


class Transcript:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def add(self, arrow: str, text: str) -> None:
        with self.lock:
            ms = int((time.monotonic() - self.t0) * 1000)
            self.lines.append(f"{arrow} [{ms:>6} ms] {text}")

    def note(self, text: str) -> None:
        self.add("## ", text)


def _describe(body: bytes) -> str:
    if len(body) > 65536:
        return f"<{len(body)} bytes: {body[:60]!r}...>"
    try:
        return json.dumps(json.loads(body.decode("utf-8")), ensure_ascii=False)
    except (UnicodeDecodeError, ValueError):
        return f"<not JSON: {body!r}>"


class TeeWriter:
    """The child's stdin: records each write (one frame, or raw bytes from send_raw)."""

    def __init__(self, inner: IO[bytes], log: Transcript) -> None:
        self.inner, self.log = inner, log

    def write(self, data: bytes) -> int:
        head, sep, body = data.partition(b"\r\n\r\n")
        if (
            sep
            and head.lower().startswith(b"content-length:")
            and b"\r\n" not in head
            and int(head.split(b":")[1]) == len(body)
        ):
            self.log.add("-->", _describe(body))
        else:
            shown = data if len(data) <= 300 else data[:120] + b"..." + data[-40:]
            self.log.add("-->", f"RAW {len(data)} bytes: {shown!r}")
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


class TeeReader:
    """The child's stdout: records every frame the client reads, with its header once."""

    def __init__(self, inner: IO[bytes], log: Transcript) -> None:
        self.inner, self.log = inner, log
        self.headers: list[bytes] = []
        self.shown_header = False

    def readline(self, *args: Any) -> bytes:
        line = self.inner.readline(*args)
        if line.strip():
            self.headers.append(line)
        return line

    def read(self, n: int = -1) -> bytes:
        body = self.inner.read(n)
        if not self.shown_header:
            self.log.add("<--", "HEADER " + repr(b"".join(self.headers) + b"\r\n"))
            self.shown_header = True
        self.headers = []
        self.log.add("<--", _describe(body))
        return body

    def close(self) -> None:
        self.inner.close()


class Server:
    """One ``sessionlsp serve`` process and a recording client."""

    def __init__(
        self, log: Transcript, db: Path, config: Path, env: dict[str, str] | None = None
    ) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONLSP_")}
        base.pop("OPENAI_API_KEY", None)
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "server.cli", "serve", "--db", str(db), "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=base | (env or {}),
            cwd=ROOT,
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.log = log
        self.client = RpcClient(
            TeeReader(self.proc.stdout, log),  # type: ignore[arg-type]
            TeeWriter(self.proc.stdin, log),  # type: ignore[arg-type]
            process=self.proc,
            stderr=self.proc.stderr,
        )

    def request(self, method: str, params: Any = None, timeout: float = 30) -> Any:
        try:
            return self.client.request(method, params, timeout=timeout)
        except RpcError as e:
            return e

    def initialize(self, options: Any = None, caps: Any = None) -> Any:
        return self.client.initialize(options, caps, client_name="capture", timeout=30)

    def close(self) -> int | None:
        code = self.client.close()
        self.log.note(f"exit code {code}; stderr tail: {self.client.stderr_tail()[-3:]}")
        return code


def prompt(sid: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"sessionId": sid, "prompt": [{"type": "text", "text": text}], **extra}


def settle(seconds: float = 0.3) -> None:
    time.sleep(seconds)


# --- scenarios ---------------------------------------------------------------------------------


def offline_basics(log: Transcript, tmp: Path, config: Path) -> None:
    s = Server(log, tmp / "basics.db", config)
    log.note("a request before initialize")
    s.request("session/list", {})
    s.initialize({"autoCompact": True, "contextLimit": 8000, "apiKey": "not-accepted-here"})
    sid = s.request("session/new", {"title": "Fix the parser", "directory": "/home/ana/parser"})[
        "sessionId"
    ]
    s.request("session/list", {"limit": 10})
    s.request("session/prompt", prompt(sid, "Why does the parser reject empty arrays?"))
    s.request("session/load", {"sessionId": sid})
    s.request("session/context", {"sessionId": sid})
    s.request("session/compact", {"sessionId": sid, "instructions": "Keep file names."})
    log.note("compact again with nothing new since")
    s.request("session/compact", {"sessionId": sid})
    s.request("session/context", {"sessionId": sid})
    s.request("session/load", {"sessionId": sid})
    r = s.request("session/events", {"after": 0, "limit": 3})
    s.request("session/events", {"after": r["seq"], "sessionId": sid, "limit": 2})
    s.request("session/cancel", {"sessionId": sid})
    log.note("errors")
    s.request("session/load", {"sessionId": "ses_doesnotexist"})
    s.request("session/prompt", {"sessionId": sid})
    s.request("session/prompt", {"sessionId": sid, "prompt": [{"type": "image", "data": "..."}]})
    s.request("session/prompt", {"sessionId": sid, "prompt": [{"type": "text", "text": "  "}]})
    s.request("session/events", {})
    s.request("session/list", {"limit": 0})
    s.request("session/list", [1, 2])
    s.request("session/rename", {"sessionId": sid})
    s.request("session/new")
    sid2 = s.request("session/new", {"title": "Scratch"})["sessionId"]
    s.request("session/delete", {"sessionId": sid2})
    s.request("session/delete", {"sessionId": sid2})
    log.note("events after the last page: seq is the newest event of any session")
    s.request("session/events", {"after": 19, "sessionId": sid})
    log.note("malformed frames")
    raw = s.client.send_raw
    for body in (
        b'{"jsonrpc": "2.0", "id": 901, "method": "session/list", ',
        b"\xff\xfe not utf-8",
        b'[{"jsonrpc": "2.0", "id": 902, "method": "session/list"}]',
        b'{"jsonrpc": "1.0", "id": 903, "method": "session/list"}',
        b'{"jsonrpc": "2.0", "id": 904, "method": 42}',
    ):
        raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        settle(0.2)
    raw(b"Content-Type: application/json\r\n\r\n")
    settle(0.2)
    size = MAX_FRAME_BYTES + 1
    raw(b"Content-Length: %d\r\n\r\n" % size + b"x" * size)
    settle(1.0)
    s.request("session/list", {"limit": 1})
    s.close()


def init_errors(log: Transcript, tmp: Path, config: Path) -> None:
    s = Server(log, tmp / "init.db", config)
    s.request(
        "initialize",
        {"processId": None, "capabilities": {}, "initializationOptions": {"contextLimit": "lots"}},
    )
    s.request("initialize", {"processId": None, "capabilities": {}, "initializationOptions": 5})
    s.request("initialize", {"processId": None, "capabilities": 5})
    s.initialize({"autoCompact": False, "contextLimt": 1}, {})
    s.request("session/list", {})
    log.note("initialize again: answered, options not applied")
    s.request(
        "initialize",
        {"processId": None, "capabilities": {}, "initializationOptions": {"autoCompact": True}},
    )
    log.note("an error in a notification")
    s.client.notify("session/cancel", {"sessionId": "ses_doesnotexist"})
    settle()
    log.note("exit without shutdown")
    s.client.notify("exit")
    log.note(f"exit code {s.client.wait(10)}")


def after_shutdown(log: Transcript, tmp: Path, config: Path) -> None:
    s = Server(log, tmp / "shutdown.db", config)
    s.initialize()
    s.request("shutdown")
    log.note("a request after shutdown")
    try:
        s.client.request("session/list", {}, timeout=2)
    except TimeoutError as e:
        log.note(f"no answer: {e}")
    s.client.notify("exit")
    log.note(f"exit code {s.client.wait(10)}")
    s2 = Server(log, tmp / "shutdown.db", config)
    s2.initialize()
    log.note("stdin closed without shutdown/exit")
    s2.proc.stdin.close()  # type: ignore[union-attr]
    log.note(f"exit code {s2.client.wait(10)}")


def fake_env(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {
        "SESSIONLSP_PROVIDER": "openai",
        "SESSIONLSP_BASE_URL": fake.base_url,
        "SESSIONLSP_MODEL": "fake-model",
        "SESSIONLSP_CONTEXT_LIMIT": "10000",
        "SESSIONLSP_OUTPUT_LIMIT": "1000",
    } | extra


def with_fake(
    name: str, body: Callable[[Transcript, Server, FakeOpenAI, Path], None], **fake_kw: Any
) -> Callable[[Transcript, Path, Path], None]:
    def run(log: Transcript, tmp: Path, config: Path) -> None:
        env_extra = fake_kw.pop("env", {})
        with FakeOpenAI(**fake_kw) as fake:
            s = Server(log, tmp / f"{name}.db", config, fake_env(fake, **env_extra))
            s.initialize()
            try:
                body(log, s, fake, tmp)
            finally:
                s.close()

    run.__name__ = name
    return run


def tools(log: Transcript, s: Server, fake: FakeOpenAI, tmp: Path) -> None:
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    (work / "notes.txt").write_text("the answer is 42\n")
    fake.push(
        Reply(
            reasoning="The user asks about the notes; read them.",
            tool_calls=[
                ("call_1", "read_file", '{"path": "notes.txt"}'),
                ("call_2", "read_file", '{"path": "missing.txt"}'),
            ],
        ),
        when="chat",
    )
    fake.push(Reply("The notes say the answer is 42.", delay_s=0.06), when="chat")
    sid = s.request("session/new", {"title": "Notes", "directory": str(work)})["sessionId"]
    s.request("session/prompt", prompt(sid, "What do the notes say?"))
    s.request("session/load", {"sessionId": sid})


def retry_and_errors(log: Transcript, s: Server, fake: FakeOpenAI, tmp: Path) -> None:
    sid = s.request("session/new", {"title": "Errors"})["sessionId"]
    fake.push(HttpError(429, headers={"Retry-After": "1"}), when="chat")
    s.request("session/prompt", prompt(sid, "hello"))
    log.note("provider error")
    fake.push(HttpError(401, body={"error": {"message": "invalid api key"}}), when="chat")
    s.request("session/prompt", prompt(sid, "hello again"))
    log.note("max_tokens")
    fake.push(Reply("A long answer that was cut", finish="length"), when="chat")
    s.request("session/prompt", prompt(sid, "write a lot"))
    s.request("session/prompt", prompt(sid, "hi", model="other-model"))


def cancel(log: Transcript, s: Server, fake: FakeOpenAI, tmp: Path) -> None:
    sid = s.request("session/new", {"title": "Cancel"})["sessionId"]
    fake.push(Stall(after_chunks=2, text="Let me think about this"), when="chat")
    first = s.client.request_async("session/prompt", prompt(sid, "first"))
    second = s.client.request_async("session/prompt", prompt(sid, "second, queued"))
    fake.wait_for_requests(1, 10)
    settle(0.3)
    log.note("session/cancel as a notification")
    s.client.notify("session/cancel", {"sessionId": sid})
    first.result(20)
    second.result(20)
    log.note("$/cancelRequest on a running session/prompt")
    fake.push(Stall(after_chunks=1, text="Slowly"), when="chat")
    third = s.client.request_async("session/prompt", prompt(sid, "third"))
    fake.wait_for_requests(2, 10)
    settle(0.3)
    s.client.notify("$/cancelRequest", {"id": 5})
    try:
        third.result(5)
    except RpcError as e:
        log.note(f"third: {e}")
    settle(0.5)
    log.note("the turn is still running; session/cancel as a request")
    s.request("session/cancel", {"sessionId": sid})
    settle(0.5)
    s.request("session/load", {"sessionId": sid})


def auto_compact(log: Transcript, s: Server, fake: FakeOpenAI, tmp: Path) -> None:
    sid = s.request("session/new", {"title": "Auto"})["sessionId"]
    s.request("session/prompt", prompt(sid, "first, small"))
    fake.push(Reply("a long answer", prompt_tokens=9_500, completion_tokens=20), when="chat")
    s.request("session/prompt", prompt(sid, "second, reaches the window"))
    s.request("session/load", {"sessionId": sid})
    s.request("session/context", {"sessionId": sid})


def overflow(log: Transcript, s: Server, fake: FakeOpenAI, tmp: Path) -> None:
    sid = s.request("session/new", {"title": "Overflow"})["sessionId"]
    s.request("session/prompt", prompt(sid, "some history first"))
    body = {"error": {"message": "This model's maximum context length is 8192 tokens."}}
    fake.push(HttpError(400, body=body), when="chat")
    s.request("session/prompt", prompt(sid, "the long request"))
    s.request("session/load", {"sessionId": sid})


def compact_merge(log: Transcript, s: Server, fake: FakeOpenAI, tmp: Path) -> None:
    sid = s.request("session/new", {"title": "Merge"})["sessionId"]
    s.request("session/prompt", prompt(sid, "one"))
    s.request("session/prompt", prompt(sid, "two"))
    fake.push(Reply("## Objective\nAnswer two.\n", delay_s=0.2), when="summary")
    futures = [
        s.client.request_async("session/compact", {"sessionId": sid, "instructions": i})
        for i in ("Keep names.", "Keep numbers.")
    ]
    for f in futures:
        f.result(30)
    log.note("failed compaction: the summarizer says the request is too long")
    s.request("session/prompt", prompt(sid, "three"))
    too_long = {"error": {"message": "maximum context length exceeded"}}
    fake.push(HttpError(400, body=too_long), when="summary")
    s.request("session/compact", {"sessionId": sid})
    log.note("cancelled compaction")
    fake.push(Stall(after_chunks=1, text="## Objective\n"), when="summary")
    f = s.client.request_async("session/compact", {"sessionId": sid})
    fake.wait_for_requests(len(fake.requests) + 1, 10)
    settle(0.3)
    s.request("session/cancel", {"sessionId": sid})
    f.result(20)


def no_auto(log: Transcript, s: Server, fake: FakeOpenAI, tmp: Path) -> None:
    sid = s.request("session/new", {"title": "No auto"})["sessionId"]
    body = {"error": {"message": "This model's maximum context length is 8192 tokens."}}
    fake.push(HttpError(400, body=body), when="chat")
    s.request("session/prompt", prompt(sid, "too long"))


def delete_running(log: Transcript, s: Server, fake: FakeOpenAI, tmp: Path) -> None:
    sid = s.request("session/new", {"title": "Doomed"})["sessionId"]
    fake.push(Stall(after_chunks=1, text="Working on it"), when="chat")
    f = s.client.request_async("session/prompt", prompt(sid, "long job"))
    fake.wait_for_requests(1, 10)
    settle(0.3)
    s.request("session/delete", {"sessionId": sid})
    f.result(20)
    s.request("session/events", {"after": 0, "sessionId": sid})


def interrupted(log: Transcript, tmp: Path, config: Path) -> None:
    with FakeOpenAI(chunk_chars=6) as fake:
        db = tmp / "interrupted.db"
        a = Server(log, db, config, fake_env(fake))
        a.initialize()
        sid = a.request("session/new", {"title": "Crash"})["sessionId"]
        fake.push(Stall(after_chunks=3, text="Half of an answer"), when="chat")
        a.client.request_async("session/prompt", prompt(sid, "go"))
        fake.wait_for_requests(1, 10)
        settle(0.6)
        log.note("server A is killed (SIGKILL); server B opens the same database")
        a.proc.kill()
        a.client.wait(10)
        b = Server(log, db, config, fake_env(fake))
        b.initialize()
        settle(0.5)
        b.request("session/load", {"sessionId": sid})
        b.close()


def store_only_events(log: Transcript, tmp: Path, config: Path) -> None:
    """Events the store can write but no server code path emits yet: their real JSON."""
    store = Store(tmp / "store_only.db")
    with store.write() as tx:
        session = tx.create_session("Store only", None)
        m = tx.add_message(session.id, "prompt")
        keep = tx.put_part(m.id, TextPart("see the attached file"))
        tx.put_part(m.id, FilePart("image/png", "file:///home/ana/shot.png", "shot.png"))
        gone = tx.put_part(m.id, TextPart("a part to remove"))
        tx.update_session(session.id, title="Renamed")
        tx.remove_part(gone.id)
        other = tx.add_message(session.id, "prompt")
        tx.remove_message(other.id)
    with store.read() as tx:
        for e in tx.events_after(0):
            log.add("EVT", json.dumps(e.to_json(), ensure_ascii=False))
    log.note(f"kept part {keep.id}")
    store.close()


def unconfigured(log: Transcript, tmp: Path, config: Path) -> None:
    s = Server(log, tmp / "unconf.db", config, {"SESSIONLSP_PROVIDER": "openai"})
    s.initialize()
    sid = s.request("session/new", {})["sessionId"]
    s.request("session/prompt", prompt(sid, "hi"))
    s.request("session/compact", {"sessionId": sid})
    s.close()


def two_processes(log: Transcript, tmp: Path, config: Path) -> None:
    db = tmp / "shared.db"
    a = Server(log, db, config)
    log.note("server A started")
    a.initialize()
    sid = a.request("session/new", {"title": "Shared"})["sessionId"]
    log2 = Transcript()
    log2.t0 = log.t0
    b = Server(log2, db, config)
    b.initialize()
    b.request("session/prompt", prompt(sid, "from the other process"))
    settle(0.5)
    log.note("server B's transcript:")
    log.lines.extend("   B " + line for line in log2.lines)
    a.close()
    b.close()


def no_progress_caps(log: Transcript, tmp: Path, config: Path) -> None:
    s = Server(log, tmp / "noprogress.db", config)
    s.initialize(None, {})
    sid = s.request("session/new", {})["sessionId"]
    s.request("session/prompt", prompt(sid, "one"))
    s.request("session/compact", {"sessionId": sid})
    s.close()


SCENARIOS: list[Callable[[Transcript, Path, Path], None]] = [
    offline_basics,
    init_errors,
    after_shutdown,
    with_fake("tools", tools, chunk_chars=6),
    with_fake("retry_and_errors", retry_and_errors, chunk_chars=12),
    with_fake("cancel", cancel, chunk_chars=6),
    with_fake("auto_compact", auto_compact, chunk_chars=40, prompt_tokens=50, completion_tokens=10),
    with_fake("overflow", overflow, chunk_chars=40, prompt_tokens=50, completion_tokens=10),
    with_fake("compact_merge", compact_merge, chunk_chars=40),
    with_fake("no_auto", no_auto, chunk_chars=40, env={"SESSIONLSP_AUTO_COMPACT": "false"}),
    with_fake("delete_running", delete_running, chunk_chars=6),
    interrupted,
    store_only_events,
    unconfigured,
    two_processes,
    no_progress_caps,
]


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sessionlsp-capture")
    out.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[2:])
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        config = tmp / "config.toml"
        config.write_text("")
        for scenario in SCENARIOS:
            if only and scenario.__name__ not in only:
                continue
            log = Transcript()
            try:
                scenario(log, tmp, config)
            except Exception as e:  # keep what was captured
                log.note(f"scenario failed: {type(e).__name__}: {e}")
            (out / f"{scenario.__name__}.txt").write_text("\n".join(log.lines) + "\n")
            print(f"{scenario.__name__}: {len(log.lines)} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
