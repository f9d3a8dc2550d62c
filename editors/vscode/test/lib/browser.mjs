// @ts-check
// Headless Chromium (Debian's /usr/bin/chromium, never a downloaded one) driving the
// code-server workbench through playwright-core.
import { chromium } from "playwright-core";

const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  // nothing of Chromium's own phones home: no component updates, safe-browsing lists,
  // metrics, sync or first-run work
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-domain-reliability",
  "--disable-sync",
  "--disable-default-apps",
  "--metrics-recording-only",
  "--no-first-run",
  "--no-default-browser-check",
  "--no-pings",
];

/**
 * @param {NodeJS.ProcessEnv} env  its environment: HOME and the XDG dirs in the run's temp dir,
 *   so that Chromium's own files (crash reports, caches) stay there too
 * @returns {Promise<import("playwright-core").Browser>}
 */
export function launchBrowser(env) {
  return chromium.launch({
    executablePath: process.env.SESSIONLSP_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
    env,
    // The harness handles signals itself: playwright's own SIGINT handler would exit the
    // process before code-server and the servers are ended.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
}

/**
 * @typedef {object} Workbench
 * @property {string} label  names the page in logs and failure screenshots
 * @property {import("playwright-core").Page} page
 * @property {Promise<number>} exited  resolves with the code the workbench passes to
 *   codeAutomationExit (when the extension tests module's run() settles)
 * @property {string[]} console  the page's console and uncaught errors, in order
 */

/**
 * Open the workbench at `url` in a fresh browser context and wait until it has rendered.
 * @param {import("playwright-core").Browser} browser
 * @param {string} url
 * @param {{label: string, timeout?: number}} options
 * @returns {Promise<Workbench>}
 */
export async function openWorkbench(browser, url, { label, timeout = 60_000 }) {
  const context = await browser.newContext({
    viewport: { width: 1400, height: 900 },
    deviceScaleFactor: 1,
    colorScheme: "dark",
  });
  const page = await context.newPage();
  /** @type {string[]} */
  const consoleLines = [];
  page.on("console", (msg) => consoleLines.push(`[${label}] console.${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => consoleLines.push(`[${label}] pageerror: ${err.stack ?? err}`));
  /** @type {(code: number) => void} */
  let resolveExit = () => {};
  /** @type {Promise<number>} */
  const exited = new Promise((resolve) => {
    resolveExit = resolve;
  });
  await page.exposeFunction(
    "codeAutomationLog",
    (/** @type {string} */ type, /** @type {unknown[]} */ args) => {
      consoleLines.push(`[${label}] extension host ${type}: ${args.map(String).join(" ")}`);
    },
  );
  await page.exposeFunction("codeAutomationExit", (/** @type {number} */ code) => {
    resolveExit(Number(code));
  });
  await page.goto(url, { timeout });
  await page.waitForSelector(".monaco-workbench .part.statusbar", { timeout });
  return { label, page, exited, console: consoleLines };
}
