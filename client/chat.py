"""``sessionlsp chat``: a terminal client that drives ``sessionlsp serve`` over its protocol.

It starts the server as a child process and talks to it only through JSON-RPC (see
:mod:`client.rpc_client`): one message as an argument is a one-shot turn, no message is a REPL.
The answer streams to stdout as ``session/delta`` notifications arrive; everything else
(session ids, compaction and tool notes, errors) goes to stderr, so stdout holds only the
assistant's text.

Permission questions (``session/requestPermission``: the ``permission`` setting says ``ask`` for
a tool call) are shown on stderr (the tool, its title, the diff, coloured on a terminal, or the
command) and answered ``[o]nce / [a]lways / [r]eject`` from a line of the chat's input; end of
input or Ctrl-C answers ``cancelled`` (Ctrl-C also cancels the turn, as always). The chat
declares the capability (``experimental.sessionlsp.permissions``) only when its input can
answer: always in the REPL (a terminal, or a script piped in, whose lines answer questions as
they come), in the one-shot ``chat MESSAGE`` only when stdin is a terminal, never for ``chat -``
(stdin is the message). Without it the server does not offer the model tools that would ask.
All input is read by one thread (:class:`client.terminal.Terminal`) that routes each line to
the open question or the prompt, so a question settled elsewhere does not eat a prompt line.

Exit codes: 0 done, 1 the turn or the server failed, 2 usage (unknown session, empty message),
130 interrupted (a cancelled one-shot turn, or a second Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from types import FrameType
from typing import Any, TextIO

from client.rpc_client import RpcClient, RpcClosed, RpcError
from client.terminal import Question, Terminal

logger = logging.getLogger(__name__)

# docs/protocol.md's code for "no such session" (outside JSON-RPC's reserved -32768..-32000).
UNKNOWN_SESSION = -31001
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PROTOCOL_VERSION = 1
PREVIEW_CHARS = 60
LIST_LIMIT = 20
CLOSE_TIMEOUT_S = 5.0
HELP = """commands:
  /compact [instructions]  summarise the conversation so far
  /context                 what the model would receive next, with token estimates
  /sessions                recent sessions
  /new                     start a new session with the next message
  /quit                    leave (also Ctrl-D)"""


def build_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``chat`` subcommand to ``sub``."""
    chat = sub.add_parser("chat", help="chat with a session in the terminal")
    chat.add_argument("--session", help="resume this session instead of starting a new one")
    chat.add_argument("--db", help="database file passed to the server")
    chat.add_argument("--config", help="configuration file passed to the server")
    chat.add_argument(
        "--verbose", action="store_true", help="show the server's log lines on stderr"
    )
    chat.add_argument(
        "message", nargs="?", metavar="MESSAGE", help="send one message and exit ('-': stdin)"
    )


def server_command(db: str | None, config: str | None) -> list[str]:
    """The argv that starts the server the chat talks to."""
    return [
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        *(["--db", db] if db else []),
        *(["--config", config] if config else []),
    ]


def run_chat(
    args: argparse.Namespace,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
    server_argv: list[str] | None = None,
) -> int:
    """Run ``sessionlsp chat`` with ``args``; returns the exit code."""
    out = _Output(stdout, stderr)
    message: str | None = getattr(args, "message", None)
    # whether the input can answer permission questions (see the module docstring)
    asks = message is None or (message != "-" and _isatty(stdin))
    if message == "-":
        message = stdin.read()
    if message is not None and not message.strip():
        out.note("error: the message is empty")
        return EXIT_USAGE
    argv = server_argv or server_command(getattr(args, "db", None), getattr(args, "config", None))
    verbose = bool(getattr(args, "verbose", False))
    try:
        client = RpcClient.spawn(argv, stderr=subprocess.PIPE, new_process_group=True)
    except OSError as exc:
        out.note(f"cannot start sessionlsp serve ({argv[0]}): {exc}")
        return EXIT_FAILED
    if verbose:
        client.on_stderr(lambda line: out.note(f"[server] {line}"))
    terminal = Terminal(stdin, out, interactive=_isatty(stdin)) if asks else None
    try:
        chat = _Chat(client, out, verbose, terminal)
        chat.start()
        if getattr(args, "session", None) and not chat.load(args.session):
            return EXIT_USAGE
        if message is not None:
            return chat.one_shot(message)
        return chat.repl(_isatty(stdin))
    except RpcClosed:
        _report_server_exit(out, client)
        return EXIT_FAILED
    except RpcError as exc:
        out.note(f"error: {exc.message} (code {exc.code})")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if terminal is not None:
            terminal.close()
        client.close(CLOSE_TIMEOUT_S)


def _report_server_exit(out: _Output, client: RpcClient) -> None:
    code = client.wait(CLOSE_TIMEOUT_S)
    state = f"exited (code {code})" if code is not None else "closed its output"
    out.note(f"sessionlsp serve {state}")
    tail = client.stderr_tail()
    if tail:
        out.note("its last stderr lines:")
        for line in tail[-10:]:
            out.note(f"  {line}")


class _Output:
    """stdout for the answer, stderr for notes; one lock so threads do not interleave."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self.color = _isatty(stderr)  # questions (on stderr) show coloured diffs
        self._lock = threading.Lock()

    def text(self, text: str) -> None:
        with self._lock:
            self._stdout.write(text)
            self._stdout.flush()

    def line(self, text: str) -> None:
        self.text(text + "\n")

    def note(self, text: str) -> None:
        with self._lock:
            self._stderr.write(text + "\n")
            self._stderr.flush()

    def prompt(self, text: str) -> None:
        with self._lock:
            self._stderr.write(text)
            self._stderr.flush()


class _Renderer:
    """Turns one session's notifications into terminal output (runs on the reader thread).

    Text is printed only during a turn, only for assistant messages that are not summaries, and
    only for text parts that are not synthetic. A delta whose message or part has not been
    announced yet is printed (user messages are not streamed); a ``message.part.updated`` is
    printed (the part of its text not printed yet) only for a known assistant message.
    """

    def __init__(self, out: _Output) -> None:
        self._out = out
        self._lock = threading.Lock()
        self.session_id: str | None = None
        self.quiet_compaction_results = False
        self._active = False
        self._roles: dict[str, str] = {}
        self._hidden_messages: set[str] = set()
        self._hidden_parts: set[str] = set()
        self._printed: dict[str, str] = {}
        self._last_part: str | None = None
        self._at_line_start = True
        self._notes: set[tuple[str, str]] = set()
        self._status_now = "idle"

    def begin_turn(self) -> None:
        with self._lock:
            self._active = True
            self._printed.clear()
            self._last_part = None
            self._at_line_start = True

    def end_turn(self) -> None:
        with self._lock:
            self._active = False
            self._break_line()

    def break_line(self) -> None:
        """End the answer's current line (before a question is shown)."""
        with self._lock:
            self._break_line()

    def _break_line(self) -> None:
        if not self._at_line_start:
            self._out.text("\n")
            self._at_line_start = True
            self._last_part = None

    def handle(self, method: str, params: Any) -> None:
        params = _obj(params)
        if params.get("sessionId") != self.session_id or self.session_id is None:
            return
        with self._lock:
            if method == "session/delta":
                self._delta(params)
            elif method == "session/sync":
                self._sync(_str(params.get("type")), _obj(params.get("data")))
            elif method == "session/status":
                self._status(params)

    def _delta(self, params: dict[str, Any]) -> None:
        message_id = _str(params.get("messageId"))
        part_id = _str(params.get("partId"))
        if not self._active or params.get("field") != "text":
            return
        if params.get("partType", "text") != "text":  # reasoning streams too; not the answer
            return
        if message_id in self._hidden_messages or part_id in self._hidden_parts:
            return
        self._emit(part_id, _str(params.get("delta")))

    def _sync(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "message.updated":
            message_id = _str(data.get("id"))
            self._roles[message_id] = _str(data.get("role"))
            if data.get("role") == "user" or data.get("summary"):
                self._hidden_messages.add(message_id)
        elif kind == "message.part.updated":
            self._part(data)
        elif kind == "compaction.updated":
            self._compaction(data)

    def _part(self, part: dict[str, Any]) -> None:
        part_id = _str(part.get("id"))
        message_id = _str(part.get("messageId"))
        kind = part.get("type")
        if kind == "reasoning" or (kind == "text" and part.get("synthetic")):
            self._hidden_parts.add(part_id)
        if not self._active or message_id in self._hidden_messages:
            return
        if kind == "tool":
            self._tool(part_id, part)
        if kind != "text" or part_id in self._hidden_parts:
            return
        if self._roles.get(message_id) != "assistant":
            return
        full = _str(part.get("text"))
        done = self._printed.get(part_id, "")
        if full.startswith(done):
            self._emit(part_id, full[len(done) :])
        else:
            logger.debug("part %s was rewritten; not reprinting it", part_id)
            self._printed[part_id] = full

    def _emit(self, part_id: str, text: str) -> None:
        if not text:
            return
        if self._last_part not in (None, part_id) and not self._at_line_start:
            self._out.text("\n")
        self._out.text(text)
        self._printed[part_id] = self._printed.get(part_id, "") + text
        self._last_part = part_id
        self._at_line_start = text.endswith("\n")

    def _note(self, key: tuple[str, str], text: str) -> None:
        """A stderr line, once per key."""
        if key in self._notes:
            return
        self._notes.add(key)
        self._out.note(text)

    def _tool(self, part_id: str, part: dict[str, Any]) -> None:
        state = _obj(part.get("state"))
        status = _str(state.get("status"))
        name = _str(part.get("tool")) or "tool"
        if status == "completed":
            title = _str(state.get("title"))
            self._note((part_id, status), f"[tool {name}{': ' + title if title else ''}]")
        elif status == "error":
            self._note((part_id, status), f"[tool {name} failed: {_str(state.get('error'))}]")

    def _compaction(self, data: dict[str, Any]) -> None:
        marker = _str(data.get("markerId"))
        status = data.get("status")
        if status in ("pending", "running"):
            self._note((marker, "compacting"), "[compacting…]")
        elif self.quiet_compaction_results:
            return
        elif status == "completed":
            summary = _str(data.get("summaryMessageId"))
            self._note((marker, "completed"), f"[compacted: summary {summary}]")
        elif status == "failed":
            self._note((marker, "failed"), f"[compaction failed: {_error_text(data.get('error'))}]")

    def _status(self, params: dict[str, Any]) -> None:
        status = _str(params.get("status"))
        previous, self._status_now = self._status_now, status
        if not self._active:
            return
        if status == "retry":
            attempt = params.get("attempt")
            self._note(("retry", str(attempt)), f"[retrying (attempt {attempt})…]")
        elif status == "waiting" and previous != "waiting":
            self._out.note("[waiting for permission…]")


class _Outcome(Enum):
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    QUIT = "quit"


_EXIT_CODES = {
    _Outcome.DONE: EXIT_OK,
    _Outcome.FAILED: EXIT_FAILED,
    _Outcome.CANCELLED: EXIT_INTERRUPTED,
    _Outcome.QUIT: EXIT_INTERRUPTED,
}


class _Interrupts:
    """Ctrl-C during a turn: counted, and raised as KeyboardInterrupt only while waiting.

    Raising only inside :meth:`waiting` keeps an interrupt from landing in the middle of a
    write to the server. Outside the main thread nothing is installed.
    """

    def __init__(self) -> None:
        self.count = 0
        self._waiting = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self._waiting:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False


@dataclass(frozen=True)
class _Compacted:
    marker_id: str
    status: str
    summary_id: str | None
    error: str | None

    @staticmethod
    def parse(result: Any) -> _Compacted:
        result = _obj(result)
        summary = result.get("summaryMessageId")
        error = result.get("error")
        return _Compacted(
            marker_id=_str(result.get("markerId")),
            status=_str(result.get("status")),
            summary_id=summary if isinstance(summary, str) else None,
            error=_error_text(error) if error else None,
        )

    def describe(self) -> str:
        text = f"compaction {self.marker_id}: {self.status}"
        if self.summary_id:
            text += f", summary {self.summary_id}"
        if self.error:
            text += f": {self.error}"
        return text


class _Chat:
    def __init__(
        self, client: RpcClient, out: _Output, verbose: bool, terminal: Terminal | None = None
    ) -> None:
        """With ``terminal`` the chat answers permission questions from it."""
        self.client = client
        self.out = out
        self.verbose = verbose
        self.terminal = terminal
        self.renderer = _Renderer(out)
        self.session_id: str | None = None
        client.on_notification(None, self._on_notification)
        if terminal is not None:
            client.on_request("session/requestPermission", self._on_permission)

    def _on_notification(self, method: str, params: Any) -> None:
        if method == "window/logMessage" and self.verbose:
            self.out.note(f"[server] {_str(_obj(params).get('message'))}")
            return
        if method == "session/sync" and self.terminal is not None:
            params = _obj(params)
            if params.get("type") == "permission.replied":
                data = _obj(params.get("data"))
                self.terminal.settled(_str(data.get("id")), data)
        self.renderer.handle(method, params)

    def _on_permission(self, method: str, params: Any) -> Future[dict[str, Any]]:
        """``session/requestPermission``: shown and answered from the terminal (later)."""
        assert self.terminal is not None
        self.renderer.break_line()
        return self.terminal.ask(Question.parse(params))

    def _use(self, session_id: str | None) -> None:
        self.session_id = session_id
        self.renderer.session_id = session_id

    def start(self) -> None:
        capabilities: dict[str, Any] = {"window": {"workDoneProgress": True}}
        if self.terminal is not None:
            capabilities["experimental"] = {"sessionlsp": {"permissions": True}}
        result = self.client.initialize(client_name="sessionlsp-chat", capabilities=capabilities)
        caps = _obj(_obj(_obj(result.get("capabilities")).get("experimental")).get("sessionlsp"))
        version = caps.get("protocolVersion")
        if version != PROTOCOL_VERSION:
            self.out.note(
                f"warning: the server speaks sessionlsp protocol {version!r}; "
                f"this chat speaks {PROTOCOL_VERSION}"
            )

    def load(self, session_id: str) -> bool:
        try:
            result = _obj(self.client.request("session/load", {"sessionId": session_id}))
        except RpcError as exc:
            if exc.code != UNKNOWN_SESSION:
                raise
            self.out.note(f"error: unknown session {session_id}")
            return False
        info = _obj(result.get("session"))
        count = len(result.get("messages") or [])
        self.out.note(f'session {session_id} "{_str(info.get("title"))}" ({count} messages)')
        self._use(session_id)
        return True

    def ensure_session(self, first_message: str) -> str:
        if self.session_id is not None:
            return self.session_id
        # untitled: the server titles the session from this first prompt
        result = _obj(self.client.request("session/new", {"directory": os.getcwd()}))
        session_id = _str(result.get("sessionId"))
        self._use(session_id)
        self.out.note(
            f"session {session_id} (resume with: {resume_command()} --session {session_id})"
        )
        return session_id

    def one_shot(self, message: str) -> int:
        return _EXIT_CODES[self.turn(message)]

    def turn(self, text: str) -> _Outcome:
        session_id = self.ensure_session(text)
        params = {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]}
        self.renderer.begin_turn()
        try:
            with _Interrupts() as interrupts:
                future = self.client.request_async("session/prompt", params)
                result = self._wait(future, interrupts, session_id)
        except RpcError as exc:
            self.renderer.end_turn()
            self.out.note(f"error: {exc.message} (code {exc.code})")
            return _Outcome.FAILED
        except BaseException:
            self.renderer.end_turn()
            raise
        self.renderer.end_turn()
        if result is None:
            self.out.note("[quit]")
            return _Outcome.QUIT
        return self._stopped(_obj(result))

    def _wait(
        self, future: Future[Any], interrupts: _Interrupts, session_id: str
    ) -> dict[str, Any] | None:
        """The prompt's result; ``None`` after a second Ctrl-C."""
        handled = 0
        while True:
            try:
                with interrupts.waiting():
                    if interrupts.count > handled:
                        raise KeyboardInterrupt
                    return _obj(future.result())
            except KeyboardInterrupt:
                handled = max(interrupts.count, handled + 1)
                if self.terminal is not None:
                    self.terminal.cancel_questions()  # answered "cancelled"
                if handled > 1:
                    return None
                self.client.notify("session/cancel", {"sessionId": session_id})
                self.out.note("[cancelling… press Ctrl-C again to quit]")

    def _stopped(self, result: dict[str, Any]) -> _Outcome:
        reason = result.get("stopReason")
        if reason == "error":
            self.out.note(f"error: {_error_text(result.get('error'))}")
            return _Outcome.FAILED
        if reason == "cancelled":
            self.out.note("[cancelled]")
            return _Outcome.CANCELLED
        if reason == "max_tokens":
            self.out.note("[stopped: the answer reached the output limit]")
        return _Outcome.DONE

    # -- REPL -------------------------------------------------------------------------------

    def repl(self, interactive: bool) -> int:
        """Read prompts from the terminal (``interactive``: a person types; show a prompt)."""
        assert self.terminal is not None
        while True:
            if interactive:
                self.out.prompt("> ")
            line = self.terminal.readline()
            if not line:
                if interactive:
                    self.out.note("")
                return EXIT_OK
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                code = self.command(line)
                if code is not None:
                    return code
                continue
            if self.turn(line) is _Outcome.QUIT:
                return EXIT_INTERRUPTED

    def command(self, line: str) -> int | None:
        """Run a slash command; an exit code when the REPL should end."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        try:
            if name in ("/quit", "/exit"):
                return EXIT_OK
            if name == "/compact":
                self._compact(rest)
            elif name == "/context":
                self._context()
            elif name == "/sessions":
                self._sessions()
            elif name == "/new":
                self._use(None)
                self.out.note("[a new session starts with your next message]")
            elif name == "/help":
                self.out.line(HELP)
            else:
                self.out.note(f"unknown command {name} (try /help)")
        except RpcError as exc:
            self.out.note(f"error: {exc.message} (code {exc.code})")
        return None

    def _compact(self, instructions: str) -> None:
        if self.session_id is None:
            self.out.note("no session yet: send a message first")
            return
        params: dict[str, Any] = {"sessionId": self.session_id}
        if instructions:
            params["instructions"] = instructions
        self.renderer.quiet_compaction_results = True
        try:
            result = self.client.request("session/compact", params)
        finally:
            self.renderer.quiet_compaction_results = False
        self.out.line(_Compacted.parse(result).describe())

    def _context(self) -> None:
        if self.session_id is None:
            self.out.note("no session yet: send a message first")
            return
        result = _obj(self.client.request("session/context", {"sessionId": self.session_id}))
        self.out.line(
            f"context: ~{result.get('tokens')} tokens; usable {result.get('usable')} "
            f"(context limit {result.get('contextLimit')}, "
            f"output limit {result.get('outputLimit')})"
        )
        if result.get("markerId"):
            summary = result.get("summaryMessageId") or "none"
            self.out.line(f"since compaction {result.get('markerId')} (summary {summary})")
        for entry in result.get("messages") or []:
            message = _obj(entry)
            preview = _preview(message.get("parts") or [])
            role = _str(message.get("role"))
            self.out.line(f"  {role:<9} {message.get('tokens', 0):>7}  {preview}")

    def _sessions(self) -> None:
        result = _obj(self.client.request("session/list", {"limit": LIST_LIMIT}))
        sessions = [_obj(s) for s in result.get("sessions") or []]
        if not sessions:
            self.out.line("no sessions")
        for info in sessions:
            sid = _str(info.get("id"))
            mark = "*" if sid == self.session_id else " "
            updated = _obj(info.get("time")).get("updated")
            when = (
                datetime.fromtimestamp(updated / 1000).strftime("%Y-%m-%d %H:%M")
                if isinstance(updated, int | float)
                else "?"
            )
            self.out.line(f"{mark} {sid}  {when}  {_str(info.get('title'))}")


# -- helpers ----------------------------------------------------------------------------------


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _error_text(error: Any) -> str:
    if isinstance(error, str):
        return error
    error = _obj(error)
    name = _str(error.get("name"))
    message = _str(error.get("message")) or "unknown error"
    return f"{name}: {message}" if name else message


LAUNCHER_ENV = "SESSIONLSP_CHAT_COMMAND"  # set by ./dev, whose venv is not on PATH


def resume_command() -> str:
    """The command that starts this chat again from where the person is: ``./dev chat`` sets
    :data:`LAUNCHER_ENV`; else ``sessionlsp chat`` when that name on PATH is this program, else
    this program's path (a venv's script that is not on PATH)."""
    launcher = os.environ.get(LAUNCHER_ENV, "").strip()
    if launcher:
        return launcher
    me = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.basename(me) != "sessionlsp":
        return "sessionlsp chat"  # run some other way (python -m, tests): the usual name
    found = shutil.which("sessionlsp")
    on_path = found is not None and os.path.realpath(found) == me
    return "sessionlsp chat" if on_path else f"{me} chat"


def _preview(parts: list[Any]) -> str:
    pieces: list[str] = []
    for entry in parts:
        part = _obj(entry)
        kind = part.get("type")
        if kind in ("text", "reasoning"):
            pieces.append(_str(part.get("text")))
        elif kind == "tool":
            pieces.append(f"[tool {_str(part.get('tool'))}]")
        elif kind in ("file", "compaction"):
            pieces.append(f"[{kind}]")
    text = " ".join(" ".join(pieces).split())
    return text[:PREVIEW_CHARS]
