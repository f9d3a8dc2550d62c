// What `session/context` returns, as a read-only Markdown document: exactly the messages the
// model receives next (the system prompt and tool definitions are added on top by the server).
// Pure: the vscode TextDocumentContentProvider in extension.ts only fetches and calls this.

import type { ContextResult, Part } from "./protocol";

export const CONTEXT_SCHEME = "sessionlsp-context";

/** A fence longer than any backtick run in `text`, so the text cannot close it. */
function fenceFor(text: string): string {
  let longest = 0;
  for (const m of text.matchAll(/`+/g)) longest = Math.max(longest, m[0].length);
  return "`".repeat(Math.max(3, longest + 1));
}

function fenced(text: string, lang = ""): string {
  const fence = fenceFor(text);
  return `${fence}${lang}\n${text}\n${fence}`;
}

function renderPart(part: Part): string {
  switch (part.type) {
    case "text":
      return `${part.synthetic === true ? "_synthetic text_\n\n" : ""}${fenced(part.text, "text")}`;
    case "reasoning":
      return `_reasoning_\n\n${fenced(part.text, "text")}`;
    case "tool": {
      const lines = [`**tool** \`${part.tool}\` (${part.state.status}), call \`${part.callId}\``];
      lines.push(fenced(JSON.stringify(part.state.input, null, 2), "json"));
      if (part.state.output !== undefined) lines.push(fenced(part.state.output, "text"));
      if (part.state.error !== undefined) lines.push(`error: ${part.state.error}`);
      return lines.join("\n\n");
    }
    case "file":
      return `**file** ${part.filename ?? ""} (${part.mime}): ${part.url}`;
    default:
      return fenced(JSON.stringify(part, null, 2), "json");
  }
}

export function renderContext(ctx: ContextResult): string {
  const out: string[] = [
    `# Model context of ${ctx.sessionId}`,
    "",
    `- tokens (estimated): ${ctx.tokens} of ${ctx.usable} usable`,
    `- context limit: ${ctx.contextLimit}, output limit: ${ctx.outputLimit}`,
  ];
  if (ctx.markerId !== undefined) {
    out.push(`- starts from compaction ${ctx.markerId} (summary ${ctx.summaryMessageId ?? "?"})`);
  }
  out.push(`- ${ctx.messages.length} messages`, "");
  ctx.messages.forEach((m, i) => {
    out.push(`## ${i + 1}. ${m.role} · ${m.messageId} · ${m.tokens} tokens`, "");
    for (const p of m.parts) out.push(renderPart(p), "");
  });
  return out.join("\n");
}
