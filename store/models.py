"""The store's records as dataclasses, and their JSON form.

``to_json`` gives the camelCase shape that clients receive (in outbox events and over the wire);
``*_from_json`` reads it back. Nothing here touches SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

Json: TypeAlias = dict[str, Any]
Role = Literal["user", "assistant"]
MessageKind = Literal["prompt", "marker", "continuation", "replay", "reply", "summary"]
CompactionStatus = Literal["pending", "running", "completed", "failed"]
ToolStatus = Literal["pending", "running", "completed", "error"]
SummaryKind = Literal["model", "extractive"]

ROLE_OF_KIND: dict[str, Role] = {
    "prompt": "user",
    "marker": "user",
    "continuation": "user",
    "replay": "user",
    "reply": "assistant",
    "summary": "assistant",
}


def _drop_none(d: Json) -> Json:
    return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class Session:
    id: str
    title: str
    directory: str | None
    time_created: int
    time_updated: int

    def to_json(self) -> Json:
        return _drop_none(
            {
                "id": self.id,
                "title": self.title,
                "directory": self.directory,
                "time": {"created": self.time_created, "updated": self.time_updated},
            }
        )


@dataclass(frozen=True)
class TokenUsage:
    input: int = 0
    output: int = 0
    reasoning: int = 0
    cache_read: int = 0
    cache_write: int = 0
    total: int | None = None  # as reported by the provider, when it reports one

    def count(self) -> int:
        """Tokens the request occupied: the provider's total, else the sum of the parts."""
        if self.total:
            return self.total
        return self.input + self.output + self.cache_read + self.cache_write

    def to_json(self) -> Json:
        return _drop_none(
            {
                "input": self.input,
                "output": self.output,
                "reasoning": self.reasoning,
                "cache": {"read": self.cache_read, "write": self.cache_write},
                "total": self.total,
            }
        )


def tokens_from_json(d: Json) -> TokenUsage:
    cache = d.get("cache") or {}
    return TokenUsage(
        input=int(d.get("input", 0)),
        output=int(d.get("output", 0)),
        reasoning=int(d.get("reasoning", 0)),
        cache_read=int(cache.get("read", 0)),
        cache_write=int(cache.get("write", 0)),
        total=d.get("total"),
    )


@dataclass(frozen=True)
class MessageError:
    """Why an assistant message ended badly. ``name`` is stable; ``message`` is for people."""

    name: str
    message: str

    def to_json(self) -> Json:
        return {"name": self.name, "message": self.message}


@dataclass(frozen=True)
class Message:
    id: str
    session_id: str
    kind: MessageKind
    time_created: int
    time_completed: int | None = None
    parent_id: str | None = None
    compaction_id: str | None = None
    finish: str | None = None
    error: MessageError | None = None
    runner: str | None = None
    tokens: TokenUsage | None = None
    cost: float | None = None
    model: str | None = None
    summary_kind: SummaryKind | None = None

    @property
    def role(self) -> Role:
        return ROLE_OF_KIND[self.kind]

    @property
    def is_summary(self) -> bool:
        return self.kind == "summary"

    @property
    def succeeded(self) -> bool:
        """Finished without error."""
        return self.finish is not None and self.error is None

    def data_json(self) -> Json:
        """The fields kept in the row's JSON column."""
        return _drop_none(
            {
                "tokens": self.tokens.to_json() if self.tokens else None,
                "cost": self.cost,
                "model": self.model,
                "summaryKind": self.summary_kind,
            }
        )

    def to_json(self) -> Json:
        synthetic = self.kind in ("continuation", "replay")
        return _drop_none(
            {
                "id": self.id,
                "sessionId": self.session_id,
                "role": self.role,
                "kind": self.kind,
                "time": _drop_none(
                    {"created": self.time_created, "completed": self.time_completed}
                ),
                "parentId": self.parent_id,
                "compactionId": self.compaction_id,
                "summary": True if self.is_summary else None,
                "synthetic": True if synthetic else None,
                "finish": self.finish,
                "error": self.error.to_json() if self.error else None,
            }
            | self.data_json()
        )


# --- parts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextPart:
    text: str
    synthetic: bool = False
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class ReasoningPart:
    text: str
    type: Literal["reasoning"] = "reasoning"


@dataclass(frozen=True)
class ToolState:
    status: ToolStatus
    input: Json = field(default_factory=dict)
    output: str | None = None
    error: str | None = None
    title: str | None = None
    time_start: int | None = None
    time_end: int | None = None
    time_compacted: int | None = None  # set by prune: the output no longer goes to the model
    # For the front ends, never the model: a tool that changed files records
    # {"files": [{path, action, diff, before?, movedFrom?}]} so editors can show and undo it.
    metadata: Json | None = None

    def to_json(self) -> Json:
        return _drop_none(
            {
                "status": self.status,
                "input": self.input,
                "output": self.output,
                "error": self.error,
                "title": self.title,
                "metadata": self.metadata,
                "time": _drop_none(
                    {
                        "start": self.time_start,
                        "end": self.time_end,
                        "compacted": self.time_compacted,
                    }
                )
                or None,
            }
        )


@dataclass(frozen=True)
class ToolPart:
    call_id: str
    tool: str
    state: ToolState
    type: Literal["tool"] = "tool"


@dataclass(frozen=True)
class FilePart:
    mime: str
    url: str
    filename: str | None = None
    type: Literal["file"] = "file"


@dataclass(frozen=True)
class StepFinishPart:
    tokens: TokenUsage
    cost: float = 0.0
    reason: str | None = None
    type: Literal["step-finish"] = "step-finish"


@dataclass(frozen=True)
class CompactionPart:
    auto: bool
    overflow: bool
    tail_start_id: str | None = None
    instructions: str | None = None
    type: Literal["compaction"] = "compaction"


PartBody: TypeAlias = (
    TextPart | ReasoningPart | ToolPart | FilePart | StepFinishPart | CompactionPart
)


def body_to_json(body: PartBody) -> Json:
    match body:
        case TextPart(text=text, synthetic=synthetic):
            return _drop_none({"text": text, "synthetic": True if synthetic else None})
        case ReasoningPart(text=text):
            return {"text": text}
        case ToolPart(call_id=call_id, tool=tool, state=state):
            return {"callId": call_id, "tool": tool, "state": state.to_json()}
        case FilePart(mime=mime, url=url, filename=filename):
            return _drop_none({"mime": mime, "url": url, "filename": filename})
        case StepFinishPart(tokens=tokens, cost=cost, reason=reason):
            return _drop_none({"tokens": tokens.to_json(), "cost": cost, "reason": reason})
        case CompactionPart(auto=auto, overflow=overflow, tail_start_id=tail, instructions=ins):
            return _drop_none(
                {"auto": auto, "overflow": overflow, "tailStartId": tail, "instructions": ins}
            )


def body_from_json(type_: str, d: Json) -> PartBody:
    if type_ == "text":
        return TextPart(text=d["text"], synthetic=bool(d.get("synthetic", False)))
    if type_ == "reasoning":
        return ReasoningPart(text=d["text"])
    if type_ == "tool":
        s = d["state"]
        t = s.get("time") or {}
        state = ToolState(
            status=s["status"],
            input=s.get("input") or {},
            output=s.get("output"),
            error=s.get("error"),
            title=s.get("title"),
            time_start=t.get("start"),
            time_end=t.get("end"),
            time_compacted=t.get("compacted"),
            metadata=s.get("metadata"),
        )
        return ToolPart(call_id=d["callId"], tool=d["tool"], state=state)
    if type_ == "file":
        return FilePart(mime=d["mime"], url=d["url"], filename=d.get("filename"))
    if type_ == "step-finish":
        return StepFinishPart(
            tokens=tokens_from_json(d["tokens"]),
            cost=float(d.get("cost", 0.0)),
            reason=d.get("reason"),
        )
    if type_ == "compaction":
        return CompactionPart(
            auto=bool(d["auto"]),
            overflow=bool(d["overflow"]),
            tail_start_id=d.get("tailStartId"),
            instructions=d.get("instructions"),
        )
    raise ValueError(f"unknown part type {type_!r}")


@dataclass(frozen=True)
class Part:
    id: str
    message_id: str
    session_id: str
    body: PartBody

    @property
    def type(self) -> str:
        return self.body.type

    def with_body(self, body: PartBody) -> Part:
        return replace(self, body=body)

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "messageId": self.message_id,
            "sessionId": self.session_id,
            "type": self.type,
        } | body_to_json(self.body)


@dataclass(frozen=True)
class MessageWithParts:
    info: Message
    parts: tuple[Part, ...]

    def to_json(self) -> Json:
        return {"info": self.info.to_json(), "parts": [p.to_json() for p in self.parts]}


# --- compaction state, leases, events ---------------------------------------------------------


@dataclass(frozen=True)
class CompactionError:
    """Why a compaction failed. Codes are stable: see docs/compaction.md."""

    code: str
    message: str

    def to_json(self) -> Json:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Compaction:
    marker_id: str
    session_id: str
    status: CompactionStatus
    auto: bool
    overflow: bool
    instructions: str | None
    replay_of: str | None
    tail_plan: str | None  # None: not planned; "": nothing kept verbatim; else first tail message
    tail_set: bool
    summary_id: str | None
    error: CompactionError | None
    attempts: int
    time_created: int
    time_updated: int

    @property
    def active(self) -> bool:
        return self.status in ("pending", "running")

    @property
    def terminal(self) -> bool:
        return not self.active

    def event_json(self) -> Json:
        """Payload of the ``compaction.updated`` event."""
        return _drop_none(
            {
                "markerId": self.marker_id,
                "status": self.status,
                "auto": self.auto,
                "overflow": self.overflow,
                "summaryMessageId": self.summary_id,
                "error": self.error.to_json() if self.error else None,
                "attempts": self.attempts,
            }
        )


@dataclass(frozen=True)
class Lease:
    session_id: str
    owner: str
    host: str
    pid: int
    acquired_at: int
    heartbeat_at: int


@dataclass(frozen=True)
class PermissionRule:
    """A remembered "always" answer: calls on ``key`` matching ``pattern`` are allowed in this
    session (server/permissions.py decides how it combines with the configured rules)."""

    id: str
    session_id: str
    key: str
    pattern: str
    action: Literal["allow"]
    time_created: int

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "sessionId": self.session_id,
            "key": self.key,
            "pattern": self.pattern,
            "action": self.action,
            "time": {"created": self.time_created},
        }


PermissionStatus = Literal["open", "answered", "cancelled"]
PermissionOption = Literal["once", "always", "reject"]
PERMISSION_OPTIONS: tuple[PermissionOption, ...] = ("once", "always", "reject")


@dataclass(frozen=True)
class PermissionRequest:
    """A question a turn asked before running a tool call, and how it was settled."""

    id: str
    session_id: str
    message_id: str
    part_id: str
    call_id: str
    tool: str
    title: str
    input: Json
    diff: str | None
    origin: str  # the runner (process) that asked
    status: PermissionStatus
    option_id: PermissionOption | None
    answered_by: str | None
    time_created: int
    time_answered: int | None

    @property
    def allowed(self) -> bool:
        return self.status == "answered" and self.option_id in ("once", "always")

    def to_json(self) -> Json:
        """The ``permission.asked`` payload: the question as clients are asked it."""
        out: Json = {
            "id": self.id,
            "sessionId": self.session_id,
            "messageId": self.message_id,
            "partId": self.part_id,
            "toolCallId": self.call_id,
            "tool": self.tool,
            "title": self.title,
            "input": self.input,
            "origin": self.origin,
            "status": self.status,
            "time": {"created": self.time_created},
        }
        if self.diff is not None:
            out["diff"] = self.diff
        return out

    def reply_json(self) -> Json:
        """The ``permission.replied`` payload: how the question was settled."""
        outcome: Json = (
            {"outcome": "selected", "optionId": self.option_id}
            if self.status == "answered"
            else {"outcome": "cancelled"}
        )
        return {
            "id": self.id,
            "sessionId": self.session_id,
            "toolCallId": self.call_id,
            "outcome": outcome,
            "by": self.answered_by,
            "time": {"created": self.time_created, "answered": self.time_answered},
        }


@dataclass(frozen=True)
class Event:
    seq: int
    session_id: str
    type: str
    data: Json
    time: int

    def to_json(self) -> Json:
        return {"seq": self.seq, "sessionId": self.session_id, "type": self.type, "data": self.data}
