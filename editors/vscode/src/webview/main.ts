// The chat webview's script: renders what the extension posts and posts back what the user does.
// DOM contract (the in-VS-Code tests rely on these names): #sessions, #new-session, #compact,
// #cancel, #prompt, #state, #meter[data-tokens][data-usable], #transcript with .msg and
// details.compaction elements, body[data-session-id].

import type { FromWebview, MetaMessage, ToWebview, TranscriptMessage } from "../viewMessages";
import { renderItem } from "./render";

interface VsCodeApi {
  postMessage(message: FromWebview): void;
  getState(): unknown;
  setState(state: unknown): void;
}

declare function acquireVsCodeApi(): VsCodeApi;

const vscode = acquireVsCodeApi();

function byId<T extends HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`#${id} is missing`);
  return node as T;
}

const sessions = byId<HTMLSelectElement>("sessions");
const newSession = byId<HTMLButtonElement>("new-session");
const compact = byId<HTMLButtonElement>("compact");
const cancel = byId<HTMLButtonElement>("cancel");
const send = byId<HTMLButtonElement>("send");
const prompt = byId<HTMLTextAreaElement>("prompt");
const state = byId<HTMLElement>("state");
const meter = byId<HTMLElement>("meter");
const meterBar = meter.querySelector("progress");
const meterText = meter.querySelector(".meter-text");
const problem = byId<HTMLElement>("problem");
const transcript = byId<HTMLElement>("transcript");

const elements = new Map<string, HTMLElement>();
let shownOptions = "";
const numberFormat = new Intl.NumberFormat("en-US");

interface Saved {
  draft: string;
}

function saved(): Saved {
  const s = vscode.getState() as Partial<Saved> | undefined;
  return { draft: typeof s?.draft === "string" ? s.draft : "" };
}

function applyMeta(m: MetaMessage): void {
  if (m.sessionId === null) delete document.body.dataset.sessionId;
  else document.body.dataset.sessionId = m.sessionId;

  const options: [string, string][] = m.sessions.map((s) => [s.id, s.label]);
  if (m.sessionId === null) options.unshift(["", "No session: type below to start one"]);
  else if (!m.sessions.some((s) => s.id === m.sessionId)) options.unshift([m.sessionId, m.sessionId]);
  // Rebuild the options only when they changed, so an open picker is not disturbed.
  const key = JSON.stringify(options);
  if (key !== shownOptions) {
    shownOptions = key;
    sessions.replaceChildren(...options.map(([id, label]) => new Option(label, id)));
  }
  sessions.value = m.sessionId ?? "";

  state.textContent = m.state;
  state.dataset.state = m.state;
  state.title = m.retry ?? "";
  document.body.dataset.state = m.state;
  cancel.disabled = m.state === "idle";
  compact.disabled = m.sessionId === null;

  if (m.meter === null) {
    meter.dataset.tokens = "";
    meter.dataset.usable = "";
    if (meterText !== null) meterText.textContent = "– / – tokens";
    if (meterBar !== null) meterBar.value = 0;
  } else {
    meter.dataset.tokens = String(m.meter.tokens);
    meter.dataset.usable = String(m.meter.usable);
    const text = `${numberFormat.format(m.meter.tokens)} / ${numberFormat.format(m.meter.usable)} tokens`;
    if (meterText !== null) meterText.textContent = text;
    meter.title = `Context: ${text} of the usable window`;
    if (meterBar !== null) {
      meterBar.max = Math.max(1, m.meter.usable);
      meterBar.value = Math.min(m.meter.tokens, meterBar.max);
    }
    meter.classList.toggle("full", m.meter.usable > 0 && m.meter.tokens >= m.meter.usable * 0.9);
  }

  problem.hidden = m.serverProblem === null;
  problem.textContent = m.serverProblem ?? "";
}

function nearBottom(): boolean {
  const root = document.scrollingElement ?? document.documentElement;
  return root.scrollHeight - root.scrollTop - root.clientHeight < 40;
}

function applyTranscript(m: TranscriptMessage): void {
  const follow = nearBottom();
  if (m.reset) {
    elements.clear();
    transcript.replaceChildren();
  }
  for (const item of m.items) {
    const before = elements.get(item.key);
    const node = renderItem(item, before);
    if (before !== undefined && before !== node) before.replaceWith(node);
    elements.set(item.key, node);
  }
  const keep = new Set(m.order);
  for (const [key, node] of elements) {
    if (!keep.has(key)) {
      node.remove();
      elements.delete(key);
    }
  }
  // Put the elements in history order, moving only those out of place.
  let cursor = transcript.firstElementChild;
  for (const key of m.order) {
    const node = elements.get(key);
    if (node === undefined) continue;
    if (node !== cursor) transcript.insertBefore(node, cursor);
    else cursor = cursor.nextElementSibling;
  }
  transcript.classList.toggle("empty", m.order.length === 0);
  if (follow) {
    const root = document.scrollingElement ?? document.documentElement;
    root.scrollTop = root.scrollHeight;
  }
}

function submit(): void {
  const text = prompt.value;
  if (text.trim() === "") return;
  vscode.postMessage({ type: "prompt", text });
  prompt.value = "";
  vscode.setState({ draft: "" });
}

window.addEventListener("message", (event: MessageEvent<ToWebview>) => {
  const m = event.data;
  switch (m.type) {
    case "meta":
      applyMeta(m);
      break;
    case "transcript":
      applyTranscript(m);
      break;
    case "focusPrompt":
      prompt.focus();
      break;
  }
});

prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    submit();
  }
});
prompt.addEventListener("input", () => vscode.setState({ draft: prompt.value }));
send.addEventListener("click", submit);
newSession.addEventListener("click", () => vscode.postMessage({ type: "newSession" }));
compact.addEventListener("click", () => vscode.postMessage({ type: "compact" }));
cancel.addEventListener("click", () => vscode.postMessage({ type: "cancel" }));
sessions.addEventListener("change", () => {
  if (sessions.value !== "") vscode.postMessage({ type: "openSession", sessionId: sessions.value });
});

prompt.value = saved().draft;
vscode.postMessage({ type: "ready" });
