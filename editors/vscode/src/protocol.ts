// The wire shapes of sessionlsp protocol version 1 (docs/protocol.md), as TypeScript types.
// No runtime code depends on `vscode` here: the transcript model, the controller and the node
// tests share these.

export const PROTOCOL_VERSION = 1;

export const Methods = {
  new: "session/new",
  list: "session/list",
  load: "session/load",
  context: "session/context",
  prompt: "session/prompt",
  cancel: "session/cancel",
  compact: "session/compact",
  events: "session/events",
  delete: "session/delete",
  sync: "session/sync",
  delta: "session/delta",
  status: "session/status",
} as const;

/** Error codes of docs/protocol.md §6 that the extension reacts to. */
export const ErrorCodes = {
  unknownSession: -31001,
  providerNotConfigured: -31002,
  providerError: -31003,
  contextTooLarge: -31004,
  storageError: -31005,
  serverNotInitialized: -32002,
  invalidParams: -32602,
} as const;

export interface SessionInfo {
  id: string;
  title: string;
  directory?: string;
  time: { created: number; updated: number };
}

export interface TokenUsage {
  input: number;
  output: number;
  reasoning: number;
  cache: { read: number; write: number };
  total?: number;
}

export type MessageRole = "user" | "assistant";
export type MessageKind = "prompt" | "marker" | "continuation" | "replay" | "reply" | "summary";

export interface MessageError {
  name: string;
  message: string;
}

export interface MessageInfo {
  id: string;
  sessionId: string;
  role: MessageRole;
  kind: MessageKind;
  time: { created: number; completed?: number };
  parentId?: string;
  compactionId?: string;
  summary?: true;
  synthetic?: true;
  finish?: string;
  error?: MessageError;
  tokens?: TokenUsage;
  cost?: number;
  model?: string;
  summaryKind?: "model" | "extractive";
}

interface PartBase {
  id: string;
  messageId: string;
  sessionId: string;
}

export interface TextPart extends PartBase {
  type: "text";
  text: string;
  synthetic?: true;
}

export interface ReasoningPart extends PartBase {
  type: "reasoning";
  text: string;
}

export interface ToolState {
  status: "pending" | "running" | "completed" | "error";
  input: Record<string, unknown>;
  output?: string;
  error?: string;
  title?: string;
  time?: { start?: number; end?: number; compacted?: number };
}

export interface ToolPart extends PartBase {
  type: "tool";
  callId: string;
  tool: string;
  state: ToolState;
}

export interface FilePart extends PartBase {
  type: "file";
  mime: string;
  url: string;
  filename?: string;
}

export interface StepFinishPart extends PartBase {
  type: "step-finish";
  tokens: TokenUsage;
  cost: number;
  reason: string;
}

export interface CompactionPart extends PartBase {
  type: "compaction";
  auto: boolean;
  overflow: boolean;
  tailStartId?: string;
  instructions?: string;
}

export type Part = TextPart | ReasoningPart | ToolPart | FilePart | StepFinishPart | CompactionPart;
export type StreamingPartType = "text" | "reasoning";

export interface StoredMessage {
  info: MessageInfo;
  parts: Part[];
}

export type CompactionStatus = "pending" | "running" | "completed" | "failed";

export interface CompactionError {
  code: string;
  message: string;
}

export interface CompactionInfo {
  markerId: string;
  status: CompactionStatus;
  auto: boolean;
  overflow: boolean;
  summaryMessageId?: string;
  error?: CompactionError;
  attempts: number;
}

export interface PartDeltaData {
  id: string;
  messageId: string;
  sessionId: string;
  type: StreamingPartType;
  field: "text";
  offset: number;
  delta: string;
}

interface EventBase<T extends string, D> {
  seq: number;
  sessionId: string;
  type: T;
  data: D;
}

export type SyncEvent =
  | EventBase<"session.created", SessionInfo>
  | EventBase<"session.updated", SessionInfo>
  | EventBase<"session.deleted", { id: string }>
  | EventBase<"session.cancel", { sessionId: string }>
  | EventBase<"message.updated", MessageInfo>
  | EventBase<"message.removed", { sessionId: string; messageId: string }>
  | EventBase<"message.part.updated", Part>
  | EventBase<"message.part.removed", { sessionId: string; messageId: string; partId: string }>
  | EventBase<"message.part.delta", PartDeltaData>
  | EventBase<"compaction.updated", CompactionInfo>;

/** An event of a type this client does not know: ignored, but its seq still counts. */
export interface UnknownEvent {
  seq: number;
  sessionId: string;
  type: string;
  data: unknown;
}

export interface DeltaParams {
  sessionId: string;
  messageId: string;
  partId: string;
  partType: StreamingPartType;
  field: "text";
  delta: string;
}

export type ServerStatus = "idle" | "busy" | "compacting" | "retry";

export interface StatusParams {
  sessionId: string;
  status: ServerStatus;
  attempt?: number;
  nextRetryAt?: number;
}

export interface NewSessionParams {
  title?: string;
  directory?: string;
}

export interface NewSessionResult {
  sessionId: string;
  session: SessionInfo;
}

export interface ListResult {
  sessions: SessionInfo[];
}

export interface LoadResult {
  session: SessionInfo;
  messages: StoredMessage[];
  /** Every compaction's state, oldest marker first, each as `compaction.updated` data. */
  compactions: CompactionInfo[];
  seq: number;
}

export interface ContextMessage {
  role: MessageRole;
  messageId: string;
  tokens: number;
  parts: Part[];
}

export interface ContextResult {
  sessionId: string;
  messages: ContextMessage[];
  tokens: number;
  usable: number;
  contextLimit: number;
  outputLimit: number;
  markerId?: string;
  summaryMessageId?: string;
}

export type StopReason = "end_turn" | "max_tokens" | "cancelled" | "error";

export interface TurnError {
  name: string;
  message: string;
  code: number;
  status?: number;
  retryable?: boolean;
}

export interface PromptResult {
  stopReason: StopReason;
  messageId: string | null;
  userMessageId?: string;
  error?: TurnError;
}

export interface CompactResult {
  markerId: string;
  created: boolean;
  status: "completed" | "failed";
  summaryMessageId?: string;
  error?: CompactionError;
}

export interface EventsResult {
  events: (SyncEvent | UnknownEvent)[];
  seq: number;
}

export interface CancelResult {
  cancelled: number;
}

/** `capabilities.experimental.sessionlsp` of the initialize result. */
export interface ServerCapabilityInfo {
  protocolVersion: number;
  provider: string;
  model: string;
  contextLimit: number;
  outputLimit: number;
  autoCompact: boolean;
  promptBlocks: string[];
  notifications: string[];
}

/** The settings sent as initializationOptions (docs/protocol.md, `initialize`). */
export interface InitializationOptions {
  provider?: string;
  model?: string;
  baseUrl?: string;
  contextLimit?: number;
  outputLimit?: number;
  autoCompact?: boolean;
}
