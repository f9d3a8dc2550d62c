// Builders for protocol objects in the shapes docs/protocol.md shows, for the unit tests.

import type {
  CompactionInfo,
  DeltaParams,
  LoadResult,
  MessageInfo,
  Part,
  SessionInfo,
  StoredMessage,
  SyncEvent,
} from "../protocol";

export const SID = "ses_01a20fbb95500000859f9066";

export function session(id = SID, title = ""): SessionInfo {
  return { id, title, time: { created: 1, updated: 1 } };
}

export function info(id: string, extra: Partial<MessageInfo> = {}): MessageInfo {
  return {
    id,
    sessionId: SID,
    role: "assistant",
    kind: "reply",
    time: { created: 1 },
    ...extra,
  };
}

export function prompt(id: string): MessageInfo {
  return info(id, { role: "user", kind: "prompt" });
}

export function text(id: string, messageId: string, body: string): Part {
  return { id, messageId, sessionId: SID, type: "text", text: body };
}

export function compactionPart(
  id: string,
  markerId: string,
  extra: { auto?: boolean; overflow?: boolean; tailStartId?: string; instructions?: string } = {},
): Part {
  return {
    id,
    messageId: markerId,
    sessionId: SID,
    type: "compaction",
    auto: extra.auto ?? false,
    overflow: extra.overflow ?? false,
    ...(extra.tailStartId === undefined ? {} : { tailStartId: extra.tailStartId }),
    ...(extra.instructions === undefined ? {} : { instructions: extra.instructions }),
  };
}

/** A `session/load` result; `compactions` as the server gives them, oldest marker first. */
export function loaded(messages: StoredMessage[], seq: number, compactions: CompactionInfo[] = []): LoadResult {
  return { session: session(), messages, compactions, seq };
}

/** A compaction's state, as in `compaction.updated` data and the load's `compactions`. */
export function compactionState(
  markerId: string,
  status: CompactionInfo["status"],
  extra: Partial<CompactionInfo> = {},
): CompactionInfo {
  return { markerId, status, auto: false, overflow: false, attempts: 1, ...extra };
}

let nextSeq = 1000;

export function ev<T extends SyncEvent["type"]>(
  type: T,
  data: Extract<SyncEvent, { type: T }>["data"],
  seq = nextSeq++,
): SyncEvent {
  return { seq, sessionId: SID, type, data } as SyncEvent;
}

export function delta(messageId: string, partId: string, piece: string): DeltaParams {
  return {
    sessionId: SID,
    messageId,
    partId,
    partType: "text",
    field: "text",
    delta: piece,
  };
}

export function partDelta(
  messageId: string,
  partId: string,
  offset: number,
  piece: string,
  seq?: number,
): SyncEvent {
  return ev(
    "message.part.delta",
    { id: partId, messageId, sessionId: SID, type: "text", field: "text", offset, delta: piece },
    seq,
  );
}

export function compactionUpdated(
  markerId: string,
  status: CompactionInfo["status"],
  extra: Partial<CompactionInfo> = {},
  seq?: number,
): SyncEvent {
  return ev("compaction.updated", compactionState(markerId, status, extra), seq);
}
