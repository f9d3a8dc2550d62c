// Protocol-level tests against the real Python server: the controller and transcript model the
// extension uses, fed by the server's notifications over stdio (vscode-jsonrpc), must end up
// equal to what a fresh `session/load` returns.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { SessionController } from "../controller";
import { ContextRequest, DeleteSessionRequest, LoadSessionRequest } from "../protocol";
import type { CompactionItem } from "../viewMessages";
import { buildItems } from "../viewModel";
import {
  type Connected,
  type FakeOpenAI,
  connect,
  freshTranscript,
  serverExecutable,
  startFakeOpenAI,
  tempDb,
  until,
} from "./serverHarness";

const skip = serverExecutable() === undefined ? "no .venv/bin/sessionlsp (run ./dev)" : false;
const LONG = "Please explain how the parser handles nested arrays and empty objects in detail. ";

async function assertMatchesFreshLoad(c: Connected, sessionId: string): Promise<void> {
  const live = c.controller.transcript;
  assert.ok(live !== undefined && live.sessionId === sessionId);
  const fresh = await freshTranscript(c, sessionId);
  assert.deepStrictEqual(live.messages(), fresh.messages());
  assert.deepStrictEqual(live.compactions(), fresh.compactions());
  assert.deepStrictEqual(live.session, fresh.session);
}

describe("offline provider", { skip }, () => {
  let c: Connected;
  before(async () => {
    // A small window so that a few prompts reach it and compact automatically.
    c = await connect(tempDb(), { contextLimit: 1200, outputLimit: 200 });
  });
  after(async () => {
    await c?.close();
  });

  test("prompts_and_a_manual_compaction_built_from_notifications_equal_session_load", async () => {
    const ctl = c.controller;
    const sessionId = await ctl.newSession("protocol test");
    assert.equal(ctl.currentSessionId, sessionId);

    const first = await ctl.prompt("Why does the parser reject empty arrays?");
    assert.equal(first.stopReason, "end_turn");
    assert.ok(c.deltas.some((d) => d.sessionId === sessionId), "the reply streamed as session/delta");
    await assertMatchesFreshLoad(c, sessionId);

    const compact = await ctl.compact("Keep file names.");
    assert.equal(compact.status, "completed");
    assert.equal(compact.created, true);
    const state = ctl.transcript?.compaction(compact.markerId);
    assert.equal(state?.status, "completed");
    assert.equal(state?.summaryMessageId, compact.summaryMessageId);
    assert.ok(
      c.progress.some((p) => JSON.stringify(p).includes('"kind":"end"')),
      "work-done progress ended",
    );

    const second = await ctl.prompt("And what about nested ones?");
    assert.equal(second.stopReason, "end_turn");
    await ctl.waitForIdle(sessionId, 30_000);
    await assertMatchesFreshLoad(c, sessionId);

    const block = buildItems(ctl.transcript!)
      .map((e) => e.make())
      .find((i): i is CompactionItem => i.kind === "compaction");
    assert.equal(block?.status, "completed");
    assert.equal(block?.trigger, "manual");
    assert.equal(block?.instructions, "Keep file names.");
    assert.ok(block?.summaryText.includes("Objective"));
  });

  test("a_full_window_compacts_automatically_and_the_model_still_equals_session_load", async () => {
    const ctl = c.controller;
    const sessionId = await ctl.newSession("auto compaction");
    let automatic = false;
    for (let i = 0; i < 12 && !automatic; i++) {
      const r = await ctl.prompt(`${i}: ${LONG.repeat(6)}`);
      assert.notEqual(r.stopReason, "error", JSON.stringify(r.error));
      automatic = ctl.transcript?.compactions().some((x) => x.auto && x.status === "completed") === true;
    }
    assert.ok(automatic, "an automatic compaction completed");
    await ctl.waitForIdle(sessionId, 30_000);
    await assertMatchesFreshLoad(c, sessionId);
    const kinds = ctl.transcript?.messages().map((m) => m.info.kind) ?? [];
    assert.ok(kinds.includes("continuation"), "an automatic compaction writes a continuation");
  });

  test("the_meter_reflects_session_context_after_a_turn", async () => {
    const ctl = c.controller;
    const sessionId = await ctl.newSession("meter");
    await ctl.prompt("count my tokens please");
    await ctl.waitForIdle(sessionId, 30_000);
    const ctx = await ctl.context(sessionId);
    assert.deepEqual(ctl.meter, { tokens: ctx.tokens, usable: ctx.usable });
    assert.ok(ctx.tokens > 0);
    assert.equal(ctx.usable, 1000);
  });

  test("opening_a_session_again_shows_the_same_history_and_compaction_status", async () => {
    const sessions = await c.controller.refreshSessions();
    const withCompaction = sessions.find((s) => s.title === "protocol test");
    assert.ok(withCompaction !== undefined);
    // A second controller on the same connection, its requests recorded: the compaction's
    // status must come from session/load itself, not from the event log.
    const requests: string[] = [];
    const ctl = new SessionController({
      sendRequest: (type, params) => {
        requests.push(type.method);
        return c.connection.sendRequest(type, params);
      },
    });
    await ctl.openSession(withCompaction.id);
    await ctl.meterSettled();
    const statuses = ctl.transcript?.compactions().map((x) => [x.status, x.summaryMessageId !== undefined]);
    assert.deepEqual(statuses, [["completed", true]]);
    assert.deepEqual(requests, [LoadSessionRequest.method, ContextRequest.method]);
    const fresh = await freshTranscript(c, withCompaction.id);
    assert.deepStrictEqual(ctl.transcript?.messages(), fresh.messages());
    assert.deepStrictEqual(ctl.transcript?.compactions(), fresh.compactions());
    ctl.dispose();
  });
});

describe("openai provider through the fake server, two server processes", { skip }, () => {
  let fake: FakeOpenAI;
  let a: Connected;
  let b: Connected;
  before(async () => {
    // 4 characters every 40 ms: a 200-character echo streams for about 2 s, long enough for the
    // server's 250 ms durable writes (message.part.delta) and for a cancel in the middle.
    fake = await startFakeOpenAI(["--delay-ms", "40", "--chunk-chars", "4"]);
    const db = tempDb();
    const options = { provider: "openai", baseUrl: fake.baseUrl, model: "fake-model" };
    a = await connect(db, options, { SESSIONLSP_API_KEY: "test-key" });
    b = await connect(db, options, { SESSIONLSP_API_KEY: "test-key" });
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await fake?.stop();
  });

  test("another_process_rebuilds_the_streamed_reply_from_part_deltas_and_equals_session_load", async () => {
    const sessionId = await a.controller.newSession("two processes");
    await b.controller.openSession(sessionId);
    const result = await a.controller.prompt(LONG.repeat(3));
    assert.equal(result.stopReason, "end_turn");
    const replyId = result.messageId;
    assert.ok(replyId !== null);
    // B is told through the database (about 50 ms polling), without session/delta.
    await until(
      b.controller,
      () => b.controller.transcript?.message(replyId)?.info.finish !== undefined,
      "the reply to finish in the other process",
    );
    assert.equal(b.deltas.length, 0, "other processes get no session/delta");
    assert.ok(
      b.syncs.some((e) => e.type === "message.part.delta"),
      "the other process saw the streaming writes as message.part.delta",
    );
    await assertMatchesFreshLoad(a, sessionId);
    await assertMatchesFreshLoad(b, sessionId);
    assert.deepStrictEqual(b.controller.transcript?.messages(), a.controller.transcript?.messages());
  });

  test("a_session_deleted_by_another_process_is_no_longer_shown", async () => {
    const sessionId = await a.controller.newSession("to delete");
    await b.controller.openSession(sessionId);
    assert.ok(b.controller.sessions.some((s) => s.id === sessionId));
    await a.connection.sendRequest(DeleteSessionRequest, { sessionId });
    await until(b.controller, () => b.controller.currentSessionId === undefined, "the deletion to reach B");
    assert.equal(b.controller.transcript, undefined);
    assert.ok(!b.controller.sessions.some((s) => s.id === sessionId));
  });

  test("cancel_mid_stream_keeps_the_text_marks_the_reply_cancelled_and_equals_session_load", async () => {
    const ctl = a.controller;
    const sessionId = await ctl.newSession("cancel");
    const turn = ctl.prompt(LONG.repeat(3));
    await until(
      ctl,
      () =>
        ctl.transcript?.messages().some((m) =>
          m.info.role === "assistant" && m.parts.some((p) => p.type === "text" && p.text.length >= 12),
        ) === true,
      "some streamed text",
    );
    assert.equal(ctl.uiState(), "busy");
    const cancelled = await ctl.cancel();
    assert.equal(cancelled, 1);
    const result = await turn;
    assert.equal(result.stopReason, "cancelled");
    await ctl.waitForIdle(sessionId, 30_000);
    const reply = ctl.transcript?.message(result.messageId ?? "");
    assert.equal(reply?.info.error?.name, "Cancelled");
    assert.ok(reply?.parts.some((p) => p.type === "text" && p.text.length >= 12));
    await assertMatchesFreshLoad(a, sessionId);
  });
});
