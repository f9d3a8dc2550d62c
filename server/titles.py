"""A session's title from its first prompt, without a model call.

Editors list sessions by title; untitled, every entry read "Untitled session · <date>" and a
person could not tell them apart. opencode asks the model for a title, which costs a request
and a wait and fails offline; the first prompt's first line already says what the session is
about. The trap: a prompt may be huge, multi-line, or start with blank lines or a fenced block,
so the title is the first line with words in it, whitespace collapsed, cut at a word boundary.
"""

from __future__ import annotations

from collections.abc import Iterable

TITLE_CHARS = 60


def title_from_prompt(texts: Iterable[str]) -> str:
    """The first line with words in it, collapsed and cut to :data:`TITLE_CHARS` (``…``
    marks a cut); ``""`` when the prompt has no words."""
    for text in texts:
        for line in text.splitlines():
            words = line.replace("`", " ").split() if line.lstrip().startswith("```") else None
            if words is not None:
                continue  # a code fence line says nothing about the session
            flat = " ".join(line.split())
            if flat:
                return _cut(flat)
    return ""


def _cut(text: str) -> str:
    if len(text) <= TITLE_CHARS:
        return text
    head = text[: TITLE_CHARS - 1]
    space = head.rfind(" ")
    if space >= TITLE_CHARS // 2:
        head = head[:space]
    return head.rstrip(" ,;:.-") + "…"
