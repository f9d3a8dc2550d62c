"""The API key never leaves the server: not into the database (file and write-ahead log), not
into its logs (at debug level), not into any frame it sends, not into ``sessionlsp config``.

A server with a distinctive key is driven through the paths where a key could slip out: a 401
and a 429 whose bodies echo the Authorization header, retries, a connection cut mid-stream, a
summarizer that fails with the header in its error, a context overflow whose message carries it,
bad params, an unknown method, a storage error, and a second key offered in
``initializationOptions`` (which must be dropped, not logged). Every byte left behind is then
searched for the whole key and for its middle part. The soak (tests/soak) runs the same search
over its much longer run.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.rpc_client import RpcClient, RpcError
from fakeprovider.openai_server import Cut, FakeOpenAI, HttpError
from tests.lsp_support import prompt_and_wait, server_env, write_config
from tests.soak.leaks import files_under, make_key, scan, scan_text
from tests.soak.servers import ROOT, Outputs, kill, spawn

WAIT_S = 60.0


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunk_chars=8, delay_s=0.005) as f:
        yield f


def echoing(status: int, message: str, **headers: str) -> HttpError:
    """An error whose message repeats the request's Authorization header, as careless
    servers do."""
    return HttpError(status, {"error": {"message": message}}, headers, echo_auth=True)


def prompt(client: RpcClient, session_id: str, text: str) -> dict[str, Any]:
    return prompt_and_wait(client, session_id, text, WAIT_S)


def test_the_api_key_is_in_no_file_log_frame_or_error_after_every_kind_of_failure(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    key, offered = make_key("secret"), make_key("offered")
    logs = tmp_path / "logs"
    logs.mkdir()
    db = tmp_path / "sessions.db"
    config = write_config(
        tmp_path / "config.toml",
        {"provider": "openai", "model": "fake-model", "contextLimit": 4000, "outputLimit": 500},
    )
    env = {
        "SESSIONLSP_BASE_URL": fake.base_url,
        "SESSIONLSP_API_KEY": key,
        "SESSIONLSP_LOG_FILE": str(logs / "server.log"),
        "SESSIONLSP_LOG_LEVEL": "debug",
    }
    server = spawn(db, config, Outputs.under(logs, "server"), env)
    texts: list[str] = []  # every error text the client received
    try:
        init = server.initialize(
            {"apiKey": offered, "logLevel": "debug"}, capabilities={}, timeout=WAIT_S
        )
        ours = init["capabilities"]["experimental"]["sessionlsp"]
        assert ours["provider"] == "openai"
        # a health check can say whether a key is set and where things are, never the key
        assert (ours["apiKey"], ours["baseUrl"], ours["db"]) == ("set", fake.base_url, str(db))
        assert key not in json.dumps(init)
        sid = server.request("session/new", {"title": "secrets"}, timeout=WAIT_S)["sessionId"]
        assert prompt(server, sid, "a first, ordinary turn")["stopReason"] == "end_turn"

        fake.push(echoing(401, "invalid api key"), when="chat")
        result = prompt(server, sid, "unauthorized")
        assert result["error"]["status"] == 401
        texts.append(result["error"]["message"])

        fake.push(echoing(429, "slow down", **{"Retry-After": "0"}), when="chat")
        assert prompt(server, sid, "retried")["stopReason"] == "end_turn"

        fake.push_all([echoing(500, "boom", **{"Retry-After": "0"})] * 5, when="chat")
        result = prompt(server, sid, "gives up")
        assert result["error"]["name"] == "ProviderError"
        texts.append(result["error"]["message"])

        fake.push(Cut(after_chunks=2), when="chat")
        result = prompt(server, sid, "cut short")
        texts.append(json.dumps(result))

        fake.push(echoing(400, "summarizer says no"), when="summary")
        compacted = server.request("session/compact", {"sessionId": sid}, timeout=WAIT_S)
        texts.append(json.dumps(compacted))

        too_long = "This model's maximum context length is 4096 tokens"
        fake.push(echoing(400, too_long), when="chat")
        result = prompt(server, sid, "overflows")
        texts.append(json.dumps(result))

        for method, params in (
            ("session/prompt", {"sessionId": sid}),
            ("session/nope", {}),
            ("session/load", {"sessionId": "ses_missing"}),
        ):
            with pytest.raises(RpcError) as refused:
                server.request(method, params, timeout=WAIT_S)
            texts.append(refused.value.message)

        assert server.process is not None
        pid = server.process.pid
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
        try:
            with pytest.raises(RpcError) as failed:
                server.request("session/new", {}, timeout=WAIT_S)
            texts.append(failed.value.message)
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)

        wal = db.with_name(db.name + "-wal")
        assert wal.exists()
        (tmp_path / "wal-while-running").write_bytes(wal.read_bytes())
        assert server.close() == 0
    finally:
        kill(server)

    # The key was really in play: the model got it, and the debug log has the failures.
    assert any(r.headers.get("authorization") == f"Bearer {key}" for r in fake.requests)
    log_text = (logs / "server.log").read_text(encoding="utf-8")
    assert "request failed" in log_text and "apiKey" in log_text
    assert (logs / "server.frames").stat().st_size > 0

    files = files_under(tmp_path)
    assert {db, logs / "server.frames", logs / "server.stderr"} <= set(files)
    for secret in (key, offered):
        assert scan(files, secret) == []
        assert scan_text(texts, secret) == []


def test_sessionlsp_config_masks_the_key_and_a_password_in_the_base_url(tmp_path: Path) -> None:
    key, password = make_key("file"), make_key("url")
    config = write_config(
        tmp_path / "config.toml",
        {
            "provider": "openai",
            "model": "m",
            "baseUrl": f"http://user:{password}@127.0.0.1:9/v1",
            "apiKey": key,
        },
    )
    config.chmod(0o600)
    shown = subprocess.run(
        [sys.executable, "-m", "server.cli", "config", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=server_env(),
        timeout=WAIT_S,
        check=True,
    )
    public = json.loads(shown.stdout)
    assert public["apiKey"].startswith("set (from file")
    assert public["baseUrl"] == "http://user:***@127.0.0.1:9/v1"
    for secret in (key, password):
        assert scan_text([shown.stdout, shown.stderr], secret) == []
