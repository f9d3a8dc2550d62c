// @ts-check
// `npm test`: the extension end to end in real VS Code (code-server + headless Chromium),
// against the repo's real Python server with the offline provider.
//
//   phase A (ui-phase.mjs)  the chat view, driven through the page with playwright-core
//   phase B (suite/)        the tests module in the extension host (extensionTestsPath);
//                           the workbench reports its outcome through codeAutomationExit
//
// Needs `npm run build` first (out/extension.js, out/test/index.js) and the repo's .venv
// (`./dev`). code-server is installed on first use by scripts/install-code-server.sh.
// Environment: SESSIONLSP_CODE_SERVER (an installed code-server package to use),
// SESSIONLSP_CHROMIUM (default /usr/bin/chromium), SESSIONLSP_SERVER_PATH (default
// <repo>/.venv/bin/sessionlsp), SESSIONLSP_KEEP_TEMP=1 (keep the temp dir).
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { launchBrowser, openWorkbench } from "./lib/browser.mjs";
import {
  locateCodeServer,
  makeSandbox,
  sandboxEnv,
  startCodeServer,
  workbenchUrl,
} from "./lib/code-server.mjs";
import { descendantsAndGroups, endProcesses, startedGroups } from "./lib/processes.mjs";
import { Steps } from "./lib/steps.mjs";
import { withTimeout } from "./lib/wait.mjs";
import { runUiPhase } from "./ui-phase.mjs";

const extensionDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const repo = resolve(extensionDir, "../..");
const outputDir = join(extensionDir, "test-output");
const started = Date.now();

/** @type {import("playwright-core").Browser | undefined} */
let browser;
/** @type {import("./lib/browser.mjs").Workbench[]} */
const workbenches = [];
/** @type {import("./lib/code-server.mjs").Sandbox | undefined} */
let box;
/** @type {import("./lib/code-server.mjs").RunningCodeServer | undefined} */
let server;
/** @type {Promise<void> | undefined} */
let cleanedUp;
let interrupted = false;

/** @param {string} message */
function fail(message) {
  throw new Error(message);
}

function preflight() {
  for (const file of ["out/extension.js", "out/test/index.js"]) {
    if (!existsSync(join(extensionDir, file)))
      fail(`${file} is missing: run \`npm run build\` first`);
  }
  const chromium = process.env.SESSIONLSP_CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(chromium)) fail(`${chromium} is missing: apt-get install chromium`);
  const serverPath = process.env.SESSIONLSP_SERVER_PATH || join(repo, ".venv/bin/sessionlsp");
  try {
    accessSync(serverPath, constants.X_OK);
  } catch {
    fail(`${serverPath} is not an executable: run ./dev in the repo root first`);
  }
  return serverPath;
}

/** @param {string} dir @returns {string[]} */
function filesUnder(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile());
}

/** @param {string} text @param {number} lines */
function tail(text, lines) {
  const all = text.trimEnd().split("\n");
  return (all.length > lines ? [`… (${all.length - lines} earlier lines)`] : [])
    .concat(all.slice(-lines))
    .join("\n");
}

/** Everything that helps explain a failure: consoles, logs, screenshots. */
async function reportFailure() {
  for (const wb of workbenches) {
    console.log(`\n===== page console (${wb.label}) =====\n${tail(wb.console.join("\n"), 150)}`);
  }
  if (server) console.log(`\n===== code-server log =====\n${tail(server.log(), 80)}`);
  if (box) {
    // The extension's output channels (exthost*/sessionlsp.sessionlsp/*.log), the extension
    // hosts' own logs and the server side's remoteagent.log.
    const logs = filesUnder(join(box.userDataDir, "logs")).filter((p) =>
      /sessionlsp|(remoteagent|remoteexthost)\.log$/.test(relative(box?.userDataDir ?? "", p)),
    );
    for (const log of logs) {
      const text = readFileSync(log, "utf8");
      if (text.trim() !== "")
        console.log(`\n===== ${relative(box.root, log)} =====\n${tail(text, 80)}`);
    }
    if (existsSync(box.reportFile)) {
      console.log(
        `\n===== extension-host suite report =====\n${readFileSync(box.reportFile, "utf8")}`,
      );
    }
  }
  for (const wb of workbenches) {
    const path = join(outputDir, `failure-${wb.label}.png`);
    try {
      await withTimeout("a failure screenshot", wb.page.screenshot({ path }), 10_000);
      console.log(`failure screenshot: ${relative(process.cwd(), path)}`);
    } catch (error) {
      console.log(`no failure screenshot of ${wb.label}: ${error}`);
    }
  }
}

/**
 * End Chromium, code-server and every process they or the harness started. Called from the
 * signal handler and from the normal end alike: both wait for the same run.
 */
function cleanup() {
  cleanedUp ??= endEverything();
  return cleanedUp;
}

async function endEverything() {
  if (browser) {
    await withTimeout("Chromium to close", browser.close(), 10_000).catch((e) =>
      console.log(String(e)),
    );
  }
  // One snapshot of the whole tree before any signal, so that children re-parented when their
  // parent dies are ended too.
  const pids = descendantsAndGroups(process.pid, [...startedGroups]);
  const killed = await endProcesses(pids, 5_000);
  if (killed.length > 0) console.log(`cleanup: SIGKILL needed for ${killed.join(", ")}`);
  const left = descendantsAndGroups(process.pid, [...startedGroups]);
  if (left.length > 0) console.log(`cleanup: processes still alive: ${left.join(", ")}`);
}

/** @param {boolean} failed */
function removeTempDir(failed) {
  if (!box) return;
  if (failed || process.env.SESSIONLSP_KEEP_TEMP) console.log(`temp dir kept: ${box.root}`);
  else rmSync(box.root, { recursive: true, force: true });
}

/**
 * A small project beside the chat, for the screenshot. Written from here rather than kept as a
 * .py file in the repo, where the Python linters and type checker would pick it up.
 * @param {string} workspace
 */
function seedWorkspace(workspace) {
  writeFileSync(
    join(workspace, "parser.py"),
    `"""A tiny JSON array parser."""

from __future__ import annotations


class ParseError(ValueError):
    pass


def parse_array(text: str) -> list[object]:
    """Parse a JSON array such as '[1, "two", 3]'."""
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise ParseError(f"not an array: {text!r}")
    inner = body[1:-1].strip()
    if inner == "":
        raise ParseError("empty array")  # the bug under discussion
    return [_value(item.strip()) for item in inner.split(",")]


def _value(token: str) -> object:
    if token.startswith('"') and token.endswith('"'):
        return token[1:-1]
    try:
        return int(token)
    except ValueError:
        return float(token)
`,
  );
}

/**
 * Phase B: a second workbench on the same code-server, with the tests module; resolves with
 * its per-test results once the workbench calls codeAutomationExit(0).
 * @param {import("playwright-core").Browser} chromium
 * @param {string} url
 * @param {string} reportFile
 */
async function runSuitePhase(chromium, url, reportFile) {
  const wb = await openWorkbench(chromium, url, { label: "suite" });
  workbenches.push(wb);
  const code = await withTimeout("codeAutomationExit from the tests module", wb.exited, 90_000);
  const report = existsSync(reportFile) ? readFileSync(reportFile, "utf8").trim() : "";
  /** @type {import("./suite/runner.js").TestResult[]} */
  const results = report === "" ? [] : report.split("\n").map((line) => JSON.parse(line));
  for (const r of results) console.log(`       ${r.ok ? "ok  " : "FAIL"} ${r.name} (${r.ms} ms)`);
  if (code !== 0) {
    const failures = results.filter((r) => !r.ok).map((r) => `${r.name}\n${r.error ?? ""}`);
    fail(`codeAutomationExit(${code})\n${failures.join("\n\n")}`);
  }
  if (results.length === 0) fail("the tests module reported no tests");
  return results;
}

async function main() {
  const serverPath = preflight();
  rmSync(outputDir, { recursive: true, force: true });
  mkdirSync(outputDir, { recursive: true });
  const codeServer = locateCodeServer(extensionDir);
  const sandbox = makeSandbox(mkdtempSync(join(tmpdir(), "sessionlsp-vscode-")), { serverPath });
  box = sandbox;
  seedWorkspace(sandbox.workspace);
  const env = sandboxEnv(sandbox);
  console.log(`code-server: ${codeServer}\ntemp dir:    ${sandbox.root}`);

  const running = await startCodeServer({
    codeServer,
    box: sandbox,
    logFile: join(outputDir, "code-server.log"),
  });
  server = running;
  const chromium = await launchBrowser(env);
  browser = chromium;
  const target = { folder: sandbox.workspace, extensionPath: extensionDir };

  // Phase A: the UI.
  const setup = new Steps("setup");
  const ui = await setup.step(
    "the workbench loads with the extension under development",
    async () => {
      const wb = await openWorkbench(chromium, workbenchUrl(running, target), { label: "ui" });
      workbenches.push(wb);
      return wb;
    },
  );
  const { steps: uiSteps } = await runUiPhase({
    page: ui.page,
    serverPath,
    db: sandbox.db,
    env,
    screenshot: join(outputDir, "chat-view.png"),
    // The README's screenshot is refreshed only when asked, so a test run leaves the tree clean.
    screenshotCopies: process.env.SESSIONLSP_UPDATE_SCREENSHOT
      ? [join(repo, "docs/images/vscode-chat-view.png")]
      : [],
  });

  // Phase B: the tests module in the extension host.
  const suite = new Steps("extension host");
  const testsPath = join(extensionDir, "out/test/index.js");
  const results = await suite.step(
    "the tests module's run() resolves, so the workbench exits with 0",
    () =>
      runSuitePhase(chromium, workbenchUrl(running, { ...target, testsPath }), sandbox.reportFile),
  );

  const pageChecks = setup.passed.length + uiSteps.passed.length + suite.passed.length;
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `\n${pageChecks} page checks and ${results.length} extension-host tests passed in ${seconds} s`,
  );
}

let exitCode = 0;
/** @param {NodeJS.Signals} signal */
const onSignal = (signal) => {
  if (interrupted) return;
  interrupted = true;
  console.log(`\n${signal}: cleaning up`);
  void cleanup().finally(() => {
    removeTempDir(true);
    process.exit(130);
  });
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

try {
  await main();
} catch (error) {
  exitCode = 1;
  if (!interrupted) {
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`\nFAILED after ${seconds} s: ${error instanceof Error ? error.stack : error}`);
    await reportFailure().catch((e) => console.log(`(reporting the failure failed: ${e})`));
  }
} finally {
  await cleanup();
}
if (!interrupted) {
  removeTempDir(exitCode !== 0);
  process.exit(exitCode);
}
