"""Reading text files for the tools: binary files refused, lines cut at MAX_LINE_CHARS
characters with memory bounded on huge lines, any line ending."""

from __future__ import annotations

import io
import stat
from collections.abc import Iterator
from typing import BinaryIO

from server.tools.base import MAX_LINE_CHARS, ToolError, quoted
from server.tools.paths import Entry

BINARY_SNIFF_BYTES = 8_192


def cut(text: str) -> tuple[str, bool]:
    if len(text) <= MAX_LINE_CHARS:
        return text, False
    extra = len(text) - MAX_LINE_CHARS
    return f"{text[:MAX_LINE_CHARS]} … [line cut: {extra} more characters]", True


def is_binary(handle: BinaryIO) -> bool:
    head = handle.read(BINARY_SNIFF_BYTES)
    handle.seek(0)
    return b"\0" in head


def text_lines(handle: BinaryIO) -> Iterator[tuple[str, int]]:
    """The lines of a UTF-8 text file (\\n, \\r\\n or \\r ended), each cut at MAX_LINE_CHARS
    characters, with how many characters were cut; memory stays bounded on huge lines."""
    text = io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline=None)
    while True:
        chunk = text.readline(MAX_LINE_CHARS + 1)
        if chunk == "":
            return
        if chunk.endswith("\n"):
            yield chunk[:-1], 0
            continue
        if len(chunk) <= MAX_LINE_CHARS:
            yield chunk, 0  # the last line, without a newline
            continue
        extra = len(chunk) - MAX_LINE_CHARS
        while True:
            rest = text.readline(65_536)
            if rest.endswith("\n"):
                extra += len(rest) - 1
                break
            extra += len(rest)
            if rest == "":
                break
        yield chunk[:MAX_LINE_CHARS], extra


def open_text(entry: Entry, given: str) -> BinaryIO:
    if entry.is_dir:
        raise ToolError(f"{quoted(given)} is a directory; use list_files to see what it holds")
    try:
        mode = entry.real.stat().st_mode
        if not stat.S_ISREG(mode):
            raise ToolError(f"{quoted(given)} is not a regular file")
        handle = entry.real.open("rb")
    except OSError as e:
        raise ToolError(f"cannot read {quoted(given)}: {e.strerror}") from None
    if is_binary(handle):
        handle.close()
        raise ToolError(f"{quoted(given)} is a binary file; these tools read text files only")
    return handle
