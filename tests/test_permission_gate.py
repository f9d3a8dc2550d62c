"""The permission gate end to end: the real server, the fake OpenAI provider scripting tool
calls, and a pytest-lsp client that answers ``session/requestPermission`` (or cannot)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from fakeprovider.openai_server import FakeOpenAI, Reply
from tests.lsp_support import (
    Session,
    env_for,
    history,
    new_session,
    prompt_params,
    start,
    write_config,
)

pytestmark = pytest.mark.asyncio

API_KEY = "sk-test-0123456789abcdef-never-stored"
Answerer = Callable[[Any], Awaitable[Any]]


def selected(option: str) -> Answerer:
    async def answer(_: Any) -> Any:
        return {"outcome": {"outcome": "selected", "optionId": option}}

    return answer


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunk_chars=50) as f:
        yield f


@pytest.fixture
def work(tmp_path: Path) -> Path:
    root = tmp_path / "work"
    root.mkdir()
    (root / "a.txt").write_bytes(b"old line\n")
    return root


def config(tmp_path: Path, permission: str | None = None) -> Path:
    lines: dict[str, object] = {"provider": "openai", "model": "fake-model"}
    if permission is not None:
        lines["permission"] = permission
    return write_config(tmp_path / "config.toml", lines)


async def serve(
    tmp_path: Path, fake: FakeOpenAI, answer: Answerer | None, permission: str | None = None
) -> Session:
    return await start(
        tmp_path / "sessions.db",
        config=config(tmp_path, permission),
        env=env_for(fake, SESSIONLSP_API_KEY=API_KEY),
        permissions=answer,
    )


EDIT = json.dumps({"path": "a.txt", "oldString": "old line", "newString": "new line"})


def script_edit(fake: FakeOpenAI, call_id: str = "call_1") -> None:
    fake.push(Reply(tool_calls=[(call_id, "edit", EDIT)], finish="tool_calls"), when="chat")
    fake.push(Reply("done"), when="chat")


async def tool_states(server: Session, sid: str) -> list[dict[str, Any]]:
    messages = await history(server, sid)
    return [p["state"] for m in messages for p in m["parts"] if p["type"] == "tool"]


@pytest_asyncio.fixture
async def closing() -> AsyncIterator[list[Session]]:
    servers: list[Session] = []
    yield servers
    for s in servers:
        await s.close()


async def test_allowed_edit_runs_without_asking(
    tmp_path: Path, fake: FakeOpenAI, work: Path, closing: list[Session]
) -> None:
    server = await serve(tmp_path, fake, selected("reject"), permission="allow")
    closing.append(server)
    script_edit(fake)
    sid = await new_session(server, directory=str(work))
    result = await server.request("session/prompt", prompt_params(sid, "edit it"))
    assert result["stopReason"] == "end_turn"
    assert (work / "a.txt").read_bytes() == b"new line\n"
    assert server.collected.of("session/requestPermission") == []
    assert [s["status"] for s in await tool_states(server, sid)] == ["completed"]


async def test_denied_edit_is_a_tool_error_naming_the_rule_and_the_file_is_untouched(
    tmp_path: Path, fake: FakeOpenAI, work: Path, closing: list[Session]
) -> None:
    server = await serve(tmp_path, fake, selected("once"), permission="deny")
    closing.append(server)
    script_edit(fake)
    sid = await new_session(server, directory=str(work))
    result = await server.request("session/prompt", prompt_params(sid, "edit it"))
    assert result["stopReason"] == "end_turn"
    assert (work / "a.txt").read_bytes() == b"old line\n"
    assert server.collected.of("session/requestPermission") == []
    [state] = await tool_states(server, sid)
    assert state["status"] == "error"
    assert state["error"] == (
        'permission denied: "a.txt" is denied by the edit rule "*": "deny" (from the configuration)'
    )
    sent = [m for m in fake.last_request.body["messages"] if m["role"] == "tool"]
    assert "permission denied" in sent[0]["content"]


async def test_ask_once_shows_the_diff_reports_waiting_and_runs_the_edit(
    tmp_path: Path, fake: FakeOpenAI, work: Path, closing: list[Session]
) -> None:
    server = await serve(tmp_path, fake, selected("once"))
    closing.append(server)
    script_edit(fake)
    sid = await new_session(server, directory=str(work))
    result = await server.request("session/prompt", prompt_params(sid, "edit it"))
    assert result["stopReason"] == "end_turn"
    assert (work / "a.txt").read_bytes() == b"new line\n"
    [asked] = server.collected.of("session/requestPermission")
    assert asked["sessionId"] == sid
    assert asked["toolCall"]["toolCallId"] == "call_1"
    assert asked["toolCall"]["tool"] == "edit"
    assert asked["toolCall"]["input"] == json.loads(EDIT)
    assert "-old line\n+new line\n" in asked["toolCall"]["diff"]
    assert [(o["optionId"], o["kind"]) for o in asked["options"]] == [
        ("once", "allow_once"),
        ("always", "allow_always"),
        ("reject", "reject_once"),
    ]
    statuses = [s["status"] for s in server.collected.of("session/status")]
    assert "waiting" in statuses
    assert statuses.index("waiting") < len(statuses) - 1  # busy (or idle) again afterwards
    [state] = await tool_states(server, sid)
    assert state["status"] == "completed"
    replied = server.collected.syncs(sid, "permission.replied")
    assert [r["data"]["outcome"] for r in replied] == [{"outcome": "selected", "optionId": "once"}]


async def test_ask_reject_leaves_the_file_byte_for_byte_unchanged(
    tmp_path: Path, fake: FakeOpenAI, work: Path, closing: list[Session]
) -> None:
    (work / "a.txt").write_bytes(b"old line\r\n\tcaf\xc3\xa9 \n")
    server = await serve(tmp_path, fake, selected("reject"))
    closing.append(server)
    fake.push(
        Reply(tool_calls=[("call_1", "write", '{"path": "a.txt", "content": "x"}')]), when="chat"
    )
    fake.push(Reply("ok"), when="chat")
    sid = await new_session(server, directory=str(work))
    result = await server.request("session/prompt", prompt_params(sid, "write it"))
    assert result["stopReason"] == "end_turn"
    assert (work / "a.txt").read_bytes() == b"old line\r\n\tcaf\xc3\xa9 \n"
    [state] = await tool_states(server, sid)
    assert (state["status"], state["error"]) == ("error", "rejected by the user")


async def test_ask_always_is_remembered_for_later_calls_and_after_a_restart(
    tmp_path: Path, fake: FakeOpenAI, work: Path, closing: list[Session]
) -> None:
    server = await serve(tmp_path, fake, selected("always"))
    closing.append(server)
    script_edit(fake, "call_1")
    sid = await new_session(server, directory=str(work))
    await server.request("session/prompt", prompt_params(sid, "edit it"))
    assert len(server.collected.of("session/requestPermission")) == 1
    assert server.collected.syncs(sid, "permission.remembered")[0]["data"]["pattern"] == "a.txt"

    back = json.dumps({"path": "a.txt", "oldString": "new line", "newString": "old line"})
    fake.push(Reply(tool_calls=[("call_2", "edit", back)]), when="chat")
    fake.push(Reply("done"), when="chat")
    await server.request("session/prompt", prompt_params(sid, "again"))
    assert len(server.collected.of("session/requestPermission")) == 1  # not asked again
    assert (work / "a.txt").read_bytes() == b"old line\n"
    await server.close()

    again = await serve(tmp_path, fake, selected("reject"))  # would reject if it were asked
    closing.append(again)
    await again.request("session/load", {"sessionId": sid})
    script_edit(fake, "call_3")
    await again.request("session/prompt", prompt_params(sid, "once more"))
    assert again.collected.of("session/requestPermission") == []
    assert (work / "a.txt").read_bytes() == b"new line\n"
    assert [s["status"] for s in await tool_states(again, sid)] == ["completed"] * 3


async def test_without_a_client_that_can_answer_the_call_fails_and_nothing_runs(
    tmp_path: Path, fake: FakeOpenAI, work: Path, closing: list[Session]
) -> None:
    server = await serve(tmp_path, fake, None)  # no capability declared
    closing.append(server)
    fake.push(Reply(tool_calls=[("call_1", "bash", '{"command": "touch ran"}')]), when="chat")
    fake.push(Reply("ok"), when="chat")
    sid = await new_session(server, directory=str(work))
    result = await server.request("session/prompt", prompt_params(sid, "run it"))
    assert result["stopReason"] == "end_turn"
    assert not (work / "ran").exists()
    [state] = await tool_states(server, sid)
    assert (state["status"], state["error"]) == (
        "error",
        "permission required: no client can answer",
    )
    assert server.collected.syncs(sid, "permission.asked") == []


async def test_cancel_while_asking_settles_the_question_and_ends_the_turn_cancelled(
    tmp_path: Path, fake: FakeOpenAI, work: Path, closing: list[Session]
) -> None:
    never = asyncio.get_running_loop().create_future()

    async def hang(_: Any) -> Any:
        return await never

    server = await serve(tmp_path, fake, hang)
    closing.append(server)
    script_edit(fake)
    sid = await new_session(server, directory=str(work))
    turn = server.send("session/prompt", prompt_params(sid, "edit it"))
    await server.wait_until(lambda: bool(server.collected.of("session/requestPermission")))
    await server.wait_until(
        lambda: any(s["status"] == "waiting" for s in server.collected.of("session/status"))
    )
    await server.request("session/cancel", {"sessionId": sid})
    result = await turn
    never.set_result({"outcome": {"outcome": "selected", "optionId": "once"}})  # too late
    assert result["stopReason"] == "cancelled"
    assert (work / "a.txt").read_bytes() == b"old line\n"
    [state] = await tool_states(server, sid)
    assert state["status"] == "error"
    await server.wait_until(lambda: bool(server.collected.syncs(sid, "permission.replied")))
    [replied] = server.collected.syncs(sid, "permission.replied")
    assert replied["data"]["outcome"] == {"outcome": "cancelled"}
    assert replied["data"]["by"] == "cancel"


async def test_a_server_killed_while_asking_leaves_the_tool_interrupted_and_the_question_settled(
    tmp_path: Path, fake: FakeOpenAI, work: Path, closing: list[Session]
) -> None:
    never = asyncio.get_running_loop().create_future()

    async def hang(_: Any) -> Any:
        return await never

    server = await serve(tmp_path, fake, hang)
    script_edit(fake)
    sid = await new_session(server, directory=str(work))
    turn = asyncio.create_task(server.request("session/prompt", prompt_params(sid, "edit it")))
    await server.wait_until(lambda: bool(server.collected.of("session/requestPermission")))
    await server.kill()
    never.cancel()
    with contextlib.suppress(BaseException):
        await turn  # never answered: the server died

    again = await serve(tmp_path, fake, selected("once"))
    closing.append(again)
    [state] = await tool_states(again, sid)  # session/load recovers what the dead runner left
    assert (state["status"], state["error"]) == ("error", "interrupted")
    assert (work / "a.txt").read_bytes() == b"old line\n"
    events = await again.request("session/events", {"after": 0, "sessionId": sid})
    replied = [e["data"] for e in events["events"] if e["type"] == "permission.replied"]
    assert [(r["outcome"], r["by"]) for r in replied] == [({"outcome": "cancelled"}, "interrupted")]


def offered_to_the_model(fake: FakeOpenAI) -> set[str]:
    return {tool["function"]["name"] for tool in fake.last_request.body.get("tools", [])}


@pytest.mark.parametrize(
    ("answers", "permission", "offered"),
    [
        # an editor that cannot answer, default rules (edit and bash ask): only what can run
        (False, None, {"read_file", "list_files", "grep"}),
        # the same editor with rules that allow edits: the edit tools, not bash
        (
            False,
            '{"edit": "allow"}',
            {"read_file", "list_files", "grep", "edit", "write", "apply_patch"},
        ),
        # a client that answers questions: everything that asks
        (True, None, {"read_file", "list_files", "grep", "edit", "write", "apply_patch", "bash"}),
        # everything denied: nothing
        (True, "deny", set()),
    ],
)
async def test_the_model_is_told_only_of_the_tools_it_could_use(
    tmp_path: Path,
    fake: FakeOpenAI,
    work: Path,
    closing: list[Session],
    answers: bool,
    permission: str | None,
    offered: set[str],
) -> None:
    server = await serve(tmp_path, fake, selected("once") if answers else None, permission)
    closing.append(server)
    sid = await new_session(server, directory=str(work))
    result = await server.request("session/prompt", prompt_params(sid, "what is here?"))
    assert result["stopReason"] == "end_turn"
    assert offered_to_the_model(fake) == offered


async def test_an_edit_part_carries_the_path_the_diff_and_the_old_content(
    tmp_path: Path, fake: FakeOpenAI, work: Path, closing: list[Session]
) -> None:
    server = await serve(tmp_path, fake, None, permission="allow")
    closing.append(server)
    script_edit(fake)
    sid = await new_session(server, directory=str(work))
    await server.request("session/prompt", prompt_params(sid, "edit it"))
    [state] = await tool_states(server, sid)
    [changed] = state["metadata"]["files"]
    assert changed["path"] == "a.txt" and changed["before"] == "old line\n"
    assert "-old line" in changed["diff"] and "+new line" in changed["diff"]
    # the same state reached followers through session/sync, and the model saw no metadata
    synced = [
        e["data"]["state"]
        for e in server.collected.syncs(sid, "message.part.updated")
        if e["data"]["type"] == "tool" and e["data"]["state"]["status"] == "completed"
    ]
    assert synced[-1]["metadata"] == state["metadata"]
    sent = [m for m in fake.last_request.body["messages"] if m["role"] == "tool"]
    assert "old line\n" not in sent[0]["content"]
