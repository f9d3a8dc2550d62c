"""The ``bash`` tool: exit codes and signals, timeouts and cancels that kill the whole process
group, the output cap, the environment without secrets, the bwrap sandbox, and no orphan left
when the server is SIGKILLed.

Processes are found by a unique marker in their command line (``sleep 3000.123456``), read
from /proc, so that the checks also see processes inside bwrap's PID namespace. Every wait is
a bounded poll, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

import server.config
from server.config import Sandbox, load_config
from server.service import Sidecar
from server.tools import TOOL_SPECS, TOOLS, ToolOutcome, ToolSettings, run_tool
from server.tools.bash import (
    MAX_BASH_OUTPUT_CHARS,
    CappedText,
    child_env,
    sandbox_in_use,
    sandbox_warning,
)
from tests.test_service import Recorder

if TYPE_CHECKING:
    from server.providers.base import CancelToken

REPO = Path(__file__).resolve().parent.parent
HAS_BWRAP = sandbox_in_use(None) == "bwrap"
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bwrap (Debian package bubblewrap)")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="bash runs on Linux")

SANDBOXES = [
    pytest.param("none", id="none"),
    pytest.param("bwrap", id="bwrap", marks=needs_bwrap),
]
WAIT_S = 10.0  # the bound of every poll


def bash(root: Path, command: str, sandbox: Sandbox, **more: object) -> ToolOutcome:
    cancel = cast("CancelToken | None", more.pop("cancel", None))
    arguments = json.dumps({"command": command, **more})
    settings = ToolSettings(sandbox)
    return run_tool(
        "bash", arguments, root, cancel=cancel, settings=settings, include_unoffered=True
    )


def marker() -> str:
    """A ``sleep`` argument no other process has: 3000 s and a random fraction."""
    return f"3000.{random.randrange(10**8):08d}"


def pids_with(mark: str) -> list[int]:
    """The processes whose command line is ``sleep MARK`` (zombies have none: they are gone)."""
    found = []
    wanted = f"sleep\0{mark}\0".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.endswith(wanted) and cmdline.split(b"\0")[0].endswith(b"sleep"):
            found.append(int(entry.name))
    return found


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {WAIT_S} s")
        time.sleep(0.02)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "session"
    path.mkdir()
    return path


@pytest.fixture
def reaper() -> Iterator[list[str]]:
    """Markers of sleeps a test starts; any still running at the end is killed (and fails the
    test's own assertions before that)."""
    marks: list[str] = []
    yield marks
    for mark in marks:
        for pid in pids_with(mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- the table -------------------------------------------------------------------------------


def test_bash_is_in_the_table_as_an_execute_tool_offered_to_the_model() -> None:
    # Offered since the permission gate (server/turn.py) asks before each command.
    assert TOOLS["bash"].kind == "execute"
    assert TOOLS["bash"].offered is True
    assert "bash" in [spec.name for spec in TOOL_SPECS]


# --- results ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_successful_command_returns_its_output_and_exit_code_zero(
    root: Path, sandbox: Sandbox
) -> None:
    outcome = bash(root, "echo hello; echo oops >&2", sandbox, description="Say hello")
    assert outcome.error is None
    assert outcome.output == "hello\noops\n(exit code 0)"
    assert outcome.title == "Say hello"
    assert not outcome.truncated


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_non_zero_exit_code_and_a_killing_signal_are_reported(
    root: Path, sandbox: Sandbox
) -> None:
    failed = bash(root, "echo partial; exit 3", sandbox)
    assert failed.error is None
    assert failed.output == "partial\n(exit code 3)"
    assert failed.title == "echo partial; exit 3"
    killed = bash(root, "kill -TERM $$", sandbox)
    assert killed.output == "(no output)\n(killed by signal SIGTERM (15))"
    # 143 given to exit is an exit code, though a signal would also make 143 in a shell.
    assert bash(root, "exit 143", sandbox).output == "(no output)\n(exit code 143)"


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_the_command_runs_in_the_session_directory(root: Path, sandbox: Sandbox) -> None:
    outcome = bash(root, "pwd; echo made > made.txt", sandbox)
    assert outcome.output == f"{os.path.realpath(root)}\n(exit code 0)"
    assert (root / "made.txt").read_text() == "made\n"


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_stdin_is_closed_so_cat_ends_at_once(root: Path, sandbox: Sandbox) -> None:
    started = time.monotonic()
    outcome = bash(root, "cat; echo after-cat", sandbox, timeout=30)
    assert outcome.output == "after-cat\n(exit code 0)"
    assert time.monotonic() - started < WAIT_S


def test_bad_arguments_are_tool_errors(root: Path) -> None:
    too_long = bash(root, "true", "none", timeout=601)
    assert too_long.error == 'argument "timeout" must be at most 600, got 601'
    assert bash(root, "true", "none", timeout=0).error == (
        'argument "timeout" must be at least 1, got 0'
    )
    missing = run_tool("bash", "{}", root, settings=ToolSettings("none"), include_unoffered=True)
    assert missing.error == 'missing required argument "command"'


# --- stopping --------------------------------------------------------------------------------


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_timeout_kills_the_whole_process_group_background_children_included(
    root: Path, sandbox: Sandbox, reaper: list[str]
) -> None:
    background, foreground = marker(), marker()
    reaper.extend((background, foreground))
    started = time.monotonic()
    command = f"sleep {background} & echo started; sleep {foreground}"
    outcome = bash(root, command, sandbox, timeout=1)
    assert time.monotonic() - started < WAIT_S
    assert outcome.error is None
    assert outcome.output == (
        "started\n(timed out after 1 s: the command and its processes were killed)"
    )
    wait_for(lambda: not pids_with(background) and not pids_with(foreground), "gone")


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_command_that_ends_leaves_no_background_process_behind(
    root: Path, sandbox: Sandbox, reaper: list[str]
) -> None:
    mark = marker()
    reaper.append(mark)
    outcome = bash(root, f"sleep {mark} & echo left", sandbox)
    assert outcome.output == "left\n(exit code 0)"
    wait_for(lambda: not pids_with(mark), "gone")


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_cancel_kills_the_running_command_promptly(
    root: Path, sandbox: Sandbox, reaper: list[str]
) -> None:
    mark = marker()
    reaper.append(mark)
    cancel = threading.Event()
    result: list[ToolOutcome] = []
    worker = threading.Thread(
        target=lambda: result.append(bash(root, f"sleep {mark}", sandbox, cancel=cancel))
    )
    worker.start()
    wait_for(lambda: bool(pids_with(mark)), "started")
    cancel.set()
    worker.join(WAIT_S)  # the command's own timeout (120 s) is what must not be waited for
    assert not worker.is_alive()
    assert result[0].error == "bash cancelled; the command was killed"
    wait_for(lambda: not pids_with(mark), "gone")


RUNNER_STARTED = "runner started"


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_sigkill_of_the_server_process_leaves_no_orphan_command(
    root: Path, sandbox: Sandbox, reaper: list[str]
) -> None:
    background, foreground = marker(), marker()
    reaper.extend((background, foreground))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.procs.bash_runner",
            str(root),
            sandbox,
            f"sleep {background} & sleep {foreground}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    try:
        wait_for(lambda: bool(pids_with(background) and pids_with(foreground)), "started")
        server.send_signal(signal.SIGKILL)
        server.wait(WAIT_S)
        wait_for(lambda: not pids_with(background) and not pids_with(foreground), "gone")
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()


# --- output ----------------------------------------------------------------------------------


def test_long_output_keeps_its_head_and_tail_and_says_how_much_was_cut(root: Path) -> None:
    command = "printf START; head -c 100000 /dev/zero | tr '\\0' x; printf END"
    outcome = bash(root, command, "none")
    assert outcome.truncated
    cut = len("START") + 100_000 + len("END") - MAX_BASH_OUTPUT_CHARS
    head, note, tail = outcome.output.split("\n")[:3]
    assert head == "START" + "x" * (MAX_BASH_OUTPUT_CHARS // 2 - 5)
    assert note == f"[… {cut} characters cut …]"
    assert tail == "x" * (MAX_BASH_OUTPUT_CHARS // 2 - 3) + "END"
    assert outcome.output.endswith("END\n(exit code 0)")


def test_the_capped_text_stays_bounded_in_memory_however_much_comes() -> None:
    capped = CappedText(100)
    for i in range(10_000):
        capped.add(f"{i:07d}\n")
        assert len(capped.tail) <= 200 + 8
    text, cut = capped.text()
    assert cut
    assert text.startswith("0000000\n") and text.endswith("0009999\n")
    assert "[… 79900 characters cut …]" in text
    short = CappedText(100)
    short.add("a" * 60)
    short.add("b" * 40)
    assert short.text() == ("a" * 60 + "b" * 40, False)


def test_output_that_is_not_utf8_comes_out_with_replacement_characters(root: Path) -> None:
    outcome = bash(root, "printf 'caf\\351\\n'", "none")
    assert outcome.output == "caf\ufffd\n(exit code 0)"


# --- environment -----------------------------------------------------------------------------

SECRETS = {
    "SESSIONLSP_API_KEY": "sk-sessionlsp-secret-1",
    "OPENAI_API_KEY": "sk-openai-secret-2",
    "GITHUB_TOKEN": "ghp_secret3",
    "MY_PASSWORD": "hunter4",
    "DB_PASSWD": "hunter5",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-6",
    "SSH_AUTH_SOCK": "/tmp/agent-secret-7",
    "GOOGLE_APPLICATION_CREDENTIALS": "/secret-8.json",
}


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_the_api_key_and_secret_looking_variables_never_reach_the_command(
    root: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ada")
    outcome = bash(root, "env", sandbox)
    names = {line.split("=", 1)[0] for line in outcome.output.splitlines()}
    for name, value in SECRETS.items():
        assert name not in names
        assert value not in outcome.output
    assert {"PATH", "HOME", "GIT_AUTHOR_NAME"} <= names
    assert not set(SECRETS) & set(child_env())


# --- sandbox ---------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP server on loopback that accepts whatever connects."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(WAIT_S)
    yield server
    server.close()


def _connect_command(port: int) -> str:
    code = (
        f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5); "
        "print('connected')"
    )
    return f'"{sys.executable}" -c "{code}"'


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside the session directory and outside /tmp (the sandbox's /tmp is its
    own, so a directory there would not even be seen)."""
    path = Path(tempfile.mkdtemp(prefix="sessionlsp-outside-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path)


@needs_bwrap
def test_in_the_bwrap_sandbox_nothing_outside_the_session_directory_can_be_written(
    root: Path, outside: Path
) -> None:
    private = f"/tmp/sessionlsp-private-{marker()}"
    sibling = root.parent / "sibling"
    command = (
        f"echo x > {outside}/f; echo s > {sibling}; echo y > {private}; cat {private}; "
        "echo z > inside"
    )
    outcome = bash(root, command, "bwrap")
    assert f"cannot create {outside}/f: Read-only file system" in outcome.output
    assert not (outside / "f").exists()
    assert outcome.output.endswith("y\n(exit code 0)")  # /tmp is writable, and private
    assert not Path(private).exists()
    assert not sibling.exists()  # next to the session directory, in the private /tmp
    assert (root / "inside").read_text() == "z\n"


def test_without_a_sandbox_the_same_command_writes_outside(root: Path, outside: Path) -> None:
    outcome = bash(root, f"echo x > {outside}/f", "none")
    assert outcome.output == "(no output)\n(exit code 0)"
    assert (outside / "f").read_text() == "x\n"


@needs_bwrap
def test_in_the_bwrap_sandbox_a_tcp_connection_to_a_loopback_server_fails(
    root: Path, listener: socket.socket
) -> None:
    outcome = bash(root, _connect_command(listener.getsockname()[1]), "bwrap")
    assert "connected" not in outcome.output.replace("unconnected", "")
    assert "(exit code 1)" in outcome.output
    listener.settimeout(0.2)
    with pytest.raises(TimeoutError):
        listener.accept()


def test_without_a_sandbox_the_same_tcp_connection_works(
    root: Path, listener: socket.socket
) -> None:
    outcome = bash(root, _connect_command(listener.getsockname()[1]), "none")
    assert outcome.output == "connected\n(exit code 0)"
    accepted, _ = listener.accept()
    accepted.close()


def test_the_default_sandbox_is_bwrap_when_it_is_on_path_and_the_warning_says_when_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("server.tools.bash.bwrap_path", lambda: "/usr/bin/bwrap")
    assert sandbox_in_use(None) == "bwrap"
    assert sandbox_in_use("none") == "none"
    assert sandbox_warning(None) is None
    monkeypatch.setattr("server.tools.bash.bwrap_path", lambda: None)
    assert sandbox_in_use(None) == "none"
    assert sandbox_in_use("bwrap") == "bwrap"
    assert sandbox_warning("none") is None
    warning = sandbox_warning(None)
    assert warning is not None and "without a sandbox" in warning and "\n" not in warning
    assert "refuse" in (sandbox_warning("bwrap") or "")


def test_sandbox_bwrap_without_bwrap_refuses_to_run_the_command(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("server.tools.bash.bwrap_path", lambda: None)
    outcome = bash(root, "echo x > ran", "bwrap")
    assert outcome.error is not None and "bwrap is not on PATH" in outcome.error
    assert not (root / "ran").exists()


@pytest.mark.parametrize(
    ("sandbox", "bwrap", "warned"),
    [(None, None, True), ("none", None, False), (None, "/usr/bin/bwrap", False)],
)
def test_the_server_warns_once_at_start_when_commands_would_run_unconfined(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    sandbox: str | None,
    bwrap: str | None,
    warned: bool,
) -> None:
    monkeypatch.setattr(server.config, "default_config_path", lambda: tmp_path / "none.toml")
    monkeypatch.setattr("server.tools.bash.bwrap_path", lambda: bwrap)
    env = {"SESSIONLSP_SANDBOX": sandbox} if sandbox else {}
    config = load_config(env=env, db_override=str(tmp_path / "s.db"))
    with caplog.at_level(logging.WARNING, logger="server.service"):
        sidecar = Sidecar(config, Recorder())
    try:
        lines = [r.getMessage() for r in caplog.records if "bwrap" in r.getMessage()]
        assert len(lines) == (1 if warned else 0)
        assert sidecar.runner is not None
        assert sidecar.runner.settings.tools == ToolSettings(sandbox=config.sandbox)
    finally:
        sidecar.close()
