// The chat webview in a real browser (Debian's Chromium, driven by playwright-core): the page
// the extension serves (same HTML, same CSP, same out/webview.js) gets the messages the
// extension would post, built from a Transcript by the real ViewDiffer, and must show the DOM
// the in-VS-Code tests rely on.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { type Browser, type Page, chromium } from "playwright-core";
import { Transcript } from "../transcript";
import type { MetaMessage, ToWebview } from "../viewMessages";
import { ViewDiffer } from "../viewModel";
import { webviewHtml } from "../webview/html";
import { SID, compactionPart, compactionUpdated, delta, ev, info, prompt, text } from "./fixtures";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const EXT_ROOT = path.resolve(__dirname, "..", "..");
const skip = fs.existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}`;

function meta(extra: Partial<MetaMessage> = {}): MetaMessage {
  return {
    type: "meta",
    sessionId: SID,
    sessions: [
      { id: SID, label: "Fix the parser · 2026-11-24 10:00" },
      { id: "ses_other", label: "Other · 2026-11-23 09:00" },
    ],
    state: "idle",
    meter: { tokens: 1234, usable: 7000 },
    serverProblem: null,
    retry: null,
    ...extra,
  };
}

describe("chat webview in Chromium", { skip }, () => {
  let server: http.Server;
  let origin: string;
  let browser: Browser;
  let page: Page;
  const consoleErrors: string[] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/") {
        res.writeHead(200, { "content-type": "text/html" });
        res.end(
          webviewHtml({
            cspSource: origin,
            nonce: "test-nonce-123",
            scriptUri: `${origin}/out/webview.js`,
            styleUri: `${origin}/media/chat.css`,
          }),
        );
        return;
      }
      if (url.pathname === "/favicon.ico") {
        res.writeHead(204).end();
        return;
      }
      const file = path.join(EXT_ROOT, url.pathname);
      if (!file.startsWith(EXT_ROOT) || !fs.existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      const type = file.endsWith(".js") ? "text/javascript" : file.endsWith(".css") ? "text/css" : "application/octet-stream";
      res.writeHead(200, { "content-type": type });
      res.end(fs.readFileSync(file));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
    page = await browser.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    // What VS Code provides inside a webview; the test reads what the page posts.
    await page.addInitScript(() => {
      const w = window as unknown as { __posted: unknown[]; __state: unknown; acquireVsCodeApi: unknown };
      w.__posted = [];
      w.__state = undefined;
      w.acquireVsCodeApi = () => ({
        postMessage: (m: unknown) => w.__posted.push(m),
        getState: () => w.__state,
        setState: (s: unknown) => {
          w.__state = s;
        },
      });
    });
    await page.goto(origin);
    await page.waitForFunction(() => (window as unknown as { __posted: { type: string }[] }).__posted.some((m) => m.type === "ready"));
  });

  after(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  async function post(message: ToWebview | undefined): Promise<void> {
    if (message === undefined) return;
    await page.evaluate((m) => window.postMessage(m, "*"), message);
  }

  async function posted(): Promise<{ type: string; [k: string]: unknown }[]> {
    return page.evaluate(() => (window as unknown as { __posted: { type: string }[] }).__posted.splice(0));
  }

  test("the_script_runs_under_the_strict_csp_and_says_ready", async () => {
    const csp = await page.getAttribute('meta[http-equiv="Content-Security-Policy"]', "content");
    assert.match(csp ?? "", /default-src 'none'/);
    assert.match(csp ?? "", /script-src 'nonce-test-nonce-123'/);
    assert.doesNotMatch(csp ?? "", /unsafe-inline|unsafe-eval/);
    // An inline script without the nonce must not run.
    const ran = await page.evaluate(async () => {
      const s = document.createElement("script");
      s.textContent = "window.__inlineRan = true";
      document.body.append(s);
      await new Promise((r) => setTimeout(r, 0));
      return (window as unknown as { __inlineRan?: boolean }).__inlineRan === true;
    });
    assert.equal(ran, false);
    assert.equal(await page.locator("[onclick],[onkeydown],[onload],[onerror]").count(), 0);
  });

  test("meta_sets_session_picker_state_meter_and_body_session_id", async () => {
    await post(meta());
    assert.equal(await page.locator("#sessions option").count(), 2);
    assert.equal(await page.inputValue("#sessions"), SID);
    assert.equal(await page.getAttribute("body", "data-session-id"), SID);
    assert.equal(await page.textContent("#state"), "idle");
    assert.equal(await page.getAttribute("#meter", "data-tokens"), "1234");
    assert.equal(await page.getAttribute("#meter", "data-usable"), "7000");
    assert.equal((await page.textContent("#meter"))?.trim(), "1,234 / 7,000 tokens");
    assert.equal(await page.isDisabled("#cancel"), true);
    await post(meta({ state: "busy" }));
    assert.equal(await page.textContent("#state"), "busy");
    assert.equal(await page.isDisabled("#cancel"), false);
  });

  test("messages_stream_into_the_transcript_with_markdown_and_escaped_html", async () => {
    const t = new Transcript(SID);
    const differ = new ViewDiffer();
    t.applyEvent(ev("message.updated", prompt("msg_1"), 1));
    t.applyEvent(ev("message.part.updated", text("prt_1", "msg_1", 'Show <img src=x onerror="alert(1)"> code'), 2));
    t.applyEvent(ev("message.updated", info("msg_2", { parentId: "msg_1" }), 3));
    t.applyDelta(delta("msg_2", "prt_2", "Here:\n\n```python\nprint(1)\n"));
    await post(differ.next(t));

    const user = page.locator('#transcript .msg[data-role="user"]');
    assert.equal(await user.getAttribute("data-message-id"), "msg_1");
    assert.equal(await page.locator("#transcript img").count(), 0);
    assert.match((await user.locator(".msg-body").textContent()) ?? "", /Show <img src=x onerror="alert\(1\)"> code/);

    const reply = page.locator('#transcript .msg[data-role="assistant"]');
    assert.equal(await reply.getAttribute("data-message-id"), "msg_2");
    assert.match((await reply.getAttribute("class")) ?? "", /\bstreaming\b/);
    assert.equal(await reply.locator(".msg-body pre code.language-python").textContent(), "print(1)\n");
    // The next delta patches the same element in place.
    await reply.evaluate((node) => {
      (node as HTMLElement & { __mark?: boolean }).__mark = true;
    });
    t.applyDelta(delta("msg_2", "prt_2", "```\nDone."));
    t.applyEvent(ev("message.updated", info("msg_2", { parentId: "msg_1", finish: "stop" }), 4));
    const patch = differ.next(t);
    assert.equal(patch?.reset, false);
    assert.deepEqual(patch?.items.map((i) => i.key), ["msg_2"]);
    await post(patch);
    assert.equal(await reply.evaluate((node) => (node as HTMLElement & { __mark?: boolean }).__mark), true);
    assert.doesNotMatch((await reply.getAttribute("class")) ?? "", /\bstreaming\b/);
    assert.match((await reply.locator(".msg-body").textContent()) ?? "", /Done\./);

    // A cancelled turn says so.
    t.applyEvent(ev("message.updated", prompt("msg_3"), 5));
    t.applyEvent(ev("message.updated", info("msg_4", { parentId: "msg_3", error: { name: "Cancelled", message: "cancelled before the answer ended" } }), 6));
    await post(differ.next(t));
    const cancelled = page.locator('.msg[data-message-id="msg_4"]');
    assert.match((await cancelled.getAttribute("class")) ?? "", /\bcancelled\b/);
    assert.match((await cancelled.locator(".msg-error").textContent()) ?? "", /Cancelled/);
    assert.deepEqual(
      await page.$$eval("#transcript > *", (nodes) => nodes.map((n) => (n as HTMLElement).dataset.messageId)),
      ["msg_1", "msg_2", "msg_3", "msg_4"],
    );
  });

  test("compaction_blocks_show_status_summary_and_failure_reason", async () => {
    const t = new Transcript(SID);
    const differ = new ViewDiffer();
    t.applyEvent(ev("message.updated", prompt("msg_1"), 1));
    t.applyEvent(ev("message.updated", info("msg_5", { role: "user", kind: "marker" }), 2));
    t.applyEvent(ev("message.part.updated", compactionPart("prt_5", "msg_5"), 3));
    t.applyEvent(compactionUpdated("msg_5", "pending", { attempts: 0 }, 4));
    await post(differ.next(t));
    const block = page.locator('#transcript details.compaction[data-marker-id="msg_5"]');
    assert.equal(await block.getAttribute("data-status"), "pending");
    assert.equal(await block.locator("summary").textContent(), "Compaction · manual · pending");

    t.applyEvent(ev("message.updated", info("msg_6", { kind: "summary", summary: true, parentId: "msg_5", compactionId: "msg_5" }), 5));
    t.applyEvent(compactionUpdated("msg_5", "running", {}, 6));
    t.applyEvent(ev("message.part.updated", text("prt_6", "msg_6", "## Objective\nFix **the** parser"), 7));
    t.applyEvent(ev("message.updated", info("msg_6", { kind: "summary", summary: true, parentId: "msg_5", compactionId: "msg_5", finish: "stop" }), 8));
    t.applyEvent(compactionUpdated("msg_5", "completed", { summaryMessageId: "msg_6" }, 9));
    await post(differ.next(t));
    assert.equal(await block.getAttribute("data-status"), "completed");
    assert.equal(await block.locator("summary").textContent(), "Compaction · manual · completed");
    assert.equal(await block.locator(".summary-text h2").textContent(), "Objective");
    assert.equal(await page.locator('.msg[data-message-id="msg_6"]').count(), 0, "the summary is inside the block");
    assert.equal(await block.locator(".compaction-error").count(), 0);

    t.applyEvent(ev("message.updated", info("msg_8", { role: "user", kind: "marker" }), 10));
    t.applyEvent(ev("message.part.updated", compactionPart("prt_8", "msg_8"), 11));
    t.applyEvent(compactionUpdated("msg_8", "failed", { error: { code: "cancelled", message: "compaction cancelled" } }, 12));
    await post(differ.next(t));
    const failed = page.locator('details.compaction[data-marker-id="msg_8"]');
    assert.equal(await failed.getAttribute("data-status"), "failed");
    assert.equal(await failed.getAttribute("data-error-code"), "cancelled");
    assert.equal(await failed.locator("summary").textContent(), "Compaction · manual · failed (cancelled)");
    assert.equal(await failed.locator(".compaction-error").textContent(), "cancelled: compaction cancelled");
    // Collapsible, and a later update keeps what the user chose.
    await failed.locator("summary").click();
    assert.equal(await failed.evaluate((n) => (n as HTMLDetailsElement).open), false);
    t.applyEvent(compactionUpdated("msg_8", "failed", { attempts: 2, error: { code: "cancelled", message: "again" } }, 13));
    await post(differ.next(t));
    assert.equal(await failed.evaluate((n) => (n as HTMLDetailsElement).open), false);
  });

  test("enter_sends_the_prompt_and_shift_enter_adds_a_line", async () => {
    await posted();
    await page.click("#prompt");
    await page.keyboard.type("first line");
    await page.keyboard.press("Shift+Enter");
    await page.keyboard.type("second line");
    assert.equal(await page.inputValue("#prompt"), "first line\nsecond line");
    assert.deepEqual(await posted(), []);
    await page.keyboard.press("Enter");
    assert.deepEqual(await posted(), [{ type: "prompt", text: "first line\nsecond line" }]);
    assert.equal(await page.inputValue("#prompt"), "");
    await page.keyboard.press("Enter");
    assert.deepEqual(await posted(), [], "an empty prompt is not sent");
  });

  test("buttons_and_the_session_picker_post_their_actions", async () => {
    await post(meta({ state: "busy" }));
    await posted();
    await page.click("#new-session");
    await page.click("#compact");
    await page.click("#cancel");
    await page.selectOption("#sessions", "ses_other");
    assert.deepEqual(await posted(), [
      { type: "newSession" },
      { type: "compact" },
      { type: "cancel" },
      { type: "openSession", sessionId: "ses_other" },
    ]);
  });

  test("no_console_errors_and_no_csp_violations", () => {
    assert.deepEqual(
      consoleErrors.filter((e) => !e.includes("__inlineRan") && !/inline script/i.test(e)),
      [],
    );
  });
});
