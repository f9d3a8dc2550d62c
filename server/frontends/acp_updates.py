"""What an ACP client sees of a session: stored history, durable events and live deltas, as the
``update`` objects of ``session/update`` notifications (plain JSON, camelCase).

One :class:`SessionView` per session a connection follows. Text reaches it from two sources: live
deltas (this process's turns, as they stream) and durable events (``message.part.delta`` and
``message.part.updated``: this process's writes and other processes'). Both carry positions, so
each part's text is sent once, in order, whichever source has it first.

Compactions (docs/protocol.md §4) become ``compaction_update`` / ``compaction_summary_chunk``
when the client declared ``clientCapabilities.session.compaction`` (the session-compaction RFD;
the Python SDK 0.12 has no types for them, so these are built here as the spec's JSON), and a
plain agent message otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from server.service import ContextView, Loaded
from server.tools.apply_patch import parse as parse_patch
from server.tools.base import ToolError
from server.tools.edits import Plan
from store.models import Event

Update = dict[str, Any]

TOOL_KINDS = {
    "read_file": "read",
    "list_files": "search",
    "grep": "search",
    "edit": "edit",
    "write": "edit",
    "apply_patch": "edit",
    "bash": "execute",
}
TOOL_STATUS = {
    "pending": "pending",
    "running": "in_progress",
    "completed": "completed",
    "error": "failed",
}
HIDDEN_KINDS = ("continuation", "replay")  # synthetic user messages the server wrote


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def usage(view: ContextView) -> Update:
    return {
        "sessionUpdate": "usage_update",
        "used": view.context.tokens,
        "size": view.limits.usable(),
    }


def tokens_label(n: int) -> str:
    if n >= 10_000:
        return f"{round(n / 1000)}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return str(n)


def summary_text(view: ContextView | None, summary_id: str | None) -> str:
    if view is None or summary_id is None:
        return ""
    for m in view.context.messages:
        if m.message_id == summary_id:
            return "".join(str(p.to_json().get("text", "")) for p in m.parts)
    return ""


@dataclass
class _Compaction:
    started: bool = False  # in_progress was sent
    ended: bool = False
    before: int | None = None  # tokens in the context when it was first seen


@dataclass
class SessionView:
    session_id: str
    compaction_capable: bool
    directory: str | None = None
    kinds: dict[str, str] = field(default_factory=dict)  # message id -> kind
    summary_of: dict[str, str] = field(default_factory=dict)  # summary message id -> marker
    summaries: dict[str, str] = field(default_factory=dict)  # summary message id -> its text
    sent: dict[str, int] = field(default_factory=dict)  # part id -> characters sent
    live: dict[str, int] = field(default_factory=dict)  # part id -> characters from deltas
    tools: set[str] = field(default_factory=set)  # tool parts announced with tool_call
    diffs: dict[str, list[Update]] = field(default_factory=dict)  # part id -> planned diffs
    compactions: dict[str, _Compaction] = field(default_factory=dict)
    used: int | None = None  # tokens of the latest step (or usage_update) seen
    local_prompts: int = 0  # prompts of this connection running: their text is not echoed

    # --- live --------------------------------------------------------------------------------

    def delta(self, message_id: str, part_id: str, part_type: str, text: str) -> list[Update]:
        self.kinds.setdefault(message_id, "reply")
        start = self.live.get(part_id, 0)
        self.live[part_id] = start + len(text)
        return self._text(message_id, part_id, part_type, start, text)

    def event(self, e: Event, view: ContextView | None = None) -> list[Update]:
        """``view``: the context after a compaction ended (see :meth:`ends_compaction`)."""
        d = e.data
        if e.type == "message.updated":
            self._info(d)
            return []
        if e.type == "message.part.delta" and d.get("type") in ("text", "reasoning"):
            offset = int(d.get("offset", 0))
            return self._text(str(d["messageId"]), str(d["id"]), str(d["type"]), offset, d["delta"])
        if e.type == "message.part.updated":
            return self._part(d, replay=False)
        if e.type == "compaction.updated":
            return self._compaction(d, view, replay=False)
        return []

    def ends_compaction(self, e: Event) -> bool:
        """A compaction.updated that ends a compaction not yet reported as ended: the caller
        passes the context after it to :meth:`event` (tokens, and the summary's text)."""
        if e.type != "compaction.updated" or e.data.get("status") not in ("completed", "failed"):
            return False
        c = self.compactions.get(str(e.data.get("markerId")))
        return c is None or not c.ended

    # --- session/load ------------------------------------------------------------------------

    def replay(self, loaded: Loaded) -> list[Update]:
        """The whole history, in order. Summaries are shown with their compaction (at the
        marker); synthetic continuation and replay messages are not shown."""
        self.directory = loaded.session.directory
        states = {c.marker_id: c.event_json() for c in loaded.compactions}
        texts: dict[str, str] = {}
        for m in loaded.messages:
            info = m.info.to_json()
            if info.get("kind") == "summary" and "error" not in info and "finish" in info:
                marker = str(info.get("compactionId") or info.get("parentId"))
                texts[marker] = "".join(
                    str(p.to_json().get("text", "")) for p in m.parts if p.type == "text"
                )
        out: list[Update] = []
        for m in loaded.messages:
            info = m.info.to_json()
            self._info(info)
            kind = info.get("kind")
            if kind == "marker":
                state = states.get(m.info.id)
                if state is not None:
                    out += self._replayed_compaction(state, texts.get(m.info.id, ""))
                continue
            for p in m.parts:
                part = p.to_json()
                if kind == "summary" or kind in HIDDEN_KINDS:
                    self.sent[part["id"]] = len(str(part.get("text", "")))
                    continue
                out += self._part(part, replay=True)
        return out

    # --- the pieces ----------------------------------------------------------------------------

    def _info(self, info: dict[str, Any]) -> None:
        message_id = str(info["id"])
        kind = str(info.get("kind", ""))
        self.kinds[message_id] = kind
        if kind == "summary":
            self.summary_of[message_id] = str(info.get("compactionId") or info.get("parentId"))
        tokens = info.get("tokens")
        if kind == "reply" and isinstance(tokens, dict):
            cache = tokens.get("cache") or {}
            total = tokens.get("total")
            if total is None:
                total = (
                    int(tokens.get("input", 0))
                    + int(tokens.get("output", 0))
                    + int(cache.get("read", 0))
                    + int(cache.get("write", 0))
                )
            self.used = int(total)

    def _part(self, part: dict[str, Any], *, replay: bool) -> list[Update]:
        kind = part.get("type")
        if kind in ("text", "reasoning"):
            text = str(part.get("text", ""))
            return self._text(str(part["messageId"]), str(part["id"]), str(kind), 0, text, replay)
        if kind == "tool":
            return self._tool(part, replay)
        return []

    def _text(
        self,
        message_id: str,
        part_id: str,
        part_type: str,
        start: int,
        text: str,
        replay: bool = False,
    ) -> list[Update]:
        sent = self.sent.get(part_id, 0)
        end = start + len(text)
        if end <= sent:
            return []
        new = text[max(0, sent - start) :]
        self.sent[part_id] = end
        kind = self.kinds.get(message_id, "")
        if kind == "summary":
            return self._summary_chunk(message_id, new)
        if kind in HIDDEN_KINDS or kind == "marker":
            return []
        if kind == "prompt":
            if self.local_prompts and not replay:
                return []  # the client shows what its user typed
            name = "user_message_chunk"
        else:
            name = "agent_thought_chunk" if part_type == "reasoning" else "agent_message_chunk"
        return [{"sessionUpdate": name, "content": text_block(new), "messageId": message_id}]

    def _summary_chunk(self, message_id: str, text: str) -> list[Update]:
        self.summaries[message_id] = self.summaries.get(message_id, "") + text
        marker = self.summary_of.get(message_id)
        if not self.compaction_capable or marker is None:
            return []  # shown whole when the compaction completes
        return [
            {
                "sessionUpdate": "compaction_summary_chunk",
                "compactionId": marker,
                "content": text_block(text),
            }
        ]

    def _tool(self, part: dict[str, Any], replay: bool) -> list[Update]:
        part_id = str(part["id"])
        state = part.get("state") or {}
        name = str(part.get("tool", ""))
        status = TOOL_STATUS.get(str(state.get("status")), "pending")
        given = state.get("input")
        args: dict[str, Any] = given if isinstance(given, dict) else {}
        title = str(state.get("title") or _tool_title(name, args))
        diffs = self.diffs.get(part_id) or input_diffs(name, args, self.directory)
        fields = tool_call_fields(part_id, name, title, status, args, self.directory, diffs)
        result = state.get("output") if status == "completed" else state.get("error")
        if isinstance(result, str) and status in ("completed", "failed"):
            # A failed edit changed nothing: its diff is not shown, only why it failed.
            shown = diffs if status == "completed" else []
            fields["content"] = [*shown, {"type": "content", "content": text_block(result)}]
            fields["rawOutput"] = {"output": result} if status == "completed" else {"error": result}
        out: list[Update] = []
        if part_id not in self.tools:
            self.tools.add(part_id)
            start = {k: v for k, v in fields.items() if k not in ("content", "rawOutput")}
            if diffs:
                start["content"] = diffs
            out.append({"sessionUpdate": "tool_call", **start, "status": "pending"})
            if status == "pending" and not replay:
                return out
        out.append({"sessionUpdate": "tool_call_update", **fields})
        return out

    def _compaction(
        self, data: dict[str, Any], view: ContextView | None, *, replay: bool
    ) -> list[Update]:
        marker = str(data["markerId"])
        c = self.compactions.setdefault(marker, _Compaction(before=self.used))
        status = data.get("status")
        if c.ended:
            return []
        if status in ("pending", "running"):
            if c.started:
                return []
            c.started = True
            if not self.compaction_capable:
                return []
            return [_compaction_update(marker, "in_progress")]
        c.ended = True
        if status == "completed":
            summary_id = data.get("summaryMessageId")
            text = self.summaries.get(str(summary_id), "") or summary_text(view, summary_id)
            if self.compaction_capable:
                return [_compaction_update(marker, "completed", summary=text)]
            after = view.context.tokens if view is not None else None
            return [self._notice(marker, _compacted_text(c.before, after, text, replay))]
        error = data.get("error") or {}
        cancelled = error.get("code") == "cancelled"
        message = str(error.get("message") or "compaction failed")
        if self.compaction_capable:
            if cancelled:
                return [_compaction_update(marker, "cancelled")]
            return [_compaction_update(marker, "failed", error=message)]
        return [self._notice(marker, "Compaction cancelled.\n" if cancelled else f"{message}\n")]

    def _replayed_compaction(self, data: dict[str, Any], text: str) -> list[Update]:
        marker = str(data["markerId"])
        if data.get("status") == "completed":
            self.compactions[marker] = _Compaction(started=True, ended=True)
            if self.compaction_capable:
                return [_compaction_update(marker, "completed", summary=text)]
            return [self._notice(marker, _compacted_text(None, None, text, True))]
        return self._compaction(data, None, replay=True)

    def _notice(self, marker: str, text: str) -> Update:
        return {
            "sessionUpdate": "agent_message_chunk",
            "content": text_block(text),
            "messageId": marker,
        }


def _compaction_update(
    marker: str, status: str, summary: str | None = None, error: str | None = None
) -> Update:
    out: Update = {"sessionUpdate": "compaction_update", "compactionId": marker, "status": status}
    if summary:
        out["summary"] = [text_block(summary)]
    if error:
        out["error"] = error
    return out


def _compacted_text(before: int | None, after: int | None, summary: str, replay: bool) -> str:
    if before is not None and after is not None:
        head = f"Compacted: {tokens_label(before)} → {tokens_label(after)} tokens"
    elif after is not None:
        head = f"Compacted to {tokens_label(after)} tokens"
    else:
        head = "Compacted"
    if not summary:
        return head + ".\n"
    return f"{head}; summary follows.\n\n{summary.strip()}\n"


def tool_call_fields(
    part_id: str,
    name: str,
    title: str,
    status: str,
    args: dict[str, Any],
    directory: str | None,
    diffs: list[Update],
) -> Update:
    """The ``tool_call`` / ``tool_call_update`` fields of a tool part (``toolCallId`` is the
    part's id), and of the ``toolCall`` of ``session/request_permission``; ``content`` is left
    to the caller."""
    fields: Update = {"toolCallId": part_id, "title": title, "status": status}
    if name in TOOL_KINDS:
        fields["kind"] = TOOL_KINDS[name]
    fields["rawInput"] = args
    path = args.get("path")
    paths = [_absolute(directory, path)] if isinstance(path, str) and directory else []
    paths += [str(d["path"]) for d in diffs if d["path"] not in paths]
    if paths:
        fields["locations"] = [{"path": p} for p in paths]
    return fields


def _absolute(directory: str | None, path: str) -> str:
    return os.path.normpath(os.path.join(directory or "/", path))


def diff_block(directory: str | None, path: str, old: str | None, new: str) -> Update:
    block: Update = {"type": "diff", "path": _absolute(directory, path)}
    if old is not None:
        block["oldText"] = old
    block["newText"] = new
    return block


def planned_diffs(plan: Plan, directory: str | None) -> list[Update]:
    """Each file's whole text before and after a planned edit (the permission question's
    diff): ``oldText`` absent for a new file, ``newText`` empty for a deletion."""
    return [
        diff_block(directory, c.shown, c.before, c.after if c.after is not None else "")
        for c in plan.changes
    ]


def input_diffs(name: str, args: dict[str, Any], directory: str | None) -> list[Update]:
    """Diff blocks from an edit tool's input alone, when the planned ones are not known (the
    call was allowed without a question, or asked before this connection saw it): ``edit``
    shows ``oldString`` → ``newString``, ``write`` the new content (no ``oldText``: the old
    one is not stored), ``apply_patch`` each hunk's old and new lines (a deletion shows
    nothing). Best effort: input that does not parse gives no blocks."""
    if not directory:
        return []
    path = args.get("path")
    if name == "edit" and isinstance(path, str):
        old, new = args.get("oldString"), args.get("newString")
        if isinstance(old, str) and isinstance(new, str):
            return [diff_block(directory, path, old, new)]
    elif name == "write" and isinstance(path, str):
        content = args.get("content")
        if isinstance(content, str):
            return [diff_block(directory, path, None, content)]
    elif name == "apply_patch" and isinstance(args.get("patchText"), str):
        try:
            operations = parse_patch(args["patchText"])
        except (ToolError, IndexError, ValueError):
            return []
        out: list[Update] = []
        for op in operations:
            if op.kind == "add":
                out.append(diff_block(directory, op.path, None, "\n".join(op.added)))
            elif op.kind == "update":
                old_lines = "\n".join("\n".join(h.old) for h in op.hunks)
                new_lines = "\n".join("\n".join(h.new) for h in op.hunks)
                out.append(diff_block(directory, op.move_to or op.path, old_lines, new_lines))
        return out
    return []


def _tool_title(name: str, args: dict[str, Any]) -> str:
    for key in ("path", "pattern", "query"):
        if isinstance(args.get(key), str):
            return f"{name} {args[key]}"
    return name


__all__ = [
    "SessionView",
    "Update",
    "diff_block",
    "input_diffs",
    "planned_diffs",
    "text_block",
    "tokens_label",
    "tool_call_fields",
    "usage",
]
