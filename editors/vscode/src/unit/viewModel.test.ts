import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { renderContext } from "../contextDocument";
import { Transcript } from "../transcript";
import type { CompactionItem, MessageItem } from "../viewMessages";
import { ViewDiffer, buildItems } from "../viewModel";
import { SID, compactionPart, compactionState, compactionUpdated, delta, ev, info, loaded, prompt, text } from "./fixtures";

function history(): Transcript {
  return Transcript.fromLoad(
    loaded(
      [
        { info: prompt("msg_1"), parts: [text("prt_1", "msg_1", "first question")] },
        { info: info("msg_2", { finish: "stop", parentId: "msg_1" }), parts: [text("prt_2", "msg_2", "first answer")] },
        { info: prompt("msg_3"), parts: [text("prt_3", "msg_3", "second question")] },
        { info: info("msg_4", { finish: "stop", parentId: "msg_3" }), parts: [text("prt_4", "msg_4", "second answer")] },
        {
          info: info("msg_5", { role: "user", kind: "marker" }),
          parts: [compactionPart("prt_5", "msg_5", { auto: true, tailStartId: "msg_3", instructions: "Keep names." })],
        },
        {
          info: info("msg_6", { kind: "summary", summary: true, parentId: "msg_5", compactionId: "msg_5", error: { name: "Interrupted", message: "died" } }),
          parts: [],
        },
        {
          info: info("msg_7", { kind: "summary", summary: true, parentId: "msg_5", compactionId: "msg_5", finish: "stop", summaryKind: "extractive" }),
          parts: [text("prt_7", "msg_7", "## Objective\nthe summary")],
        },
        {
          info: info("msg_8", { role: "user", kind: "continuation", compactionId: "msg_5", synthetic: true }),
          parts: [{ ...text("prt_8", "msg_8", "Carry on."), synthetic: true } as never],
        },
      ],
      30,
      [compactionState("msg_5", "completed", { auto: true, attempts: 2, summaryMessageId: "msg_7" })],
    ),
  );
}

describe("view items", () => {
  test("summaries_and_continuations_fold_into_their_compaction_block", () => {
    const items = buildItems(history()).map((e) => e.make());
    assert.deepEqual(
      items.map((i) => i.key),
      ["msg_1", "msg_2", "msg_3", "msg_4", "msg_5"],
    );
    const block = items[4] as CompactionItem;
    assert.equal(block.kind, "compaction");
    assert.equal(block.status, "completed");
    assert.equal(block.trigger, "automatic");
    assert.equal(block.summaryText, "## Objective\nthe summary");
    assert.equal(block.summaryKind, "extractive");
    assert.equal(block.instructions, "Keep names.");
    assert.deepEqual(block.failedAttempts, [{ name: "Interrupted", message: "died" }]);
    assert.deepEqual(block.notes, [{ kind: "continuation", text: "Carry on." }]);
  });

  test("messages_before_the_completed_compactions_tail_are_marked_compacted", () => {
    const items = buildItems(history()).map((e) => e.make());
    const compacted = items.filter((i) => i.kind === "message" && i.compacted).map((i) => i.key);
    assert.deepEqual(compacted, ["msg_1", "msg_2"]);
  });

  test("a_failed_compaction_shows_its_code_and_reason", () => {
    const t = history();
    t.applyEvent(compactionUpdated("msg_5", "failed", { error: { code: "no_progress", message: "still over the window" } }, 31));
    const block = buildItems(t).map((e) => e.make())[4] as CompactionItem;
    assert.equal(block.status, "failed");
    assert.equal(block.errorCode, "no_progress");
    assert.equal(block.errorMessage, "still over the window");
  });

  test("streaming_and_cancelled_replies_are_flagged", () => {
    const t = new Transcript(SID);
    t.applyEvent(ev("message.updated", info("msg_2"), 1));
    t.applyDelta(delta("msg_2", "prt_1", "partial"));
    let item = buildItems(t)[0]?.make() as MessageItem;
    assert.equal(item.streaming, true);
    assert.equal(item.outcome, "ok");
    t.applyEvent(ev("message.updated", info("msg_2", { error: { name: "Cancelled", message: "stop" } }), 2));
    item = buildItems(t)[0]?.make() as MessageItem;
    assert.equal(item.streaming, false);
    assert.equal(item.outcome, "cancelled");
  });

  test("notices_follow_the_message_they_are_about", () => {
    const t = history();
    const keys = buildItems(t, [
      { key: "n1", afterId: "msg_2", level: "error", text: "ProviderError: boom" },
      { key: "n2", afterId: undefined, level: "error", text: "at the end" },
    ]).map((e) => e.key);
    assert.deepEqual(keys, ["msg_1", "msg_2", "n1", "msg_3", "msg_4", "msg_5", "n2"]);
  });
});

describe("view diffs", () => {
  test("first_message_is_a_reset_with_every_item", () => {
    const d = new ViewDiffer();
    const m = d.next(history());
    assert.equal(m?.reset, true);
    assert.equal(m?.items.length, 5);
  });

  test("nothing_changed_sends_nothing", () => {
    const d = new ViewDiffer();
    const t = history();
    d.next(t);
    assert.equal(d.next(t), undefined);
  });

  test("a_streamed_delta_sends_only_its_message", () => {
    const d = new ViewDiffer();
    const t = history();
    t.applyEvent(ev("message.updated", info("msg_9"), 31));
    d.next(t);
    t.applyDelta(delta("msg_9", "prt_9", "more"));
    const m = d.next(t);
    assert.equal(m?.reset, false);
    assert.deepEqual(
      m?.items.map((i) => i.key),
      ["msg_9"],
    );
  });

  test("a_summary_update_resends_the_compaction_block", () => {
    const d = new ViewDiffer();
    const t = history();
    d.next(t);
    t.applyEvent(ev("message.part.updated", text("prt_7", "msg_7", "new summary"), 31));
    const m = d.next(t);
    assert.deepEqual(
      m?.items.map((i) => i.key),
      ["msg_5"],
    );
  });

  test("switching_session_or_invalidating_resets", () => {
    const d = new ViewDiffer();
    d.next(history());
    const other = new Transcript("ses_other");
    assert.equal(d.next(other)?.reset, true);
    assert.equal(d.next(other), undefined);
    d.invalidate();
    assert.equal(d.next(other)?.reset, true);
  });
});

describe("model context document", () => {
  test("context_renders_every_message_with_fences_that_its_text_cannot_close", () => {
    const md = renderContext({
      sessionId: SID,
      messages: [
        { role: "user", messageId: "msg_1", tokens: 10, parts: [text("prt_1", "msg_1", "has ``` inside")] },
        { role: "assistant", messageId: "msg_2", tokens: 5, parts: [text("prt_2", "msg_2", "ok")] },
      ],
      tokens: 15,
      usable: 7000,
      contextLimit: 8000,
      outputLimit: 1000,
      markerId: "msg_5",
      summaryMessageId: "msg_6",
    });
    assert.match(md, /tokens \(estimated\): 15 of 7000 usable/);
    assert.match(md, /## 1\. user · msg_1 · 10 tokens/);
    assert.match(md, /````text\nhas ``` inside\n````/);
    assert.match(md, /starts from compaction msg_5 \(summary msg_6\)/);
  });
});
