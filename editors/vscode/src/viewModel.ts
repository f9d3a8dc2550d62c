// Turns a Transcript into the view items the webview renders, and works out which items changed
// since the last message so that streaming sends only the message being written. Pure.

import type { Part, StoredMessage } from "./protocol";
import {
  compactionOwner,
  isAssistantInProgress,
  isSuccessfulAssistant,
  type Transcript,
} from "./transcript";
import type {
  CompactionItem,
  MessageItem,
  NoticeItem,
  TranscriptMessage,
  ViewItem,
  ViewPart,
} from "./viewMessages";

/** A line shown after a message: a turn that failed without a reply of its own to show it. */
export interface Notice {
  key: string;
  /** The message it follows; undefined: at the end. */
  afterId: string | undefined;
  level: "error" | "info";
  text: string;
}

const FOLDED_INTO_BLOCK = new Set(["summary", "continuation", "replay"]);

function viewPart(part: Part): ViewPart | undefined {
  switch (part.type) {
    case "text":
      return { kind: "text", id: part.id, text: part.text, synthetic: part.synthetic === true };
    case "reasoning":
      return { kind: "reasoning", id: part.id, text: part.text };
    case "tool":
      return {
        kind: "tool",
        id: part.id,
        tool: part.tool,
        status: part.state.status,
        title: part.state.title ?? "",
        input: JSON.stringify(part.state.input),
        error: part.state.error ?? "",
      };
    case "file":
      return { kind: "file", id: part.id, name: part.filename ?? part.url, mime: part.mime };
    default:
      return undefined; // step-finish and compaction parts are not shown as parts
  }
}

function textOf(m: StoredMessage): string {
  return m.parts
    .filter((p) => p.type === "text")
    .map((p) => (p.type === "text" ? p.text : ""))
    .join("\n\n");
}

function messageItem(m: StoredMessage, compacted: boolean): MessageItem {
  const error = m.info.error ?? null;
  return {
    kind: "message",
    key: m.info.id,
    id: m.info.id,
    role: m.info.role,
    messageKind: m.info.kind,
    parts: m.parts.map(viewPart).filter((p): p is ViewPart => p !== undefined),
    streaming: isAssistantInProgress(m.info),
    outcome: error === null ? "ok" : error.name === "Cancelled" ? "cancelled" : "error",
    error,
    model: m.info.model ?? "",
    compacted,
  };
}

function compactionItem(
  t: Transcript,
  marker: StoredMessage,
  members: StoredMessage[],
  compacted: boolean,
): CompactionItem {
  const state = t.compaction(marker.info.id);
  const part = t.compactionPart(marker.info.id);
  const summaries = members.filter((m) => m.info.kind === "summary");
  const chosen =
    summaries.find((m) => m.info.id === state?.summaryMessageId) ??
    summaries.find((m) => isSuccessfulAssistant(m.info)) ??
    summaries.find((m) => isAssistantInProgress(m.info)) ??
    summaries[summaries.length - 1];
  const auto = state?.auto ?? part?.auto ?? false;
  const overflow = state?.overflow ?? part?.overflow ?? false;
  return {
    kind: "compaction",
    key: marker.info.id,
    markerId: marker.info.id,
    status: state?.status ?? "pending",
    trigger: overflow ? "overflow" : auto ? "automatic" : "manual",
    errorCode: state?.error?.code ?? "",
    errorMessage: state?.error?.message ?? "",
    instructions: part?.instructions ?? "",
    summaryText: chosen === undefined ? "" : textOf(chosen),
    summaryStreaming: chosen !== undefined && isAssistantInProgress(chosen.info),
    summaryKind: chosen?.info.summaryKind ?? "",
    attempts: state?.attempts ?? summaries.length,
    failedAttempts: summaries
      .filter((m) => m.info.error !== undefined)
      .map((m) => ({ name: m.info.error?.name ?? "", message: m.info.error?.message ?? "" })),
    notes: members
      .filter((m) => m.info.kind === "continuation" || m.info.kind === "replay")
      .map((m) => ({ kind: m.info.kind, text: textOf(m) })),
    compacted,
  };
}

/** The items of a transcript in history order, each with a signature that changes with it. */
export function buildItems(
  t: Transcript,
  notices: readonly Notice[] = [],
): { key: string; sig: string; make: () => ViewItem }[] {
  const messages = t.messages();
  const markers = new Set(messages.filter((m) => m.info.kind === "marker").map((m) => m.info.id));
  const members = new Map<string, StoredMessage[]>();
  const memberIds = new Set<string>();
  for (const m of messages) {
    const owner = compactionOwner(m.info);
    if (owner !== undefined && markers.has(owner) && FOLDED_INTO_BLOCK.has(m.info.kind)) {
      const list = members.get(owner) ?? [];
      list.push(m);
      members.set(owner, list);
      memberIds.add(m.info.id);
    }
  }
  // Everything before the newest completed compaction's tail (or its marker) is folded.
  let foldBefore = "";
  for (const id of markers) {
    if (t.compaction(id)?.status !== "completed") continue;
    const tail = t.compactionPart(id)?.tailStartId;
    const bound = tail !== undefined && tail < id ? tail : id;
    if (bound > foldBefore) foldBefore = bound;
  }
  const noticesAfter = new Map<string, Notice[]>();
  const trailing: Notice[] = [];
  const ids = new Set(messages.map((m) => m.info.id));
  for (const n of notices) {
    if (n.afterId !== undefined && ids.has(n.afterId)) {
      const list = noticesAfter.get(n.afterId) ?? [];
      list.push(n);
      noticesAfter.set(n.afterId, list);
    } else {
      trailing.push(n);
    }
  }
  const noticeItem = (n: Notice): { key: string; sig: string; make: () => ViewItem } => ({
    key: n.key,
    sig: `n:${n.level}:${n.text}`,
    make: (): NoticeItem => ({ kind: "notice", key: n.key, level: n.level, text: n.text }),
  });

  const out: { key: string; sig: string; make: () => ViewItem }[] = [];
  for (const m of messages) {
    const id = m.info.id;
    const compacted = id < foldBefore;
    if (m.info.kind === "marker") {
      const group = members.get(id) ?? [];
      out.push({
        key: id,
        sig: `c:${t.messageRev(id)}:${t.compactionRev(id)}:${t.compaction(id)?.status}:${compacted}`,
        make: () => compactionItem(t, m, group, compacted),
      });
    } else if (!memberIds.has(id)) {
      out.push({
        key: id,
        sig: `m:${t.messageRev(id)}:${compacted}`,
        make: () => messageItem(m, compacted),
      });
    }
    for (const n of noticesAfter.get(id) ?? []) out.push(noticeItem(n));
  }
  for (const n of trailing) out.push(noticeItem(n));
  return out;
}

/** Remembers what the webview was sent, to send only changed items next time. */
export class ViewDiffer {
  private sent = new Map<string, string>();
  private sessionId: string | null = null;
  private needsReset = true;

  /** Forget what was sent: the next message is a reset (e.g. the webview was reloaded). */
  invalidate(): void {
    this.needsReset = true;
  }

  /** The message bringing the webview up to date, or undefined when nothing changed. */
  next(t: Transcript | undefined, notices: readonly Notice[] = []): TranscriptMessage | undefined {
    const sessionId = t?.sessionId ?? null;
    const reset = this.needsReset || sessionId !== this.sessionId;
    const entries = t === undefined ? [] : buildItems(t, notices);
    const order = entries.map((e) => e.key);
    const previousOrder = [...this.sent.keys()];
    const orderChanged =
      order.length !== previousOrder.length || order.some((k, i) => previousOrder[i] !== k);
    const items: ViewItem[] = [];
    const sent = new Map<string, string>();
    for (const e of entries) {
      if (reset || this.sent.get(e.key) !== e.sig) items.push(e.make());
      sent.set(e.key, e.sig);
    }
    this.sent = sent;
    this.sessionId = sessionId;
    this.needsReset = false;
    if (!reset && !orderChanged && items.length === 0) return undefined;
    return { type: "transcript", sessionId, reset, order, items };
  }
}
