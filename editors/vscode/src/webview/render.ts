// DOM rendering of view items for the chat webview. Every piece of text goes in through
// textContent or through the escaping Markdown renderer; nothing else becomes HTML.

import { renderMarkdown } from "../markdown";
import type {
  CompactionItem,
  MessageItem,
  NoticeItem,
  ViewItem,
  ViewPart,
} from "../viewMessages";

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className !== undefined) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Open/closed state of <details> the user toggled, by key, so re-rendering keeps it. */
const openState = new Map<string, boolean>();

function details(key: string, className: string, defaultOpen: boolean): HTMLDetailsElement {
  const node = el("details", className);
  node.open = openState.get(key) ?? defaultOpen;
  node.addEventListener("toggle", () => openState.set(key, node.open));
  return node;
}

function renderParts(item: MessageItem, body: HTMLElement, extras: HTMLElement): void {
  const texts: string[] = [];
  const tools = el("ul", "msg-tools");
  for (const part of item.parts) renderPart(part, texts, tools, extras);
  body.innerHTML = renderMarkdown(texts.join("\n\n"));
  if (tools.childElementCount > 0) extras.append(tools);
}

function renderPart(part: ViewPart, texts: string[], tools: HTMLElement, extras: HTMLElement): void {
  switch (part.kind) {
    case "text":
      texts.push(part.text);
      return;
    case "reasoning": {
      const box = details(`reasoning:${part.id}`, "msg-reasoning", false);
      box.append(el("summary", undefined, "Reasoning"));
      const text = el("div", "reasoning-text");
      text.innerHTML = renderMarkdown(part.text);
      box.append(text);
      extras.prepend(box);
      return;
    }
    case "tool": {
      const li = el("li", "tool");
      li.dataset.status = part.status;
      li.append(el("span", "tool-name", part.tool));
      li.append(el("span", "tool-title", part.title !== "" ? part.title : part.input));
      li.append(el("span", "tool-status", part.status));
      if (part.error !== "") li.append(el("span", "tool-error", part.error));
      tools.append(li);
      return;
    }
    case "file":
      texts.push(`[file: ${part.name} (${part.mime})]`);
      return;
  }
}

export function renderMessage(item: MessageItem, node: HTMLElement): void {
  node.className = "msg";
  node.classList.toggle("streaming", item.streaming);
  node.classList.toggle("cancelled", item.outcome === "cancelled");
  node.classList.toggle("errored", item.outcome === "error");
  node.classList.toggle("compacted", item.compacted);
  node.dataset.role = item.role;
  node.dataset.messageId = item.id;
  node.dataset.kind = item.messageKind;
  node.dataset.outcome = item.outcome;
  node.replaceChildren();
  const who = item.role === "user" ? "You" : "Assistant";
  const head = el("div", "msg-head", item.model !== "" && item.role === "assistant" ? `${who} · ${item.model}` : who);
  if (item.streaming) head.append(el("span", "msg-streaming", " · writing…"));
  const body = el("div", "msg-body");
  const extras = el("div", "msg-extras");
  renderParts(item, body, extras);
  node.append(head);
  // Reasoning first (it streams first), then the answer, then the tools it called.
  const reasoning = [...extras.querySelectorAll(":scope > .msg-reasoning")];
  node.append(...reasoning, body);
  const tools = extras.querySelector(":scope > .msg-tools");
  if (tools !== null) node.append(tools);
  if (item.error !== null) {
    const text =
      item.outcome === "cancelled"
        ? `Cancelled: ${item.error.message}`
        : `${item.error.name}: ${item.error.message}`;
    node.append(el("div", "msg-error", text));
  }
}

export function compactionLabel(item: CompactionItem): string {
  let label = `Compaction · ${item.trigger} · ${item.status}`;
  if (item.errorCode !== "") label += ` (${item.errorCode})`;
  if (item.summaryStreaming) label += " · writing summary…";
  return label;
}

export function renderCompaction(item: CompactionItem, existing: HTMLElement | undefined): HTMLElement {
  const node =
    existing instanceof HTMLDetailsElement
      ? existing
      : details(`compaction:${item.markerId}`, "compaction", true);
  node.className = "compaction";
  node.classList.toggle("compacted", item.compacted);
  node.dataset.markerId = item.markerId;
  node.dataset.status = item.status;
  node.dataset.trigger = item.trigger;
  if (item.errorCode !== "") node.dataset.errorCode = item.errorCode;
  else delete node.dataset.errorCode;
  node.replaceChildren(el("summary", undefined, compactionLabel(item)));
  if (item.instructions !== "") {
    node.append(el("div", "compaction-instructions", `Instructions: ${item.instructions}`));
  }
  const summary = el("div", "summary-text");
  summary.classList.toggle("streaming", item.summaryStreaming);
  if (item.summaryKind !== "") summary.dataset.summaryKind = item.summaryKind;
  summary.innerHTML = renderMarkdown(item.summaryText);
  node.append(summary);
  if (item.status === "failed" || item.errorMessage !== "") {
    const why = item.errorMessage !== "" ? item.errorMessage : "failed";
    const code = item.errorCode !== "" ? `${item.errorCode}: ` : "";
    node.append(el("div", "compaction-error", `${code}${why}`));
  }
  if (item.failedAttempts.length > 0) {
    const list = el("ul", "compaction-attempts");
    for (const a of item.failedAttempts) {
      list.append(el("li", undefined, `summary attempt ended: ${a.name}: ${a.message}`));
    }
    node.append(list);
  }
  for (const note of item.notes) {
    const n = el("div", "compaction-note", `${note.kind}: ${note.text}`);
    n.dataset.kind = note.kind;
    node.append(n);
  }
  return node;
}

export function renderNotice(item: NoticeItem, node: HTMLElement): void {
  node.className = "notice";
  node.dataset.level = item.level;
  node.textContent = item.text;
}

/** Create or update the element of one item; returns the element to keep for its key. */
export function renderItem(item: ViewItem, existing: HTMLElement | undefined): HTMLElement {
  switch (item.kind) {
    case "message": {
      const node = existing?.classList.contains("msg") === true ? existing : el("div");
      renderMessage(item, node);
      return node;
    }
    case "compaction":
      return renderCompaction(item, existing);
    case "notice": {
      const node = existing?.classList.contains("notice") === true ? existing : el("div");
      renderNotice(item, node);
      return node;
    }
  }
}
