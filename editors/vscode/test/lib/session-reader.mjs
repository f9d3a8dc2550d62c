// @ts-check
// What the server stored, read back through the protocol: a second `sessionlsp serve` on the
// same database, driven by a plain vscode-jsonrpc connection (docs/protocol.md), so the
// harness compares the UI with the server's own view and not with a guess at the schema.
import { spawn } from "node:child_process";
import * as rpc from "vscode-jsonrpc/node";

import { withTimeout } from "./wait.mjs";
import { endProcesses, isAlive, startedGroups } from "./processes.mjs";

/**
 * @typedef {object} StoredMessage
 * @property {string} id
 * @property {"user" | "assistant"} role
 * @property {string} kind  prompt, reply, marker, summary, ...
 * @property {string | undefined} compactionId  for summaries: the marker they belong to
 * @property {string | undefined} finish
 * @property {string} text  the message's text parts, joined
 */

/**
 * @typedef {object} StoredSession
 * @property {StoredMessage[]} messages  oldest first
 * @property {number} tokens  session/context: what the model would see next
 * @property {number} usable  session/context: the usable window
 */

/**
 * @param {any} raw  one `{info, parts}` of a session/load result
 * @returns {StoredMessage}
 */
function storedMessage(raw) {
  const texts = raw.parts
    .filter((/** @type {any} */ p) => p.type === "text")
    .map((/** @type {any} */ p) => String(p.text));
  return {
    id: String(raw.info.id),
    role: raw.info.role,
    kind: String(raw.info.kind),
    compactionId: raw.info.compactionId,
    finish: raw.info.finish,
    text: texts.join(""),
  };
}

/**
 * Load `sessionId` from `db` with a fresh server process, then shut it down.
 * @param {{serverPath: string, db: string, sessionId: string, env: NodeJS.ProcessEnv}} options
 * @returns {Promise<StoredSession>}
 */
export async function readSession({ serverPath, db, sessionId, env }) {
  const proc = spawn(serverPath, ["serve", "--db", db], {
    env,
    detached: true,
    stdio: ["pipe", "pipe", "pipe"],
  });
  if (proc.pid !== undefined) startedGroups.add(proc.pid);
  /** @type {string[]} */
  const stderr = [];
  proc.stderr?.on("data", (d) => stderr.push(String(d)));
  const exited = new Promise((resolve) => proc.on("exit", resolve));
  const conn = rpc.createMessageConnection(
    new rpc.StreamMessageReader(/** @type {import("node:stream").Readable} */ (proc.stdout)),
    new rpc.StreamMessageWriter(/** @type {import("node:stream").Writable} */ (proc.stdin)),
  );
  conn.onRequest("window/workDoneProgress/create", () => null);
  conn.listen();
  const request = (/** @type {string} */ method, /** @type {object} */ params) =>
    withTimeout(`${method} from the reading server`, conn.sendRequest(method, params), 30_000);
  try {
    await request("initialize", { processId: process.pid, rootUri: null, capabilities: {} });
    /** @type {any} */
    const loaded = await request("session/load", { sessionId });
    /** @type {any} */
    const context = await request("session/context", { sessionId });
    await request("shutdown", {});
    await conn.sendNotification("exit");
    await withTimeout("the reading server to exit", exited, 10_000);
    return {
      messages: loaded.messages.map(storedMessage),
      tokens: Number(context.tokens),
      usable: Number(context.usable),
    };
  } catch (error) {
    throw new Error(`reading ${sessionId} from ${db} failed: ${error}\n${stderr.join("")}`);
  } finally {
    conn.dispose();
    if (proc.pid !== undefined && isAlive(proc.pid)) await endProcesses([proc.pid]);
  }
}
