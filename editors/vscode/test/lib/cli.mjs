// @ts-check
// A second client on the same database: the one-shot `sessionlsp chat --session ID MESSAGE`,
// which starts its own `sessionlsp serve`, prompts, prints the answer and exits.
import { spawn } from "node:child_process";

import { startedGroups } from "./processes.mjs";
import { withTimeout } from "./wait.mjs";

/**
 * @param {{serverPath: string, db: string, sessionId: string, message: string,
 *   env: NodeJS.ProcessEnv, timeout?: number}} options
 * @returns {Promise<{stdout: string, stderr: string}>}  rejects unless it exits 0
 */
export async function chatOnce({ serverPath, db, sessionId, message, env, timeout = 60_000 }) {
  const proc = spawn(serverPath, ["chat", "--db", db, "--session", sessionId, message], {
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (proc.pid !== undefined) startedGroups.add(proc.pid);
  let stdout = "";
  let stderr = "";
  proc.stdout?.on("data", (d) => (stdout += d));
  proc.stderr?.on("data", (d) => (stderr += d));
  /** @type {Promise<number | null>} */
  const exited = new Promise((resolve, reject) => {
    proc.on("error", reject);
    proc.on("exit", (code) => resolve(code));
  });
  const code = await withTimeout("sessionlsp chat to exit", exited, timeout);
  if (code !== 0) {
    throw new Error(`sessionlsp chat exited with ${code}\nstdout: ${stdout}\nstderr: ${stderr}`);
  }
  return { stdout, stderr };
}
