"""Two ``sessionlsp serve`` processes on one database file, and a server killed mid-summary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from fakeprovider.openai_server import FakeOpenAI, Reply, Stall
from tests.lsp_support import Session, env_for, prompt_params, start, write_config

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    # Summaries stream slowly (40 chunks, 20 ms apart) so that concurrent requests overlap
    # with a running compaction and a crash can land in the middle of one.
    with FakeOpenAI(chunk_chars=8, delay_s=0.02, prompt_tokens=50, completion_tokens=10) as f:
        yield f


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    settings = {"provider": "openai", "model": "fake-model", "contextLimit": 10000}
    return write_config(tmp_path / "config.toml", settings)


@pytest_asyncio.fixture
async def servers(
    tmp_path: Path, config_file: Path, fake: FakeOpenAI
) -> AsyncIterator[tuple[Session, Session]]:
    """Two servers on one database file, as two editors would run them."""
    db = tmp_path / "shared.db"
    a = await start(db, config=config_file, env=env_for(fake))
    b = await start(db, config=config_file, env=env_for(fake))
    yield a, b
    await a.close()
    await b.close()


async def test_changes_made_by_one_server_are_pushed_by_the_other(
    servers: tuple[Session, Session], fake: FakeOpenAI
) -> None:
    a, b = servers
    sid = (await a.request("session/new", {"title": "shared"}))["sessionId"]
    loaded = await b.request("session/load", {"sessionId": sid})
    result = await a.request("session/prompt", prompt_params(sid, "written by A"))
    reply_id = result["messageId"]

    def b_has_reply() -> bool:
        return any(
            p["type"] == "message.updated"
            and p["data"]["id"] == reply_id
            and p["data"].get("finish") == "stop"
            for p in b.collected.syncs(sid)
        )

    await b.wait_until(b_has_reply)
    seen_by_b = [p["seq"] for p in b.collected.syncs(sid)]
    outbox = await b.request("session/events", {"after": loaded["seq"], "sessionId": sid})
    expected = [e["seq"] for e in outbox["events"]]
    assert seen_by_b == expected  # every event, in order, no gaps, no duplicates
    texts = [
        p["data"]["text"]
        for p in b.collected.syncs(sid, "message.part.updated")
        if p["data"]["type"] == "text"
    ]
    assert "written by A" in texts


async def test_twenty_concurrent_compacts_across_two_servers_make_one_marker_and_one_summary(
    servers: tuple[Session, Session], fake: FakeOpenAI
) -> None:
    a, b = servers
    sid = (await a.request("session/new", {"title": "race"}))["sessionId"]
    for i in range(3):
        await a.request("session/prompt", prompt_params(sid, f"turn {i}"))
    calls = [
        (a if i % 2 == 0 else b).request("session/compact", {"sessionId": sid}) for i in range(20)
    ]
    results = await asyncio.gather(*calls)

    assert {r["markerId"] for r in results} == {results[0]["markerId"]}
    assert sum(1 for r in results if r["created"]) == 1
    assert {r["status"] for r in results} == {"completed"}
    assert {r["summaryMessageId"] for r in results} == {results[0]["summaryMessageId"]}
    assert fake.summary_requests == 1
    messages = (await b.request("session/load", {"sessionId": sid}))["messages"]
    assert sum(1 for m in messages if m["info"]["kind"] == "marker") == 1
    assert sum(1 for m in messages if m["info"].get("summary")) == 1


async def crash_mid_summary(
    db: Path, config_file: Path, fake: FakeOpenAI, prompts: tuple[str, ...]
) -> str:
    """A session with ``prompts`` answered, whose server then dies while its summary streams."""
    doomed = await start(
        db, config=config_file, env=env_for(fake, SESSIONLSP_CRASH_AT="mid_summary")
    )
    sid = str((await doomed.request("session/new", {"title": "crash"}))["sessionId"])
    for text in prompts:
        await doomed.request("session/prompt", prompt_params(sid, text))
    compact = asyncio.create_task(doomed.request("session/compact", {"sessionId": sid}))
    server_process = doomed.client._server
    assert server_process is not None
    await asyncio.wait_for(server_process.wait(), 30)  # it killed itself mid-summary
    assert server_process.returncode == -9
    compact.cancel()
    await doomed.kill()
    return sid


async def test_a_server_killed_mid_summary_is_finished_by_a_fresh_one(
    tmp_path: Path, config_file: Path, fake: FakeOpenAI
) -> None:
    db = tmp_path / "shared.db"
    prompts = ("remember src/app.py", "and the failing test")
    sid = await crash_mid_summary(db, config_file, fake, prompts)
    assert fake.summary_requests == 1

    fresh = await start(db, config=config_file, env=env_for(fake))
    try:
        loaded = await fresh.request("session/load", {"sessionId": sid})
        interrupted = [
            m for m in loaded["messages"] if m["info"].get("summary") and m["info"].get("error")
        ]
        assert [m["info"]["error"]["name"] for m in interrupted] == ["Interrupted"]
        marker_id = interrupted[0]["info"]["parentId"]

        result = await fresh.request("session/compact", {"sessionId": sid})
        assert result["markerId"] == marker_id  # the interrupted compaction, not a new one
        assert result["created"] is False
        assert result["status"] == "completed"
        assert fake.summary_requests == 2

        answer = await fresh.request("session/prompt", prompt_params(sid, "carry on"))
        assert answer["stopReason"] == "end_turn"
        messages = (await fresh.request("session/load", {"sessionId": sid}))["messages"]
        assert sum(1 for m in messages if m["info"]["kind"] == "marker") == 1
        good = [m for m in messages if m["info"].get("summary") and not m["info"].get("error")]
        assert [m["info"]["id"] for m in good] == [result["summaryMessageId"]]
    finally:
        await fresh.close()


async def test_a_prompt_after_a_crash_finishes_the_compaction_before_answering(
    tmp_path: Path, config_file: Path, fake: FakeOpenAI
) -> None:
    db = tmp_path / "shared.db"
    sid = await crash_mid_summary(db, config_file, fake, ("some work",))

    fresh = await start(db, config=config_file, env=env_for(fake))
    try:
        answer = await fresh.request("session/prompt", prompt_params(sid, "next"))
        assert answer["stopReason"] == "end_turn"
        updates = [p["data"] for p in fresh.collected.syncs(sid, "compaction.updated")]
        assert updates[-1]["status"] == "completed"
        messages = (await fresh.request("session/load", {"sessionId": sid}))["messages"]
        kinds = [m["info"]["kind"] for m in messages]
        assert kinds.count("marker") == 1
        # the interrupted attempt, the finished summary, then the new turn:
        assert kinds[-5:] == ["marker", "summary", "summary", "prompt", "reply"]
    finally:
        await fresh.close()


async def test_a_streaming_answer_reaches_the_other_server_as_appended_text(
    servers: tuple[Session, Session], fake: FakeOpenAI
) -> None:
    a, b = servers
    sid = (await a.request("session/new", {"title": "stream"}))["sessionId"]
    await b.request("session/load", {"sessionId": sid})
    text = "".join(f"word{i} " for i in range(120))  # 75 chunks, 20 ms apart: ~1.5 s
    fake.push(Reply(text), when="chat")
    result = await a.request("session/prompt", prompt_params(sid, "stream it"))
    reply_id = result["messageId"]

    def finished() -> bool:
        return any(
            p["type"] == "message.updated"
            and p["data"]["id"] == reply_id
            and p["data"].get("finish")
            for p in b.collected.syncs(sid)
        )

    await b.wait_until(finished)
    seen = ""
    appends = 0
    carried = 0  # characters of the answer carried by all these events together
    for p in b.collected.syncs(sid):
        data = p["data"]
        if data.get("messageId") != reply_id or data.get("type") != "text":
            continue
        if p["type"] == "message.part.delta":
            assert data["offset"] == len(seen)  # each carries only what is new
            seen += data["delta"]
            carried += len(data["delta"])
            appends += 1
        elif p["type"] == "message.part.updated":
            assert data["text"].startswith(seen)
            seen = data["text"]
            carried += len(data["text"])
    assert appends >= 2  # written while it streamed, not only at the end
    assert seen == text
    assert carried <= 2 * len(text)  # linear in the answer, not quadratic


async def test_cancel_sent_to_one_server_stops_the_turn_another_server_runs(
    servers: tuple[Session, Session], fake: FakeOpenAI
) -> None:
    a, b = servers
    sid = (await a.request("session/new", {"title": "two editors"}))["sessionId"]
    await b.request("session/load", {"sessionId": sid})
    fake.push(Stall(after_chunks=2, text="a long answer that stalls"), when="chat")
    turn = asyncio.create_task(a.request("session/prompt", prompt_params(sid, "go")))
    await a.wait_until(lambda: len(a.collected.of("session/delta")) >= 2)

    assert await b.request("session/cancel", {"sessionId": sid}) == {"cancelled": 0}
    result = await asyncio.wait_for(turn, 20)  # A stops: B's request reached it
    assert result["stopReason"] == "cancelled"
    assert await asyncio.to_thread(fake.wait_for_disconnects, 1, 10)
    again = await a.request("session/prompt", prompt_params(sid, "after the cancel"))
    assert again["stopReason"] == "end_turn"  # later prompts are not cancelled
