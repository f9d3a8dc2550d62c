"""Guarantee 9's fallback: a deterministic summary built from the messages themselves."""

from __future__ import annotations

from server.summary import extractive_summary
from store.models import (
    Message,
    MessageKind,
    MessageWithParts,
    Part,
    PartBody,
    TextPart,
    ToolPart,
    ToolState,
)


def _m(i: int, kind: MessageKind, *bodies: PartBody) -> MessageWithParts:
    mid = f"msg_{i:016x}"
    parts = tuple(Part(f"prt_{i}_{j}", mid, "s", b) for j, b in enumerate(bodies))
    return MessageWithParts(Message(id=mid, session_id="s", kind=kind, time_created=i), parts)


HEAD = (
    _m(1, "prompt", TextPart("Make `parse_config` accept TOML in src/config.py")),
    _m(
        2,
        "reply",
        ToolPart("c", "read_file", ToolState("completed", {"path": "src/config.py"}, "...")),
        TextPart("I read it."),
    ),
    _m(3, "prompt", TextPart("Also update docs/usage.md")),
    _m(
        4,
        "reply",
        ToolPart("d", "grep", ToolState("error", {"pattern": "toml"}, error="rg not found")),
    ),
    _m(5, "prompt", TextPart("Then run the tests")),
)


def test_extractive_summary_names_objective_files_requests_and_tool_errors() -> None:
    text = extractive_summary(HEAD, None, "SummaryFailed: HTTP 503")
    assert text.startswith("## Extractive summary\n_The model could not write a summary")
    assert "## Objective\nMake `parse_config` accept TOML in src/config.py" in text
    for mention in ("src/config.py", "docs/usage.md", "parse_config"):
        assert f"- {mention}" in text
    assert "- Also update docs/usage.md\n- Then run the tests" in text
    assert 'grep {"pattern": "toml"}: rg not found' in text


def test_extractive_summary_is_deterministic_and_keeps_the_earlier_summary() -> None:
    a = extractive_summary(HEAD, "## Objective\nold goal", "x")
    b = extractive_summary(HEAD, "## Objective\nold goal", "x")
    assert a == b
    assert "## Earlier summary\n## Objective\nold goal" in a


def test_extractive_summary_of_nothing_still_has_every_section() -> None:
    text = extractive_summary((), None, "x")
    for heading in ("Objective", "Relevant Files and Identifiers", "Recent Requests"):
        assert f"## {heading}" in text
