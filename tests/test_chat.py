"""``sessionlsp chat`` against the scripted fake sidecar (tests/procs/fake_sidecar.py)."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from client.chat import build_parser, run_chat

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
    assert new["params"] == {"title": "hello", "directory": os.getcwd()}
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


@pytest.mark.parametrize("code", [-32001, -31001])
def test_an_unknown_session_exits_2_with_a_message(tmp_path: Path, code: int) -> None:
    chat = Chat(tmp_path, ("--unknown-session-code", str(code)))
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
    titles = [m["params"]["title"] for m in chat.received("session/new")]
    assert titles == ["one", "two"]


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
