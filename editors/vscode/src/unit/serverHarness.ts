// Starts the real Python server (`sessionlsp serve`) and the fake OpenAI server from the
// repository for the protocol-level tests, and connects a SessionController to the server with
// vscode-jsonrpc over stdio: the same controller code the extension runs.

import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import {
  type MessageConnection,
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection,
} from "vscode-jsonrpc/node";
import { SessionController } from "../controller";
import {
  type DeltaParams,
  DeltaNotification,
  type InitializationOptions,
  LoadSessionRequest,
  type StatusParams,
  StatusNotification,
  type SyncEvent,
  SyncNotification,
  type UnknownEvent,
} from "../protocol";
import { Transcript } from "../transcript";

/** The repository root: out/unit/ is three levels below it, under editors/vscode/. */
export const REPO_ROOT = path.resolve(__dirname, "..", "..", "..", "..");

export function serverExecutable(): string | undefined {
  const candidate = process.env.SESSIONLSP_SERVER ?? path.join(REPO_ROOT, ".venv", "bin", "sessionlsp");
  return fs.existsSync(candidate) ? candidate : undefined;
}

export function tempDb(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sessionlsp-vscode-unit-"));
  return path.join(dir, "sessions.db");
}

export interface Connected {
  controller: SessionController;
  connection: MessageConnection;
  process: ChildProcess;
  /** Every session/sync event received, in order. */
  syncs: (SyncEvent | UnknownEvent)[];
  deltas: DeltaParams[];
  statuses: StatusParams[];
  progress: unknown[];
  stderr: string[];
  initializeResult: unknown;
  close(): Promise<void>;
}

/** Start `sessionlsp serve --db DB` and connect a controller to it. */
export async function connect(
  db: string,
  options: InitializationOptions = {},
  env: NodeJS.ProcessEnv = {},
): Promise<Connected> {
  const exe = serverExecutable();
  if (exe === undefined) throw new Error("no sessionlsp executable (run ./dev to create .venv)");
  // An empty config file and no SESSIONLSP_* / OPENAI_* variables: only `options` configure it.
  const config = path.join(path.dirname(db), "empty-config.toml");
  fs.writeFileSync(config, "");
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("SESSIONLSP_") && !k.startsWith("OPENAI_")),
  );
  const child = spawn(exe, ["serve", "--db", db], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...inherited, SESSIONLSP_CONFIG: config, ...env },
  });
  const stderr: string[] = [];
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => stderr.push(chunk));
  if (child.stdout === null || child.stdin === null) throw new Error("no stdio pipes");
  const connection = createMessageConnection(
    new StreamMessageReader(child.stdout),
    new StreamMessageWriter(child.stdin),
  );
  const controller = new SessionController(connection);
  const syncs: (SyncEvent | UnknownEvent)[] = [];
  const deltas: DeltaParams[] = [];
  const statuses: StatusParams[] = [];
  const progress: unknown[] = [];
  connection.onNotification(SyncNotification, (e) => {
    syncs.push(e);
    controller.handleSync(e);
  });
  connection.onNotification(DeltaNotification, (d) => {
    deltas.push(d);
    controller.handleDelta(d);
  });
  connection.onNotification(StatusNotification, (s) => {
    statuses.push(s);
    controller.handleStatus(s);
  });
  connection.onNotification("$/progress", (p: unknown) => {
    progress.push(p);
  });
  connection.onNotification("window/showMessage", (m: unknown) => {
    stderr.push(`showMessage: ${JSON.stringify(m)}`);
  });
  connection.onRequest("window/workDoneProgress/create", () => null);
  connection.listen();
  const initializeResult = await connection.sendRequest("initialize", {
    processId: process.pid,
    clientInfo: { name: "sessionlsp-vscode-unit" },
    rootUri: null,
    capabilities: { window: { workDoneProgress: true } },
    initializationOptions: options,
  });
  await connection.sendNotification("initialized", {});
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  const close = async (): Promise<void> => {
    controller.dispose();
    try {
      await connection.sendRequest("shutdown");
      await connection.sendNotification("exit");
    } catch {
      // already gone
    }
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
    connection.dispose();
  };
  return { controller, connection, process: child, syncs, deltas, statuses, progress, stderr, initializeResult, close };
}

/** What a fresh client sees: `session/load` alone (the history and every compaction's state). */
export async function freshTranscript(c: Connected, sessionId: string): Promise<Transcript> {
  const loaded = await c.connection.sendRequest(LoadSessionRequest, { sessionId });
  return Transcript.fromLoad(loaded);
}

/** Resolves when `predicate()` holds, checked after every change of the controller. */
export function until(c: SessionController, predicate: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (predicate()) {
      resolve();
      return;
    }
    const timer = setTimeout(() => {
      sub.dispose();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const sub = c.onChange(() => {
      if (!predicate()) return;
      clearTimeout(timer);
      sub.dispose();
      resolve();
    });
  });
}

export interface FakeOpenAI {
  baseUrl: string;
  stop(): Promise<void>;
}

/** Start fakeprovider/openai_server.py as a module; its first stdout line is the base URL. */
export async function startFakeOpenAI(args: string[]): Promise<FakeOpenAI> {
  const python = path.join(REPO_ROOT, ".venv", "bin", "python");
  const child = spawn(python, ["-m", "fakeprovider.openai_server", "--port", "0", ...args], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (child.stdout === null) throw new Error("no stdout");
  const lines = readline.createInterface({ input: child.stdout });
  const baseUrl = await new Promise<string>((resolve, reject) => {
    lines.once("line", (line) => resolve(line.trim()));
    child.once("exit", (code) => reject(new Error(`fake OpenAI server exited with ${code}`)));
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    baseUrl,
    stop: async () => {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
      lines.close();
    },
  };
}
