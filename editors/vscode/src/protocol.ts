// The wire shapes of sessionlsp protocol version 1 (docs/protocol.md), as TypeScript types, and
// one typed constant per method (as rust-analyzer's lsp_ext.ts does): a request is sent as
// `sendRequest(LoadSessionRequest, params)`, so a renamed method or a changed params or result shape
// fails the type check instead of at run time. Nothing here depends on `vscode` (only on
// vscode-jsonrpc, which vscode-languageclient uses too): the transcript model, the controller and
// the node tests share it.

import { NotificationType, RequestType } from "vscode-jsonrpc";

export const PROTOCOL_VERSION = 1;

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

// -- params (docs/protocol.md §3) ---------------------------------------------------------------

/** The params of every method that only names a session: load, context, cancel and delete. */
export interface SessionIdParams {
  sessionId: string;
}

export interface ListParams {
  /** Only sessions whose `directory` is exactly this. */
  directory?: string;
  /** 1..10 000; the server's default is 100. */
  limit?: number;
}

/** A prompt content block; `"text"` is the only type. */
export interface TextBlock {
  type: "text";
  text: string;
}

export interface PromptParams {
  sessionId: string;
  prompt: TextBlock[];
  /** This turn's model instead of the configured one. */
  model?: string;
}

export interface CompactParams {
  sessionId: string;
  /** What the summary must keep. */
  instructions?: string;
}

export interface EventsParams {
  /** Events with `seq > after`; 0 for all. */
  after: number;
  sessionId?: string;
  /** 1..10 000; the server's default is 1000. */
  limit?: number;
}

/** `session/delete` answers `{}`. */
export type DeleteResult = Record<string, never>;

// -- the methods: one constant each ---------------------------------------------------------------

export const NewSessionRequest = new RequestType<NewSessionParams, NewSessionResult, void>("session/new");
export const ListSessionsRequest = new RequestType<ListParams, ListResult, void>("session/list");
export const LoadSessionRequest = new RequestType<SessionIdParams, LoadResult, void>("session/load");
export const ContextRequest = new RequestType<SessionIdParams, ContextResult, void>("session/context");
export const PromptRequest = new RequestType<PromptParams, PromptResult, void>("session/prompt");
export const CancelRequest = new RequestType<SessionIdParams, CancelResult, void>("session/cancel");
export const CompactRequest = new RequestType<CompactParams, CompactResult, void>("session/compact");
export const EventsRequest = new RequestType<EventsParams, EventsResult, void>("session/events");
export const DeleteSessionRequest = new RequestType<SessionIdParams, DeleteResult, void>("session/delete");

/** A durable change; types this client does not know are ignored (their seq still counts). */
export const SyncNotification = new NotificationType<SyncEvent | UnknownEvent>("session/sync");
export const DeltaNotification = new NotificationType<DeltaParams>("session/delta");
export const StatusNotification = new NotificationType<StatusParams>("session/status");
