"""Validation of request params: plain dicts in, typed values out, errors naming the field."""

from __future__ import annotations

import re
from typing import Any

from server.errors import invalid_params

MAX_TEXT_CHARS = 1_000_000  # one prompt text; the frame limit caps the whole message
MAX_ID_CHARS = 200
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON can spell them; UTF-8 cannot hold them


def as_object(params: Any) -> dict[str, Any]:
    """The params object; a request without params counts as ``{}``."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise invalid_params("params", "must be an object")
    return params


def required_str(p: dict[str, Any], name: str, max_chars: int = MAX_ID_CHARS) -> str:
    if name not in p or p[name] is None:
        raise invalid_params(name, "is required")
    return _str(p, name, max_chars)


def optional_str(p: dict[str, Any], name: str, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    if p.get(name) is None:
        return None
    return _str(p, name, max_chars)


def _str(p: dict[str, Any], name: str, max_chars: int) -> str:
    value = _text(p[name], name, max_chars)
    if "\x00" in value:
        raise invalid_params(name, "must not contain NUL characters")
    return value


def _text(value: Any, name: str, max_chars: int) -> str:
    """A string of valid Unicode within ``max_chars`` (prompt texts may also hold NUL)."""
    if not isinstance(value, str):
        raise invalid_params(name, f"must be a string, got {_kind(value)}")
    if len(value) > max_chars:
        raise invalid_params(name, f"is longer than {max_chars} characters")
    if _LONE_SURROGATE.search(value):
        raise invalid_params(name, "must not contain lone surrogates (not valid Unicode)")
    return value


def optional_int(p: dict[str, Any], name: str, default: int, lo: int = 0, hi: int = 2**53) -> int:
    value = p.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_params(name, f"must be an integer, got {_kind(value)}")
    if not lo <= value <= hi:
        raise invalid_params(name, f"must be between {lo} and {hi}, got {value}")
    return value


def prompt_texts(p: dict[str, Any]) -> tuple[str, ...]:
    """``prompt: [{"type": "text", "text": ...}, ...]`` → the texts, at least one non-empty."""
    blocks = p.get("prompt")
    if blocks is None:
        raise invalid_params("prompt", "is required")
    if not isinstance(blocks, list) or not blocks:
        raise invalid_params("prompt", "must be a non-empty array of content blocks")
    texts: list[str] = []
    for i, block in enumerate(blocks):
        where = f"prompt[{i}]"
        if not isinstance(block, dict):
            raise invalid_params(where, f"must be an object, got {_kind(block)}")
        if block.get("type") != "text":
            raise invalid_params(f"{where}.type", 'must be "text" (the only block type supported)')
        texts.append(_text(block.get("text"), f"{where}.text", MAX_TEXT_CHARS))
    if not any(t.strip() for t in texts):
        raise invalid_params("prompt", "has no text")
    return tuple(texts)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(
        type(value), "object"
    )
