import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Transcript } from "../transcript";
import {
  SID,
  compactionPart,
  compactionState,
  compactionUpdated,
  delta,
  ev,
  info,
  loaded,
  partDelta,
  prompt,
  session,
  text,
} from "./fixtures";

function textOf(t: Transcript, messageId: string, partId: string): string | undefined {
  const part = t.message(messageId)?.parts.find((p) => p.id === partId);
  return part?.type === "text" || part?.type === "reasoning" ? part.text : undefined;
}

describe("applying session/load and session/sync", () => {
  test("load_gives_the_history_in_id_order_and_sets_the_cursor", () => {
    const t = Transcript.fromLoad(
      loaded(
        [
          { info: info("msg_2", { parentId: "msg_1", finish: "stop" }), parts: [text("prt_b", "msg_2", "hi")] },
          { info: prompt("msg_1"), parts: [text("prt_a", "msg_1", "hello")] },
        ],
        7,
      ),
    );
    assert.equal(t.seq, 7);
    assert.deepEqual(
      t.messages().map((m) => m.info.id),
      ["msg_1", "msg_2"],
    );
  });

  test("events_at_or_below_the_cursor_are_dropped_as_already_applied", () => {
    const t = Transcript.fromLoad(loaded([{ info: prompt("msg_1"), parts: [] }], 10));
    assert.equal(t.applyEvent(ev("message.part.updated", text("prt_x", "msg_1", "old"), 10)), "stale");
    assert.equal(t.applyEvent(ev("message.part.updated", text("prt_x", "msg_1", "older"), 3)), "stale");
    assert.equal(t.message("msg_1")?.parts.length, 0);
    assert.equal(t.applyEvent(ev("message.part.updated", text("prt_x", "msg_1", "new"), 11)), "applied");
    assert.equal(textOf(t, "msg_1", "prt_x"), "new");
  });

  test("a_repeated_or_out_of_order_event_does_not_undo_a_newer_one", () => {
    const t = new Transcript(SID);
    const finished = ev("message.updated", info("msg_2", { finish: "stop" }), 20);
    const started = ev("message.updated", info("msg_2"), 19);
    assert.equal(t.applyEvent(finished), "applied");
    assert.equal(t.applyEvent(started), "stale");
    assert.equal(t.applyEvent(finished), "stale");
    assert.equal(t.message("msg_2")?.info.finish, "stop");
  });

  test("events_of_another_session_are_not_applied", () => {
    const t = new Transcript(SID);
    const other = { ...ev("message.updated", prompt("msg_9"), 5), sessionId: "ses_other" };
    assert.equal(t.applyEvent(other), "other-session");
    assert.equal(t.seq, 0);
    assert.equal(t.messages().length, 0);
  });

  test("unknown_event_types_are_ignored_but_move_the_cursor", () => {
    const t = new Transcript(SID);
    assert.equal(t.applyEvent({ seq: 4, sessionId: SID, type: "future.thing", data: {} }), "ignored");
    assert.equal(t.seq, 4);
  });

  test("message_updated_replaces_the_info_and_keeps_the_parts", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", info("msg_2"), 1));
    t.applyEvent(ev("message.part.updated", text("prt_1", "msg_2", "answer"), 2));
    t.applyEvent(ev("message.updated", info("msg_2", { finish: "stop", model: "offline" }), 3));
    const m = t.message("msg_2");
    assert.equal(m?.info.finish, "stop");
    assert.equal(m?.parts.length, 1);
  });

  test("removed_events_delete_messages_and_parts", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", prompt("msg_1"), 1));
    t.applyEvent(ev("message.part.updated", text("prt_1", "msg_1", "a"), 2));
    t.applyEvent(ev("message.part.updated", text("prt_2", "msg_1", "b"), 3));
    t.applyEvent(ev("message.part.removed", { sessionId: SID, messageId: "msg_1", partId: "prt_1" }, 4));
    assert.deepEqual(
      t.message("msg_1")?.parts.map((p) => p.id),
      ["prt_2"],
    );
    t.applyEvent(ev("message.removed", { sessionId: SID, messageId: "msg_1" }, 5));
    assert.equal(t.message("msg_1"), undefined);
  });

  test("every_event_type_the_protocol_lists_is_applied_not_ignored", () => {
    // docs/protocol.md §5: the event types a client must handle.
    const t = new Transcript(SID);
    const events = [
      ev("session.created", session(SID, "a"), 1),
      ev("message.updated", prompt("msg_1"), 2),
      ev("message.part.updated", text("prt_1", "msg_1", "a"), 3),
      partDelta("msg_1", "prt_1", 1, "b", 4),
      compactionUpdated("msg_1", "pending", {}, 5),
      ev("session.cancel", { sessionId: SID }, 6),
      ev("session.updated", session(SID, "b"), 7),
      ev("message.part.removed", { sessionId: SID, messageId: "msg_1", partId: "prt_1" }, 8),
      ev("message.removed", { sessionId: SID, messageId: "msg_1" }, 9),
      ev("session.deleted", { id: SID }, 10),
    ];
    for (const e of events) {
      assert.equal(t.applyEvent(e), "applied", e.type);
      assert.equal(t.seq, e.seq, e.type);
    }
  });

  test("session_events_update_and_delete_the_session", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("session.created", session(SID, "a"), 1));
    t.applyEvent(ev("session.updated", session(SID, "b"), 2));
    assert.equal(t.session?.title, "b");
    t.applyEvent(ev("session.deleted", { id: SID }, 3));
    assert.equal(t.deleted, true);
  });
});

describe("streamed text", () => {
  test("session_delta_creates_the_part_and_appends_at_once", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", info("msg_2"), 1));
    assert.equal(t.applyDelta(delta("msg_2", "prt_1", "Hel")), "applied");
    assert.equal(t.applyDelta(delta("msg_2", "prt_1", "lo")), "applied");
    assert.equal(textOf(t, "msg_2", "prt_1"), "Hello");
    assert.equal(t.hasMessageInProgress(), true);
  });

  test("part_delta_at_the_held_length_appends", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", info("msg_2"), 1));
    assert.equal(t.applyEvent(partDelta("msg_2", "prt_1", 0, "The no", 2)), "applied");
    assert.equal(t.applyEvent(partDelta("msg_2", "prt_1", 6, "tes say", 3)), "applied");
    assert.equal(textOf(t, "msg_2", "prt_1"), "The notes say");
  });

  test("part_delta_already_brought_by_session_deltas_is_ignored", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", info("msg_2"), 1));
    t.applyDelta(delta("msg_2", "prt_1", "The no"));
    t.applyDelta(delta("msg_2", "prt_1", "tes sa"));
    t.applyDelta(delta("msg_2", "prt_1", "y the "));
    // The durable write covers the first 12 characters, which the deltas already brought.
    assert.equal(t.applyEvent(partDelta("msg_2", "prt_1", 0, "The notes sa", 2)), "applied");
    assert.equal(textOf(t, "msg_2", "prt_1"), "The notes say the ");
  });

  test("part_delta_overlapping_the_held_text_appends_only_the_new_tail", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", info("msg_2"), 1));
    t.applyDelta(delta("msg_2", "prt_1", "abcd"));
    assert.equal(t.applyEvent(partDelta("msg_2", "prt_1", 2, "cdef", 2)), "applied");
    assert.equal(textOf(t, "msg_2", "prt_1"), "abcdef");
  });

  test("part_delta_past_the_held_text_is_a_gap", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", info("msg_2"), 1));
    t.applyDelta(delta("msg_2", "prt_1", "ab"));
    assert.equal(t.applyEvent(partDelta("msg_2", "prt_1", 5, "xyz", 2)), "gap");
    assert.equal(textOf(t, "msg_2", "prt_1"), "ab");
    assert.equal(t.applyEvent(partDelta("msg_2", "prt_9", 3, "xyz", 3)), "gap");
  });

  test("part_updated_replaces_the_streamed_text", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", info("msg_2"), 1));
    t.applyDelta(delta("msg_2", "prt_1", "partial ans"));
    t.applyEvent(ev("message.part.updated", text("prt_1", "msg_2", "the full answer"), 2));
    assert.equal(textOf(t, "msg_2", "prt_1"), "the full answer");
    t.applyEvent(ev("message.updated", info("msg_2", { finish: "stop" }), 3));
    assert.equal(t.hasMessageInProgress(), false);
  });

  test("deltas_before_the_message_info_are_kept_and_shown_once_it_arrives", () => {
    const t = new Transcript(SID);
    t.applyDelta(delta("msg_2", "prt_1", "early"));
    assert.equal(t.messages().length, 0);
    t.applyEvent(ev("message.updated", info("msg_2"), 1));
    assert.equal(textOf(t, "msg_2", "prt_1"), "early");
  });

  test("a_cancelled_reply_keeps_its_text_and_its_error", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", info("msg_2"), 1));
    t.applyDelta(delta("msg_2", "prt_1", "Let me"));
    t.applyEvent(ev("message.part.updated", text("prt_1", "msg_2", "Let me think"), 2));
    t.applyEvent(
      ev("message.updated", info("msg_2", { error: { name: "Cancelled", message: "cancelled before the answer ended" } }), 3),
    );
    const m = t.message("msg_2");
    assert.equal(m?.info.error?.name, "Cancelled");
    assert.equal(textOf(t, "msg_2", "prt_1"), "Let me think");
    assert.equal(t.hasMessageInProgress(), false);
  });
});

describe("compactions", () => {
  const marker = { info: info("msg_5", { role: "user", kind: "marker" }), parts: [compactionPart("prt_5", "msg_5")] };
  const summary = (extra: Parameters<typeof info>[1]) => ({
    info: info("msg_6", { kind: "summary", summary: true, parentId: "msg_5", compactionId: "msg_5", ...extra }),
    parts: [text("prt_6", "msg_6", "## Objective\nsummary")],
  });

  test("compaction_updated_events_give_the_status_in_order", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", marker.info, 1));
    t.applyEvent(ev("message.part.updated", marker.parts[0]!, 2));
    t.applyEvent(compactionUpdated("msg_5", "pending", { attempts: 0 }, 3));
    assert.equal(t.compaction("msg_5")?.status, "pending");
    assert.equal(t.activeCompaction()?.markerId, "msg_5");
    t.applyEvent(compactionUpdated("msg_5", "running", {}, 4));
    assert.equal(t.compaction("msg_5")?.status, "running");
    t.applyEvent(compactionUpdated("msg_5", "completed", { summaryMessageId: "msg_6" }, 5));
    assert.equal(t.compaction("msg_5")?.status, "completed");
    assert.equal(t.compaction("msg_5")?.summaryMessageId, "msg_6");
    assert.equal(t.activeCompaction(), undefined);
  });

  test("a_failed_compaction_keeps_its_code_and_message", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", marker.info, 1));
    t.applyEvent(
      compactionUpdated("msg_5", "failed", { error: { code: "cancelled", message: "compaction cancelled" } }, 2),
    );
    assert.deepEqual(t.compaction("msg_5")?.error, { code: "cancelled", message: "compaction cancelled" });
  });

  test("load_gives_each_compaction_the_state_from_its_compactions_list", () => {
    const second = { info: info("msg_8", { role: "user", kind: "marker" }), parts: [compactionPart("prt_8", "msg_8")] };
    const failedSummary = {
      info: info("msg_9", {
        kind: "summary",
        summary: true,
        parentId: "msg_8",
        compactionId: "msg_8",
        error: { name: "ProviderError", message: "HTTP 500" },
      }),
      parts: [],
    };
    const completed = compactionState("msg_5", "completed", { summaryMessageId: "msg_6" });
    const failed = compactionState("msg_8", "failed", {
      auto: true,
      attempts: 2,
      error: { code: "no_progress", message: "the summary did not make the context smaller" },
    });
    const t = Transcript.fromLoad(loaded([marker, summary({ finish: "stop" }), second, failedSummary], 9, [completed, failed]));
    assert.deepEqual(t.compaction("msg_5"), completed);
    assert.deepEqual(t.compaction("msg_8"), failed);
    assert.deepEqual(t.compactions(), [completed, failed]);
    assert.equal(t.activeCompaction(), undefined);
    assert.equal(t.seq, 9);
  });

  test("a_running_compaction_from_the_load_is_the_active_one", () => {
    const running = compactionState("msg_5", "running", { summaryMessageId: "msg_6" });
    const t = Transcript.fromLoad(loaded([marker, summary({})], 9, [running]));
    assert.deepEqual(t.activeCompaction(), running);
  });

  test("the_status_is_what_the_server_said_not_guessed_from_the_summaries", () => {
    // A finished summary whose compaction the server still reports as running (its tail is not
    // yet written): the client shows the server's state.
    const t = Transcript.fromLoad(loaded([marker, summary({ finish: "stop" })], 9, [compactionState("msg_5", "running")]));
    assert.equal(t.compaction("msg_5")?.status, "running");
    // A marker the server has told nothing about yet has no state.
    const untold = new Transcript(SID);
    untold.applyEvent(ev("message.updated", marker.info, 1));
    assert.equal(untold.compaction("msg_5"), undefined);
    assert.deepEqual(untold.compactions(), []);
  });

  test("compaction_updated_after_the_load_replaces_the_loaded_state_and_older_ones_are_dropped", () => {
    const t = Transcript.fromLoad(loaded([marker, summary({})], 20, [compactionState("msg_5", "running")]));
    assert.equal(t.applyEvent(compactionUpdated("msg_5", "failed", { error: { code: "x", message: "old" } }, 14)), "stale");
    assert.equal(t.compaction("msg_5")?.status, "running");
    const before = t.compactionRev("msg_5");
    assert.equal(t.applyEvent(compactionUpdated("msg_5", "completed", { summaryMessageId: "msg_6" }, 21)), "applied");
    assert.equal(t.compaction("msg_5")?.status, "completed");
    assert.equal(t.compaction("msg_5")?.summaryMessageId, "msg_6");
    assert.notEqual(t.compactionRev("msg_5"), before);
  });

  test("removing_a_summary_moves_the_compaction_revision", () => {
    const t = Transcript.fromLoad(
      loaded([marker, summary({ finish: "stop" })], 9, [compactionState("msg_5", "completed", { summaryMessageId: "msg_6" })]),
    );
    const before = t.compactionRev("msg_5");
    t.applyEvent(ev("message.removed", { sessionId: SID, messageId: "msg_6" }, 10));
    assert.notEqual(t.compactionRev("msg_5"), before);
    assert.equal(t.message("msg_6"), undefined);
  });

  test("a_summary_known_only_by_its_parent_moves_its_markers_revision", () => {
    const t = Transcript.fromLoad(loaded([marker], 9, [compactionState("msg_5", "running")]));
    const orphan = info("msg_6", { kind: "summary", summary: true, parentId: "msg_5" });
    t.applyEvent(ev("message.updated", orphan, 10));
    const before = t.compactionRev("msg_5");
    t.applyEvent(ev("message.part.updated", text("prt_6", "msg_6", "summary so far"), 11));
    assert.notEqual(t.compactionRev("msg_5"), before);
  });

  test("a_summary_change_moves_the_compaction_revision", () => {
    const t = Transcript.fromLoad(loaded([marker, summary({})], 9, [compactionState("msg_5", "running")]));
    const before = t.compactionRev("msg_5");
    t.applyEvent(partDelta("msg_6", "prt_6", "## Objective\nsummary".length, " more", 10));
    assert.notEqual(t.compactionRev("msg_5"), before);
  });
});
