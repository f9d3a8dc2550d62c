// The controller against a scripted server (a fake `Rpc` answering from a table): what it asks
// for when a session is opened, and what the view then shows.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { RequestType } from "vscode-jsonrpc";
import { type Rpc, SessionController } from "../controller";
import {
  ContextRequest,
  type ContextResult,
  EventsRequest,
  LoadSessionRequest,
  type LoadResult,
} from "../protocol";
import type { CompactionItem } from "../viewMessages";
import { buildItems } from "../viewModel";
import { SID, compactionPart, compactionState, info, loaded, prompt, text } from "./fixtures";

/** Answers each method from `answers`; any other method is an error. Records every request. */
class ScriptedRpc implements Rpc {
  readonly requests: string[] = [];
  constructor(private readonly answers: Record<string, unknown>) {}
  sendRequest<P, R, E>(type: RequestType<P, R, E>, _params: unknown): Promise<R> {
    const method = type.method;
    this.requests.push(method);
    if (!(method in this.answers)) return Promise.reject(new Error(`unexpected request ${method}`));
    return Promise.resolve(this.answers[method] as R);
  }
}

const context: ContextResult = {
  sessionId: SID,
  messages: [],
  tokens: 120,
  usable: 7000,
  contextLimit: 8000,
  outputLimit: 1000,
};

/** A session with two compactions: one completed, then one that failed twice. */
function loadResult(): LoadResult {
  const summaryOf = (id: string, markerId: string, extra: Parameters<typeof info>[1]) => ({
    info: info(id, { kind: "summary", summary: true, parentId: markerId, compactionId: markerId, ...extra }),
    parts: [] as never[],
  });
  return loaded(
    [
      { info: prompt("msg_1"), parts: [text("prt_1", "msg_1", "question")] },
      { info: info("msg_2", { parentId: "msg_1", finish: "stop" }), parts: [text("prt_2", "msg_2", "answer")] },
      { info: info("msg_3", { role: "user", kind: "marker" }), parts: [compactionPart("prt_3", "msg_3")] },
      summaryOf("msg_4", "msg_3", { finish: "stop" }),
      { info: info("msg_5", { role: "user", kind: "marker" }), parts: [compactionPart("prt_5", "msg_5", { auto: true })] },
      summaryOf("msg_6", "msg_5", { error: { name: "ProviderError", message: "HTTP 500" } }),
      summaryOf("msg_7", "msg_5", { error: { name: "ProviderError", message: "HTTP 500" } }),
    ],
    42,
    [
      compactionState("msg_3", "completed", { summaryMessageId: "msg_4" }),
      compactionState("msg_5", "failed", {
        auto: true,
        attempts: 2,
        error: { code: "provider_error", message: "the provider failed twice: HTTP 500" },
      }),
    ],
  );
}

describe("opening a session", () => {
  test("a_loaded_session_shows_compaction_status_and_failure_reason_without_reading_session_events", async () => {
    const rpc = new ScriptedRpc({
      [LoadSessionRequest.method]: loadResult(),
      [ContextRequest.method]: context,
    });
    const ctl = new SessionController(rpc);
    await ctl.openSession(SID);
    await ctl.meterSettled();

    assert.ok(!rpc.requests.includes(EventsRequest.method), `requests: ${rpc.requests.join(", ")}`);
    assert.deepEqual(rpc.requests, [LoadSessionRequest.method, ContextRequest.method]);

    const blocks = buildItems(ctl.transcript!)
      .map((e) => e.make())
      .filter((i): i is CompactionItem => i.kind === "compaction");
    assert.deepEqual(
      blocks.map((b) => [b.markerId, b.status, b.trigger, b.errorCode, b.errorMessage, b.attempts]),
      [
        ["msg_3", "completed", "manual", "", "", 1],
        ["msg_5", "failed", "automatic", "provider_error", "the provider failed twice: HTTP 500", 2],
      ],
    );
    assert.equal(ctl.uiState(), "idle");
    ctl.dispose();
  });
});
