"""End to end with the ``openai`` provider: the real server as a subprocess, pointed at the
loopback fake OpenAI server (fakeprovider/openai_server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException

import tests.support
from fakeprovider.openai_server import FakeOpenAI, HttpError, Raw, Reply, Stall
from server.errors import PROVIDER_ERROR, PROVIDER_NOT_CONFIGURED
from store import Store
from tests.lsp_support import (
    Session,
    env_for,
    history,
    new_session,
    prompt_params,
    start,
    text_of,
    write_config,
)

pytestmark = pytest.mark.asyncio

API_KEY = "sk-test-0123456789abcdef-never-stored"
CONTEXT = 10_000
OUTPUT = 1_000  # usable window: 10 000 - 1 000 = 9 000 tokens


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunk_chars=6, prompt_tokens=50, completion_tokens=10) as f:
        yield f


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.toml", {"provider": "openai", "model": "fake-model"})


def openai_env(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    """The fake's URL, the API key and this module's model limits, plus ``extra``."""
    limits = {"SESSIONLSP_CONTEXT_LIMIT": str(CONTEXT), "SESSIONLSP_OUTPUT_LIMIT": str(OUTPUT)}
    return env_for(fake, SESSIONLSP_API_KEY=API_KEY, **limits, **extra)


@pytest_asyncio.fixture
async def server(tmp_path: Path, config_file: Path, fake: FakeOpenAI) -> AsyncIterator[Session]:
    s = await start(tmp_path / "sessions.db", config=config_file, env=openai_env(fake))
    yield s
    await s.close()


async def test_answer_streams_from_the_provider_with_its_usage(
    server: Session, fake: FakeOpenAI, tmp_path: Path
) -> None:
    fake.push(Reply("Hello from the fake model", prompt_tokens=123, completion_tokens=7))
    sid = await new_session(server)
    result = await server.request("session/prompt", prompt_params(sid, "hi"))
    assert result["stopReason"] == "end_turn"
    reply = (await history(server, sid))[-1]
    assert text_of(reply) == "Hello from the fake model"
    assert reply["info"]["tokens"]["input"] == 123
    assert reply["info"]["tokens"]["output"] == 7
    sent = fake.last_request
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body["messages"][-1] == {"role": "user", "content": "hi"}
    await server.close()
    for f in tmp_path.glob("sessions.db*"):
        assert API_KEY.encode() not in f.read_bytes()


async def test_reasoning_is_stored_before_the_answer_it_leads_to(
    server: Session, fake: FakeOpenAI
) -> None:
    fake.push(Reply("The answer.", reasoning="First I think it over."))
    sid = await new_session(server)
    assert (await server.request("session/prompt", prompt_params(sid, "why?")))[
        "stopReason"
    ] == "end_turn"

    reply = (await history(server, sid))[-1]
    kinds = [p["type"] for p in reply["parts"] if p["type"] in ("reasoning", "text")]
    assert kinds == ["reasoning", "text"]  # clients render parts in this (id) order
    assert [p["id"] for p in reply["parts"]] == sorted(p["id"] for p in reply["parts"])


async def test_automatic_compaction_is_reached_through_reported_usage(
    server: Session, fake: FakeOpenAI
) -> None:
    sid = await new_session(server)
    await server.request("session/prompt", prompt_params(sid, "first, small"))
    fake.push(Reply("a long answer", prompt_tokens=9_500, completion_tokens=20), when="chat")
    result = await server.request(
        "session/prompt", prompt_params(sid, "second, reaches the window")
    )
    assert result["stopReason"] == "end_turn"
    assert fake.summary_requests == 1

    updates = [p["data"] for p in server.collected.syncs(sid, "compaction.updated")]
    assert updates[-1]["status"] == "completed"
    assert updates[-1]["auto"] is True
    messages = await history(server, sid)
    kinds = [m["info"]["kind"] for m in messages]
    assert kinds[-3:] == ["marker", "summary", "continuation"]

    context = await server.request("session/context", {"sessionId": sid})
    assert context["markerId"] == updates[-1]["markerId"]
    assert context["tokens"] < context["usable"]

    await server.request("session/prompt", prompt_params(sid, "third"))
    sent = fake.last_request.body["messages"]
    assert any("Carry on with the work" in str(m.get("content")) for m in sent)  # the summary
    assert fake.summary_requests == 1  # no second compaction


async def test_overflow_compaction_replays_the_prompt_that_was_too_long(
    server: Session, fake: FakeOpenAI
) -> None:
    sid = await new_session(server)
    await server.request("session/prompt", prompt_params(sid, "some history first"))
    overflow = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "code": "context_length_exceeded",
        }
    }
    fake.push(HttpError(400, body=overflow), when="chat")
    result = await server.request("session/prompt", prompt_params(sid, "the long request"))
    assert result["stopReason"] == "end_turn"
    assert fake.summary_requests == 1

    messages = await history(server, sid)
    failed = [m for m in messages if m["info"].get("error", {}).get("name") == "ContextOverflow"]
    assert len(failed) == 1
    markers = [m for m in messages if m["info"]["kind"] == "marker"]
    assert markers[0]["parts"][0]["overflow"] is True
    replay = [m for m in messages if m["info"]["kind"] == "replay"]
    assert len(replay) == 1 and text_of(replay[0]) == "the long request"
    last_sent = fake.last_request.body["messages"]
    assert last_sent[-1] == {"role": "user", "content": "the long request"}
    assert sum(1 for m in last_sent if m.get("content") == "the long request") == 1


async def test_cancel_while_streaming_stops_the_turn_and_keeps_what_streamed(
    server: Session, fake: FakeOpenAI
) -> None:
    sid = await new_session(server)
    fake.push(Stall(after_chunks=3, text="partial answer that never ends"), when="chat")
    turn = asyncio.create_task(server.request("session/prompt", prompt_params(sid, "go")))
    await server.wait_until(lambda: len(server.collected.of("session/delta")) >= 3)
    server.notify("session/cancel", {"sessionId": sid})
    result = await asyncio.wait_for(turn, 20)
    assert result["stopReason"] == "cancelled"
    assert await asyncio.to_thread(fake.wait_for_disconnects, 1, 10)

    reply = (await history(server, sid))[-1]
    assert reply["info"]["error"]["name"] == "Cancelled"
    streamed = "".join(d["delta"] for d in server.collected.of("session/delta"))
    assert text_of(reply) == streamed and streamed.startswith("partial")
    # the session is usable afterwards
    assert (await server.request("session/prompt", prompt_params(sid, "again")))[
        "stopReason"
    ] == "end_turn"


async def test_cancel_during_compaction_fails_it_and_leaves_history_intact(
    server: Session, fake: FakeOpenAI
) -> None:
    sid = await new_session(server)
    await server.request("session/prompt", prompt_params(sid, "one"))
    await server.request("session/prompt", prompt_params(sid, "two"))
    before = await history(server, sid)
    fake.push(Stall(after_chunks=1, text="## Objective\n"), when="summary")
    compact = asyncio.create_task(server.request("session/compact", {"sessionId": sid}))
    assert await asyncio.to_thread(fake.wait_for_requests, fake.chat_requests + 1, 10)
    await server.request("session/cancel", {"sessionId": sid})
    result = await asyncio.wait_for(compact, 20)
    assert result["status"] == "failed"
    assert result["error"]["code"] == "cancelled"
    after = await history(server, sid)
    assert after[: len(before)] == before
    assert (await server.request("session/prompt", prompt_params(sid, "three")))[
        "stopReason"
    ] == "end_turn"


async def test_provider_error_ends_the_turn_with_a_stable_code(
    server: Session, fake: FakeOpenAI
) -> None:
    fake.push(HttpError(401, body={"error": {"message": "bad key"}}, echo_auth=True), when="chat")
    sid = await new_session(server)
    result = await server.request("session/prompt", prompt_params(sid, "hi"))
    assert result["stopReason"] == "error"
    error = result["error"]
    assert error["code"] == PROVIDER_ERROR
    assert error["status"] == 401 and error["retryable"] is False
    assert API_KEY not in str(result)
    assert API_KEY not in str(server.collected.items)
    reply = (await history(server, sid))[-1]
    assert reply["info"]["error"]["name"] == "ProviderError"


async def test_rate_limit_retry_is_announced_then_answered(
    server: Session, fake: FakeOpenAI
) -> None:
    fake.push(HttpError(429, headers={"Retry-After": "0"}), when="chat")
    sid = await new_session(server)
    result = await server.request("session/prompt", prompt_params(sid, "hi"))
    assert result["stopReason"] == "end_turn"
    retries = [s for s in server.collected.of("session/status") if s["status"] == "retry"]
    assert retries and retries[0]["attempt"] == 1 and "nextRetryAt" in retries[0]


async def test_tool_calls_run_in_the_session_directory_and_feed_the_next_step(
    server: Session, fake: FakeOpenAI, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("the answer is 42\n")
    fake.push(
        Reply(tool_calls=[("call_1", "read_file", '{"path": "notes.txt"}')], finish="tool_calls"),
        when="chat",
    )
    fake.push(Reply("It says 42."), when="chat")
    sid = await new_session(server, directory=str(work))
    result = await server.request("session/prompt", prompt_params(sid, "what do the notes say?"))
    assert result["stopReason"] == "end_turn"

    messages = await history(server, sid)
    tools = [p for m in messages for p in m["parts"] if p["type"] == "tool"]
    assert len(tools) == 1
    assert tools[0]["state"]["status"] == "completed"
    assert "the answer is 42" in tools[0]["state"]["output"]
    sent = fake.last_request.body
    # This client does not answer permission questions and the default rules ask before edits
    # and commands: the model is told only of the tools that can run
    # (test_permission_gate.py::test_the_model_is_told_only_of_the_tools_it_could_use).
    assert [t["function"]["name"] for t in sent["tools"]] == ["read_file", "list_files", "grep"]
    tool_messages = [m for m in sent["messages"] if m["role"] == "tool"]
    assert tool_messages[0]["tool_call_id"] == "call_1"
    assert "the answer is 42" in tool_messages[0]["content"]


async def test_a_typed_tool_directive_makes_the_fake_call_that_tool_then_end_the_turn(
    server: Session, fake: FakeOpenAI, tmp_path: Path
) -> None:
    # Real-editor tests script tool calls this way (``--directives``): a person types the call.
    fake.directives = True
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("the answer is 42\n")
    sid = await new_session(server, directory=str(work))
    prompt = '/tool read_file {"path": "notes.txt"}'
    result = await server.request("session/prompt", prompt_params(sid, prompt))
    assert result["stopReason"] == "end_turn"
    messages = await history(server, sid)
    [tool] = [p for m in messages for p in m["parts"] if p["type"] == "tool"]
    assert (tool["tool"], tool["state"]["status"]) == ("read_file", "completed")
    assert text_of(messages[-1]) == "Done: 1| the answer is 42"
    again = await server.request("session/prompt", prompt_params(sid, "plain words"))
    assert again["stopReason"] == "end_turn"
    assert text_of((await history(server, sid))[-1]) == "Echo: plain words"


async def test_list_files_and_grep_over_a_file_name_that_is_not_utf8_end_the_turn_normally(
    server: Session, fake: FakeOpenAI, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    latin1 = os.path.join(os.fsencode(work), b"caf\xe9.txt")  # not UTF-8, as old archives hold
    fd = os.open(latin1, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"the answer is 42\n")
    os.close(fd)
    fake.push(Reply(tool_calls=[("call_1", "list_files", "{}")]), when="chat")
    fake.push(Reply(tool_calls=[("call_2", "grep", '{"pattern": "answer"}')]), when="chat")
    fake.push(Reply("There is one file."), when="chat")
    sid = await new_session(server, directory=str(work))
    result = await server.request("session/prompt", prompt_params(sid, "what is here?"))
    assert result["stopReason"] == "end_turn"
    assert result["messageId"] and result["userMessageId"]

    messages = await history(server, sid)
    tools = {p["callId"]: p["state"] for m in messages for p in m["parts"] if p["type"] == "tool"}
    assert tools["call_1"]["status"] == "completed"
    assert tools["call_1"]["output"] == "caf\\xe9.txt"
    assert tools["call_2"]["status"] == "completed"
    assert tools["call_2"]["output"] == "caf\\xe9.txt:1: the answer is 42"
    sent = [m["content"] for m in fake.last_request.body["messages"] if m["role"] == "tool"]
    assert sent == ["caf\\xe9.txt", "caf\\xe9.txt:1: the answer is 42"]


def sse_text(*pieces: str) -> Raw:
    """A stream whose text arrives as ``pieces``, one SSE event (and HTTP chunk) each, JSON
    ASCII-escaped: a lone surrogate travels as ``\\udXXX``, as some servers send it."""
    events = [
        f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': p}}]})}\n\n"
        for p in pieces
    ]
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    return Raw([*events, f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n"])


async def streamed_text(server: Session, message_id: str, expected: str) -> str:
    """The reply's text as ``session/delta``s told it, once they add up to ``expected``."""

    def text() -> str:
        deltas = server.collected.of("session/delta")
        return "".join(d["delta"] for d in deltas if d["messageId"] == message_id)

    with contextlib.suppress(TimeoutError):
        await server.wait_until(lambda: text() == expected, timeout=5)
    return text()


async def test_an_emoji_sent_as_surrogate_halves_in_two_chunks_is_stored_and_streamed_whole(
    server: Session, fake: FakeOpenAI
) -> None:
    fake.push(sse_text("\ud83d", "\ude00 done"), when="chat")
    sid = await new_session(server)
    result = await server.request("session/prompt", prompt_params(sid, "smile"))
    assert result["stopReason"] == "end_turn"

    reply = (await history(server, sid))[-1]
    assert text_of(reply) == "\U0001f600 done"
    assert reply["info"]["finish"] == "stop" and "error" not in reply["info"]
    assert await streamed_text(server, reply["info"]["id"], "\U0001f600 done") == text_of(reply)


async def test_a_surrogate_half_left_at_the_end_of_the_stream_ends_as_a_replacement_character(
    server: Session, fake: FakeOpenAI
) -> None:
    fake.push(sse_text("almost ", "\ud83d"), when="chat")
    sid = await new_session(server)
    result = await server.request("session/prompt", prompt_params(sid, "smile"))
    assert result["stopReason"] == "end_turn"

    reply = (await history(server, sid))[-1]
    assert text_of(reply) == "almost \ufffd"
    assert reply["info"]["finish"] == "stop" and "error" not in reply["info"]
    assert await streamed_text(server, reply["info"]["id"], "almost \ufffd") == text_of(reply)


async def test_unconfigured_provider_refuses_prompts_but_serves_the_rest(
    tmp_path: Path, config_file: Path
) -> None:
    s = await start(tmp_path / "db.sqlite", config=config_file)  # no base URL anywhere
    try:
        sid = await new_session(s)
        with pytest.raises(JsonRpcException) as e:
            await s.request("session/prompt", prompt_params(sid, "hi"))
        assert e.value.code == PROVIDER_NOT_CONFIGURED
        assert "baseUrl" in e.value.message
        assert (await s.request("session/load", {"sessionId": sid}))["messages"] == []
    finally:
        await s.close()


async def test_api_key_reaches_no_log_database_or_client_even_at_debug_level(
    tmp_path: Path, config_file: Path, fake: FakeOpenAI
) -> None:
    log = tmp_path / "server.log"
    env = openai_env(fake, SESSIONLSP_LOG_FILE=str(log), SESSIONLSP_LOG_LEVEL="debug")
    s = await start(tmp_path / "db.sqlite", config=config_file, env=env)
    sid = await new_session(s)
    fake.push(HttpError(500, body={"error": {"message": "boom"}}, echo_auth=True), when="chat")
    fake.push(HttpError(401, body={"error": {"message": "denied"}}, echo_auth=True), when="chat")
    result = await s.request("session/prompt", prompt_params(sid, "hi"))
    assert result["stopReason"] == "error"
    fake.push(HttpError(401, body={"error": {"message": "denied"}}, echo_auth=True))
    await s.request("session/prompt", prompt_params(sid, "again"))
    compacted = await s.request("session/compact", {"sessionId": sid})  # extractive fallback
    assert compacted["status"] == "completed"
    await s.close()

    assert log.read_text(), "debug logging wrote nothing"
    assert API_KEY not in log.read_text()
    for f in tmp_path.glob("db.sqlite*"):
        assert API_KEY.encode() not in f.read_bytes()
    assert API_KEY not in str(s.collected.items)
    echoed = [r for r in fake.requests if r.headers.get("authorization")]
    assert echoed  # the key did go to the provider, where it belongs


async def test_cancel_request_on_a_prompt_stops_the_turn_and_the_session_goes_on(
    server: Session, fake: FakeOpenAI
) -> None:
    sid = await new_session(server)
    fake.push(Stall(after_chunks=2, text="never finishes"), when="chat")
    protocol: Any = server.client.protocol
    pending = protocol.send_request("session/prompt", prompt_params(sid, "go"), msg_id="turn-1")
    await server.wait_until(lambda: len(server.collected.of("session/delta")) >= 2)
    server.notify("$/cancelRequest", types.CancelParams(id="turn-1"))
    with pytest.raises(JsonRpcException) as e:
        await asyncio.wait_for(asyncio.wrap_future(pending), 20)
    assert e.value.code == -32800
    assert await asyncio.to_thread(fake.wait_for_disconnects, 1, 10)  # the stream was closed
    after = await server.request("session/prompt", prompt_params(sid, "still answering?"))
    assert after["stopReason"] == "end_turn"


async def test_text_shown_before_a_stall_is_stored_while_the_stream_is_silent(
    server: Session, fake: FakeOpenAI
) -> None:
    sid = await new_session(server)
    fake.push(Stall(after_chunks=3, text="shown then silence"), when="chat")
    turn = asyncio.create_task(server.request("session/prompt", prompt_params(sid, "go")))
    await server.wait_until(lambda: len(server.collected.of("session/delta")) >= 3)
    shown = "".join(d["delta"] for d in server.collected.of("session/delta"))

    def stored() -> bool:
        appended = "".join(
            p["data"]["delta"] for p in server.collected.syncs(sid, "message.part.delta")
        )
        return appended == shown

    await server.wait_until(stored)  # written although no further chunk arrived
    loaded = await server.request("session/load", {"sessionId": sid})
    assert text_of(loaded["messages"][-1]) == shown
    await server.request("session/cancel", {"sessionId": sid})
    assert (await asyncio.wait_for(turn, 20))["stopReason"] == "cancelled"


@pytest.mark.slow
async def test_compactions_waiting_for_summaries_do_not_hold_up_list_or_cancel(
    server: Session, fake: FakeOpenAI, tmp_path: Path
) -> None:
    store = Store(tmp_path / "sessions.db")  # a second process's view of the same file
    try:
        sessions = []
        for i in range(70):
            sid = tests.support.new_session(store, f"s{i}")
            tests.support.add_turn(store, sid, f"question {i}", f"answer {i}")
            tests.support.add_turn(store, sid, f"more {i}", f"more answers {i}")
            sessions.append(sid)
    finally:
        store.close()
    # each summary never ends
    fake.push_all([Stall(after_chunks=1, text="## Objective\n") for _ in sessions], "summary")
    compacts = [server.send("session/compact", {"sessionId": sid}) for sid in sessions]
    # as many as the old pool of 64 threads could hold
    assert await asyncio.to_thread(fake.wait_for_requests, 64, 60), fake.summary_requests

    listed = await asyncio.wait_for(server.request("session/list", {"limit": 100}), 10)
    assert len(listed["sessions"]) == 70
    cancelled = await asyncio.wait_for(
        server.request("session/cancel", {"sessionId": sessions[0]}), 10
    )
    assert cancelled["cancelled"] == 1
    first = await asyncio.wait_for(compacts[0], 10)
    assert first["status"] == "failed"
    for sid in sessions[1:]:
        server.notify("session/cancel", {"sessionId": sid})
    await asyncio.wait_for(asyncio.gather(*compacts), 30)
