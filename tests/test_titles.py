"""Titles from the first prompt (server/titles.py)."""

from __future__ import annotations

from server.titles import TITLE_CHARS, title_from_prompt


def test_the_title_is_the_first_line_with_words_collapsed() -> None:
    assert title_from_prompt(["", "\n\n   Fix   the\tparser \nsecond line"]) == "Fix the parser"


def test_a_long_first_line_is_cut_at_a_word_boundary_with_an_ellipsis() -> None:
    line = "Explain why the incremental parser rejects empty arrays when they follow a comment"
    title = title_from_prompt([line])
    assert len(title) <= TITLE_CHARS
    assert title.endswith("…")
    assert line.startswith(title[:-1])
    assert title[:-1] == title[:-1].rstrip()  # cut between words, not inside one
    assert line[len(title) - 1] == " "


def test_a_code_fence_is_skipped_and_a_prompt_without_words_gives_no_title() -> None:
    assert title_from_prompt(["```python\nprint(1)\n```"]) == "print(1)"
    assert title_from_prompt(["   \n\t"]) == ""
    assert title_from_prompt([]) == ""
