// @ts-check
// Phase A: the chat view in the real workbench, driven like a user would, checked against
// what the Python server stored (read back through the protocol by a second server).
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";

import { chatOnce } from "./lib/cli.mjs";
import { readSession } from "./lib/session-reader.mjs";
import { check, Steps } from "./lib/steps.mjs";
import { markdownWords, paintsOf, recordAssistantPaints, snapshot } from "./lib/transcript-dom.mjs";
import { waitFor } from "./lib/wait.mjs";
import {
  findFrame,
  openFile,
  runCommand,
  setSideBarWidth,
  statusBarEntries,
} from "./lib/workbench.mjs";

const FIRST_PROMPT = "Why does the parser reject empty arrays?";
const SECOND_PROMPT = "Which test covers nested empty arrays?";
const CLI_PROMPT = "hello from the cli";

/**
 * @typedef {object} UiContext
 * @property {import("playwright-core").Page} page
 * @property {string} serverPath
 * @property {string} db
 * @property {NodeJS.ProcessEnv} env  for the CLI client and the reading server
 * @property {string} screenshot  where the populated chat view's screenshot goes
 * @property {string[]} screenshotCopies  and where copies of it go
 */

/**
 * @typedef {object} Exchange  a prompt and its answer as the view shows them
 * @property {import("./lib/transcript-dom.mjs").DomMessage} user
 * @property {import("./lib/transcript-dom.mjs").DomMessage} reply
 */

/**
 * Wait until the view shows a user message with exactly `text`, followed by a finished
 * (not streaming, non-empty) assistant answer, and the view's state is idle.
 * @param {import("playwright-core").Frame} frame
 * @param {string} text
 * @param {number} [timeout]
 * @returns {Promise<Exchange>}
 */
function waitForExchange(frame, text, timeout = 30_000) {
  return waitFor(
    `the view to show "${text}" and its finished answer`,
    async () => {
      const shot = await snapshot(frame);
      const at = shot.messages.findLastIndex((m) => m.role === "user" && m.text === text);
      const user = shot.messages[at];
      const reply = shot.messages[at + 1];
      if (user === undefined || reply === undefined || reply.role !== "assistant") return undefined;
      if (reply.streaming || reply.text === "" || shot.state !== "idle") return undefined;
      return { user, reply };
    },
    { timeout },
  );
}

/**
 * The stored messages behind an exchange must be the ones the view shows, word for word.
 * @param {Exchange} shown
 * @param {import("./lib/session-reader.mjs").StoredSession} stored
 * @param {string} prompt
 */
function checkStored(shown, stored, prompt) {
  const user = stored.messages.find((m) => m.id === shown.user.id);
  const reply = stored.messages.find((m) => m.id === shown.reply.id);
  check(user !== undefined, `the view's user message ${shown.user.id} is not stored`);
  check(user.role === "user" && user.text === prompt, `stored prompt is ${JSON.stringify(user)}`);
  check(reply !== undefined, `the view's answer ${shown.reply.id} is not stored`);
  check(
    reply.kind === "reply" && reply.finish === "stop",
    `stored answer is ${JSON.stringify(reply)}`,
  );
  check(
    shown.reply.text === reply.text.trim(),
    `the view shows ${JSON.stringify(shown.reply.text)}\nthe server stored ${JSON.stringify(reply.text)}`,
  );
}

/**
 * Type `text` into #prompt and press Enter.
 * @param {import("playwright-core").Frame} frame
 * @param {string} text
 */
async function sendFromView(frame, text) {
  await frame.fill("#prompt", text);
  await frame.press("#prompt", "Enter");
}

/**
 * @param {UiContext} ctx
 * @returns {Promise<{sessionId: string, steps: Steps}>}
 */
export async function runUiPhase(ctx) {
  const { page } = ctx;
  const steps = new Steps("ui");

  const { frame, sessionId } = await steps.step(
    "the palette's New Session opens the chat view on a new session",
    async () => {
      await runCommand(page, "sessionlsp: New Session");
      const frame = await findFrame(page, "#prompt");
      const sessionId = await waitFor(
        "body[data-session-id]",
        async () => (await snapshot(frame)).sessionId,
      );
      check(/^ses_/.test(sessionId), `data-session-id is ${JSON.stringify(sessionId)}`);
      const shown = await snapshot(frame);
      check(shown.messages.length === 0, `a new session shows ${shown.messages.length} messages`);
      return { frame, sessionId };
    },
  );
  const read = () =>
    readSession({ serverPath: ctx.serverPath, db: ctx.db, sessionId, env: ctx.env });

  await steps.step(
    "a prompt typed in the view streams its answer into the transcript",
    async () => {
      await recordAssistantPaints(frame);
      await sendFromView(frame, FIRST_PROMPT);
      const shown = await waitForExchange(frame, FIRST_PROMPT);
      checkStored(shown, await read(), FIRST_PROMPT);
      const paints = await paintsOf(frame, shown.reply.id);
      const texts = paints.map((p) => p.text).filter((t) => t !== "");
      check(
        texts.length >= 2,
        `the answer appeared in ${texts.length} paint(s), not streamed: ${JSON.stringify(texts)}`,
      );
      texts.forEach((text, i) => {
        const before = texts[i - 1];
        check(
          before === undefined || (text.startsWith(before) && text.length > before.length),
          `paint ${i} does not extend paint ${i - 1}: ${JSON.stringify([before, text])}`,
        );
      });
      check(texts.at(-1) === shown.reply.text, "the last paint is not the final answer");
      check(
        paints.some((p) => p.streaming && p.text !== ""),
        "no partial answer was marked as streaming",
      );
      console.log(`       (the answer grew over ${texts.length} paints)`);
    },
  );

  await steps.step("a second prompt gets its own answer, as stored", async () => {
    await sendFromView(frame, SECOND_PROMPT);
    const shown = await waitForExchange(frame, SECOND_PROMPT);
    checkStored(shown, await read(), SECOND_PROMPT);
  });

  await steps.step(
    "Compact shows a compaction block that completes with the stored summary",
    async () => {
      const before = (await snapshot(frame)).compactions.map((c) => c.markerId);
      await frame.click("#compact");
      const done = await waitFor(
        "a new compaction block to complete or fail",
        async () => {
          const shot = await snapshot(frame);
          const block = shot.compactions.find((c) => !before.includes(c.markerId));
          if (block === undefined) return undefined;
          if (block.status === "failed") return block;
          const done =
            block.status === "completed" && block.summary !== "" && shot.state === "idle";
          return done ? block : undefined;
        },
        { timeout: 30_000 },
      );
      check(done.status === "completed", `the compaction failed: ${done.error}`);
      check(done.error === "", `a completed compaction shows an error: ${done.error}`);
      const stored = await read();
      const marker = stored.messages.find((m) => m.id === done.markerId);
      check(marker?.kind === "marker", `data-marker-id ${done.markerId} is not a stored marker`);
      const summary = stored.messages.find(
        (m) => m.kind === "summary" && m.compactionId === done.markerId && m.finish === "stop",
      );
      check(summary !== undefined, `no finished summary is stored for ${done.markerId}`);
      check(
        markdownWords(done.summary) === markdownWords(summary.text),
        `the view's summary ${JSON.stringify(done.summary)}\ndiffers from the stored ${JSON.stringify(summary.text)}`,
      );
    },
  );

  await steps.step(
    "a prompt from sessionlsp chat on the same session appears in the view",
    async () => {
      await chatOnce({
        serverPath: ctx.serverPath,
        db: ctx.db,
        sessionId,
        message: CLI_PROMPT,
        env: ctx.env,
      });
      const shown = await waitForExchange(frame, CLI_PROMPT);
      checkStored(shown, await read(), CLI_PROMPT);
    },
  );

  await steps.step("the meter shows the server's token count and usable window", async () => {
    const stored = await read();
    check(stored.usable > 0, `session/context says usable is ${stored.usable}`);
    await waitFor(
      `#meter to read ${stored.tokens} of ${stored.usable} tokens`,
      async () => {
        const { meter } = await snapshot(frame);
        const tokens = Number(meter.tokens);
        const usable = Number(meter.usable);
        if (
          meter.tokens === "" ||
          meter.usable === "" ||
          !Number.isInteger(tokens) ||
          !Number.isInteger(usable)
        ) {
          throw new Error(`#meter has data-tokens=${meter.tokens} data-usable=${meter.usable}`);
        }
        return tokens === stored.tokens && usable === stored.usable;
      },
      { timeout: 15_000 },
    );
  });

  await steps.step("the status bar item shows the session idle", async () => {
    await waitFor(
      "a sessionlsp status bar item saying idle",
      async () => {
        const entries = await statusBarEntries(page);
        const ours = entries.filter((e) => e.id.startsWith("sessionlsp.sessionlsp."));
        if (ours.length === 0)
          throw new Error(`no sessionlsp entry among ${JSON.stringify(entries)}`);
        if (!ours.some((e) => /\bidle\b/.test(e.text)))
          throw new Error(`sessionlsp entries: ${JSON.stringify(ours)}`);
        return true;
      },
      { timeout: 15_000 },
    );
  });

  await steps.step("a screenshot of the populated chat view is saved", async () => {
    const shot = await snapshot(frame);
    check(shot.messages.length >= 6 && shot.compactions.length >= 1, "the view is not populated");
    // Something to look at beside the chat, and a side bar wide enough for the whole
    // conversation, the compaction block and the meter to fit.
    await openFile(page, "parser.py");
    await page.keyboard.press("Control+G"); // to the empty-array line, away from the first word
    await page.keyboard.type("16");
    await page.keyboard.press("Enter");
    await setSideBarWidth(page, 600);
    await frame.evaluate(() => window.scrollTo(0, 0));
    await frame.locator("#meter").waitFor({ state: "visible" });
    mkdirSync(dirname(ctx.screenshot), { recursive: true });
    await page.screenshot({ path: ctx.screenshot });
    for (const copy of ctx.screenshotCopies) {
      mkdirSync(dirname(copy), { recursive: true });
      copyFileSync(ctx.screenshot, copy);
    }
  });

  await steps.step(
    "Show Model Context opens a read-only editor on the session's context",
    async () => {
      await runCommand(page, "sessionlsp: Show Model Context");
      const editor = page.locator(".editor-group-container.active .monaco-editor").first();
      const lines = editor.locator(".view-lines");
      // Monaco renders spaces as non-breaking spaces.
      const shown = async () => ((await lines.textContent()) ?? "").replace(/\u00a0/g, " ");
      await waitFor(
        "the context document of the session",
        async () => (await shown()).includes(sessionId),
        { timeout: 15_000 },
      );
      await lines.click();
      await page.keyboard.press("Control+End"); // the editor renders only the lines in view
      await waitFor(
        "the end of the context document to hold the CLI's prompt",
        async () => (await shown()).includes(CLI_PROMPT),
        { timeout: 10_000 },
      );
      await page.keyboard.type("zzz");
      await page
        .locator(".monaco-editor-overlaymessage")
        .filter({ hasText: /read-?only/i })
        .waitFor({ state: "visible", timeout: 10_000 });
      check(!(await shown()).includes("zzz"), "typing changed the context document");
    },
  );

  return { sessionId, steps };
}
