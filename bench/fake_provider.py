"""The one fake provider every benchmark shares, in a process of its own, and its remote control.

The fake is fakeprovider/openai_server.py (loopback, OpenAI Chat Completions, streaming). It runs
apart from the benchmark's client so that the fake's JSON encoding and the client's frame parsing
do not take turns on one interpreter lock, which would make every process look slower than it
is. Both systems under test talk to the same fake:

* a chat request whose last user message contains ``bench-long N`` is answered with
  :func:`long_text` (N characters); any other chat request with a short sentence ending in
  :data:`ANSWER_END`; every answer is streamed ``chunk_chars`` characters an SSE event;
* each request is classified by its first system message (:func:`kind_of`): a **summary**
  request starts with sessionlsp's summarizer prompt or with opencode's compaction agent prompt,
  a **title** request with opencode's title generator prompt, anything else is a **chat**
  request;
* latency (a pause before each chunk) and the reported token counts are settable while it runs,
  and one-off steps (a reply with given usage, a summary that stalls) can be queued.

``python -m bench.fake_provider`` prints ``{"base_url": ...}`` on its first line of stdout, then
answers one JSON command per stdin line with one JSON line (see :class:`FakeProvider`), until
stdin closes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from fakeprovider.openai_server import (
    DEFAULT_SUMMARY,
    SUMMARY_PREFIX,
    FakeOpenAI,
    Reply,
    Stall,
    _content_text,
    _last_user_text,
)

ROOT = Path(__file__).resolve().parent.parent
LONG_PREFIX = "bench-long "
ANSWER_END = "(end of answer)"
# The first words of each system's summarizer prompt, as sent to the provider.
OPENCODE_SUMMARY_PREFIX = "You are a context summarization agent"
OPENCODE_TITLE_PREFIX = "You are a title generator"
SUMMARY_PREFIXES = (SUMMARY_PREFIX, OPENCODE_SUMMARY_PREFIX)
CLASSIFY_RULE = (
    "a request is a summary request when its first system message starts with "
    f'"{SUMMARY_PREFIX}" (sessionlsp\'s summarizer) or "{OPENCODE_SUMMARY_PREFIX}" (opencode\'s '
    f'compaction agent, which also sends no tools); a title request when it starts with "'
    f'{OPENCODE_TITLE_PREFIX}" (opencode names each new session with one model call); '
    "anything else is a chat request"
)

Kind = Literal["chat", "summary", "title"]
_LONG = re.compile(re.escape(LONG_PREFIX) + r"(\d+)")


def long_text(chars: int) -> str:
    """``chars`` characters of numbered words with a line break every 16 words."""
    words: list[str] = []
    size = 0
    i = 0
    while size < chars:
        word = f"word{i}" + ("\n" if i % 16 == 15 else " ")
        words.append(word)
        size += len(word)
        i += 1
    return "".join(words)[:chars]


def _first_system_text(body: dict[str, Any]) -> str:
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "system":
            return _content_text(message.get("content"))
    return ""


def kind_of(body: dict[str, Any]) -> Kind:
    """The request's kind by :data:`CLASSIFY_RULE`."""
    system = _first_system_text(body)
    if system.startswith(SUMMARY_PREFIXES):
        return "summary"
    if system.startswith(OPENCODE_TITLE_PREFIX):
        return "title"
    return "chat"


def reply(body: dict[str, Any]) -> str:
    """The answer to a chat or title request."""
    text = _last_user_text(body)
    long = _LONG.search(text)
    if long and kind_of(body) == "chat":
        return long_text(int(long.group(1)))
    return f"Instant answer: {' '.join(text.split())[:40]} {ANSWER_END}"


# --- the process -------------------------------------------------------------------------------


class _Control:
    """Runs the commands that arrive on stdin against the fake."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.chat_prompt_tokens: int | None = None  # None: estimated from the request

    def usage(self, body: dict[str, Any], answer: str) -> tuple[int, int]:
        completion = max(1, -(-len(answer) // 4))
        if kind_of(body) == "chat" and self.chat_prompt_tokens is not None:
            return self.chat_prompt_tokens, completion
        return max(1, len(json.dumps(body.get("messages", []))) // 4), completion

    def run(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        fake = self.fake
        if op == "mark":
            return {"mark": len(fake.requests)}
        if op == "requests":
            since = int(command.get("since", 0))
            # Requests first: a request arriving in between makes ``served`` longer, never
            # shorter, than the requests read.
            requests = fake.requests[since:]
            served = fake.served
            return {
                "requests": [
                    {
                        "kind": kind_of(r.body),
                        "at": r.at,
                        "answered": served[since + i][1],
                        "messages": len(r.messages),
                        "tools": len(r.body.get("tools") or []),
                    }
                    for i, r in enumerate(requests)
                ]
            }
        if op == "set":
            if "delay_ms" in command:
                fake.delay_s = float(command["delay_ms"]) / 1000
            if "chat_prompt_tokens" in command:
                value = command["chat_prompt_tokens"]
                self.chat_prompt_tokens = None if value is None else int(value)
            return {}
        if op == "push":
            when = str(command["when"])

            def predicate(body: dict[str, Any]) -> bool:
                return when == "any" or kind_of(body) == when

            if command["step"] == "stall":
                step: Reply | Stall = Stall(
                    after_chunks=int(command["after_chunks"]),
                    text=str(command.get("text", DEFAULT_SUMMARY)),
                )
            else:
                step = Reply(
                    text=str(command["text"]),
                    prompt_tokens=command.get("prompt_tokens"),
                    delay_s=(float(command["delay_ms"]) / 1000 if "delay_ms" in command else None),
                )
            fake.push(step, predicate)
            return {}
        if op == "clear":
            fake.clear()
            return {}
        if op == "wait_stalls":
            return {"ok": fake.wait_for_stalls(int(command["n"]), float(command["timeout"]))}
        if op == "wait_requests":
            return {"ok": self._wait_requests(command)}
        if op == "stats":
            return {"stalls": fake.stalls, "disconnects": fake.disconnects}
        raise ValueError(f"unknown op {op!r}")

    def _wait_requests(self, command: dict[str, Any]) -> bool:
        """Until ``n`` requests of ``kind`` arrived since ``since`` (and, with ``answered``,
        were answered), or ``timeout`` seconds passed."""
        since, n, kind = int(command["since"]), int(command["n"]), command.get("kind")
        answered = bool(command.get("answered"))
        deadline = time.monotonic() + float(command["timeout"])

        def enough() -> bool:
            served = self.fake.served
            count = 0
            for i, r in enumerate(self.fake.requests[since:]):
                done = not answered or served[since + i][1] is not None
                if done and (kind is None or kind_of(r.body) == kind):
                    count += 1
            return count >= n

        with self.fake._cond:  # the fake notifies on every request and every answer
            while not enough():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.fake._cond.wait(left)
        return True


def main() -> None:
    chunk_chars = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    fake = FakeOpenAI(
        chunk_chars=chunk_chars, delay_s=0, reply=reply, summary_prefixes=SUMMARY_PREFIXES
    )
    control = _Control(fake)
    fake.usage = control.usage
    with fake:
        print(json.dumps({"base_url": fake.base_url}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                answer = control.run(json.loads(line))
            except Exception as exc:  # reported to the bench, which raises it
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)


# --- the remote control ------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request the fake received."""

    kind: Kind
    at: float  # time.monotonic() when it arrived (the clock is shared by processes on Linux)
    answered: float | None  # when its answer was written, None while it is being answered
    messages: int  # messages in the request
    tools: int  # tool definitions in the request

    @property
    def served_s(self) -> float:
        """Seconds the fake spent answering it (0 while unanswered)."""
        return (self.answered - self.at) if self.answered is not None else 0.0


class FakeProvider:
    """Starts ``python -m bench.fake_provider`` and sends it commands, one at a time."""

    def __init__(self, chunk_chars: int = 4) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.fake_provider", str(chunk_chars)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        self._lock = threading.Lock()
        first = self._stdout.readline()
        try:
            self.base_url: str = json.loads(first)["base_url"]
        except (ValueError, KeyError) as exc:
            self.close()
            raise RuntimeError(f"the fake provider did not start: {first!r}") from exc

    @property
    def _stdout(self) -> IO[str]:
        assert self._process.stdout is not None
        return self._process.stdout

    def _call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self._process.stdin is not None
        with self._lock:
            self._process.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self._process.stdin.flush()
            line = self._stdout.readline()
        if not line:
            raise RuntimeError("the fake provider exited")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"the fake provider failed {op}: {answer['error']}")
        return answer

    def mark(self) -> int:
        """The number of requests so far: pass it as ``since`` to count what comes after."""
        return int(self._call("mark")["mark"])

    def requests(self, since: int = 0) -> list[Request]:
        return [Request(**r) for r in self._call("requests", since=since)["requests"]]

    def count(self, kind: Kind, since: int = 0) -> int:
        return sum(1 for r in self.requests(since) if r.kind == kind)

    def set_latency(self, delay_ms: float) -> None:
        """Pause ``delay_ms`` before each chunk of every answer from now on."""
        self._call("set", delay_ms=delay_ms)

    def set_chat_prompt_tokens(self, tokens: int | None) -> None:
        """Report ``tokens`` prompt tokens for every chat request from now on (None: the
        request's characters / 4, the default)."""
        self._call("set", chat_prompt_tokens=tokens)

    def push_reply(
        self, when: Kind, text: str, prompt_tokens: int | None = None, delay_ms: float = 0
    ) -> None:
        """Answer the next ``when`` request with ``text``, reporting ``prompt_tokens``."""
        self._call(
            "push",
            step="reply",
            when=when,
            text=text,
            prompt_tokens=prompt_tokens,
            delay_ms=delay_ms,
        )

    def push_stall(self, when: Kind, after_chunks: int, text: str = DEFAULT_SUMMARY) -> None:
        """The next ``when`` request gets ``after_chunks`` chunks of ``text``, then silence until
        the client goes away."""
        self._call("push", step="stall", when=when, after_chunks=after_chunks, text=text)

    def clear(self) -> None:
        self._call("clear")

    def stalls(self) -> int:
        return int(self._call("stats")["stalls"])

    def wait_stalls(self, n: int, timeout: float) -> bool:
        return bool(self._call("wait_stalls", n=n, timeout=timeout)["ok"])

    def wait_requests(
        self, since: int, n: int, kind: Kind | None, timeout: float, answered: bool = False
    ) -> bool:
        return bool(
            self._call(
                "wait_requests", since=since, n=n, kind=kind, timeout=timeout, answered=answered
            )["ok"]
        )

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> FakeProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    main()
