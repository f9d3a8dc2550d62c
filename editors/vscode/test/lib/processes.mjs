// @ts-check
// Finding and ending the processes the harness started: code-server and everything it spawned
// (the extension hosts, the sessionlsp servers they run), the CLI client, the RPC reader.
// Linux only: the process tree is read from /proc.
import { readdirSync, readFileSync } from "node:fs";

import { waitFor } from "./wait.mjs";

/**
 * The process groups the harness started: every child it spawns is spawned detached, so its
 * pid is its group id, and cleanup ends each whole group.
 * @type {Set<number>}
 */
export const startedGroups = new Set();

/**
 * @typedef {object} ProcInfo
 * @property {number} pid
 * @property {number} ppid
 * @property {number} pgid
 * @property {string} state  one letter; "Z" is a zombie (dead, waiting to be reaped)
 */

/** @param {number} pid @returns {ProcInfo | undefined} */
export function procInfo(pid) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after
  // the last ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { pid, state: rest[0] ?? "", ppid: Number(rest[1]), pgid: Number(rest[2]) };
}

/** @returns {ProcInfo[]} every process visible in /proc */
function allProcs() {
  /** @type {ProcInfo[]} */
  const procs = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const info = procInfo(Number(name));
    if (info) procs.push(info);
  }
  return procs;
}

/**
 * The live descendants of `root` (not `root` itself), and every live member of the process
 * groups in `groups`.
 * @param {number} root
 * @param {number[]} [groups]
 * @returns {number[]}
 */
export function descendantsAndGroups(root, groups = []) {
  const procs = allProcs();
  /** @type {Map<number, number[]>} */
  const children = new Map();
  for (const p of procs) {
    const list = children.get(p.ppid) ?? [];
    list.push(p.pid);
    children.set(p.ppid, list);
  }
  const found = new Set();
  const queue = [root];
  while (queue.length > 0) {
    const pid = /** @type {number} */ (queue.shift());
    for (const child of children.get(pid) ?? []) {
      if (!found.has(child)) {
        found.add(child);
        queue.push(child);
      }
    }
  }
  for (const p of procs) {
    if (groups.includes(p.pgid) && p.pid !== process.pid) found.add(p.pid);
  }
  return [...found].filter((pid) => isAlive(pid));
}

/** @param {number} pid */
export function isAlive(pid) {
  const info = procInfo(pid);
  return info !== undefined && info.state !== "Z" && info.state !== "X";
}

/** @param {number} pid @param {NodeJS.Signals} signal */
function signal(pid, signal) {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/**
 * End `pids` (a snapshot taken before anything is signalled, so that children re-parented to
 * init when their parent dies are still ended): SIGTERM, wait up to `graceMs` for them to
 * exit, then SIGKILL what is left.
 * @param {number[]} pids
 * @param {number} [graceMs]
 * @returns {Promise<number[]>} the pids that needed SIGKILL
 */
export async function endProcesses(pids, graceMs = 5000) {
  for (const pid of pids) signal(pid, "SIGTERM");
  try {
    await waitFor("processes to exit after SIGTERM", () => pids.every((p) => !isAlive(p)), {
      timeout: graceMs,
      interval: 50,
    });
    return [];
  } catch {
    const left = pids.filter((p) => isAlive(p));
    for (const pid of left) signal(pid, "SIGKILL");
    return left;
  }
}
