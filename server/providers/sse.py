"""Server-sent events (``text/event-stream``) as chat providers stream them, and the text in them.

:class:`SSEParser` splits the bytes of a stream into the data of each event, whatever the line
endings and however the reads cut them, and tolerates servers that leave out the blank line
between events. :func:`well_formed` and :class:`TextPieces` deal with the other thing streamed
JSON text can carry: halves of a surrogate pair, sometimes split between two events.
"""

from __future__ import annotations

import json
import re


class SSEParser:
    """Splits a server-sent event stream into the data of each event."""

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        buf = self._buf + chunk
        tail = b""
        if buf.endswith(b"\r"):  # maybe half of a CRLF: wait for the next read
            buf, tail = buf[:-1], b"\r"
        buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = buf.split(b"\n")
        self._buf = rest + tail
        events: list[str] = []
        for line in lines:
            self._line(line.decode("utf-8", "replace"), events)
        return events

    def finish(self) -> list[str]:
        events: list[str] = []
        rest, self._buf = self._buf.rstrip(b"\r"), b""
        if rest:
            self._line(rest.decode("utf-8", "replace"), events)
        self._dispatch(events)
        return events

    def _line(self, line: str, events: list[str]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):  # comment / keep-alive
            return
        name, _, value = line.partition(":")
        if name != "data":  # event:, id:, retry: carry nothing we use
            return
        value = value.removeprefix(" ")
        if self._data and _complete("\n".join(self._data)):
            # Some servers omit the blank line between events.
            self._dispatch(events)
        self._data.append(value)

    def _dispatch(self, events: list[str]) -> None:
        if self._data:
            events.append("\n".join(self._data))
            self._data = []


def _complete(data: str) -> bool:
    if data.strip() == "[DONE]":
        return True
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """``text`` with each surrogate pair joined into the character it encodes and any lone
    surrogate replaced by U+FFFD. ``json.loads`` turns an escaped half (``"\\ud83d"``) into a
    lone surrogate, which no UTF-8 store or wire can carry."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class TextPieces:
    """Text that arrives in pieces, passed on as well-formed text. Some servers escape a
    character beyond the BMP as two surrogate halves and split it between two chunks: a high
    surrogate ending one piece waits for the next, and one that never gets its pair ends as
    U+FFFD."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        piece = self._held + piece
        self._held = ""
        if piece and "\ud800" <= piece[-1] <= "\udbff":
            piece, self._held = piece[:-1], piece[-1]
        return well_formed(piece)

    def end(self) -> str:
        held, self._held = self._held, ""
        return well_formed(held)
