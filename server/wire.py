"""The JSON shapes of results and notifications (camelCase), built from the plain types."""

from __future__ import annotations

from typing import Any

from server.compaction import CompactionOutcome
from server.service import ContextView, Loaded
from server.turn import SessionStatus, TurnOutcome
from store.models import Event, Json, Session

PROTOCOL_VERSION = 1


def session_created(session: Session) -> Json:
    return {"sessionId": session.id, "session": session.to_json()}


def loaded(result: Loaded) -> Json:
    return {
        "session": result.session.to_json(),
        "messages": [m.to_json() for m in result.messages],
        # the same shape as compaction.updated's data: statuses are not in the history
        "compactions": [c.event_json() for c in result.compactions],
        "seq": result.seq,
    }


def context(view: ContextView) -> Json:
    ctx = view.context
    out: Json = {
        "sessionId": ctx.session_id,
        "messages": [
            {
                "role": m.role,
                "messageId": m.message_id,
                "tokens": m.tokens,
                "parts": [p.to_json() for p in m.parts],
            }
            for m in ctx.messages
        ],
        "tokens": ctx.tokens,
        "usable": view.limits.usable(),
        "contextLimit": view.limits.context,
        "outputLimit": view.limits.output,
    }
    if ctx.marker_id:
        out["markerId"] = ctx.marker_id
    if ctx.summary_message_id:
        out["summaryMessageId"] = ctx.summary_message_id
    return out


def turn(outcome: TurnOutcome) -> Json:
    out: Json = {"stopReason": outcome.stop_reason, "messageId": outcome.message_id}
    if outcome.user_message_id:
        out["userMessageId"] = outcome.user_message_id
    if outcome.error is not None:
        e = outcome.error
        error: Json = {"name": e.name, "message": e.message, "code": e.code}
        if e.status is not None:
            error["status"] = e.status
        if e.retryable is not None:
            error["retryable"] = e.retryable
        out["error"] = error
    return out


def compaction(outcome: CompactionOutcome) -> Json:
    out: Json = {
        "markerId": outcome.marker_id,
        "created": outcome.created,
        "status": outcome.status,
    }
    if outcome.summary_message_id:
        out["summaryMessageId"] = outcome.summary_message_id
    if outcome.error is not None:
        out["error"] = outcome.error.to_json()
    return out


def events(found: list[Event], seq: int) -> Json:
    return {"events": [e.to_json() for e in found], "seq": seq}


def delta(session_id: str, message_id: str, part_id: str, part_type: str, text: str) -> Json:
    return {
        "sessionId": session_id,
        "messageId": message_id,
        "partId": part_id,
        "partType": part_type,
        "field": "text",
        "delta": text,
    }


def status(s: SessionStatus) -> Json:
    out: dict[str, Any] = {"sessionId": s.session_id, "status": s.status}
    if s.attempt is not None:
        out["attempt"] = s.attempt
    if s.next_retry_at is not None:
        out["nextRetryAt"] = s.next_retry_at
    return out


def capabilities(
    provider: str,
    model: str,
    limits: tuple[int, int],
    auto: bool,
    where: tuple[str, str | None, bool] | None = None,
) -> Json:
    """``where``: the database file, the (masked) base URL and whether an API key is set, for
    a health check to name them (the key itself never)."""
    found: Json = {}
    if where is not None:
        db, base_url, key_set = where
        found = {"db": db, "baseUrl": base_url, "apiKey": "set" if key_set else "not set"}
    return found | {
        "protocolVersion": PROTOCOL_VERSION,
        "provider": provider,
        "model": model,
        "contextLimit": limits[0],
        "outputLimit": limits[1],
        "autoCompact": auto,
        "promptBlocks": ["text"],
        "notifications": ["session/sync", "session/delta", "session/status"],
    }
