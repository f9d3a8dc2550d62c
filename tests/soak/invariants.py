"""What must hold in the database after a soak run, read straight from the file.

Each check returns the violations it found as sentences (an empty list when all is well).
``recovery_counts`` measures what killed servers left behind and others finished.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import apsw


@contextmanager
def read_only(db: Path) -> Iterator[apsw.Connection]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(30_000)
    try:
        yield conn
    finally:
        conn.close()


def integrity(db: Path) -> list[str]:
    with read_only(db) as conn:
        result = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    return [] if result == ["ok"] else [f"PRAGMA integrity_check: {result[:5]}"]


def user_messages_stored(db: Path, ids: Mapping[str, str], how: str) -> list[str]:
    """Every user message id a client was given (``ids``: message id -> session id) is a
    stored prompt of that session."""
    with read_only(db) as conn:
        stored = {
            r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, session_id, kind FROM message")
        }
    problems = []
    for message_id, session_id in sorted(ids.items()):
        row = stored.get(message_id)
        if row is None:
            problems.append(f"user message {message_id} ({how}) is not stored")
        elif row != (session_id, "prompt"):
            problems.append(f"user message {message_id} ({how}) is stored as {row}")
    return problems


def one_finished_summary_per_marker(db: Path) -> list[str]:
    """A marker has at most one summary that finished without error, and a completed
    compaction points at exactly that one."""
    problems = []
    with read_only(db) as conn:
        for marker, n in conn.execute(
            "SELECT compaction_id, COUNT(*) FROM message WHERE kind = 'summary'"
            " AND finish IS NOT NULL AND error IS NULL GROUP BY compaction_id HAVING COUNT(*) > 1"
        ):
            problems.append(f"marker {marker} has {n} finished summaries")
        for marker, summary, good in conn.execute(
            "SELECT c.marker_id, c.summary_id, m.id FROM compaction c LEFT JOIN message m"
            " ON m.id = c.summary_id AND m.compaction_id = c.marker_id AND m.kind = 'summary'"
            " AND m.finish IS NOT NULL AND m.error IS NULL WHERE c.status = 'completed'"
        ):
            if good is None:
                problems.append(f"completed compaction {marker} has no finished summary {summary}")
    return problems


def nothing_left_unfinished(db: Path) -> list[str]:
    """After every session answered a last prompt and the servers shut down: no assistant
    message still open, no compaction pending or running, no lease held."""
    problems = []
    with read_only(db) as conn:
        for (n,) in conn.execute(
            "SELECT COUNT(*) FROM message WHERE kind IN ('reply', 'summary')"
            " AND finish IS NULL AND error IS NULL"
        ):
            if n:
                problems.append(f"{n} assistant messages were never finished or closed")
        for marker, status in conn.execute(
            "SELECT marker_id, status FROM compaction WHERE status IN ('pending', 'running')"
        ):
            problems.append(f"compaction {marker} is still {status}")
        for session, owner in conn.execute("SELECT session_id, owner FROM lease"):
            problems.append(f"session {session} is still leased by {owner}")
    return problems


@dataclass(frozen=True)
class RecoveryCounts:
    interrupted_replies: int  # replies a killed server left open, closed as Interrupted
    interrupted_summaries: int  # summary attempts likewise
    compactions_finished_after_a_crash: int  # markers with an interrupted attempt, completed
    compactions: dict[str, int]  # "auto completed", "manual failed", ... -> how many
    sessions: int
    messages: int
    events: int


def recovery_counts(db: Path) -> RecoveryCounts:
    with read_only(db) as conn:

        def one(sql: str) -> int:
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row is not None and row[0] is not None else 0

        interrupted = "json_extract(error, '$.name') = 'Interrupted'"
        statuses = {
            f"{'auto' if a else 'manual'} {s}": int(n)
            for a, s, n in conn.execute(
                "SELECT auto, status, COUNT(*) FROM compaction GROUP BY auto, status"
            )
        }
        return RecoveryCounts(
            interrupted_replies=one(
                f"SELECT COUNT(*) FROM message WHERE kind = 'reply' AND {interrupted}"
            ),
            interrupted_summaries=one(
                f"SELECT COUNT(*) FROM message WHERE kind = 'summary' AND {interrupted}"
            ),
            compactions_finished_after_a_crash=one(
                "SELECT COUNT(DISTINCT c.marker_id) FROM compaction c JOIN message m"
                " ON m.compaction_id = c.marker_id AND m.kind = 'summary'"
                " AND json_extract(m.error, '$.name') = 'Interrupted'"
                " WHERE c.status = 'completed'"
            ),
            compactions=statuses,
            sessions=one("SELECT COUNT(*) FROM session"),
            messages=one("SELECT COUNT(*) FROM message"),
            events=one("SELECT COUNT(*) FROM event"),
        )


_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ ([A-Z]+) (.*)$")


def logged_errors(logs: Iterable[Path]) -> list[str]:
    """Records at ERROR or CRITICAL in the servers' log files: each is a bug (a failure the
    server could only log), reported once per distinct text. Logs without a single record in
    the expected shape are reported too: then this check could find nothing."""
    seen: dict[str, str] = {}
    records = 0
    for path in logs:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            found = _LOG_RECORD.match(line)
            if found is None:
                continue
            records += 1
            if found.group(1) in ("ERROR", "CRITICAL"):
                text = re.sub(r"0x[0-9a-f]+|ses_[0-9a-f]+|msg_[0-9a-f]+", "…", found.group(2))
                seen.setdefault(text, path.name)
    problems = [f"{name} logged: {text[:300]}" for text, name in seen.items()]
    if not records:
        problems.append("the servers' logs hold no record at all: the log check proves nothing")
    return problems


def outbox_seqs(db: Path) -> dict[str, list[int]]:
    """Every session's event seqs, ascending."""
    out: dict[str, list[int]] = {}
    with read_only(db) as conn:
        for seq, session in conn.execute("SELECT seq, session_id FROM event ORDER BY seq"):
            out.setdefault(str(session), []).append(int(seq))
    return out


__all__ = [
    "RecoveryCounts",
    "integrity",
    "logged_errors",
    "nothing_left_unfinished",
    "one_finished_summary_per_marker",
    "outbox_seqs",
    "read_only",
    "recovery_counts",
    "user_messages_stored",
]
