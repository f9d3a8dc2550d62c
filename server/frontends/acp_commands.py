"""Slash commands typed in an ACP client's prompt box: ``/compact [instructions]`` and
``/context``. ACP has no request for either, so they travel as prompt text (as in opencode and
Gemini CLI) and are advertised with ``available_commands_update``.

``/compact`` runs the same compaction as the LSP front end's ``session/compact``: concurrent
requests from any number of clients and processes make one marker and one summary request. What
the client sees of it comes from the compaction's durable events (server/frontends/acp_updates.py),
so a compaction another process drives looks the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acp.schema import TextContentBlock

from server.frontends.acp_updates import Update, text_block
from server.service import ContextView
from store.ids import new_id

if TYPE_CHECKING:
    from server.frontends.acp import AcpAgent

COMMANDS = {
    "compact": ("Summarize the conversation so far to free the model's context", "instructions"),
    "context": ("Show what the model would see next, and how many tokens it takes", None),
}
SHOWN_CHARS = 2000  # of each tool output in /context


@dataclass(frozen=True)
class Command:
    name: str
    argument: str


def available() -> Update:
    commands: list[dict[str, Any]] = []
    for name, (description, hint) in COMMANDS.items():
        command: dict[str, Any] = {"name": name, "description": description}
        if hint:
            command["input"] = {"hint": hint}
        commands.append(command)
    return {"sessionUpdate": "available_commands_update", "availableCommands": commands}


def parse(prompt: list[Any]) -> Command | None:
    if not prompt or not all(isinstance(b, TextContentBlock) for b in prompt):
        return None
    text = "\n".join(b.text for b in prompt).strip()
    if not text.startswith("/"):
        return None
    word, _, rest = text[1:].partition(" ")
    word, _, more = word.partition("\n")
    if word not in COMMANDS:
        return None
    return Command(word, (more + " " + rest).strip())


async def run(agent: AcpAgent, session_id: str, command: Command) -> dict[str, Any]:
    if command.name == "compact":
        return await _compact(agent, session_id, command.argument or None)
    return await _context(agent, session_id)


async def _compact(agent: AcpAgent, session_id: str, instructions: str | None) -> dict[str, Any]:
    s = agent.sidecar
    token = s.stop_token(session_id)  # before the first await: a later session/cancel stops it
    agent.view(session_id)
    outcome = await agent.call(lambda: s.compact(session_id, instructions, token), waits=True)
    # This process's commits were queued as they happened; another process's compaction is
    # only polled for: read its events now, before the answer.
    await agent.call(s.sync_now)
    if outcome.marker_id is None and outcome.error is not None:
        agent.queue(session_id, [_notice(f"Nothing compacted: {outcome.error.message}\n")])
    await agent.send_usage(session_id)
    await agent.flush()
    cancelled = outcome.error is not None and outcome.error.code == "cancelled"
    return {"stopReason": "cancelled" if cancelled else "end_turn"}


async def _context(agent: AcpAgent, session_id: str) -> dict[str, Any]:
    s = agent.sidecar
    view = await agent.call(lambda: s.context(session_id))
    agent.queue(session_id, [_notice(render(view))])
    await agent.send_usage(session_id)
    await agent.flush()
    return {"stopReason": "end_turn"}


def render(view: ContextView) -> str:
    ctx = view.context
    lines = [
        f"The model's next context: {ctx.tokens} of {view.limits.usable()} usable tokens, "
        f"{len(ctx.messages)} messages.",
    ]
    for m in ctx.messages:
        lines.append(f"\n--- {m.role} ({m.tokens} tokens)")
        for p in m.parts:
            part = p.to_json()
            if part["type"] in ("text", "reasoning"):
                lines.append(str(part.get("text", "")))
            elif part["type"] == "tool":
                state = part.get("state") or {}
                result = str(state.get("output") or state.get("error") or "")
                if len(result) > SHOWN_CHARS:
                    result = result[:SHOWN_CHARS] + f"… ({len(result)} characters)"
                args = json.dumps(state.get("input"), ensure_ascii=False)
                lines.append(f"[{part.get('tool')} {args} → {state.get('status')}]\n{result}")
    return "\n".join(lines) + "\n"


def _notice(text: str) -> Update:
    return {
        "sessionUpdate": "agent_message_chunk",
        "content": text_block(text),
        "messageId": new_id("msg"),
    }


__all__ = ["COMMANDS", "Command", "available", "parse", "render", "run"]
