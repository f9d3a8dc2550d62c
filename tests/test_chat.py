"""``sessionlsp chat`` against the scripted fake sidecar (tests/procs/fake_sidecar.py), and its
permission questions against the real server with the fake OpenAI provider."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from client.chat import build_parser, resume_command, run_chat
from client.rpc_client import RpcClient
from client.terminal import Question, Terminal
from fakeprovider.openai_server import FakeOpenAI, Reply
from tests.lsp_support import WAIT_S, env_for, write_config

FAKE = str(Path(__file__).resolve().parent / "procs" / "fake_sidecar.py")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sessionlsp")
    build_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["chat", *argv])


class Chat:
    """One run of the chat with captured streams and the fake's log of what it received."""

    def __init__(self, tmp_path: Path, fake_args: tuple[str, ...] = ()) -> None:
        self.log = tmp_path / "fake.jsonl"
        self.server_argv = [sys.executable, FAKE, "--log", str(self.log), *fake_args]
        self.stdout: io.StringIO = io.StringIO()
        self.stderr = io.StringIO()

    def run(self, *argv: str, stdin: str = "") -> int:
        return run_chat(
            parse(*argv), io.StringIO(stdin), self.stdout, self.stderr, self.server_argv
        )

    def received(self, method: str) -> list[dict[str, Any]]:
        messages = [json.loads(line) for line in self.log.read_text("utf-8").splitlines()]
        return [m for m in messages if m.get("method") == method]


def test_the_parser_takes_session_db_config_and_one_message() -> None:
    args = parse("--session", "ses_1", "--db", "x.db", "--config", "c.toml", "hi there")
    assert (args.session, args.db, args.config, args.message) == (
        "ses_1",
        "x.db",
        "c.toml",
        "hi there",
    )
    assert parse().message is None


def test_one_shot_prints_exactly_the_streamed_answer(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    assert chat.run("hello") == 0
    assert chat.stdout.getvalue() == "Echo: hello\n"
    err = chat.stderr.getvalue()
    assert "session ses_fake1 (resume with: sessionlsp chat --session ses_fake1)" in err
    (new,) = chat.received("session/new")
    assert new["params"] == {"directory": os.getcwd()}  # the server titles it from the prompt
    (prompt,) = chat.received("session/prompt")
    assert prompt["params"]["prompt"] == [{"type": "text", "text": "hello"}]
    assert chat.received("shutdown") and chat.received("exit")


def test_one_shot_notes_compaction_on_stderr_only(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    assert chat.run("please compact") == 0
    assert chat.stdout.getvalue() == "Echo: please compact\n"
    lines = chat.stderr.getvalue().splitlines()
    assert lines.count("[compacting…]") == 1
    assert lines.count("[compacted: summary msg_summary1]") == 1


def test_only_the_assistant_answer_text_reaches_stdout(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    assert chat.run("rich turn") == 0
    assert chat.stdout.getvalue() == "Part one\nPart two\n"
    assert "[tool read: a.py]" in chat.stderr.getvalue().splitlines()


def test_a_failed_turn_exits_1_with_the_error_on_stderr(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    assert chat.run("fail now") == 1
    assert chat.stdout.getvalue() == ""
    assert "error: ProviderError: boom" in chat.stderr.getvalue()


def test_resuming_a_known_session_prompts_in_it(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    assert chat.run("--session", "ses_known", "hi") == 0
    assert chat.stdout.getvalue() == "Echo: hi\n"
    assert chat.received("session/new") == []
    assert chat.received("session/prompt")[0]["params"]["sessionId"] == "ses_known"


def test_an_unknown_session_exits_2_with_a_message(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    assert chat.run("--session", "ses_nope", "hello") == 2
    assert "unknown session ses_nope" in chat.stderr.getvalue()
    assert chat.stdout.getvalue() == ""
    assert chat.received("session/prompt") == []


def test_repl_sends_lines_and_runs_compact_context_and_sessions(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    script = (
        "first line\n\n/compact keep the file names\n/context\n/sessions\nsecond\n/quit\nlost\n"
    )
    assert chat.run(stdin=script) == 0
    out = chat.stdout.getvalue().splitlines()
    assert out[0] == "Echo: first line"
    assert out[1] == "compaction msg_marker1: completed, summary msg_summary1"
    assert out[2].startswith("context: ~18 tokens; usable 12000")
    question = "What does the function parse_header do with a missing colon?"
    assert out[3].split()[:2] == ["user", "15"]
    assert out[3].endswith("  " + question[:60])
    assert out[4].split() == ["assistant", "3", "It", "raises."]
    assert out[5].startswith("* ses_fake1 ") and out[5].endswith("first line")
    assert any(line.startswith("  ses_known ") for line in out[6:8])
    assert out[-1] == "Echo: second"
    (compact,) = chat.received("session/compact")
    assert compact["params"] == {"sessionId": "ses_fake1", "instructions": "keep the file names"}
    assert len(chat.received("session/prompt")) == 2  # "lost" came after /quit
    assert "> " not in chat.stderr.getvalue()  # not a tty: no prompt


def test_repl_ends_at_eof_and_new_starts_another_session(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    assert chat.run(stdin="one\n/new\ntwo\n") == 0
    assert chat.stdout.getvalue() == "Echo: one\nEcho: two\n"
    prompts = [
        (m["params"]["sessionId"], m["params"]["prompt"][0]["text"])
        for m in chat.received("session/prompt")
    ]
    assert len(chat.received("session/new")) == 2
    assert prompts[0][1] == "one" and prompts[1][1] == "two"


def test_the_resume_hint_names_a_command_that_works_from_where_the_person_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONLSP_CHAT_COMMAND", "./dev chat")  # as ./dev sets it
    chat = Chat(tmp_path)
    assert chat.run("hello") == 0
    assert "(resume with: ./dev chat --session ses_fake1)" in chat.stderr.getvalue()
    monkeypatch.delenv("SESSIONLSP_CHAT_COMMAND")
    script = tmp_path / "venv" / "bin" / "sessionlsp"  # a venv's script, not on PATH
    script.parent.mkdir(parents=True)
    script.write_text("")
    monkeypatch.setattr(sys, "argv", [str(script), "chat"])
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))
    assert resume_command() == f"{script.resolve()} chat"
    monkeypatch.setenv("PATH", str(script.parent))
    script.chmod(0o755)
    assert resume_command() == "sessionlsp chat"


def test_repl_reports_unknown_commands_and_keeps_going(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    assert chat.run(stdin="/frobnicate\n/context\nhi\n") == 0
    err = chat.stderr.getvalue()
    assert "unknown command /frobnicate" in err
    assert "no session yet" in err
    assert chat.stdout.getvalue() == "Echo: hi\n"


def test_a_server_that_dies_at_start_is_reported_with_its_stderr(tmp_path: Path) -> None:
    chat = Chat(tmp_path, ("--exit-on-start", "5", "--stderr-on-start", "bad config: x"))
    assert chat.run("hello") == 1
    err = chat.stderr.getvalue()
    assert "sessionlsp serve exited (code 5)" in err
    assert "bad config: x" in err


class InterruptingStdout(io.StringIO):
    """Sends SIGINT to the main thread whenever a write contains a trigger word."""

    def __init__(self, triggers: tuple[str, ...]) -> None:
        super().__init__()
        self.triggers = triggers
        self.main = threading.main_thread().ident
        assert self.main is not None

    def write(self, s: str) -> int:
        written = super().write(s)
        if any(t in s for t in self.triggers):
            assert self.main is not None
            signal.pthread_kill(self.main, signal.SIGINT)
        return written


def interrupting(triggers: tuple[str, ...]) -> Callable[[Chat], None]:
    def install(chat: Chat) -> None:
        chat.stdout = InterruptingStdout(triggers)

    return install


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_ctrl_c_during_a_turn_cancels_it(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    interrupting(("Working",))(chat)
    assert chat.run("wait for it") == 130
    assert chat.stdout.getvalue() == "Working\n"
    assert chat.received("session/cancel")[0]["params"] == {"sessionId": "ses_fake1"}
    assert "[cancelled]" in chat.stderr.getvalue()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_ctrl_c_cancels_in_the_repl_and_the_session_goes_on(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    interrupting(("Working",))(chat)
    assert chat.run(stdin="wait\nafter\n") == 0
    assert chat.stdout.getvalue() == "Working\nEcho: after\n"


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_a_second_ctrl_c_quits_when_the_turn_does_not_stop(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    interrupting(("Working", "still"))(chat)
    assert chat.run(stdin="stubborn\nnever sent\n") == 130
    assert chat.stdout.getvalue() == "Working still\n"
    assert len(chat.received("session/prompt")) == 1
    assert chat.received("shutdown")


# -- permission questions ------------------------------------------------------------------


def declared_permissions(chat: Chat) -> bool:
    (init,) = chat.received("initialize")
    caps = init["params"]["capabilities"]
    return bool(caps.get("experimental", {}).get("sessionlsp", {}).get("permissions"))


def test_the_repl_declares_it_can_answer_permission_questions(tmp_path: Path) -> None:
    chat = Chat(tmp_path)
    assert chat.run(stdin="hi\n") == 0
    assert declared_permissions(chat)


@pytest.mark.parametrize("message", ["hello", "-"])
def test_a_one_shot_without_a_terminal_does_not_declare_it(tmp_path: Path, message: str) -> None:
    chat = Chat(tmp_path)
    assert chat.run(message, stdin="hello from stdin") == 0
    assert not declared_permissions(chat)


class Pipe:
    """A stdin that blocks until written to, like a person's terminal."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.reader = os.fdopen(read_fd, "r", encoding="utf-8")
        self.writer = os.fdopen(write_fd, "w", encoding="utf-8")

    def type(self, text: str) -> None:
        self.writer.write(text)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
        self.reader.close()


class Notes:
    color = False

    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(text)

    def prompt(self, text: str) -> None:
        self.lines.append(text)


QUESTION = {
    "sessionId": "ses_1",
    "permissionId": "prq_1",
    "toolCall": {
        "toolCallId": "call_1",
        "tool": "bash",
        "title": "list files",
        "input": {"command": "ls -la"},
    },
    "options": [
        {"optionId": "once", "kind": "allow_once", "name": "Allow once"},
        {"optionId": "always", "kind": "allow_always", "name": "Always allow"},
        {"optionId": "reject", "kind": "reject_once", "name": "Reject"},
    ],
}


def test_a_question_answered_elsewhere_leaves_the_next_line_to_the_prompt() -> None:
    pipe, notes = Pipe(), Notes()
    terminal = Terminal(pipe.reader, notes, interactive=True)
    try:
        answer = terminal.ask(Question.parse(QUESTION))
        assert notes.lines[:2] == ["[permission] bash: list files", "$ ls -la"]
        assert notes.lines[-1] == "[o]nce / [a]lways / [r]eject? "
        terminal.settled(
            "prq_1", {"by": "run_other", "outcome": {"outcome": "selected", "optionId": "once"}}
        )
        assert answer.result(5) == {"outcome": {"outcome": "cancelled"}}  # ignored by the server
        assert notes.lines[-1] == "[answered elsewhere: once]"
        pipe.type("o\n")  # typed after the question went away: the reader was already waiting
        assert terminal.readline() == "o\n"
        pipe.type("next prompt\n")
        assert terminal.readline() == "next prompt\n"
    finally:
        terminal.close()
        pipe.close()


def test_a_question_takes_lines_until_one_answers_it_and_eof_cancels_the_next() -> None:
    notes = Notes()
    terminal = Terminal(io.StringIO("maybe\nr\n"), notes, interactive=False)
    try:
        first = terminal.ask(Question.parse(QUESTION))
        assert first.result(5) == {"outcome": {"outcome": "selected", "optionId": "reject"}}
        assert "answer o (once), a (always), r (reject)" in notes.lines
        assert notes.lines[-1] == "[rejected]"
        second = terminal.ask(Question.parse(QUESTION | {"permissionId": "prq_2"}))
        assert second.result(5) == {"outcome": {"outcome": "cancelled"}}
        assert terminal.readline() == ""
    finally:
        terminal.close()


# -- permission questions against the real server ------------------------------------------


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunk_chars=50) as fake:
        yield fake


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The session directory (the chat's cwd), holding a.txt."""
    root = tmp_path / "work"
    root.mkdir()
    (root / "a.txt").write_bytes(b"old line\n")
    monkeypatch.chdir(root)
    return root


EDIT = json.dumps({"path": "a.txt", "oldString": "old line", "newString": "new line"})


def real_chat(
    tmp_path: Path, openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, stdin: str
) -> tuple[int, str, str]:
    """Run the chat against the real server, whose model edits a.txt then says "done"."""
    openai.push(Reply(tool_calls=[("call_1", "edit", EDIT)], finish="tool_calls"), when="chat")
    openai.push(Reply("done"), when="chat")
    config = write_config(tmp_path / "config.toml", {"provider": "openai", "model": "fake-model"})
    for name in list(os.environ):
        if name.startswith("SESSIONLSP_"):
            monkeypatch.delenv(name)
    for name, value in env_for(openai, SESSIONLSP_API_KEY="sk-test-chat").items():
        monkeypatch.setenv(name, value)
    stdout, stderr = io.StringIO(), io.StringIO()
    args = parse("--db", str(tmp_path / "sessions.db"), "--config", str(config))
    code = run_chat(args, io.StringIO(stdin), stdout, stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def tool_state(tmp_path: Path) -> dict[str, Any]:
    """The one tool part's state, read back through a fresh server."""
    argv = [sys.executable, "-m", "server.cli", "serve", "--db", str(tmp_path / "sessions.db")]
    with RpcClient.spawn(argv, stderr=subprocess.PIPE) as client:
        client.initialize(timeout=WAIT_S)
        (info,) = client.request("session/list", {}, timeout=WAIT_S)["sessions"]
        loaded = client.request("session/load", {"sessionId": info["id"]}, timeout=WAIT_S)
    (state,) = [p["state"] for m in loaded["messages"] for p in m["parts"] if p["type"] == "tool"]
    assert isinstance(state, dict)
    return state


@pytest.mark.parametrize(("answer", "shown"), [("o", "[allowed once]"), ("a", "[allowed always]")])
def test_an_allowed_edit_shows_its_diff_and_changes_the_file(
    tmp_path: Path,
    openai: FakeOpenAI,
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    shown: str,
) -> None:
    code, out, err = real_chat(tmp_path, openai, monkeypatch, f"edit a.txt\n{answer}\n")
    assert code == 0, err
    assert (work / "a.txt").read_bytes() == b"new line\n"
    assert out == "done\n"  # the question and the diff stay off stdout
    lines = err.splitlines()
    start = lines.index("[permission] edit: a.txt")
    assert lines[start + 1 : start + 6] == [
        "--- a/a.txt",
        "+++ b/a.txt",
        "@@ -1 +1 @@",
        "-old line",
        "+new line",
    ]
    assert lines[start + 6] == "[o]nce / [a]lways / [r]eject?"
    assert shown in lines
    assert "[waiting for permission…]" in lines
    assert "\x1b[" not in err  # not a terminal: no colour
    assert tool_state(tmp_path)["status"] == "completed"


def test_a_rejected_edit_leaves_the_file_untouched(
    tmp_path: Path, openai: FakeOpenAI, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = real_chat(tmp_path, openai, monkeypatch, "edit a.txt\nr\n")
    assert code == 0, err
    assert (work / "a.txt").read_bytes() == b"old line\n"
    assert out == "done\n"
    assert "[rejected]" in err.splitlines()
    state = tool_state(tmp_path)
    assert (state["status"], state["error"]) == ("error", "rejected by the user")


def test_end_of_input_at_the_question_cancels_it(
    tmp_path: Path, openai: FakeOpenAI, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = real_chat(tmp_path, openai, monkeypatch, "edit a.txt\n")
    assert code == 0, err
    assert out == "done\n"
    assert (work / "a.txt").read_bytes() == b"old line\n"
    assert "[no answer: end of input]" in err.splitlines()
    state = tool_state(tmp_path)
    assert state["status"] == "error"
    assert "cancelled" in state["error"]


class LockedText(io.StringIO):
    """A StringIO that threads can write to while a test polls it."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write(self, s: str) -> int:
        with self.lock:
            return super().write(s)

    def text(self) -> str:
        with self.lock:
            return self.getvalue()


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_question_answered_by_another_editor_is_dismissed_and_the_next_line_is_a_prompt(
    tmp_path: Path, openai: FakeOpenAI, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai.push(Reply(tool_calls=[("call_1", "edit", EDIT)], finish="tool_calls"), when="chat")
    openai.push(Reply("done"), when="chat")
    openai.push(Reply("hi back"), when="chat")
    db = tmp_path / "sessions.db"
    config = write_config(tmp_path / "config.toml", {"provider": "openai", "model": "fake-model"})
    for name in list(os.environ):
        if name.startswith("SESSIONLSP_"):
            monkeypatch.delenv(name)
    for name, value in env_for(openai, SESSIONLSP_API_KEY="sk-test-chat").items():
        monkeypatch.setenv(name, value)
    # the other editor: a server of its own on the same database, following the session
    argv = [sys.executable, "-m", "server.cli", "serve", "--db", str(db), "--config", str(config)]
    editor_answer: Future[Any] = Future()
    with RpcClient.spawn(argv, stderr=subprocess.PIPE) as editor:
        editor.on_request("session/requestPermission", lambda method, params: editor_answer)
        editor.initialize(
            capabilities={"experimental": {"sessionlsp": {"permissions": True}}}, timeout=WAIT_S
        )
        new = editor.request("session/new", {"title": "t", "directory": str(work)}, WAIT_S)
        sid = new["sessionId"]
        pipe, stdout, stderr = Pipe(), LockedText(), LockedText()
        args = parse("--db", str(db), "--config", str(config), "--session", sid)
        codes: list[int] = []
        chat = threading.Thread(
            target=lambda: codes.append(run_chat(args, pipe.reader, stdout, stderr))
        )
        chat.start()
        try:
            pipe.type("edit a.txt\n")
            wait_for(lambda: "[o]nce / [a]lways / [r]eject?" in stderr.text(), "the question")
            # the chat's input thread is now reading for the question; the editor answers first
            editor_answer.set_result({"outcome": {"outcome": "selected", "optionId": "once"}})
            wait_for(lambda: "[answered elsewhere: once]" in stderr.text(), "the dismissal")
            wait_for(lambda: stdout.text() == "done\n", "the end of the turn")
            pipe.type("hello\n")  # read by the question's pending read: it must be a prompt
            wait_for(lambda: stdout.text() == "done\nhi back\n", "the second turn")
        finally:
            pipe.writer.close()
            chat.join(WAIT_S)
            pipe.reader.close()
    assert codes == [0], stderr.text()
    assert (work / "a.txt").read_bytes() == b"new line\n"
    assert "[allowed once]" not in stderr.text()
