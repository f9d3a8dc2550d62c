"""End to end: ``sessionlsp serve`` as a subprocess, driven over stdio by a pytest-lsp client,
with the built-in offline provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pygls.exceptions import JsonRpcException

from server.errors import INVALID_PARAMS, METHOD_NOT_FOUND, UNKNOWN_SESSION
from tests.lsp_support import (
    Session,
    new_session,
    prompt_params,
    start,
    text_of,
    write_config,
)

pytestmark = pytest.mark.asyncio


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.toml", {})  # empty: defaults, the offline provider


@pytest_asyncio.fixture
async def server(tmp_path: Path, config_file: Path) -> AsyncIterator[Session]:
    s = await start(tmp_path / "sessions.db", config=config_file)
    yield s
    await s.close()


async def test_initialize_advertises_the_protocol_and_the_effective_config(
    tmp_path: Path, config_file: Path
) -> None:
    s = await start(
        tmp_path / "db.sqlite", config=config_file, init_options={"contextLimit": 12000}
    )
    try:
        experimental = s.initialized.capabilities.experimental
        assert isinstance(experimental, dict)
        info = experimental["sessionlsp"]
        assert info["protocolVersion"] == 1
        assert info["provider"] == "offline"
        assert info["contextLimit"] == 12000  # initializationOptions reached the server
    finally:
        await s.close()


async def test_log_file_given_in_initialization_options_is_used(
    tmp_path: Path, config_file: Path
) -> None:
    log = tmp_path / "from-editor.log"
    options = {"logFile": str(log), "logLevel": "info", "noSuchSetting": 1}
    s = await start(tmp_path / "db.sqlite", config=config_file, init_options=options)
    await s.close()
    assert "noSuchSetting" in log.read_text()  # the unknown-key warning went to the file


async def test_a_request_without_params_is_answered(server: Session) -> None:
    assert await server.request("session/list", None) == {"sessions": []}


async def test_prompt_streams_deltas_and_stores_the_same_answer(server: Session) -> None:
    sid = await new_session(server)
    result = await server.request("session/prompt", prompt_params(sid, "hello there"))
    assert result["stopReason"] == "end_turn"
    reply_id = result["messageId"]

    deltas = [d for d in server.collected.of("session/delta") if d["messageId"] == reply_id]
    assert len(deltas) > 1  # streamed in pieces, not one block
    streamed = "".join(d["delta"] for d in deltas)

    loaded = await server.request("session/load", {"sessionId": sid})
    messages = loaded["messages"]
    assert [m["info"]["role"] for m in messages] == ["user", "assistant"]
    assert text_of(messages[0]) == "hello there"
    assert messages[1]["info"]["id"] == reply_id
    assert messages[1]["info"]["finish"] == "stop"
    assert text_of(messages[1]) == streamed
    assert "hello there" in streamed


async def test_sync_notifications_match_the_outbox_in_order_without_gaps(server: Session) -> None:
    sid = await new_session(server)
    await server.request("session/prompt", prompt_params(sid, "one"))
    await server.request("session/prompt", prompt_params(sid, "two"))
    outbox = await server.request("session/events", {"after": 0, "sessionId": sid})
    synced = [p["seq"] for p in server.collected.syncs(sid)]
    assert synced == [e["seq"] for e in outbox["events"]]
    assert synced == sorted(synced)
    types_ = [p["type"] for p in server.collected.syncs(sid)]
    assert types_[0] == "session.created"
    assert "message.part.updated" in types_
    statuses = [s["status"] for s in server.collected.of("session/status")]
    assert "busy" in statuses and statuses[-1] == "idle"


async def test_prompts_sent_together_are_answered_in_order(server: Session) -> None:
    sid = await new_session(server)
    results = await asyncio.gather(
        *(server.request("session/prompt", prompt_params(sid, f"prompt {i}")) for i in range(4))
    )
    assert all(r["stopReason"] == "end_turn" for r in results)
    loaded = await server.request("session/load", {"sessionId": sid})
    users = [text_of(m) for m in loaded["messages"] if m["info"]["role"] == "user"]
    assert users == [f"prompt {i}" for i in range(4)]
    roles = [m["info"]["role"] for m in loaded["messages"]]
    assert roles == ["user", "assistant"] * 4  # each prompt answered before the next starts


async def test_manual_compact_reports_marker_summary_and_progress(server: Session) -> None:
    sid = await new_session(server)
    for i in range(3):
        await server.request("session/prompt", prompt_params(sid, f"work on src/file{i}.py"))
    result = await server.request("session/compact", {"sessionId": sid, "instructions": "be brief"})
    assert result["created"] is True
    assert result["status"] == "completed"
    marker, summary = result["markerId"], result["summaryMessageId"]

    statuses = [
        p["data"]["status"]
        for p in server.collected.syncs(sid, "compaction.updated")
        if p["data"]["markerId"] == marker
    ]
    assert statuses[0] == "pending" and "running" in statuses and statuses[-1] == "completed"

    loaded = await server.request("session/load", {"sessionId": sid})
    by_id = {m["info"]["id"]: m for m in loaded["messages"]}
    marker_parts = by_id[marker]["parts"]
    assert by_id[marker]["info"]["role"] == "user"
    assert [p["type"] for p in marker_parts] == ["compaction"]
    assert marker_parts[0]["instructions"] == "be brief"
    assert by_id[summary]["info"]["summary"] is True
    assert by_id[summary]["info"]["summaryKind"] == "extractive"  # the offline provider's
    assert by_id[summary]["info"]["parentId"] == marker
    assert "## Objective" in text_of(by_id[summary])
    # the status the history cannot carry, as the last compaction.updated said it
    last_update = server.collected.syncs(sid, "compaction.updated")[-1]["data"]
    assert loaded["compactions"] == [last_update]
    assert loaded["compactions"][0]["summaryMessageId"] == summary

    context = await server.request("session/context", {"sessionId": sid})
    assert context["markerId"] == marker
    assert context["summaryMessageId"] == summary
    assert context["messages"][1]["messageId"] == summary
    assert context["tokens"] == sum(m["tokens"] for m in context["messages"])
    assert context["usable"] > 0

    await server.wait_until(lambda: any(server.client.progress_reports.values()))
    reports = next(iter(server.client.progress_reports.values()))
    kinds = [r.kind for r in reports]  # type: ignore[attr-defined]
    assert kinds[0] == "begin"
    await server.wait_until(lambda: reports[-1].kind == "end")  # type: ignore[attr-defined]


async def test_compacting_again_with_nothing_new_returns_the_same_compaction(
    server: Session,
) -> None:
    sid = await new_session(server)
    await server.request("session/prompt", prompt_params(sid, "something"))
    first = await server.request("session/compact", {"sessionId": sid})
    again = await server.request("session/compact", {"sessionId": sid})
    assert again["markerId"] == first["markerId"]
    assert again["created"] is False


async def test_list_is_newest_first_and_filters_by_directory(server: Session) -> None:
    a = await server.request("session/new", {"title": "a", "directory": "/w/a"})
    b = await server.request("session/new", {"title": "b", "directory": "/w/b"})
    c = await server.request("session/new", {"title": "c", "directory": "/w/a"})
    listed = await server.request("session/list", {})
    assert [s["id"] for s in listed["sessions"]] == [c["sessionId"], b["sessionId"], a["sessionId"]]
    only_a = await server.request("session/list", {"directory": "/w/a", "limit": 1})
    assert [s["id"] for s in only_a["sessions"]] == [c["sessionId"]]
    await server.request("session/prompt", prompt_params(a["sessionId"], "activity"))
    listed = await server.request("session/list", {})
    assert listed["sessions"][0]["id"] == a["sessionId"]  # newest activity first
    assert server.collected.syncs(a["sessionId"], "session.updated")


async def test_an_untitled_session_is_titled_from_its_first_prompt_and_keeps_that_title(
    server: Session,
) -> None:
    sid = (await server.request("session/new", {}))["sessionId"]
    await server.request(
        "session/prompt", prompt_params(sid, "\n  Why does the parser\treject [] ?\nmore")
    )
    await server.request("session/prompt", prompt_params(sid, "a second question"))
    [listed] = (await server.request("session/list", {}))["sessions"]
    assert listed["title"] == "Why does the parser reject [] ?"
    updates = server.collected.syncs(sid, "session.updated")
    assert updates[0]["data"]["title"] == "Why does the parser reject [] ?"  # editors see it live
    titled = await server.request("session/new", {"title": "Fix the parser"})
    await server.request("session/prompt", prompt_params(titled["sessionId"], "something else"))
    listed = await server.request("session/list", {})
    assert listed["sessions"][0]["title"] == "Fix the parser"  # a given title is kept


async def test_events_cursor_lets_a_client_resume(server: Session) -> None:
    sid = await new_session(server)
    loaded = await server.request("session/load", {"sessionId": sid})
    await server.request("session/prompt", prompt_params(sid, "after the cursor"))
    page = await server.request("session/events", {"after": loaded["seq"], "limit": 2})
    assert len(page["events"]) == 2
    rest = await server.request("session/events", {"after": page["seq"]})
    seqs = [e["seq"] for e in page["events"] + rest["events"]]
    assert seqs == sorted(set(seqs)) and seqs[0] == loaded["seq"] + 1
    assert rest["seq"] == seqs[-1]


async def test_deleted_session_is_announced_and_then_unknown(server: Session) -> None:
    sid = await new_session(server)
    assert await server.request("session/delete", {"sessionId": sid}) == {}
    await server.wait_until(lambda: bool(server.collected.syncs(sid, "session.deleted")))
    with pytest.raises(JsonRpcException) as e:
        await server.request("session/load", {"sessionId": sid})
    assert e.value.code == UNKNOWN_SESSION


async def test_unknown_session_is_a_stable_error(server: Session) -> None:
    for method in ("session/load", "session/context", "session/compact", "session/prompt"):
        params = prompt_params("ses_nope", "x")
        with pytest.raises(JsonRpcException) as e:
            await server.request(method, params)
        assert e.value.code == UNKNOWN_SESSION, method
        assert "ses_nope" in e.value.message


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"prompt": [{"type": "text", "text": "x"}]}, "sessionId"),
        ({"sessionId": 7, "prompt": [{"type": "text", "text": "x"}]}, "sessionId"),
        ({"sessionId": "s"}, "prompt"),
        ({"sessionId": "s", "prompt": "just a string"}, "prompt"),
        ({"sessionId": "s", "prompt": [{"type": "image", "data": "…"}]}, "prompt[0].type"),
        ({"sessionId": "s", "prompt": [{"type": "text", "text": 3}]}, "prompt[0].text"),
        ({"sessionId": "s", "prompt": [{"type": "text", "text": "x"}], "model": []}, "model"),
    ],
)
async def test_invalid_prompt_params_name_the_field(
    server: Session, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(JsonRpcException) as e:
        await server.request("session/prompt", params)
    assert e.value.code == INVALID_PARAMS
    assert field in e.value.message
    assert (await server.request("session/list", {}))["sessions"] == []  # still serving


async def test_params_that_are_not_an_object_and_unknown_methods_get_errors(
    server: Session,
) -> None:
    with pytest.raises(JsonRpcException) as e:
        await server.request("session/list", [1, 2])
    assert e.value.code == INVALID_PARAMS
    with pytest.raises(JsonRpcException) as e:
        await server.request("session/teleport", {})
    assert e.value.code == METHOD_NOT_FOUND
    with pytest.raises(JsonRpcException) as e:
        await server.request("session/list", {"limit": "ten"})
    assert e.value.code == INVALID_PARAMS and "limit" in e.value.message
    with pytest.raises(JsonRpcException) as e:
        await server.request("session/events", {})
    assert e.value.code == INVALID_PARAMS and "after" in e.value.message


async def test_keys_such_as_meta_reach_the_server_unchanged(server: Session) -> None:
    # pygls' default converter would turn params into namedtuples and rename `_meta`.
    result = await server.request("session/new", {"title": "m", "_meta": {"x": 1}})
    assert result["session"]["title"] == "m"


async def test_a_prompt_sent_right_after_a_cancel_is_answered_and_stored(server: Session) -> None:
    sid = await new_session(server)
    for i in range(12):
        # The notification and the request without waiting for its answer: both arrive before
        # the prompt, so they cannot stop it.
        if i % 2:
            server.notify("session/cancel", {"sessionId": sid})
            cancelled = None
        else:
            cancelled = server.send("session/cancel", {"sessionId": sid})
        result = await server.request("session/prompt", prompt_params(sid, f"prompt {i}"))
        assert result["stopReason"] == "end_turn", i
        assert result["messageId"] is not None and result["userMessageId"] is not None
        if cancelled is not None:
            assert (await cancelled)["cancelled"] == 0
    loaded = await server.request("session/load", {"sessionId": sid})
    prompts = [text_of(m) for m in loaded["messages"] if m["info"]["kind"] == "prompt"]
    assert prompts == [f"prompt {i}" for i in range(12)]
