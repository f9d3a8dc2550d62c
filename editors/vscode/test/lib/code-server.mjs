// @ts-check
// Installing (through scripts/install-code-server.sh) and running code-server for one test
// run: loopback only, a free port chosen by the kernel, and every directory it writes to
// (HOME, XDG dirs, user data, extensions) inside the run's temp dir.
import { spawn, spawnSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { startedGroups } from "./processes.mjs";
import { withTimeout } from "./wait.mjs";

/**
 * The installed code-server package directory: $SESSIONLSP_CODE_SERVER when set, else what
 * the (idempotent, cached) installer prints.
 * @param {string} extensionDir
 * @returns {string}
 */
export function locateCodeServer(extensionDir) {
  const given = process.env.SESSIONLSP_CODE_SERVER;
  if (given) {
    if (!existsSync(join(given, "out/node/entry.js"))) {
      throw new Error(`SESSIONLSP_CODE_SERVER=${given} has no out/node/entry.js`);
    }
    return given;
  }
  const script = join(extensionDir, "scripts/install-code-server.sh");
  const result = spawnSync("bash", [script], { stdio: ["ignore", "pipe", "inherit"] });
  if (result.status !== 0) {
    throw new Error(`${script} failed with exit code ${result.status}`);
  }
  return result.stdout.toString().trim();
}

/**
 * @typedef {object} Sandbox  the directories of one run
 * @property {string} root
 * @property {string} home
 * @property {string} userDataDir
 * @property {string} extensionsDir
 * @property {string} workspace
 * @property {string} db
 * @property {string} reportFile  where the extension-host tests write their results
 */

/**
 * Create the run's directories and the VS Code user settings that point the extension at
 * the repo's Python server and the run's database.
 * @param {string} root  an empty temp dir
 * @param {{serverPath: string}} options
 * @returns {Sandbox}
 */
export function makeSandbox(root, { serverPath }) {
  /** @type {Sandbox} */
  const box = {
    root,
    home: join(root, "home"),
    userDataDir: join(root, "user-data"),
    extensionsDir: join(root, "extensions"),
    workspace: join(root, "workspace"),
    db: join(root, "sessions.db"),
    reportFile: join(root, "suite-report.jsonl"),
  };
  for (const dir of [box.home, box.extensionsDir, box.workspace, join(box.userDataDir, "User")]) {
    mkdirSync(dir, { recursive: true });
  }
  const settings = {
    "sessionlsp.serverPath": serverPath,
    "sessionlsp.database": box.db,
    // quiet, deterministic workbench: no welcome page, tips, telemetry, updates or git scans
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": false,
    "workbench.enableExperiments": false,
    "workbench.welcomePage.walkthroughs.openOnInstall": false,
    "workbench.colorTheme": "Default Dark Modern",
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    "extensions.autoCheckUpdates": false,
    "extensions.autoUpdate": false,
    "extensions.ignoreRecommendations": true,
    "security.workspace.trust.enabled": false,
    "git.enabled": false,
    "npm.autoDetect": "off",
    "chat.commandCenter.enabled": false,
    // other programs' ports on this machine are none of the test's business
    "remote.autoForwardPorts": false,
  };
  writeFileSync(
    join(box.userDataDir, "User", "settings.json"),
    JSON.stringify(settings, null, 2) + "\n",
  );
  return box;
}

/**
 * The environment code-server (and so the extension host and the sessionlsp server) runs
 * with: the caller's, minus anything that could pick another provider, config file or VS Code
 * instance, plus the sandbox's HOME and XDG dirs.
 * @param {Sandbox} box
 * @returns {NodeJS.ProcessEnv}
 */
export function sandboxEnv(box) {
  /** @type {NodeJS.ProcessEnv} */
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(SESSIONLSP_|VSCODE_|OPENAI_|ELECTRON_)/.test(key)) continue;
    env[key] = value;
  }
  return {
    ...env,
    HOME: box.home,
    XDG_CONFIG_HOME: join(box.home, ".config"),
    XDG_DATA_HOME: join(box.home, ".local/share"),
    XDG_CACHE_HOME: join(box.home, ".cache"),
    XDG_STATE_HOME: join(box.home, ".local/state"),
    SESSIONLSP_OFFLINE_DELAY_MS: "0", // the offline provider unpaced: tests never wait on it
    SESSIONLSP_TEST_REPORT: box.reportFile,
  };
}

/**
 * @typedef {object} RunningCodeServer
 * @property {import("node:child_process").ChildProcess} proc
 * @property {number} pid      also its process group id (it is started detached)
 * @property {string} baseUrl  e.g. http://127.0.0.1:41445
 * @property {string} authority  e.g. 127.0.0.1:41445, for vscode-remote:// URIs
 * @property {() => string} log  everything it printed so far
 */

/**
 * Start code-server and resolve once it listens.
 * @param {{codeServer: string, box: Sandbox, logFile: string, timeout?: number}} options
 * @returns {Promise<RunningCodeServer>}
 */
export async function startCodeServer({ codeServer, box, logFile, timeout = 30_000 }) {
  const args = [
    join(codeServer, "out/node/entry.js"),
    "--auth",
    "none",
    "--bind-addr",
    "127.0.0.1:0",
    "--disable-telemetry",
    "--disable-update-check",
    "--disable-workspace-trust",
    "--disable-getting-started-override",
    "--user-data-dir",
    box.userDataDir,
    "--extensions-dir",
    box.extensionsDir,
    box.workspace,
  ];
  const proc = spawn(process.execPath, args, {
    cwd: box.root,
    env: sandboxEnv(box),
    detached: true, // its own process group, so the whole tree can be ended together
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (proc.pid !== undefined) startedGroups.add(proc.pid);
  const file = createWriteStream(logFile);
  /** @type {string[]} */
  const chunks = [];
  const log = () => chunks.join("");
  const listening = new Promise((resolve, reject) => {
    /** @param {Buffer} data */
    const onData = (data) => {
      const text = data.toString();
      chunks.push(text);
      file.write(text);
      const match = /HTTP server listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(log());
      if (match) resolve(match[1]);
    };
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    proc.on("error", reject);
    proc.on("exit", (code, signal) =>
      reject(new Error(`code-server exited (${code ?? signal}) before listening:\n${log()}`)),
    );
  });
  proc.on("exit", () => file.end());
  const baseUrl = /** @type {string} */ (
    await withTimeout("code-server to listen", listening, timeout)
  );
  return {
    proc,
    pid: /** @type {number} */ (proc.pid),
    baseUrl,
    authority: baseUrl.replace(/^http:\/\//, ""),
    log,
  };
}

/**
 * The workbench URL opening `folder` with the extension under development, and (for the
 * extension-host tests) its tests module.
 * @param {RunningCodeServer} server
 * @param {{folder: string, extensionPath: string, testsPath?: string}} options
 */
export function workbenchUrl(server, { folder, extensionPath, testsPath }) {
  const remote = (/** @type {string} */ path) => `vscode-remote://${server.authority}${path}`;
  /** @type {[string, string][]} */
  const payload = [["extensionDevelopmentPath", remote(extensionPath)]];
  if (testsPath) payload.push(["extensionTestsPath", remote(testsPath)]);
  const query = new URLSearchParams({ folder, payload: JSON.stringify(payload) });
  return `${server.baseUrl}/?${query}`;
}
