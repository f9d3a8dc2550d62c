"""What the model sees next, and which recent turns a compaction keeps verbatim.

After a completed compaction the model's context is ``[marker, summary, tail, after]``: the
marker and its summary, the messages from the marker's ``tailStartId`` up to the marker (up to the
replayed message for an overflow compaction), then every message after the marker. Markers and
summary attempts of other compactions, and assistant messages that produced nothing, are left
out. Reads start at the tail of the last completed compaction, so the cost of building the
context does not depend on how much history lies before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from server.tokens import (
    PRUNED_PLACEHOLDER,
    ModelLimits,
    estimate_parts,
)
from store import Store, Tx
from store.models import (
    Compaction,
    FilePart,
    MessageWithParts,
    Part,
    Role,
    TextPart,
    ToolPart,
)

TAIL_TURNS = 2
TAIL_SHARE = 0.25
TAIL_MIN_TOKENS = 2_000
TAIL_MAX_TOKENS = 8_000

MARKER_TEXT = (
    "[Earlier conversation compacted] The conversation before this point was replaced by the "
    "summary that follows."
)


@dataclass(frozen=True)
class ContextMessage:
    """One message as the model receives it."""

    role: Role
    message_id: str
    parts: tuple[Part, ...]
    tokens: int


@dataclass(frozen=True)
class Conversation:
    """The stored messages that count for the model, from the last completed compaction on."""

    session_id: str
    anchor: Compaction | None
    summary: MessageWithParts | None
    tail: tuple[MessageWithParts, ...]
    after: tuple[MessageWithParts, ...]
    read_from: str  # the first message id read ("" when the whole session was read)

    @property
    def messages(self) -> tuple[MessageWithParts, ...]:
        """Tail and after, in order (without the anchor marker and its summary)."""
        return self.tail + self.after


@dataclass(frozen=True)
class ModelContext:
    session_id: str
    messages: tuple[ContextMessage, ...]
    tokens: int
    marker_id: str | None
    summary_message_id: str | None
    read_from: str


def counts_for_model(m: MessageWithParts) -> bool:
    """Markers and summaries are placed by the anchor; messages with nothing to send drop out."""
    if m.info.kind in ("marker", "summary"):
        return False
    return any(_for_model(p) is not None for p in m.parts)


def load_conversation(tx: Tx, session_id: str, anchor: Compaction | None = None) -> Conversation:
    """Read the conversation as of ``anchor`` (default: the last completed compaction)."""
    if anchor is None:
        anchor = tx.last_completed_compaction(session_id)
    if anchor is None:
        tx.require_session_exists(session_id)
        history = tx.history(session_id)
        after = tuple(m for m in history if counts_for_model(m))
        return Conversation(session_id, None, None, (), after, "")
    tail_start = anchor.tail_plan or None  # always before the marker
    read_from = tail_start or anchor.marker_id
    history = tx.history(session_id, read_from)
    summary = next((m for m in history if m.info.id == anchor.summary_id), None)
    tail_end = anchor.replay_of or anchor.marker_id
    tail = tuple(
        m
        for m in history
        if tail_start is not None and tail_start <= m.info.id < tail_end and counts_for_model(m)
    )
    after = tuple(m for m in history if m.info.id > anchor.marker_id and counts_for_model(m))
    return Conversation(session_id, anchor, summary, tail, after, read_from)


def _for_model(part: Part) -> Part | None:
    """The part as sent to the model, or None when it is not sent at all."""
    body = part.body
    if isinstance(body, ToolPart) and body.state.time_compacted is not None:
        return part.with_body(replace(body, state=replace(body.state, output=PRUNED_PLACEHOLDER)))
    if isinstance(body, TextPart | ToolPart | FilePart):
        return part
    return None


def to_context_message(m: MessageWithParts) -> ContextMessage:
    parts = tuple(p for p in (_for_model(p) for p in m.parts) if p is not None)
    return ContextMessage(m.info.role, m.info.id, parts, estimate_parts(parts))


def render(conv: Conversation) -> ModelContext:
    out: list[ContextMessage] = []
    if conv.anchor is not None:
        marker = conv.anchor.marker_id
        text = TextPart(MARKER_TEXT, synthetic=True)
        marker_part = Part(f"{marker}:marker", marker, conv.session_id, text)
        out.append(ContextMessage("user", marker, (marker_part,), estimate_parts([marker_part])))
        if conv.summary is not None:
            out.append(to_context_message(conv.summary))
    out.extend(to_context_message(m) for m in conv.messages)
    return ModelContext(
        session_id=conv.session_id,
        messages=tuple(out),
        tokens=sum(m.tokens for m in out),
        marker_id=conv.anchor.marker_id if conv.anchor else None,
        summary_message_id=conv.summary.info.id if conv.summary else None,
        read_from=conv.read_from,
    )


def build_context(store: Store, session_id: str) -> ModelContext:
    """Exactly what goes to the model next, with its token estimate."""
    with store.read() as tx:
        return render(load_conversation(tx, session_id))


# --- the tail a new compaction keeps ----------------------------------------------------------


def tail_budget(limits: ModelLimits) -> int:
    """A quarter of the usable window, clamped to 2 000-8 000 tokens."""
    share = int(limits.usable() * TAIL_SHARE)
    return max(TAIL_MIN_TOKENS, min(TAIL_MAX_TOKENS, share))


def plan_tail(candidates: tuple[MessageWithParts, ...], budget: int) -> str | None:
    """The first message kept verbatim, or None when nothing fits.

    Looks at the last two user turns and keeps the longest suffix of them that fits ``budget``:
    whole turns when they fit, else a turn split at the earliest message whose suffix fits.
    """
    if not candidates:
        return None
    users = [i for i, m in enumerate(candidates) if m.info.role == "user"]
    first = users[-TAIL_TURNS] if len(users) >= TAIL_TURNS else (users[0] if users else 0)
    chosen: int | None = None
    total = 0
    for i in range(len(candidates) - 1, first - 1, -1):
        total += to_context_message(candidates[i]).tokens
        if total > budget:
            break
        chosen = i
    return candidates[chosen].info.id if chosen is not None else None
