"""The loopback fake OpenAI server (tests/fakes/openai_server.py) in a process of its own.

bench/server.py runs it apart from the benchmark's client so that the fake's JSON encoding and
the client's frame parsing do not take turns on one interpreter lock, which would make every
process look slower than it is. A chat request whose last user message is ``bench-long N`` is
answered with :func:`long_text` (N characters); any other with a few words. Every answer is
streamed ``chunk_chars`` characters an event, without pauses.

``python -m bench.fake_provider CHUNK_CHARS`` prints the base URL on its first line of stdout
and serves until its stdin closes.
"""

from __future__ import annotations

import sys
from typing import Any

from tests.fakes.openai_server import FakeOpenAI

LONG_PREFIX = "bench-long "


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


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def reply(body: dict[str, Any]) -> str:
    text = _last_user_text(body)
    if text.startswith(LONG_PREFIX):
        return long_text(int(text.removeprefix(LONG_PREFIX).split()[0]))
    return "Instant answer: " + text[:40]


def main() -> None:
    chunk_chars = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    with FakeOpenAI(chunk_chars=chunk_chars, delay_s=0, reply=reply) as fake:
        print(fake.base_url, flush=True)
        sys.stdin.buffer.read()  # until the parent closes the pipe


if __name__ == "__main__":
    main()
