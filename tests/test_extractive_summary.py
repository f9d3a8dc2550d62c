"""Guarantee 9's fallback: a deterministic summary built from the messages themselves."""

from __future__ import annotations

from server.summary import fallback_summary
from store.models import (
    TextPart,
    ToolPart,
    ToolState,
)
from tests.support import message_with

HEAD = (
    message_with(1, "prompt", TextPart("Make `parse_config` accept TOML in src/config.py")),
    message_with(
        2,
        "reply",
        ToolPart("c", "read_file", ToolState("completed", {"path": "src/config.py"}, "...")),
        TextPart("I read it."),
    ),
    message_with(3, "prompt", TextPart("Also update docs/usage.md")),
    message_with(
        4,
        "reply",
        ToolPart("d", "grep", ToolState("error", {"pattern": "toml"}, error="rg not found")),
    ),
    message_with(5, "prompt", TextPart("Then run the tests")),
)


def test_extractive_summary_names_objective_files_requests_and_tool_errors() -> None:
    text = fallback_summary(HEAD, None, "SummaryFailed: HTTP 503")
    assert text.startswith("## Extractive summary\n_The model could not write a summary")
    assert "## Objective\nMake `parse_config` accept TOML in src/config.py" in text
    for mention in ("src/config.py", "docs/usage.md", "parse_config"):
        assert f"- {mention}" in text
    assert "- Also update docs/usage.md\n- Then run the tests" in text
    assert 'grep {"pattern": "toml"}: rg not found' in text


def test_extractive_summary_is_deterministic_and_keeps_the_earlier_summary() -> None:
    a = fallback_summary(HEAD, "## Objective\nold goal", "x")
    b = fallback_summary(HEAD, "## Objective\nold goal", "x")
    assert a == b
    assert "## Earlier summary\n## Objective\nold goal" in a


def test_extractive_summary_of_nothing_still_has_every_section() -> None:
    text = fallback_summary((), None, "x")
    for heading in ("Objective", "Relevant Files and Identifiers", "Recent Requests"):
        assert f"## {heading}" in text
