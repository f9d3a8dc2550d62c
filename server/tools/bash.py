"""``bash``: one shell command, ``/bin/sh -c COMMAND`` in the session directory.

The command runs with stdin closed, in a process group of its own (:mod:`server.tools.child`),
under ``server/tools/bash_launcher.py``, which reports the exact exit code or signal. Its
stdout and stderr are read together, kept bounded in memory, and cut in the middle past
:data:`MAX_BASH_OUTPUT_CHARS` (head and tail kept, the cut said). The group is SIGKILLed when the
command times out, when the turn is cancelled, and when the command ends (a background job
must not outlive it, nor hold the output pipe open). When the server itself dies, even by
SIGKILL, the launcher (no sandbox) or bwrap's ``--die-with-parent`` and PID namespace kill the
group.

The sandbox: when ``bwrap`` (bubblewrap) is on PATH, or ``sandbox = "bwrap"`` is set, the
command sees the whole filesystem read-only except the session directory, a private ``/tmp``
and no network. ``sandbox = "none"`` runs it as the server's user, unconfined.

The child's environment is the server's minus every variable named like a secret
(:func:`child_env`): the API key must not reach a command the model chose.
"""

from __future__ import annotations

import codecs
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server.config import API_KEY_ENVS, Sandbox
from server.providers.base import ToolSpec
from server.tools import child
from server.tools.base import RunContext, ToolError, ToolOutcome, printable
from server.tools.paths import Workspace

MAX_BASH_OUTPUT_CHARS = 30_000
DEFAULT_BASH_TIMEOUT_S = 120
MAX_BASH_TIMEOUT_S = 600
DRAIN_S = 1.0  # after the group is killed, how long to wait for the end of the output
TITLE_CHARS = 100
_LAUNCHER = Path(__file__).with_name("bash_launcher.py")

# Names of variables that hold credentials. AUTH but not AUTHOR (GIT_AUTHOR_NAME is not one).
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH(?!OR)", re.IGNORECASE)

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "description": "The command, run by /bin/sh -c."},
        "timeout": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_BASH_TIMEOUT_S,
            "description": f"Seconds before the command is killed (default "
            f"{DEFAULT_BASH_TIMEOUT_S}, at most {MAX_BASH_TIMEOUT_S}).",
        },
        "description": {
            "type": "string",
            "description": "What the command does, in a few words (shown to the user).",
        },
    },
    "required": ["command"],
    "additionalProperties": False,
}

SPEC = ToolSpec(
    name="bash",
    description=(
        "Run a shell command with /bin/sh -c in the workspace directory, stdin closed. Returns "
        "its stdout and stderr together (at most "
        f"{MAX_BASH_OUTPUT_CHARS} characters: the middle of longer output is cut) and its "
        "exit code. Background processes are killed when the command ends. In the sandbox, "
        "only the workspace and /tmp are writable and there is no network."
    ),
    parameters=_PARAMETERS,
)


# --- sandbox ---------------------------------------------------------------------------------


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def sandbox_in_use(configured: Sandbox | None) -> Sandbox:
    """The sandbox a command runs in: the configured one, else bwrap when it is on PATH."""
    if configured is not None:
        return configured
    return "bwrap" if bwrap_path() is not None else "none"


def sandbox_warning(configured: Sandbox | None) -> str | None:
    """The line to log at start when bash would run unconfined or not at all, else None."""
    if configured == "none" or bwrap_path() is not None:
        return None
    if configured == "bwrap":
        return (
            'sandbox = "bwrap" but bwrap is not on PATH: the bash tool will refuse to run; '
            "install bubblewrap"
        )
    return (
        "bwrap is not on PATH: the bash tool runs commands without a sandbox; install "
        'bubblewrap, or set sandbox = "none" to silence this warning'
    )


def _sandboxed(root: Path, argv: list[str]) -> list[str]:
    bwrap = bwrap_path()
    if bwrap is None:
        raise ToolError(
            'bwrap is not on PATH, and sandbox = "bwrap" is set: install bubblewrap (or set '
            'sandbox = "none" to run commands unconfined)'
        )
    where = str(root)
    return [
        bwrap,
        *("--ro-bind", "/", "/"),
        *("--dev", "/dev"),
        *("--proc", "/proc"),
        *("--tmpfs", "/tmp"),
        *("--bind", where, where),  # after the tmpfs: the root may be under /tmp
        "--unshare-net",
        "--unshare-pid",  # the command's processes die with the namespace's first one
        "--die-with-parent",
        *("--chdir", where),
        "--",
        *argv,
    ]


# --- environment -----------------------------------------------------------------------------


def child_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment (``os.environ`` when None) without the API key and without any
    variable whose name looks like a secret's."""
    source = os.environ if environ is None else environ
    return {
        name: value
        for name, value in source.items()
        if name not in API_KEY_ENVS and not SECRET_NAME.search(name)
    }


# --- output ----------------------------------------------------------------------------------


class CappedText:
    """Text kept within ``limit`` characters in bounded memory: the first half and the last
    characters, with the number of characters cut in between."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.half = limit // 2
        self.head: list[str] = []
        self.head_len = 0
        self.tail = ""
        self.total = 0

    def add(self, text: str) -> None:
        self.total += len(text)
        room = self.half - self.head_len
        if room > 0:
            taken = text[:room]
            self.head.append(taken)
            self.head_len += len(taken)
            text = text[room:]
        if text:
            self.tail += text
            if len(self.tail) > 2 * self.limit:  # trimmed now and then, not on every add
                self.tail = self.tail[-self.limit :]

    def text(self) -> tuple[str, bool]:
        """The kept text and whether something was cut."""
        head = "".join(self.head)
        if self.total <= self.limit:
            return head + self.tail, False
        tail = self.tail[len(self.tail) - (self.limit - len(head)) :]
        cut = self.total - len(head) - len(tail)
        return f"{head}\n[… {cut} characters cut …]\n{tail}", True


# --- run -------------------------------------------------------------------------------------


def run(
    workspace: Workspace, args: Mapping[str, Any], title: str, context: RunContext
) -> ToolOutcome:
    command: str = args["command"]
    timeout_s: int = args.get("timeout", DEFAULT_BASH_TIMEOUT_S)
    described = args.get("description") or command
    title = printable(described if len(described) <= TITLE_CHARS else described[:TITLE_CHARS] + "…")
    if "\0" in command:
        raise ToolError("command contains a NUL character")
    sandbox = sandbox_in_use(context.settings.sandbox)
    status_read, status_write = os.pipe()
    try:
        # PARENT_PID 0: in the sandbox, bwrap kills the command when this process dies.
        parent = 0 if sandbox == "bwrap" else os.getpid()
        argv = [sys.executable, "-I", "-S", str(_LAUNCHER), str(status_write), str(parent), command]
        if sandbox == "bwrap":
            argv = _sandboxed(workspace.root, argv)
        proc = child.start(
            "bash",
            argv,
            cwd=workspace.root,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            pass_fds=(status_write,),
        )
        os.close(status_write)
        status_write = -1
        output, stopped = _supervise(proc, child.Watch(context.cancel, timeout_s))
        status = _read_status(status_read)
    finally:
        os.close(status_read)
        if status_write != -1:
            os.close(status_write)
    if stopped == "cancelled":
        raise ToolError("bash cancelled; the command was killed")
    text, cut = output.text()
    if stopped == "timeout":
        end = f"(timed out after {timeout_s} s: the command and its processes were killed)"
    else:
        end = _describe_end(status, proc.returncode)
    body = text if text else "(no output)"
    separator = "" if body.endswith("\n") else "\n"
    return ToolOutcome(output=f"{body}{separator}{end}", title=title, truncated=cut)


def _supervise(proc: subprocess.Popen[bytes], watch: child.Watch) -> tuple[CappedText, str | None]:
    """Read the command's output until it ends or ``watch`` says stop, then kill its group and
    read what is left. Returns the output and why it was stopped ("timeout", "cancelled") or
    None when it ended by itself."""
    assert proc.stdout is not None
    output = CappedText(MAX_BASH_OUTPUT_CHARS)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    fd = proc.stdout.fileno()
    stopped: str | None = None
    open_pipe = True
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)

        def read_ready(timeout: float) -> None:
            nonlocal open_pipe
            if selector.select(timeout):
                data = os.read(fd, 65_536)
                if data:
                    output.add(decoder.decode(data))
                else:
                    open_pipe = False
                    selector.unregister(fd)

        try:
            while proc.poll() is None:
                if open_pipe:
                    read_ready(child.POLL_S)
                else:
                    time.sleep(child.POLL_S)
                if watch.cancelled():
                    stopped = "cancelled"
                    break
                if watch.expired():
                    stopped = "timeout"
                    break
        finally:
            child.kill_group(proc)  # also what the command left in the background
        drain_until = time.monotonic() + DRAIN_S
        while open_pipe and time.monotonic() < drain_until:
            read_ready(max(0.0, drain_until - time.monotonic()))
    proc.stdout.close()
    output.add(decoder.decode(b"", final=True))
    return output, stopped


def _read_status(fd: int) -> str | None:
    """The launcher's line (``exit N`` or ``signal N``), or None when it wrote none."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 100).decode("ascii", "replace").strip() or None
    except BlockingIOError:
        return None


def _describe_end(status: str | None, returncode: int | None) -> str:
    kind, _, number = (status or "").partition(" ")
    if kind == "exit" and number.lstrip("-").isdigit():
        return f"(exit code {int(number)})"
    if kind == "signal" and number.isdigit():
        return f"(killed by signal {_signal_name(int(number))})"
    # No line from the launcher: it was killed itself, or bwrap failed to start it.
    if returncode is not None and returncode < 0:
        return f"(killed by signal {_signal_name(-returncode)})"
    return f"(exit code {returncode})"


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return str(number)
