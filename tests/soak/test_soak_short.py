"""A short soak in the normal test run: 20 s of load with kills, and no invariant violated.

CI runs the full one separately (``python -m tests.soak --minutes 3``). Other tests here show
that the soak's checks can fail (a client that misses an event, a leaked key), and pin what
the soak found in the server.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from client.rpc_client import encode_frame, read_frame
from fakeprovider.openai_server import FakeOpenAI
from tests.lsp_support import server_env, write_config
from tests.soak.actors import Follow, Registry, ServerSetup, Slot, SoakClient
from tests.soak.harness import SoakConfig, run
from tests.soak.invariants import logged_errors
from tests.soak.leaks import files_under, make_key, scan
from tests.soak.servers import ROOT, serve_argv

pytestmark = pytest.mark.slow


def test_a_short_soak_with_server_kills_keeps_every_invariant(tmp_path: Path) -> None:
    report = run(
        SoakConfig(minutes=20 / 60, seed=20_251_124, kill_every=(5.0, 8.0), workdir=tmp_path)
    )
    print(report.render())
    assert report.violations == []
    assert report.kills >= 1
    assert report.restarts == report.kills
    assert report.reconnects >= 1  # clients resumed on a restarted server
    assert report.final_prompts >= 1
    assert report.counts is not None and report.counts.sessions == report.final_prompts
    assert sum(report.operations.values()) > 50


def client_with(follows: dict[str, Follow]) -> SoakClient:
    setup = ServerSetup(Path("unused.db"), Path("unused.toml"), Path("."), {})
    slot = Slot("server0", setup)
    client = SoakClient("client0", slot, [slot], Registry(), FakeOpenAI(), 1, threading.Event())
    client.follows = follows
    return client


def test_the_stream_check_finds_an_event_a_client_never_applied() -> None:
    client = client_with({"ses_a": Follow(start=3, epoch=1, since=3, last_live=9)})
    client.follows["ses_a"].applied = {5, 9}
    outbox = {"ses_a": [1, 2, 5, 7, 9, 12], "ses_b": [4]}
    assert client.missing(outbox) == {"ses_a": [7]}  # 1, 2 before its start; 12 after its high
    assert client.missing(outbox, {"ses_a": 12}) == {"ses_a": [7, 12]}
    client.follows["ses_a"].applied.add(8)
    assert client.extra(outbox) == {"ses_a": [8]}


def test_the_stream_check_reports_an_event_out_of_order_on_one_connection() -> None:
    client = client_with({"ses_a": Follow(start=0, epoch=1, since=0, last_live=0)})
    client.on_event(1, "ses_a", 5, "message.updated", {})
    client.on_event(1, "ses_a", 4, "message.updated", {})
    assert len(client.registry.violations) == 1
    assert "out of order" in client.registry.violations[0]


def test_the_leak_check_finds_the_key_or_its_middle_in_any_file(tmp_path: Path) -> None:
    key = make_key("test")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text("nothing here\n")
    (tmp_path / "db.sqlite-wal").write_bytes(b"\x00\x01" + key[12:34].encode() + b"\x00")
    leaks = scan(files_under(tmp_path), key)
    assert [(leak.path.name, leak.what) for leak in leaks] == [("db.sqlite-wal", "middle part")]


def test_the_log_check_finds_error_records_and_complains_about_logs_without_records(
    tmp_path: Path,
) -> None:
    log = tmp_path / "server0-1.log"
    log.write_text(
        "2025-11-24 10:00:00,001 DEBUG server.turns: turn started\n"
        "2025-11-24 10:00:00,002 ERROR server.progress: end failed for ses_0a1b\n"
        "a traceback line\n",
        encoding="utf-8",
    )
    assert logged_errors([log]) == ["server0-1.log logged: server.progress: end failed for …"]
    empty = tmp_path / "server1-1.log"
    empty.write_text("", encoding="utf-8")
    assert logged_errors([empty]) == [
        "the servers' logs hold no record at all: the log check proves nothing"
    ]


def test_progress_ends_when_the_compaction_finishes_before_the_client_answers_create(
    tmp_path: Path,
) -> None:
    """Found in the soak's server logs: when a compaction finished before the client answered
    ``window/workDoneProgress/create``, the server failed building the end notification
    (``WorkDoneProgressEnd("done")`` sets ``kind``) and the progress never ended."""
    config = write_config(tmp_path / "config.toml", {"provider": "offline"})
    proc = subprocess.Popen(
        serve_argv(tmp_path / "db.sqlite", config),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=server_env(),
        cwd=ROOT,
    )
    inbox: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        while (body := read_frame(proc.stdout)) is not None:
            inbox.put(json.loads(body))

    def send(message: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(encode_frame({"jsonrpc": "2.0", **message}))
        proc.stdin.flush()

    def until(predicate: Any) -> dict[str, Any]:
        while True:
            message = inbox.get(timeout=30)
            if predicate(message):
                return message

    threading.Thread(target=read, daemon=True).start()
    try:
        capabilities = {"window": {"workDoneProgress": True}}
        send({"id": 1, "method": "initialize", "params": {"capabilities": capabilities}})
        until(lambda m: m.get("id") == 1)
        send({"id": 2, "method": "session/new", "params": {}})
        sid = until(lambda m: m.get("id") == 2)["result"]["sessionId"]
        send({"id": 3, "method": "session/compact", "params": {"sessionId": sid}})
        create = until(lambda m: m.get("method") == "window/workDoneProgress/create")
        compacted = until(lambda m: m.get("id") == 3)  # finished; create not answered yet
        assert compacted["result"]["status"] == "completed"
        send({"id": create["id"], "result": None})
        progress = [until(lambda m: m.get("method") == "$/progress") for _ in range(2)]
        assert [p["params"]["value"]["kind"] for p in progress] == ["begin", "end"]
        assert progress[1]["params"]["value"]["message"] == "completed"
    finally:
        proc.kill()
        proc.wait()
