// The messages between the extension host and the chat webview, and the view items the webview
// renders. Types only: shared by src/viewModel.ts (extension side) and src/webview/ (browser).

export type UiState = "idle" | "busy" | "compacting" | "retrying";

export type ViewPart =
  | { kind: "text"; id: string; text: string; synthetic: boolean }
  | { kind: "reasoning"; id: string; text: string }
  | {
      kind: "tool";
      id: string;
      tool: string;
      status: string;
      title: string;
      input: string;
      error: string;
    }
  | { kind: "file"; id: string; name: string; mime: string };

export interface MessageItem {
  kind: "message";
  key: string;
  id: string;
  role: "user" | "assistant";
  messageKind: string;
  parts: ViewPart[];
  /** An assistant message still being written. */
  streaming: boolean;
  /** `cancelled` for error.name Cancelled, `error` for any other error, else `ok`. */
  outcome: "ok" | "cancelled" | "error";
  error: { name: string; message: string } | null;
  model: string;
  /** Folded away by a later completed compaction (still shown, dimmed). */
  compacted: boolean;
}

export interface CompactionItem {
  kind: "compaction";
  key: string;
  markerId: string;
  status: string;
  /** `manual`, `automatic` or `overflow`. */
  trigger: string;
  errorCode: string;
  errorMessage: string;
  instructions: string;
  summaryText: string;
  summaryStreaming: boolean;
  summaryKind: string;
  attempts: number;
  /** Summary attempts that ended with an error (e.g. Interrupted, Cancelled). */
  failedAttempts: { name: string; message: string }[];
  /** Continuation or replay messages the compaction wrote. */
  notes: { kind: string; text: string }[];
  compacted: boolean;
}

export interface NoticeItem {
  kind: "notice";
  key: string;
  level: "error" | "info";
  text: string;
}

export type ViewItem = MessageItem | CompactionItem | NoticeItem;

export interface MeterView {
  tokens: number;
  usable: number;
}

export interface SessionOption {
  id: string;
  label: string;
}

export interface MetaMessage {
  type: "meta";
  sessionId: string | null;
  sessions: SessionOption[];
  state: UiState;
  meter: MeterView | null;
  /** A problem with the server (not found, exited), shown above the transcript. */
  serverProblem: string | null;
  /** Text for a retry in progress, e.g. "retry 1 at 12:00:03". */
  retry: string | null;
}

export interface TranscriptMessage {
  type: "transcript";
  sessionId: string | null;
  /** Drop everything shown before applying this message. */
  reset: boolean;
  /** Every item key, in history order. */
  order: string[];
  /** The items that changed since the last message (all of them when reset). */
  items: ViewItem[];
}

export type ToWebview = MetaMessage | TranscriptMessage | { type: "focusPrompt" };

export type FromWebview =
  | { type: "ready" }
  | { type: "prompt"; text: string }
  | { type: "newSession" }
  | { type: "compact" }
  | { type: "cancel" }
  | { type: "openSession"; sessionId: string };
