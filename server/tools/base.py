"""What every tool shares: the :class:`Tool` record, its outcome and errors, the checking of the
model's arguments against the tool's schema, safe quoting of names, and the output caps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from server.config import Sandbox
from server.providers.base import CancelToken, ToolSpec

if TYPE_CHECKING:
    from server.tools.edits import Plan
    from server.tools.paths import Workspace

MAX_OUTPUT_CHARS = 50_000
MAX_OUTPUT_LINES = 2_000
MAX_LINE_CHARS = 2_000  # longer lines are cut, in read_file and in grep's output
CHILD_TIMEOUT_S = 10.0  # wall-clock limit of a tool that runs in a child process (grep)

ToolKind = Literal["read", "search", "edit", "execute"]


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool call produced. ``error`` is set (and ``output`` empty) when it failed.

    ``metadata`` is for the front ends, never for the model: a tool that changed files sets
    ``{"files": [{"path", "action", "diff", "before", "movedFrom"?}]}`` (see
    :mod:`server.tools.edits`); the read tools leave it None."""

    output: str
    title: str
    error: str | None = None
    truncated: bool = False
    metadata: dict[str, Any] | None = None


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
Planner = Callable[["Workspace", Mapping[str, Any], str], "Plan"]


@dataclass(frozen=True)
class Tool:
    """One tool: what the model is told (``spec``), what runs (``run``), and what kind of
    thing it does. ``run(workspace, args, title, context)`` gets arguments already checked
    against ``spec`` and raises :class:`ToolError` for what the model should hear.

    A tool that changes files also has ``plan``: the change computed, nothing written (see
    :mod:`server.tools.edits`); its ``run`` applies that plan. ``offered`` says whether the
    model is told of the tool at all."""

    spec: ToolSpec
    run: Run
    kind: ToolKind
    # the argument that titles the tool part ("." when absent); None: the tool's name
    title_from: str | None = "path"
    offered: bool = True
    plan: Planner | None = None

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
    """The arguments checked against the spec's JSON schema (with the ``jsonschema`` library);
    null values are dropped first, so a null optional argument means its default. The first
    violation becomes a :class:`ToolError` that names the argument."""
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
    args = {key: value for key, value in raw.items() if value is not None}
    schema = spec.parameters
    errors = sorted(
        Draft202012Validator(schema).iter_errors(args), key=lambda e: _error_rank(schema, e)
    )
    if errors:
        raise ToolError(_describe(spec, errors[0], args))
    properties: Mapping[str, Mapping[str, Any]] = schema["properties"]
    for key, value in args.items():
        if properties[key].get("type") == "integer" and isinstance(value, float):
            args[key] = int(value)  # 2.0 is an integer to JSON Schema; the tools want int
    return args


def _error_rank(schema: Mapping[str, Any], error: ValidationError) -> tuple[int, int]:
    """Unknown arguments first, then each argument's own problem in the schema's order, then
    missing ones: the order the model most likely wants to hear them in."""
    if error.validator == "additionalProperties":
        return (0, 0)
    if error.validator == "required" and not error.absolute_path:
        return (2, 0)
    order = list(schema.get("properties", {}))
    field = str(error.absolute_path[0]) if error.absolute_path else ""
    return (1, order.index(field) if field in order else len(order))


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "object": "an object",
    "array": "an array",
}


def _describe(spec: ToolSpec, error: ValidationError, args: Mapping[str, Any]) -> str:
    """One sentence about ``error`` that names the argument."""
    properties: Mapping[str, Any] = spec.parameters.get("properties", {})
    if error.validator == "additionalProperties" and not error.absolute_path:
        unknown = next(key for key in args if key not in properties)
        return f"unknown argument {quoted(unknown)}; {spec.name} takes {', '.join(properties)}"
    required: Iterable[str] = spec.parameters.get("required", ())
    if error.validator == "required" and not error.absolute_path:
        missing = next(key for key in required if key not in args)
        return f"missing required argument {quoted(missing)}"
    where = ".".join(str(part) for part in error.absolute_path)
    name = f"argument {quoted(where)}"
    if error.validator == "type":
        wanted: object = error.validator_value
        kinds = [wanted] if isinstance(wanted, str) else list(cast("Iterable[str]", wanted))
        return f"{name} must be " + " or ".join(_TYPE_NAMES.get(k, k) for k in kinds)
    if error.validator == "minimum":
        return f"{name} must be at least {error.validator_value}, got {error.instance}"
    if error.validator == "maximum":
        return f"{name} must be at most {error.validator_value}, got {error.instance}"
    if error.validator == "minLength":
        if error.validator_value == 1:
            return f"{name} must not be empty"
        return f"{name} must be at least {error.validator_value} characters long"
    detail = printable(error.message)
    if len(detail) > 200:
        detail = detail[:200] + "…"
    return f"{name} is not valid: {detail}"


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
