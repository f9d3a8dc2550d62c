// The client side of sessionlsp for one connection: which session is shown, its Transcript, the
// per-session statuses, the context meter, and the requests the UI makes. No `vscode` import:
// it talks through the small `Rpc` interface, which vscode-languageclient's LanguageClient and a
// vscode-jsonrpc MessageConnection both satisfy, so the node tests drive this same code.

import type { RequestParam, RequestType } from "vscode-jsonrpc";
import {
  CancelRequest,
  type CompactParams,
  CompactRequest,
  type CompactResult,
  type CompactionInfo,
  ContextRequest,
  type ContextResult,
  type DeltaParams,
  ListSessionsRequest,
  LoadSessionRequest,
  type LoadResult,
  type NewSessionParams,
  NewSessionRequest,
  PromptRequest,
  type PromptResult,
  type SessionInfo,
  type StatusParams,
  type SyncEvent,
  type UnknownEvent,
} from "./protocol";
import { Transcript } from "./transcript";
import type { MeterView, UiState } from "./viewMessages";
import type { Notice } from "./viewModel";

/** Sends one of the typed requests of ./protocol; `P` and `R` come from the request type alone,
 * so params of another shape do not compile. (The same signature as the libraries' own.) */
export interface Rpc {
  sendRequest<P, R, E>(type: RequestType<P, R, E>, params: NoInfer<RequestParam<P>>): Promise<R>;
}

export type ChangeKind = "transcript" | "meta";

export interface CompactionChange {
  sessionId: string;
  compaction: CompactionInfo;
}

const SESSION_LIST_LIMIT = 200;

function titleFrom(text: string): string {
  const line = text.trim().split("\n")[0] ?? "";
  return line.length > 60 ? `${line.slice(0, 57)}...` : line;
}

export class SessionController {
  sessions: SessionInfo[] = [];
  transcript: Transcript | undefined;
  meter: MeterView | undefined;
  readonly notices: Notice[] = [];
  private readonly statuses = new Map<string, StatusParams>();
  private readonly inflight = new Map<string, number>();
  private readonly listeners = new Set<(kind: ChangeKind) => void>();
  private readonly compactionListeners = new Set<(change: CompactionChange) => void>();
  private loadToken = 0;
  private loading: { sessionId: string; buffered: (SyncEvent | UnknownEvent)[] } | undefined;
  private meterRun: Promise<void> | undefined;
  private meterAgain = false;
  private noticeCount = 0;
  private disposed = false;

  constructor(
    private readonly rpc: Rpc,
    private readonly options: { directory?: string; log?: (message: string) => void } = {},
  ) {}

  get currentSessionId(): string | undefined {
    return this.transcript?.sessionId;
  }

  onChange(listener: (kind: ChangeKind) => void): { dispose(): void } {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  onCompaction(listener: (change: CompactionChange) => void): { dispose(): void } {
    this.compactionListeners.add(listener);
    return { dispose: () => this.compactionListeners.delete(listener) };
  }

  dispose(): void {
    this.disposed = true;
    this.listeners.clear();
    this.compactionListeners.clear();
  }

  // -- notifications from the server -----------------------------------------------------------

  handleSync(event: SyncEvent | UnknownEvent): void {
    const e = event as SyncEvent;
    if (e.type === "session.created" || e.type === "session.updated") {
      this.upsertSession(e.data);
    } else if (e.type === "session.deleted") {
      this.sessions = this.sessions.filter((s) => s.id !== e.data.id);
      if (this.currentSessionId === e.data.id) {
        // Deleted here or by another client: nothing is left to show.
        this.transcript = undefined;
        this.meter = undefined;
        this.notices.length = 0;
        this.emit("transcript");
      }
      this.emit("meta");
      return;
    }
    if (this.loading?.sessionId === event.sessionId) {
      this.loading.buffered.push(event);
      return;
    }
    const t = this.transcript;
    if (t === undefined || event.sessionId !== t.sessionId) return;
    const outcome = t.applyEvent(event);
    if (outcome === "gap") {
      this.log(`missed streamed text in ${t.sessionId} (seq ${event.seq}); loading it again`);
      void this.openSession(t.sessionId).catch((err: unknown) => this.log(String(err)));
      return;
    }
    if (outcome !== "applied") return;
    if (e.type === "compaction.updated") {
      for (const l of this.compactionListeners) l({ sessionId: t.sessionId, compaction: e.data });
      if (e.data.status === "completed" || e.data.status === "failed") this.refreshMeter();
    } else if (
      e.type === "message.updated" &&
      e.data.role === "assistant" &&
      (e.data.finish !== undefined || e.data.error !== undefined)
    ) {
      this.refreshMeter();
    }
    this.emit("transcript");
  }

  handleDelta(delta: DeltaParams): void {
    const t = this.transcript;
    // While a load is in flight the history it returns may or may not hold this text; the
    // durable events that follow bring it either way.
    if (t === undefined || this.loading !== undefined || delta.sessionId !== t.sessionId) return;
    if (t.applyDelta(delta) === "applied") this.emit("transcript");
  }

  handleStatus(status: StatusParams): void {
    this.statuses.set(status.sessionId, status);
    if (status.status === "idle" && status.sessionId === this.currentSessionId) this.refreshMeter();
    this.emit("meta");
  }

  /** The server restarted: statuses are per process, and nothing is followed any more. */
  async reconnected(): Promise<void> {
    this.statuses.clear();
    this.inflight.clear();
    this.emit("meta");
    await this.refreshSessions();
    const id = this.currentSessionId;
    if (id !== undefined) await this.openSession(id);
  }

  // -- state for the UI ------------------------------------------------------------------------

  status(sessionId = this.currentSessionId): StatusParams | undefined {
    return sessionId === undefined ? undefined : this.statuses.get(sessionId);
  }

  uiState(sessionId = this.currentSessionId): UiState {
    if (sessionId === undefined) return "idle";
    const status = this.statuses.get(sessionId)?.status ?? "idle";
    if (status === "retry") return "retrying";
    if (status === "compacting") return "compacting";
    if (status === "busy") return "busy";
    return (this.inflight.get(sessionId) ?? 0) > 0 ? "busy" : "idle";
  }

  /** Nothing of this process runs in the session and no request about it is unanswered. */
  isIdle(sessionId = this.currentSessionId): boolean {
    if (this.loading !== undefined || this.meterRun !== undefined) return false;
    return this.uiState(sessionId) === "idle";
  }

  /** Resolves when `isIdle(sessionId)` holds; rejects after `timeoutMs`. */
  waitForIdle(sessionId?: string, timeoutMs = 60_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (!this.isIdle(sessionId ?? this.currentSessionId)) return false;
        sub.dispose();
        clearTimeout(timer);
        resolve();
        return true;
      };
      const sub = this.onChange(() => void check());
      const timer = setTimeout(() => {
        sub.dispose();
        reject(new Error(`session ${sessionId ?? this.currentSessionId} not idle after ${timeoutMs} ms`));
      }, timeoutMs);
      check();
    });
  }

  // -- requests --------------------------------------------------------------------------------

  async refreshSessions(): Promise<SessionInfo[]> {
    const result = await this.rpc.sendRequest(ListSessionsRequest, { limit: SESSION_LIST_LIMIT });
    this.sessions = result.sessions;
    this.emit("meta");
    return this.sessions;
  }

  /** Create a session and show it. */
  async newSession(title?: string): Promise<string> {
    const params: NewSessionParams = {};
    if (title !== undefined && title !== "") params.title = title;
    if (this.options.directory !== undefined) params.directory = this.options.directory;
    const result = await this.rpc.sendRequest(NewSessionRequest, params);
    this.upsertSession(result.session);
    await this.openSession(result.sessionId);
    return result.sessionId;
  }

  /** Load a session's history, follow it, and show it. */
  async openSession(sessionId: string): Promise<void> {
    const token = ++this.loadToken;
    const switching = this.transcript?.sessionId !== sessionId;
    if (switching) {
      this.transcript = new Transcript(sessionId);
      this.meter = undefined;
      this.notices.length = 0;
    }
    this.loading = { sessionId, buffered: [] };
    this.emit("meta");
    this.emit("transcript");
    let result: LoadResult;
    try {
      result = await this.rpc.sendRequest(LoadSessionRequest, { sessionId });
    } catch (err) {
      if (token === this.loadToken) {
        this.loading = undefined;
        if (switching) this.transcript = undefined;
        this.emit("meta");
        this.emit("transcript");
      }
      throw err;
    }
    if (token !== this.loadToken) return;
    const buffered = this.loading.buffered;
    this.loading = undefined;
    if (result.session.id !== sessionId) {
      throw new Error(`session/load of ${sessionId} returned ${result.session.id}`);
    }
    const t = Transcript.fromLoad(result);
    this.transcript = t;
    this.upsertSession(result.session);
    let gap = false;
    for (const e of buffered) gap = t.applyEvent(e) === "gap" || gap;
    this.emit("meta");
    this.emit("transcript");
    if (gap) {
      await this.openSession(sessionId);
      return;
    }
    this.refreshMeter();
  }

  /** Send a prompt to the current session (a new one when none is shown); resolves at turn end. */
  async prompt(text: string): Promise<PromptResult> {
    const sessionId = this.currentSessionId ?? (await this.newSession(titleFrom(text)));
    this.addInflight(sessionId, 1);
    try {
      const result = await this.rpc.sendRequest(PromptRequest, {
        sessionId,
        prompt: [{ type: "text", text }],
      });
      this.noteTurnError(sessionId, result);
      return result;
    } finally {
      this.addInflight(sessionId, -1);
      if (sessionId === this.currentSessionId) this.refreshMeter();
    }
  }

  async compact(instructions?: string): Promise<CompactResult> {
    const sessionId = this.requireSession();
    this.addInflight(sessionId, 1);
    try {
      const params: CompactParams = { sessionId };
      if (instructions !== undefined && instructions.trim() !== "") params.instructions = instructions;
      return await this.rpc.sendRequest(CompactRequest, params);
    } finally {
      this.addInflight(sessionId, -1);
      if (sessionId === this.currentSessionId) this.refreshMeter();
    }
  }

  async cancel(): Promise<number> {
    const sessionId = this.currentSessionId;
    if (sessionId === undefined) return 0;
    const result = await this.rpc.sendRequest(CancelRequest, { sessionId });
    return result.cancelled;
  }

  async context(sessionId = this.requireSession()): Promise<ContextResult> {
    return this.rpc.sendRequest(ContextRequest, { sessionId });
  }

  /** Ask `session/context` for the meter again; calls made while one runs coalesce into one. */
  refreshMeter(): void {
    if (this.meterRun !== undefined) {
      this.meterAgain = true;
      return;
    }
    this.meterRun = this.updateMeter().finally(() => {
      this.meterRun = undefined;
      if (this.meterAgain && !this.disposed) {
        this.meterAgain = false;
        this.refreshMeter();
      } else {
        this.emit("meta");
      }
    });
  }

  /** Resolves once no meter refresh is running (tests and the extension API use it). */
  async meterSettled(): Promise<void> {
    while (this.meterRun !== undefined) await this.meterRun;
  }

  // -- internals -------------------------------------------------------------------------------

  private async updateMeter(): Promise<void> {
    const sessionId = this.currentSessionId;
    if (sessionId === undefined) return;
    try {
      const ctx = await this.context(sessionId);
      if (sessionId !== this.currentSessionId) return;
      this.meter = { tokens: ctx.tokens, usable: ctx.usable };
      this.emit("meta");
    } catch (err) {
      this.log(`session/context failed: ${String(err)}`);
    }
  }

  private noteTurnError(sessionId: string, result: PromptResult): void {
    if (result.stopReason !== "error" || result.error === undefined) return;
    const t = this.transcript;
    if (t === undefined || t.sessionId !== sessionId) return;
    // A reply that failed shows its own error; say more only when the turn's error is another.
    const reply = result.messageId === null ? undefined : t.message(result.messageId);
    if (reply?.info.role === "assistant" && reply.info.error?.message === result.error.message) {
      return;
    }
    this.notices.push({
      key: `notice-${++this.noticeCount}`,
      afterId: result.messageId ?? result.userMessageId,
      level: "error",
      text: `${result.error.name}: ${result.error.message}`,
    });
    this.emit("transcript");
  }

  private requireSession(): string {
    const id = this.currentSessionId;
    if (id === undefined) throw new Error("no session is open");
    return id;
  }

  private addInflight(sessionId: string, n: number): void {
    const value = (this.inflight.get(sessionId) ?? 0) + n;
    if (value <= 0) this.inflight.delete(sessionId);
    else this.inflight.set(sessionId, value);
    this.emit("meta");
  }

  private upsertSession(session: SessionInfo): void {
    const rest = this.sessions.filter((s) => s.id !== session.id);
    rest.push(session);
    rest.sort((a, b) =>
      b.time.updated !== a.time.updated ? b.time.updated - a.time.updated : b.id < a.id ? -1 : 1,
    );
    this.sessions = rest;
    this.emit("meta");
  }

  private emit(kind: ChangeKind): void {
    if (this.disposed) return;
    for (const l of [...this.listeners]) l(kind);
  }

  private log(message: string): void {
    this.options.log?.(message);
  }
}
