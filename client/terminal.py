"""The chat's input: one reader of its stdin, shared by the prompt and permission questions.

A server → client ``session/requestPermission`` arrives on the RPC reader thread while the
chat's main thread waits for the turn; the question is answered from the chat's input, and it
can also be settled elsewhere (another editor answered, the turn was cancelled) while the
person has not typed anything yet. If the question read its answer with its own ``readline``,
that read would stay pending after the question went away and swallow the next prompt line.

So :class:`Terminal` owns the only reader of the stream, a thread that reads a line only when
someone waits for one (a scripted stdin is not read ahead of the conversation) and routes it:
to the oldest open question first, otherwise to :meth:`Terminal.readline` (the prompt). A line
read for a question that was settled elsewhere meanwhile is kept for the next prompt read. End
of input cancels every open question (and any asked later).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

logger = logging.getLogger(__name__)

CANCELLED: dict[str, Any] = {"outcome": {"outcome": "cancelled"}}
CHOICES = (("o", "once", "[o]nce"), ("a", "always", "[a]lways"), ("r", "reject", "[r]eject"))
ANSWERED = {"once": "[allowed once]", "always": "[allowed always]", "reject": "[rejected]"}
INPUT_PREVIEW_CHARS = 400
_TICK_S = 0.2  # how often a waiting prompt read wakes (so Ctrl-C is seen promptly)
_GREEN, _RED, _CYAN, _BOLD, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[36m", "\x1b[1m", "\x1b[0m"


class Notes(Protocol):
    """Where questions are shown (the chat's stderr)."""

    color: bool

    def note(self, text: str) -> None: ...

    def prompt(self, text: str) -> None: ...


@dataclass
class Question:
    """One open ``session/requestPermission``."""

    permission_id: str
    tool: str
    title: str
    tool_input: Any
    diff: str | None
    options: tuple[str, ...]  # the optionIds offered, of once / always / reject
    future: Future[dict[str, Any]] = field(default_factory=Future)

    @staticmethod
    def parse(params: Any) -> Question:
        params = params if isinstance(params, dict) else {}
        call = params.get("toolCall") if isinstance(params.get("toolCall"), dict) else {}
        assert isinstance(call, dict)
        offered = {o.get("optionId") for o in params.get("options") or [] if isinstance(o, dict)}
        diff = call.get("diff")
        return Question(
            permission_id=str(params.get("permissionId") or ""),
            tool=str(call.get("tool") or "tool"),
            title=str(call.get("title") or ""),
            tool_input=call.get("input"),
            diff=diff if isinstance(diff, str) and diff else None,
            options=tuple(option for _, option, _ in CHOICES if option in offered),
        )

    def prompt_text(self) -> str:
        return " / ".join(label for _, option, label in CHOICES if option in self.options) + "? "

    def choice(self, line: str) -> str | None:
        """The optionId ``line`` picks (``o``, ``once``, …), if it is offered."""
        word = line.strip().lower()
        for key, option, _ in CHOICES:
            if word in (key, option) and option in self.options:
                return option
        return None

    def describe(self, color: bool) -> list[str]:
        """The lines showing what would run: tool and title, then the diff or the command."""
        head = f"[permission] {self.tool}{': ' + self.title if self.title else ''}"
        lines = [f"{_BOLD}{head}{_RESET}" if color else head]
        tool_input = self.tool_input if isinstance(self.tool_input, dict) else {}
        if self.diff is not None:
            lines.extend(_diff_line(line, color) for line in self.diff.splitlines())
        elif self.tool == "bash" and isinstance(tool_input.get("command"), str):
            lines.extend("$ " + line for line in str(tool_input["command"]).splitlines() or [""])
        elif self.tool_input not in (None, {}):
            text = json.dumps(self.tool_input, ensure_ascii=False)
            if len(text) > INPUT_PREVIEW_CHARS:
                text = text[: INPUT_PREVIEW_CHARS - 1] + "…"
            lines.append(text)
        return lines


def _diff_line(line: str, color: bool) -> str:
    if not color:
        return line
    if line.startswith(("+++", "---")):
        return _BOLD + line + _RESET
    if line.startswith("+"):
        return _GREEN + line + _RESET
    if line.startswith("-"):
        return _RED + line + _RESET
    if line.startswith("@@"):
        return _CYAN + line + _RESET
    return line


class Terminal:
    """The one reader of the chat's input; see the module docstring."""

    def __init__(self, stream: TextIO, notes: Notes, interactive: bool) -> None:
        """``interactive``: a person types (prompts end the line without a newline)."""
        self._stream = stream
        self._notes = notes
        self._interactive = interactive
        self._cond = threading.Condition()
        self._lines: collections.deque[str] = collections.deque()
        self._questions: list[Question] = []
        self._readers = 0
        self._eof = False
        self._closed = False
        self._prompt_open = False  # a question's prompt is on screen without its newline
        self._thread = threading.Thread(target=self._loop, name="chat-input", daemon=True)
        self._thread.start()

    # -- the prompt ------------------------------------------------------------------------

    def readline(self) -> str:
        """The next line for the prompt; ``""`` at the end of input."""
        with self._cond:
            self._readers += 1
            self._cond.notify_all()
            try:
                while not self._lines and not self._eof and not self._closed:
                    self._cond.wait(_TICK_S)
                return self._lines.popleft() if self._lines else ""
            finally:
                self._readers -= 1

    # -- questions -------------------------------------------------------------------------

    def ask(self, question: Question) -> Future[dict[str, Any]]:
        """Show ``question`` (or queue it behind an open one); resolves to the answer."""
        with self._cond:
            if self._eof or self._closed or not question.options:
                question.future.set_result(CANCELLED)
                return question.future
            self._questions.append(question)
            if len(self._questions) == 1:
                self._show(question)
            self._cond.notify_all()
        return question.future

    def settled(self, permission_id: str, data: dict[str, Any]) -> None:
        """``permission.replied`` arrived: dismiss the question if it is still open here."""
        with self._cond:
            question = next((q for q in self._questions if q.permission_id == permission_id), None)
            if question is None:
                return
            by = data.get("by")
            outcome = data.get("outcome") if isinstance(data.get("outcome"), dict) else {}
            assert isinstance(outcome, dict)
            if by == "cancel":
                text = "[question cancelled]"
            elif by == "interrupted":
                text = "[question interrupted]"
            elif outcome.get("outcome") == "selected":
                text = f"[answered elsewhere: {outcome.get('optionId')}]"
            else:
                text = "[answered elsewhere: cancelled]"
            self._settle(question, CANCELLED, text)  # the server ignores this late answer

    def cancel_questions(self) -> bool:
        """Answer every open question ``cancelled`` (Ctrl-C); whether there was one."""
        with self._cond:
            had = bool(self._questions)
            for question in list(self._questions):
                self._settle(question, CANCELLED, "[question cancelled]")
            return had

    def close(self) -> None:
        """Stop reading (the thread ends unless it is inside a read); cancel open questions."""
        with self._cond:
            self._closed = True
            for question in list(self._questions):
                self._settle(question, CANCELLED, None)
            self._cond.notify_all()

    # -- internals (under self._cond) --------------------------------------------------------

    def _show(self, question: Question) -> None:
        for line in question.describe(self._notes.color):
            self._notes.note(line)
        self._prompt(question)

    def _prompt(self, question: Question) -> None:
        if self._interactive:
            self._notes.prompt(question.prompt_text())
            self._prompt_open = True
        else:
            self._notes.note(question.prompt_text().rstrip())

    def _settle(self, question: Question, answer: dict[str, Any], text: str | None) -> None:
        head = bool(self._questions) and self._questions[0] is question
        self._questions.remove(question)
        if text is not None:
            if head and self._prompt_open:
                self._notes.note("")
            self._notes.note(text)
        if head:
            self._prompt_open = False
        if not question.future.done():
            question.future.set_result(answer)
        if head and self._questions and not (self._closed or self._eof):
            self._show(self._questions[0])

    def _wanted(self) -> bool:
        return bool(self._questions) or (self._readers > 0 and not self._lines)

    def _route(self, line: str) -> None:
        self._prompt_open = False
        if not self._questions:
            self._lines.append(line)  # for the prompt (also: its question went away meanwhile)
            return
        question = self._questions[0]
        option = question.choice(line)
        if option is None:
            keys = ", ".join(f"{k} ({o})" for k, o, _ in CHOICES if o in question.options)
            self._notes.note(f"answer {keys}")
            self._prompt(question)
            return
        answer = {"outcome": {"outcome": "selected", "optionId": option}}
        self._settle(question, answer, ANSWERED[option])

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._wanted():
                    self._cond.wait()
                if self._closed:
                    return
            try:
                line = self._stream.readline()
            except (OSError, ValueError) as exc:
                logger.debug("reading the chat's input failed: %s", exc)
                line = ""
            with self._cond:
                if line:
                    self._route(line)
                else:
                    self._eof = True
                    for question in list(self._questions):
                        self._settle(question, CANCELLED, "[no answer: end of input]")
                self._cond.notify_all()
            if not line:
                return
