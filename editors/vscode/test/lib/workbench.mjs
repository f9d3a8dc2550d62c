// @ts-check
// Driving the VS Code workbench UI: the command palette, webview frames, the status bar.
import { waitFor } from "./wait.mjs";

/**
 * Run a command by its palette title ("sessionlsp: New Session"). Commands contributed by a
 * remote extension appear only once the extension host has scanned it, so the palette is
 * reopened until the title is listed.
 * @param {import("playwright-core").Page} page
 * @param {string} title
 * @param {number} [timeout]
 */
export async function runCommand(page, title, timeout = 30_000) {
  const input = page.locator(".quick-input-widget .quick-input-box input");
  const row = page
    .locator(".quick-input-widget .quick-input-list .monaco-list-row")
    .filter({ hasText: title })
    .first();
  await waitFor(
    `the command palette to list "${title}"`,
    async () => {
      if (!(await input.isVisible())) await page.keyboard.press("F1");
      await input.waitFor({ state: "visible", timeout: 5_000 });
      await input.fill(`>${title}`);
      try {
        await row.waitFor({ state: "visible", timeout: 1_000 });
        return true;
      } catch {
        await page.keyboard.press("Escape");
        return false;
      }
    },
    { timeout, interval: 250 },
  );
  await row.click();
  await input.waitFor({ state: "hidden", timeout: 5_000 });
}

/**
 * The frame (webviews live in nested iframes) in which `selector` matches.
 * @param {import("playwright-core").Page} page
 * @param {string} selector
 * @param {number} [timeout]
 * @returns {Promise<import("playwright-core").Frame>}
 */
export function findFrame(page, selector, timeout = 30_000) {
  return waitFor(
    `a frame containing ${selector}`,
    async () => {
      for (const frame of page.frames()) {
        if (frame.isDetached()) continue;
        const found = await frame.$(selector).catch(() => null);
        if (found) return frame;
      }
      return undefined;
    },
    { timeout, interval: 100 },
  );
}

/**
 * @typedef {object} StatusBarEntry
 * @property {string} id  the entry's element id: "<extension id>.<item id>" for extension items
 * @property {string} text
 * @property {string} label  its aria-label
 */

/**
 * Every status bar entry, in order.
 * @param {import("playwright-core").Page} page
 * @returns {Promise<StatusBarEntry[]>}
 */
export function statusBarEntries(page) {
  return page.locator(".part.statusbar .statusbar-item").evaluateAll((items) =>
    items.map((item) => ({
      id: item.id,
      text: (item.textContent ?? "").trim(),
      label: item.getAttribute("aria-label") ?? "",
    })),
  );
}

/**
 * Open a workspace file through Quick Open.
 * @param {import("playwright-core").Page} page
 * @param {string} name
 */
export async function openFile(page, name) {
  const input = page.locator(".quick-input-widget .quick-input-box input");
  await page.keyboard.press("F1");
  await input.waitFor({ state: "visible", timeout: 5_000 });
  await input.fill(name);
  await page
    .locator(".quick-input-widget .quick-input-list .monaco-list-row")
    .filter({ hasText: name })
    .first()
    .click({ timeout: 10_000 });
  await page
    .locator(".editor-group-container.active .tab.active")
    .filter({ hasText: name })
    .waitFor({ state: "visible", timeout: 10_000 });
}

/**
 * Drag the side bar's edge until it is `width` pixels wide.
 * @param {import("playwright-core").Page} page
 * @param {number} width
 */
export async function setSideBarWidth(page, width) {
  const sideBar = page.locator(".part.sidebar");
  const box = await sideBar.boundingBox();
  if (box === null) throw new Error("the side bar is not visible");
  const y = box.y + box.height / 2;
  const edge = box.x + box.width;
  await page.mouse.move(edge - 1, y);
  await page.mouse.down();
  await page.mouse.move(box.x + width, y, { steps: 5 });
  await page.mouse.up();
  await page.mouse.move(box.x + width + 400, y); // off the sash, so it stops being highlighted
  await page
    .locator(".monaco-sash.hover, .monaco-sash.active")
    .first()
    .waitFor({ state: "detached", timeout: 5_000 });
  await waitFor(
    `the side bar to be about ${width} px wide`,
    async () => {
      const now = await sideBar.boundingBox();
      return now !== null && Math.abs(now.width - width) <= 4;
    },
    { timeout: 5_000 },
  );
}
