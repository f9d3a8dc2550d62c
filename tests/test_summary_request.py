"""Guarantee 8: the summary request always fits the summarizer's window."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from server.summary import build_summary_request
from server.tokens import ModelLimits
from store.models import (
    FilePart,
    PartBody,
    TextPart,
    ToolPart,
    ToolState,
)
from tests.support import message_with


def _tool(output: str) -> ToolPart:
    return ToolPart("c1", "read_file", ToolState("completed", {"path": "a.py"}, output=output))


def test_tool_outputs_are_capped_at_2000_characters() -> None:
    head = (
        message_with(1, "prompt", TextPart("read it")),
        message_with(2, "reply", _tool("x" * 50_000)),
    )
    req = build_summary_request(head, None, None, ModelLimits(200_000, 8_000))
    (tool_chunk,) = [c for e in req.transcript for c in e.chunks if c.kind == "tool"]
    assert len(tool_chunk.text) < 2_200
    assert "characters omitted" in tool_chunk.text


def test_media_becomes_a_one_line_mention() -> None:
    image = FilePart("image/png", "data:image/png;base64," + "A" * 100_000, "screen.png")
    req = build_summary_request(
        (message_with(1, "prompt", TextPart("look"), image),),
        None,
        None,
        ModelLimits(200_000, 8_000),
    )
    chunks = [c.text for e in req.transcript for c in e.chunks]
    assert chunks == ["look", "[attached image/png: screen.png]"]


def test_previous_summary_and_instructions_are_handed_in_to_be_merged() -> None:
    req = build_summary_request(
        (message_with(1, "prompt", TextPart("next step")),),
        "## Objective\nold goal",
        "keep the API names",
        ModelLimits(200_000, 8_000),
    )
    prompt = req.prompt()
    assert "Earlier summary to merge:\n## Objective\nold goal" in prompt
    assert prompt.rstrip().endswith("keep the API names")


def test_oldest_messages_are_dropped_last_and_counted() -> None:
    head = tuple(message_with(i, "prompt", TextPart(f"m{i} " + "w" * 1_000)) for i in range(200))
    req = build_summary_request(head, None, None, ModelLimits(8_000, 2_000))
    assert req.omitted_messages > 0
    assert req.transcript[-1].message_id == head[-1].info.id  # the newest survive
    assert f"[{req.omitted_messages} older messages omitted" in req.prompt()


texts = st.text(min_size=0, max_size=20_000)
bodies = st.one_of(
    texts.map(TextPart),
    texts.map(_tool),
    st.just(FilePart("image/png", "data:," + "B" * 1000, "x.png")),
)


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(st.lists(bodies, min_size=1, max_size=3), max_size=30),
    previous=st.one_of(st.none(), st.text(max_size=200_000)),
    instructions=st.one_of(st.none(), st.text(max_size=50_000)),
    context=st.integers(min_value=4_000, max_value=200_000),
)
def test_summary_request_always_fits_the_summarizer_window(
    messages: list[list[PartBody]], previous: str | None, instructions: str | None, context: int
) -> None:
    limits = ModelLimits(context, 2_000)
    head = tuple(
        message_with(i, "prompt" if i % 2 == 0 else "reply", *b) for i, b in enumerate(messages)
    )
    req = build_summary_request(head, previous, instructions, limits)
    assert req.estimated_tokens <= limits.usable()
