"""Helpers shared by the tests: summarizer failures and conversation builders."""

from __future__ import annotations

from dataclasses import replace

from server.summary import (
    SummaryFailed,
    SummaryTooLarge,
)
from store import Store, Tx
from store.models import (
    Compaction,
    Message,
    MessageError,
    MessageKind,
    MessageWithParts,
    Part,
    PartBody,
    StepFinishPart,
    TextPart,
    TokenUsage,
    ToolPart,
    ToolState,
)

TOO_LARGE = SummaryTooLarge("context_length_exceeded")
PROVIDER_DOWN = SummaryFailed("HTTP 503 from provider")


def message_with(i: int, kind: MessageKind, *bodies: PartBody) -> MessageWithParts:
    """An in-memory message numbered ``i`` (ids sort by ``i``) holding ``bodies``."""
    mid = f"msg_{i:016x}"
    info = Message(id=mid, session_id="ses_x", kind=kind, time_created=i)
    parts = tuple(Part(f"prt_{i:08x}{j:04x}", mid, "ses_x", b) for j, b in enumerate(bodies))
    return MessageWithParts(info, parts)


class FakeClock:
    """A store clock (milliseconds) that moves only when a test moves it."""

    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def pending_compaction(
    tx: Tx, session_id: str, marker_id: str, *, auto: bool = False, instructions: str | None = None
) -> Compaction:
    """A fresh compaction row, as ``request`` would insert it."""
    return Compaction(
        marker_id=marker_id,
        session_id=session_id,
        status="pending",
        auto=auto,
        overflow=False,
        instructions=instructions,
        replay_of=None,
        tail_plan=None,
        tail_set=False,
        summary_id=None,
        error=None,
        attempts=0,
        time_created=tx.now(),
        time_updated=tx.now(),
    )


def new_session(store: Store, title: str = "test") -> str:
    with store.write() as tx:
        return tx.create_session(title, "/work/project").id


def add_prompt(store: Store, session_id: str, text: str) -> Message:
    with store.write() as tx:
        m = tx.add_message(session_id, "prompt")
        tx.put_part(m.id, TextPart(text))
        return m


def add_reply(
    store: Store,
    session_id: str,
    parent_id: str,
    text: str,
    *,
    tool_output: str | None = None,
    tool_error: str | None = None,
    usage: TokenUsage | None = None,
    finished: bool = True,
    error: bool = False,
) -> Message:
    with store.write() as tx:
        m = tx.add_message(session_id, "reply", parent_id=parent_id, runner="test")
        if tool_output is not None or tool_error is not None:
            state = ToolState(
                status="error" if tool_error is not None else "completed",
                input={"path": "src/app.py"},
                output=tool_output,
                error=tool_error,
                time_start=tx.now(),
                time_end=tx.now(),
            )
            tx.put_part(m.id, ToolPart(call_id=f"call-{m.id}", tool="read_file", state=state))
        tx.put_part(m.id, TextPart(text))
        tx.put_part(m.id, StepFinishPart(tokens=usage or TokenUsage(input=10, output=5)))
        if finished or error:
            m = tx.update_message(
                replace(
                    m,
                    finish="stop" if finished else None,
                    time_completed=tx.now(),
                    error=MessageError("ProviderError", "boom") if error else None,
                    tokens=usage,
                )
            )
        return m


def add_turn(
    store: Store,
    session_id: str,
    user_text: str,
    reply_text: str,
    *,
    tool_output: str | None = None,
    usage: TokenUsage | None = None,
) -> tuple[Message, Message]:
    """A user prompt and its finished assistant reply."""
    user = add_prompt(store, session_id, user_text)
    reply = add_reply(store, session_id, user.id, reply_text, tool_output=tool_output, usage=usage)
    return user, reply
