"""Driving the peer, opencode, as its users do: ``opencode run`` and ``opencode serve``'s HTTP API.

Everything opencode writes goes under a temporary home (:class:`OpenCodeHome`): ``HOME`` and the
XDG directories point there, the provider is the shared fake (``OPENCODE_CONFIG_CONTENT``), and
auto-update, sharing and LSP downloads are off. Two things a connected machine does once and
then caches would otherwise cost every start here: the models.dev catalogue download (off with
``OPENCODE_DISABLE_MODELS_FETCH``; without internet each start waits about 1.5 s for it to
fail), and ``npm install @opencode-ai/plugin`` into the config directory (version 1.18.34 is not
on the registry, so it fails after a registry round trip on every start, and tool set-up waits
for it): the config directory gets a ``package.json``/``package-lock.json`` naming the package
as installed, which is what opencode checks. Everything else runs as installed, internal
plugins included.

The HTTP API (``GET /doc`` is its OpenAPI description): ``POST /session`` creates a session,
``POST /session/{id}/message`` sends a prompt and answers when the turn is done,
``GET /session/{id}/message`` lists the history, ``POST /session/{id}/summarize`` compacts,
``GET /session/status`` tells busy sessions, ``GET /event`` streams events as SSE.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import opencode_install
from bench.limits import Limits

TIMEOUT_S = 120.0
PROVIDER = "fake"
MODEL = "fake-model"
_LISTENING = re.compile(rb"listening on (http://[\w.\[\]:-]+)")


class OpenCodeHome:
    """A home directory of opencode's own, with a project directory to run it in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.project = root / "project"
        self.project.mkdir(parents=True, exist_ok=True)
        config = self.config_dir
        (config / "node_modules").mkdir(parents=True, exist_ok=True)
        dependency = {"@opencode-ai/plugin": opencode_install.VERSION}
        (config / "package.json").write_text(json.dumps({"dependencies": dependency}))
        lock = {"lockfileVersion": 3, "packages": {"": {"dependencies": dependency}}}
        (config / "package-lock.json").write_text(json.dumps(lock))

    @property
    def config_dir(self) -> Path:
        return self.root / ".config" / "opencode"

    @property
    def data_dir(self) -> Path:
        return self.root / ".local" / "share" / "opencode"

    @property
    def db(self) -> Path:
        return self.data_dir / "opencode.db"

    def env(self, base_url: str, limits: Limits) -> dict[str, str]:
        config = {
            "provider": {
                PROVIDER: {
                    "npm": "@ai-sdk/openai-compatible",
                    "options": {"baseURL": base_url, "apiKey": "bench-key"},
                    "models": {
                        MODEL: {"limit": {"context": limits.context, "output": limits.output}}
                    },
                }
            },
            "model": f"{PROVIDER}/{MODEL}",
            "autoupdate": False,
            "share": "disabled",
        }
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM")}
        return keep | {
            "HOME": str(self.root),
            "XDG_CONFIG_HOME": str(self.root / ".config"),
            "XDG_DATA_HOME": str(self.root / ".local" / "share"),
            "XDG_CACHE_HOME": str(self.root / ".cache"),
            "XDG_STATE_HOME": str(self.root / ".local" / "state"),
            "OPENCODE_CONFIG_CONTENT": json.dumps(config),
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_SHARE": "1",
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        }


def run_argv(binary: Path, message: str) -> list[str]:
    """``opencode run MESSAGE``: one prompt in a new session, the answer on stdout."""
    return [str(binary), "run", message]


class HttpError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


class EventStream:
    """``GET /event`` read on a thread; ``callback`` gets each event's JSON object."""

    def __init__(self, host: str, port: int, callback: Callable[[dict[str, Any]], None]) -> None:
        self._conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
        self._conn.request("GET", "/event", headers={"Accept": "text/event-stream"})
        self._response = self._conn.getresponse()
        if self._response.status != 200:
            body = self._response.read().decode()
            self._conn.close()
            raise HttpError(self._response.status, body)
        self._callback = callback
        self._closed = threading.Event()
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._read, name="opencode-sse", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
            while not self._closed.is_set():
                line = self._response.fp.readline()
                if not line:
                    return
                if line.startswith(b"data:"):
                    event = json.loads(line[5:])
                    if event.get("type") == "server.connected":
                        self.connected.set()
                    self._callback(event)

    def close(self) -> None:
        self._closed.set()
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(2)
        self._conn.close()
        self._thread.join(10)


class OpenCodeServer:
    """``opencode serve`` on a free loopback port, in a process group of its own."""

    def __init__(self, binary: Path, home: OpenCodeHome, env: dict[str, str]) -> None:
        self.home = home
        self.process = subprocess.Popen(
            [str(binary), "serve", "--port", "0", "--hostname", "127.0.0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=home.project,
            env=env,
            start_new_session=True,
        )
        self._output: list[bytes] = []  # its first lines, until it listens
        self._url: str | None = None
        self._listening = threading.Event()
        self._drain = threading.Thread(target=self._read_output, daemon=True)
        self._drain.start()
        if not self._listening.wait(TIMEOUT_S) or self._url is None:
            self.kill()
            text = b"".join(self._output).decode(errors="replace")[-2000:]
            raise RuntimeError(f"opencode serve did not start: {text}")
        host, _, port = self._url.removeprefix("http://").rpartition(":")
        self.host: str = host
        self.port: int = int(port)

    def _read_output(self) -> None:
        """Find the URL it listens on, then drain its output until it exits."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if self._listening.is_set():
                continue
            self._output.append(line)
            found = _LISTENING.search(line)
            if found:
                self._url = found.group(1).decode()
                self._listening.set()
        self._listening.set()  # it exited: stop waiting

    @property
    def pid(self) -> int:
        return self.process.pid

    # -- HTTP ---------------------------------------------------------------------------------

    def call(
        self, method: str, path: str, body: Any = None, timeout: float = TIMEOUT_S
    ) -> tuple[int, Any]:
        """(status, parsed JSON body or None)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, data, headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return response.status, parsed

    def _ok(self, method: str, path: str, body: Any = None, timeout: float = TIMEOUT_S) -> Any:
        status, parsed = self.call(method, path, body, timeout)
        if status != 200:
            raise HttpError(status, json.dumps(parsed))
        return parsed

    def create_session(self, title: str) -> str:
        return str(self._ok("POST", "/session", {"title": title})["id"])

    def prompt(self, session_id: str, text: str, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        """Send a prompt; returns the last assistant message when the turn is done.

        opencode answers 200 also when the turn failed (the provider's error is in the
        message's ``info.error``): that raises here, so that a failed turn is never timed or
        counted as an answered one."""
        body = {"parts": [{"type": "text", "text": text}]}
        result: dict[str, Any] = self._ok("POST", f"/session/{session_id}/message", body, timeout)
        error = (result.get("info") or {}).get("error")
        if error:
            raise RuntimeError(f"opencode's turn in {session_id} ended with {json.dumps(error)}")
        return result

    def summarize(self, session_id: str, timeout: float = TIMEOUT_S) -> tuple[int, Any]:
        body = {"providerID": PROVIDER, "modelID": MODEL}
        return self.call("POST", f"/session/{session_id}/summarize", body, timeout)

    def messages(self, session_id: str, timeout: float = TIMEOUT_S) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._ok(
            "GET", f"/session/{session_id}/message", timeout=timeout
        )
        return result

    def busy(self, session_id: str) -> bool:
        statuses = self._ok("GET", "/session/status") or {}
        status = statuses.get(session_id) or {}
        return bool(status) and status.get("type") != "idle"

    def wait_idle(self, session_id: str, timeout: float = TIMEOUT_S) -> bool:
        """Poll ``GET /session/status`` until the session is not busy (a condition, bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.busy(session_id):
                return True
            time.sleep(0.05)
        return False

    def events(self, callback: Callable[[dict[str, Any]], None]) -> EventStream:
        stream = EventStream(self.host, self.port, callback)
        if not stream.connected.wait(TIMEOUT_S):
            stream.close()
            raise RuntimeError("opencode's event stream did not connect")
        return stream

    # -- lifecycle ----------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the whole process group, at once, as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(TIMEOUT_S)
        self._drain.join(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        # Anything left in its group (none is expected) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._drain.join(10)


@contextlib.contextmanager
def serve(binary: Path, home: OpenCodeHome, env: dict[str, str]) -> Iterator[OpenCodeServer]:
    server = OpenCodeServer(binary, home, env)
    try:
        yield server
    finally:
        server.stop()
