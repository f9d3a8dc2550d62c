"""Identifiers that sort by creation time.

An id is ``<prefix>_<12 hex: ms since epoch><4 hex: counter><8 hex: random>``. Within one
process ids are strictly increasing (the counter breaks ties inside a millisecond and the clock
is never allowed to go backwards); across processes the random tail keeps them unique. Where
order across processes matters (messages of one session), the store passes the newest existing
id to :func:`new_id` so a new id always sorts after it, whichever process wrote that one.
"""

from __future__ import annotations

import secrets
import threading
import time

_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, counter) of the newest id made in this process
_COUNTER_MAX = 0xFFFF


def _stamp(after: tuple[int, int]) -> tuple[int, int]:
    global _last
    with _lock:
        now = time.time_ns() // 1_000_000
        floor = max(_last, after)
        if now > floor[0]:
            stamp = (now, 0)
        elif floor[1] < _COUNTER_MAX:
            stamp = (floor[0], floor[1] + 1)
        else:
            stamp = (floor[0] + 1, 0)
        _last = stamp
        return stamp


def parse(id_: str) -> tuple[int, int]:
    """The (milliseconds, counter) an id was made at."""
    body = id_.split("_", 1)[1]
    return int(body[:12], 16), int(body[12:16], 16)


def new_id(prefix: str, after: str | None = None) -> str:
    """A new id that sorts after every id this process made, and after ``after``."""
    ms, counter = _stamp(parse(after) if after else (0, 0))
    return f"{prefix}_{ms:012x}{counter:04x}{secrets.token_hex(4)}"


def time_of(id_: str) -> int:
    """Milliseconds since the epoch at which ``id_`` was made."""
    return parse(id_)[0]
