"""A process killed anywhere in a compaction leaves nothing that a fresh process cannot finish.

A worker process runs an automatic compaction with ``SESSIONLSP_CRASH_AT=<point>`` and SIGKILLs
itself there. A second, fresh worker then recovers the session, either with ``recover()`` (as a
server does at start-up) or by asking for the compaction again (as a client retrying does). The
same marker must end completed, with one good summary, the right tail, one continuation and no
second model call once the summary had been written.

The session is built so that the tail is a split turn. Limits are 16 000 / 4 000 tokens, so the
usable window is 16 000 - min(20 000, 4 000) = 12 000 and the tail budget is
clamp(25% of 12 000, 2 000, 8 000) = 3 000 tokens. Message sizes are multiples of 4 characters,
so tokens = characters / 4 exactly. The last two user turns, newest first: reply 4 (1 500),
prompt 4 (100), reply 3 (1 000) - 2 600 so far - then prompt 3 (500) would make 3 100 > 3 000.
So the tail starts at reply 3.
"""

from __future__ import annotations

import math
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import CONTINUATION_TEXT, CompactionEngine
from server.context import build_context
from server.crashpoints import ENV, POINTS
from store import RunnerId, Store
from store.ids import new_id
from store.leases import HOST
from store.models import CompactionPart, Message, TextPart, ToolPart, ToolState
from tests.procs.compact_worker import (
    clean_env,
    expect_line,
    finish,
    parse_outcome,
    send,
    spawned,
    worker_settings,
)
from tests.support import add_prompt, add_turn, new_session

pytestmark = pytest.mark.slow

# (prompt characters, reply characters) of each turn, oldest first.
TURNS = ((400, 4_000), (400, 4_000), (2_000, 4_000), (400, 6_000))

# Points where the summary attempt was cut short: the fresh process must write a new one.
INTERRUPTED_ATTEMPT = ("after_summary_row", "mid_summary")
# Model calls the fresh process may make: none once the summary was finished.
RECOVERY_MODEL_CALLS = {
    "after_marker": 1,
    "after_summary_row": 1,
    "mid_summary": 1,
    "after_summary": 0,
    "after_bookkeeping": 0,
}


def test_every_crash_point_is_covered() -> None:
    assert set(RECOVERY_MODEL_CALLS) == set(POINTS)


def text(tag: str, chars: int) -> str:
    """Exactly ``chars`` characters."""
    return (f"{tag} " * (chars // len(tag) + 1))[:chars]


def build_session(store: Store) -> tuple[str, list[tuple[Message, Message]]]:
    session_id = new_session(store)
    turns = [
        add_turn(store, session_id, text(f"prompt{i}", p), text(f"reply{i}", r))
        for i, (p, r) in enumerate(TURNS, start=1)
    ]
    return session_id, turns


def expected_tail_start(store: Store, session_id: str, marker_id: str) -> str | None:
    """The documented rule, computed from the stored messages without the engine's code."""
    max_output = min(4_000, 32_000)
    usable = 16_000 - min(20_000, max_output)
    budget = max(2_000, min(8_000, usable * 25 // 100))
    with store.read() as tx:
        history = [
            m
            for m in tx.history(session_id)
            if m.info.id < marker_id and m.info.kind in ("prompt", "reply")
        ]
    users = [i for i, m in enumerate(history) if m.info.role == "user"]
    first = users[-2]
    total, start = 0, None
    for i in range(len(history) - 1, first - 1, -1):
        texts = [p.body.text for p in history[i].parts if isinstance(p.body, TextPart)]
        total += sum(math.ceil(len(t) / 4) for t in texts)
        if total > budget:
            break
        start = history[i].info.id
    return start


def marker_part(store: Store, marker_id: str) -> CompactionPart:
    with store.read() as tx:
        bodies = [p.body for p in tx.parts_of(marker_id)]
    assert len(bodies) == 1
    body = bodies[0]
    assert isinstance(body, CompactionPart)
    return body


def stored_text(store: Store, message_id: str) -> str:
    with store.read() as tx:
        return "".join(p.body.text for p in tx.parts_of(message_id) if isinstance(p.body, TextPart))


def only_marker(store: Store, session_id: str) -> str:
    with store.read() as tx:
        markers = [m for m in tx.messages(session_id) if m.kind == "marker"]
        rows = tx.compactions(session_id)
    assert len(markers) == 1
    assert [r.marker_id for r in rows] == [markers[0].id]
    return markers[0].id


def assert_state_at_crash(
    store: Store, session_id: str, marker_id: str, point: str, crashed_pid: int, tail: str | None
) -> None:
    """What the killed process left behind: proof that it died exactly at ``point``."""
    with store.read() as tx:
        c = tx.require_compaction(marker_id)
        attempts = tx.summaries_of(marker_id)
        lease = tx.get_lease(session_id)
        continuation = tx.continuation_of(marker_id)
    assert c.auto
    assert continuation is None
    if point == "after_marker":
        assert c.status == "pending"
        assert attempts == []
        assert lease is None  # the marker is requested without the lease
        return
    assert c.status == "running"
    assert c.tail_plan == tail  # planned when the attempt started
    assert lease is not None and lease.pid == crashed_pid  # left by a process that is gone
    assert len(attempts) == 1
    attempt = attempts[0]
    assert attempt.parent_id == marker_id
    if point in INTERRUPTED_ATTEMPT:
        assert attempt.finish is None and attempt.error is None
        assert c.summary_id is None
        written = stored_text(store, attempt.id)
        if point == "after_summary_row":
            assert written == ""
        else:
            assert written  # some streamed text was durable before the kill
            assert ScriptedSummarizer().text.startswith(written)
        return
    assert attempt.succeeded
    assert c.summary_id == attempt.id
    assert c.tail_set == (point == "after_bookkeeping")
    assert marker_part(store, marker_id).tail_start_id == (
        tail if point == "after_bookkeeping" else None
    )


@pytest.mark.parametrize("recovery", ["recover", "compact_again"])
@pytest.mark.parametrize("point", POINTS)
def test_killed_automatic_compaction_is_completed_once_by_a_fresh_process(
    tmp_path: Path, point: str, recovery: str
) -> None:
    db = tmp_path / "sessions.db"
    store = Store(db)
    try:
        session_id, turns = build_session(store)

        # 1. The first process dies at the crash point.
        with spawned(db, session_id, "compact", "--auto", env=clean_env(**{ENV: point})) as proc:
            crashed_pid = proc.pid
            rc, out, err = finish(proc)
        assert rc == -signal.SIGKILL, err
        assert out == ""  # it never got to report an outcome
        marker_id = only_marker(store, session_id)
        tail = expected_tail_start(store, session_id, marker_id)
        assert tail == turns[2][1].id  # reply 3, as worked out in the module docstring
        assert_state_at_crash(store, session_id, marker_id, point, crashed_pid, tail)

        # 2. A fresh process (no crash point) finishes the job.
        action = ("recover",) if recovery == "recover" else ("compact", "--auto")
        with spawned(db, session_id, *action) as proc:
            rc, out, err = finish(proc)
        assert rc == 0, err
        outcome: dict[str, Any] = parse_outcome(out)
        assert outcome["marker_id"] == marker_id
        assert outcome["status"] == "completed"
        assert outcome["error"] is None
        assert outcome["created"] is False
        assert outcome["model_calls"] == RECOVERY_MODEL_CALLS[point]
        assert outcome["summarizer_calls"] == RECOVERY_MODEL_CALLS[point]
        if recovery == "recover":
            # recover() alone finishes a marker whose summary is done; otherwise it reopens it.
            done = RECOVERY_MODEL_CALLS[point] == 0
            assert outcome["recovered_status"] == ("completed" if done else "pending")

        # 3. The same marker, completed exactly once.
        assert only_marker(store, session_id) == marker_id
        with store.read() as tx:
            c = tx.require_compaction(marker_id)
            attempts = tx.summaries_of(marker_id)
            session_summaries = [m for m in tx.messages(session_id) if m.kind == "summary"]
            continuations = [m for m in tx.messages(session_id) if m.kind == "continuation"]
            lease = tx.get_lease(session_id)
        assert c.status == "completed"
        assert c.error is None
        assert c.tail_set
        assert [m.id for m in session_summaries] == [m.id for m in attempts]
        good = [m for m in attempts if m.succeeded]
        assert len(good) == 1
        summary = good[0]
        assert summary.parent_id == marker_id
        assert c.summary_id == summary.id
        assert outcome["summary_message_id"] == summary.id
        assert stored_text(store, summary.id) == ScriptedSummarizer().text

        # 4. An attempt cut short is kept and closed as interrupted, not deleted.
        earlier = [m for m in attempts if not m.succeeded]
        if point in INTERRUPTED_ATTEMPT:
            assert len(earlier) == 1
            dead = earlier[0]
            assert dead.id < summary.id
            assert dead.parent_id == marker_id
            assert dead.error is not None and dead.error.name == "Interrupted"
            assert dead.finish is None
            assert dead.time_completed is not None
            assert c.attempts == 2
            if point == "mid_summary":
                assert stored_text(store, dead.id)  # the partial text is still there
        else:
            assert earlier == []
            assert c.attempts == 1

        # 5. The tail boundary, one continuation, and the model's context with the recent turns.
        part = marker_part(store, marker_id)
        assert part.auto
        assert part.tail_start_id == tail
        assert len(continuations) == 1
        continuation = continuations[0]
        assert continuation.compaction_id == marker_id
        assert stored_text(store, continuation.id) == CONTINUATION_TEXT
        context = build_context(store, session_id)
        prompt4, reply4 = turns[3]
        assert [m.message_id for m in context.messages] == [
            marker_id,
            summary.id,
            turns[2][1].id,
            prompt4.id,
            reply4.id,
            continuation.id,
        ]
        assert lease is None

        # 6. Not stuck: the next prompt can be compacted again.
        add_prompt(store, session_id, "And now the next step, please.")
        summarizer = ScriptedSummarizer()
        engine = CompactionEngine(store, summarizer, worker_settings())
        again = engine.compact(session_id)
        assert again.created
        assert again.status == "completed", again.error
        assert again.marker_id != marker_id
        assert summarizer.calls == 1
        with store.read() as tx:
            assert tx.get_lease(session_id) is None
    finally:
        store.close()


def test_live_runners_unfinished_summary_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    store = Store(db)
    try:
        session_id, _ = build_session(store)
        with spawned(db, session_id, "compact", "--hold-before-chunk", "1") as proc:
            # The worker streamed its first chunk (stored at once: flush interval 0) and waits.
            expect_line(proc, "holding")
            marker_id = only_marker(store, session_id)
            with store.read() as tx:
                c = tx.require_compaction(marker_id)
                attempts = tx.summaries_of(marker_id)
                lease = tx.get_lease(session_id)
            assert c.status == "running"
            assert len(attempts) == 1
            attempt = attempts[0]
            assert attempt.finish is None and attempt.error is None
            partial = stored_text(store, attempt.id)
            assert partial
            assert lease is not None and lease.pid == proc.pid

            summarizer = ScriptedSummarizer()
            other = CompactionEngine(store, summarizer, worker_settings())
            assert other.runner.owner != lease.owner

            waited = other.run(session_id, marker_id, timeout=0.2)
            assert waited.marker_id == marker_id
            assert waited.status == "running"
            assert waited.summary_message_id is None
            assert waited.model_calls == 0
            assert other.recover(session_id) is None

            with store.read() as tx:
                untouched = tx.require_message(attempt.id)
                c = tx.require_compaction(marker_id)
                still = tx.get_lease(session_id)
            assert untouched.finish is None and untouched.error is None
            assert untouched.time_completed is None
            assert stored_text(store, attempt.id) == partial
            assert c.status == "running" and c.attempts == 1
            assert still is not None and still.owner == lease.owner
            assert summarizer.calls == 0

            send(proc, "go")
            rc, out, err = finish(proc)
        assert rc == 0, err
        outcome = parse_outcome(out)
        assert outcome["marker_id"] == marker_id
        assert outcome["created"] is True
        assert outcome["status"] == "completed"
        assert outcome["model_calls"] == 1

        with store.read() as tx:
            c = tx.require_compaction(marker_id)
            attempts = tx.summaries_of(marker_id)
            lease_after = tx.get_lease(session_id)
        assert c.status == "completed"
        assert [m.id for m in attempts] == [attempt.id]  # finished in place, never replaced
        assert attempts[0].succeeded
        assert attempts[0].parent_id == marker_id
        assert c.summary_id == attempt.id
        assert stored_text(store, attempt.id) == ScriptedSummarizer().text
        assert lease_after is None

        done = other.run(session_id, marker_id)
        assert done.status == "completed"
        assert done.summary_message_id == attempt.id
        assert done.model_calls == 0
        assert summarizer.calls == 0
    finally:
        store.close()


# --- tool calls left open under a finished message ------------------------------------------


def reply_with_open_tools(store: Store, session_id: str) -> tuple[Message, list[str]]:
    """A reply that finished asking for tools, whose tools were left pending and running, as
    a turn that failed (or a process that died) while running them leaves it."""
    prompt = add_prompt(store, session_id, "look around")
    with store.write() as tx:
        reply = tx.add_message(session_id, "reply", parent_id=prompt.id, runner=new_id("run"))
        running = tx.put_part(
            reply.id,
            ToolPart("call_1", "list_files", ToolState("running", {}, time_start=tx.now())),
        )
        pending = tx.put_part(
            reply.id, ToolPart("call_2", "grep", ToolState("pending", {"pattern": "x"}))
        )
        done = tx.put_part(
            reply.id, ToolPart("call_0", "read_file", ToolState("completed", {}, output="ok"))
        )
        reply = tx.update_message(replace(reply, finish="tool_calls", time_completed=tx.now()))
    return reply, [running.id, pending.id, done.id]


def test_recovery_closes_tool_calls_left_running_under_a_finished_message(tmp_path: Path) -> None:
    store = Store(tmp_path / "sessions.db")
    try:
        session_id = new_session(store)
        reply, (running, pending, done) = reply_with_open_tools(store, session_id)
        with store.read() as tx:
            assert session_id in tx.sessions_to_recover()
            before = tx.last_seq()

        engine = CompactionEngine(store, ScriptedSummarizer(), worker_settings())
        assert engine.recover(session_id) is None  # no compaction to report

        with store.read() as tx:
            parts = {p.id: p.body for p in tx.parts_of(reply.id)}
            after = tx.require_message(reply.id)
            events = tx.events_after(before, session_id)
            assert tx.sessions_to_recover() == []
            assert tx.get_lease(session_id) is None
        for part_id in (running, pending):
            body = parts[part_id]
            assert isinstance(body, ToolPart)
            assert body.state.status == "error"
            assert body.state.error == "interrupted"
            assert body.state.time_end is not None
        kept = parts[done]
        assert isinstance(kept, ToolPart) and kept.state.status == "completed"
        assert after == reply  # the message itself had finished: it is left as it was
        updated = [e.data["id"] for e in events if e.type == "message.part.updated"]
        assert sorted(updated) == sorted([running, pending])
    finally:
        store.close()


def test_recovery_leaves_the_running_tools_of_a_live_runner_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "sessions.db")
    try:
        session_id = new_session(store)
        _, (running, _, _) = reply_with_open_tools(store, session_id)
        live = RunnerId(owner=new_id("run"), host=HOST, pid=os.getpid())
        with store.write() as tx:
            assert tx.acquire_lease(session_id, live)
        engine = CompactionEngine(store, ScriptedSummarizer(), worker_settings())
        assert engine.recover(session_id) is None
        with store.read() as tx:
            part = tx.get_part(running)
        assert part is not None and isinstance(part.body, ToolPart)
        assert part.body.state.status == "running"
    finally:
        store.close()
