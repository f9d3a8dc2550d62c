// The state of one session as a client sees it: `session/load` results, `session/sync` events
// and `session/delta` notifications applied to a typed model (docs/protocol.md §4, §5, §7).
// Pure TypeScript: no `vscode` import, so `node --test` can exercise it.

import type {
  CompactionInfo,
  CompactionPart,
  DeltaParams,
  LoadResult,
  MessageInfo,
  Part,
  PartDeltaData,
  SessionInfo,
  StoredMessage,
  SyncEvent,
  UnknownEvent,
} from "./protocol";

/**
 * What applying one notification did.
 * - `applied`: the model changed (or the event was of a known type and moved the cursor);
 * - `stale`: the event's seq is not above the cursor, so it was already applied (dropped);
 * - `other-session`: the event belongs to another session (dropped);
 * - `ignored`: an event type this client does not know (the cursor still moves), or a
 *   `session/delta` for a part no delta created (its durable events bring the text);
 * - `gap`: a `message.part.delta` whose offset is past the text held: something was missed and
 *   the session must be loaded again.
 */
export type ApplyOutcome = "applied" | "stale" | "other-session" | "ignored" | "gap";

interface MessageEntry {
  /** Undefined while only parts or deltas of the message have arrived. */
  info: MessageInfo | undefined;
  parts: Map<string, Part>;
  /** The parts a `session/delta` created: the only ones later deltas extend. */
  streamed: Set<string>;
  rev: number;
}

/** A plain, comparable copy of the model (what a test compares with a fresh `session/load`). */
export interface TranscriptSnapshot {
  session: SessionInfo | undefined;
  deleted: boolean;
  messages: StoredMessage[];
  compactions: CompactionInfo[];
}

const byId = <T extends { id: string }>(a: T, b: T): number =>
  a.id < b.id ? -1 : a.id > b.id ? 1 : 0;

/**
 * Characters in `s` as the server counts them for `offset` (a Python string's length: code
 * points), not UTF-16 units: a character outside the Basic Multilingual Plane is one.
 */
function charLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** `s` without its first `n` characters (code points). */
function dropChars(s: string, n: number): string {
  let i = 0;
  for (let k = 0; k < n && i < s.length; k++) i += (s.codePointAt(i) ?? 0) > 0xffff ? 2 : 1;
  return s.slice(i);
}

export function isAssistantInProgress(info: MessageInfo): boolean {
  return info.role === "assistant" && info.finish === undefined && info.error === undefined;
}

export function isSuccessfulAssistant(info: MessageInfo): boolean {
  return info.role === "assistant" && info.finish !== undefined && info.error === undefined;
}

/**
 * The marker (compaction) a message belongs to: its `compactionId`, or for a summary without
 * one, its parent. Undefined for messages outside any compaction.
 */
export function compactionOwner(info: MessageInfo): string | undefined {
  return info.compactionId ?? (info.kind === "summary" ? info.parentId : undefined);
}

export class Transcript {
  readonly sessionId: string;
  session: SessionInfo | undefined;
  deleted = false;
  /** The highest seq applied: events at or below it are dropped. */
  seq = 0;
  private readonly entries = new Map<string, MessageEntry>();
  /** Each marker's compaction: from the load's `compactions`, then `compaction.updated`. */
  private readonly compactionStates = new Map<string, CompactionInfo>();
  private readonly compactionRevs = new Map<string, number>();
  private nextRev = 1;
  /** Bumped on every change; cheap way for a caller to tell whether anything moved. */
  version = 0;

  constructor(sessionId: string) {
    this.sessionId = sessionId;
  }

  /**
   * A transcript holding a `session/load` result, its cursor at the result's seq: the history,
   * and each compaction's state as the result's `compactions` gives it.
   */
  static fromLoad(result: LoadResult): Transcript {
    const t = new Transcript(result.session.id);
    t.session = result.session;
    for (const m of result.messages) {
      const parts = new Map<string, Part>();
      for (const p of m.parts) parts.set(p.id, p);
      t.entries.set(m.info.id, { info: m.info, parts, streamed: new Set(), rev: t.bump() });
    }
    for (const c of result.compactions) t.setCompaction(c);
    t.seq = result.seq;
    t.changed();
    return t;
  }

  /** Apply one `session/sync` event. */
  applyEvent(event: SyncEvent | UnknownEvent): ApplyOutcome {
    if (event.sessionId !== this.sessionId) return "other-session";
    if (event.seq <= this.seq) return "stale";
    this.seq = event.seq;
    const e = event as SyncEvent;
    switch (e.type) {
      case "session.created":
      case "session.updated":
        this.session = e.data;
        this.changed();
        return "applied";
      case "session.deleted":
        this.deleted = true;
        this.changed();
        return "applied";
      case "session.cancel":
        return "applied";
      case "message.updated":
        this.upsertInfo(e.data);
        return "applied";
      case "message.removed": {
        const info = this.entries.get(e.data.messageId)?.info;
        if (!this.entries.delete(e.data.messageId)) return "applied";
        const owner = info === undefined ? undefined : compactionOwner(info);
        if (owner !== undefined) this.bumpCompaction(owner);
        this.changed();
        return "applied";
      }
      case "message.part.updated":
        this.upsertPart(e.data);
        return "applied";
      case "message.part.removed": {
        const entry = this.entries.get(e.data.messageId);
        entry?.streamed.delete(e.data.partId);
        if (entry?.parts.delete(e.data.partId)) this.touch(entry);
        return "applied";
      }
      case "message.part.delta":
        return this.applyPartDelta(e.data);
      case "compaction.updated":
        this.setCompaction(e.data);
        return "applied";
      default:
        return "ignored";
    }
  }

  /**
   * Apply a `session/delta` notification: append streamed text at once. Deltas only extend a
   * part they created from its first one (also after its `message.part.updated`, which holds
   * all they brought): a part read from the history or the event log holds the text of the last
   * durable write, behind the deltas, so appending to it would leave a hole; its durable events
   * (`message.part.delta` by offset, then `message.part.updated`) bring the rest.
   */
  applyDelta(delta: DeltaParams): ApplyOutcome {
    if (delta.sessionId !== this.sessionId) return "other-session";
    const entry = this.entry(delta.messageId);
    const part = entry.parts.get(delta.partId);
    if (part === undefined) {
      entry.parts.set(delta.partId, {
        id: delta.partId,
        messageId: delta.messageId,
        sessionId: delta.sessionId,
        type: delta.partType,
        text: delta.delta,
      });
      entry.streamed.add(delta.partId);
    } else if ((part.type === "text" || part.type === "reasoning") && entry.streamed.has(part.id)) {
      entry.parts.set(part.id, { ...part, text: part.text + delta.delta });
    } else {
      return "ignored";
    }
    this.touch(entry);
    return "applied";
  }

  /** Messages whose info is known, oldest first, parts in id order. */
  messages(): StoredMessage[] {
    const out: StoredMessage[] = [];
    for (const entry of this.entries.values()) {
      if (entry.info === undefined) continue;
      out.push({ info: entry.info, parts: [...entry.parts.values()].sort(byId) });
    }
    return out.sort((a, b) => byId(a.info, b.info));
  }

  message(id: string): StoredMessage | undefined {
    const entry = this.entries.get(id);
    if (entry?.info === undefined) return undefined;
    return { info: entry.info, parts: [...entry.parts.values()].sort(byId) };
  }

  /** A revision number for the message that changes whenever the message or its parts do. */
  messageRev(id: string): number {
    return this.entries.get(id)?.rev ?? 0;
  }

  /** A revision number for the compaction that changes whenever its known state does. */
  compactionRev(markerId: string): number {
    return this.compactionRevs.get(markerId) ?? 0;
  }

  /** The marker's compaction part, if it has arrived. */
  compactionPart(markerId: string): CompactionPart | undefined {
    const entry = this.entries.get(markerId);
    if (entry === undefined) return undefined;
    for (const p of entry.parts.values()) if (p.type === "compaction") return p;
    return undefined;
  }

  /**
   * The compaction of a marker as the server last told it (the load's `compactions`, then
   * `compaction.updated`). Undefined while it has not been told: the server writes a marker and
   * its first (`pending`) state in one transaction, so that event follows the marker's closely.
   */
  compaction(markerId: string): CompactionInfo | undefined {
    return this.compactionStates.get(markerId);
  }

  /** Every known marker's compaction, in history order. */
  compactions(): CompactionInfo[] {
    const out: CompactionInfo[] = [];
    for (const m of this.messages()) {
      if (m.info.kind !== "marker") continue;
      const c = this.compaction(m.info.id);
      if (c !== undefined) out.push(c);
    }
    return out;
  }

  /** Whether some compaction of the session is pending or running, as far as is known. */
  activeCompaction(): CompactionInfo | undefined {
    return this.compactions().find((c) => c.status === "pending" || c.status === "running");
  }

  /** Whether an assistant message (reply or summary) is still being written. */
  hasMessageInProgress(): boolean {
    for (const entry of this.entries.values()) {
      if (entry.info !== undefined && isAssistantInProgress(entry.info)) return true;
    }
    return false;
  }

  snapshot(): TranscriptSnapshot {
    return {
      session: this.session,
      deleted: this.deleted,
      messages: this.messages(),
      compactions: this.compactions(),
    };
  }

  // -- internals ------------------------------------------------------------------------------

  private applyPartDelta(data: PartDeltaData): ApplyOutcome {
    const entry = this.entry(data.messageId);
    const part = entry.parts.get(data.id);
    if (part === undefined) {
      if (data.offset !== 0) return "gap";
      entry.parts.set(data.id, {
        id: data.id,
        messageId: data.messageId,
        sessionId: data.sessionId,
        type: data.type,
        text: data.delta,
      });
      this.touch(entry);
      return "applied";
    }
    if (part.type !== "text" && part.type !== "reasoning") return "ignored";
    // offsets count characters (code points), as the server does
    const held = charLength(part.text);
    if (held < data.offset) return "gap";
    const end = data.offset + charLength(data.delta);
    if (held >= end) return "applied"; // the session/delta stream already brought this text
    entry.parts.set(part.id, { ...part, text: part.text + dropChars(data.delta, held - data.offset) });
    this.touch(entry);
    return "applied";
  }

  private upsertInfo(info: MessageInfo): void {
    const entry = this.entry(info.id);
    entry.info = info;
    this.touch(entry);
  }

  private upsertPart(part: Part): void {
    const entry = this.entry(part.messageId);
    entry.parts.set(part.id, part);
    this.touch(entry);
  }

  private setCompaction(data: CompactionInfo): void {
    // Only the fields this client knows: what a later protocol adds is not kept half-understood.
    const state: CompactionInfo = {
      markerId: data.markerId,
      status: data.status,
      auto: data.auto,
      overflow: data.overflow,
      attempts: data.attempts,
    };
    if (data.summaryMessageId !== undefined) state.summaryMessageId = data.summaryMessageId;
    if (data.error !== undefined) state.error = data.error;
    this.compactionStates.set(data.markerId, state);
    this.bumpCompaction(data.markerId);
    this.changed();
  }

  private entry(messageId: string): MessageEntry {
    let entry = this.entries.get(messageId);
    if (entry === undefined) {
      entry = { info: undefined, parts: new Map(), streamed: new Set(), rev: this.bump() };
      this.entries.set(messageId, entry);
    }
    return entry;
  }

  private touch(entry: MessageEntry): void {
    entry.rev = this.bump();
    const owner = entry.info === undefined ? undefined : compactionOwner(entry.info);
    if (owner !== undefined) this.bumpCompaction(owner);
    this.changed();
  }

  private bumpCompaction(markerId: string): void {
    this.compactionRevs.set(markerId, this.bump());
  }

  private bump(): number {
    return this.nextRev++;
  }

  private changed(): void {
    this.version++;
  }
}
