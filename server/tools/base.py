"""What every tool shares: the :class:`Tool` record, its outcome and errors, the checking of the
model's arguments against the tool's schema, safe quoting of names, and the output caps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from server.config import Sandbox
from server.providers.base import CancelToken, ToolSpec

if TYPE_CHECKING:
    from server.tools.paths import Workspace

MAX_OUTPUT_CHARS = 50_000
MAX_OUTPUT_LINES = 2_000
MAX_LINE_CHARS = 2_000  # longer lines are cut, in read_file and in grep's output
CHILD_TIMEOUT_S = 10.0  # wall-clock limit of a tool that runs in a child process (grep)

ToolKind = Literal["read", "search", "edit", "execute"]


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool call produced. ``error`` is set (and ``output`` empty) when it failed."""

    output: str
    title: str
    error: str | None = None
    truncated: bool = False


class ToolError(Exception):
    """A failure to report to the model; the message is safe to show."""


@dataclass(frozen=True)
class ToolSettings:
    """What the configuration says about tools (see :mod:`server.config`)."""

    sandbox: Sandbox | None = None  # where bash runs; None: bwrap when it is on PATH, else none


@dataclass(frozen=True)
class RunContext:
    """What a call may need besides its arguments: the turn's cancel token, the wall-clock
    limit of a tool that runs in a child process (grep), and the tool settings."""

    cancel: CancelToken | None = None
    timeout_s: float = CHILD_TIMEOUT_S
    settings: ToolSettings = ToolSettings()


Run = Callable[["Workspace", Mapping[str, Any], str, RunContext], ToolOutcome]


@dataclass(frozen=True)
class Tool:
    """One tool: what the model is told (``spec``), what runs (``run``), and what kind of
    thing it does. ``run(workspace, args, title, context)`` gets arguments already checked
    against ``spec`` and raises :class:`ToolError` for what the model should hear."""

    spec: ToolSpec
    run: Run
    kind: ToolKind
    title_from: str = "path"  # the argument that titles the tool part ("." when absent)
    # Whether the model is told about the tool (TOOL_SPECS). An unoffered tool can still be
    # run through run_tool, by tests. bash is not offered until the permission gate of issue 8
    # asks the user before each command: until then the model must not run commands.
    offered: bool = True

    @property
    def name(self) -> str:
        return self.spec.name


# --- names in messages -----------------------------------------------------------------------


def quoted(text: str) -> str:
    """``text`` quoted for messages."""
    return json.dumps(printable(text), ensure_ascii=False)


def printable(text: str) -> str:
    """``text`` with what cannot be written as UTF-8 escaped: the bytes of a name that is not
    UTF-8 as ``\\xe9``, any other lone surrogate as ``\\udXXX``. Valid text is unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes os.scandir decoded
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


# --- arguments -------------------------------------------------------------------------------


def parse_arguments(spec: ToolSpec, arguments: str) -> dict[str, Any]:
    """The arguments checked against the spec's schema; null optional values are dropped."""
    text = arguments.strip() if isinstance(arguments, str) else arguments
    if not isinstance(text, str):
        raise ToolError("arguments must be a JSON object")
    if text == "":
        raw: object = {}
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ToolError(
                f"arguments are not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
            ) from None
    if not isinstance(raw, dict):
        raise ToolError("arguments must be a JSON object")
    properties: Mapping[str, Mapping[str, Any]] = spec.parameters["properties"]
    required: Iterable[str] = spec.parameters.get("required", ())
    args: dict[str, Any] = {}
    for key, value in raw.items():
        schema = properties.get(key)
        if schema is None:
            takes = ", ".join(properties)
            raise ToolError(f"unknown argument {quoted(key)}; {spec.name} takes {takes}")
        if value is None:
            continue
        args[key] = _check_value(key, value, schema)
    for key in required:
        if key not in args:
            raise ToolError(f"missing required argument {quoted(key)}")
    return args


def _check_value(key: str, value: object, schema: Mapping[str, Any]) -> object:
    kind = schema["type"]
    if kind == "string":
        if not isinstance(value, str):
            raise ToolError(f"argument {quoted(key)} must be a string")
        return value
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ToolError(f"argument {quoted(key)} must be an integer")
        minimum = schema.get("minimum")
        if minimum is not None and value < minimum:
            raise ToolError(f"argument {quoted(key)} must be at least {minimum}, got {value}")
        maximum = schema.get("maximum")
        if maximum is not None and value > maximum:
            raise ToolError(f"argument {quoted(key)} must be at most {maximum}, got {value}")
        return value
    raise AssertionError(f"schema type {kind} is not handled")


# --- output caps -----------------------------------------------------------------------------


def collect(lines: Iterable[str]) -> tuple[list[str], bool]:
    """Lines up to one past the caps, and whether ``lines`` ran out before the caps."""
    taken: list[str] = []
    size = 0
    for line in lines:
        taken.append(line)
        size += len(line) + 1
        if len(taken) > MAX_OUTPUT_LINES or size > MAX_OUTPUT_CHARS + 1:
            return taken, False
    return taken, True


def join(lines: list[str], note: Callable[[int], str] | None) -> tuple[str, int]:
    """``lines`` and the closing ``note(shown)`` within the caps, dropping lines from the end
    to make room; also returns how many lines were shown."""
    shown = len(lines)
    size = sum(len(line) + 1 for line in lines)
    while True:
        tail = note(shown) if note is not None else None
        total_lines = shown + (tail is not None)
        total_chars = size + (len(tail) + 1 if tail is not None else 0) - 1
        if shown == 0 or (total_lines <= MAX_OUTPUT_LINES and total_chars <= MAX_OUTPUT_CHARS):
            break
        shown -= 1
        size -= len(lines[shown]) + 1
    body = lines[:shown] + ([tail] if tail is not None else [])
    return "\n".join(body), shown
