// Starting, stopping and restarting `sessionlsp serve` with vscode-languageclient over stdio, and
// telling the user clearly when that fails (not found, rejected settings, exited).

import type { ChildProcess } from "node:child_process";
import * as os from "node:os";
import * as readline from "node:readline";
import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  type InitializationFailedHandler,
  LanguageClient,
  type LanguageClientOptions,
  type RequestParam,
  type RequestType,
  ResponseError,
  type ServerOptions,
  State,
} from "vscode-languageclient/node";
import type { Rpc } from "./controller";
import {
  type DeltaParams,
  DeltaNotification,
  PROTOCOL_VERSION,
  type ServerCapabilityInfo,
  type StatusParams,
  StatusNotification,
  type SyncEvent,
  SyncNotification,
  type UnknownEvent,
} from "./protocol";
import { readSettings } from "./settings";
import {
  expandPath,
  initializationOptions,
  notFoundMessage,
  findExecutable,
  serverArguments,
  serverEnvironment,
} from "./serverConfig";

export const API_KEY_SECRET = "sessionlsp.apiKey";

/** How many of the server's last stderr lines are kept to explain a failure. */
const STDERR_TAIL = 20;
/** How long to wait for a server that failed to start to exit, to report its exit code. */
const EXIT_WAIT_MS = 2000;

type Exit = { code: number | null; signal: string | null } | undefined;

/** The process's exit once it has exited (waiting a little), or undefined if it still runs. */
function exitOf(child: ChildProcess | undefined): Promise<Exit> {
  if (child === undefined) return Promise.resolve(undefined);
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), EXIT_WAIT_MS);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

/** One message that says why the server did not start, and how to fix it. */
function startFailure(
  command: string,
  err: unknown,
  initError: string | undefined,
  exit: Exit,
  stderrTail: readonly string[],
): string {
  const why = initError ?? (err instanceof Error ? err.message : String(err));
  if (exit !== undefined) {
    const how = exit.code !== null ? `with code ${exit.code}` : `on signal ${exit.signal}`;
    const errors = stderrTail.filter((l) => /error/i.test(l));
    const last = errors[errors.length - 1] ?? stderrTail[stderrTail.length - 1];
    return (
      `The sessionlsp server ("${command}") exited ${how} while starting` +
      `${last !== undefined ? `: ${last}` : ""}. Check sessionlsp.serverPath and sessionlsp.serverArgs.`
    );
  }
  if (err instanceof ResponseError || initError !== undefined) {
    return `sessionlsp rejected its settings: ${why}. Check the sessionlsp settings.`;
  }
  return `sessionlsp failed to start ("${command}"): ${why}`;
}

export interface ServerHandlers {
  sync(event: SyncEvent | UnknownEvent): void;
  delta(delta: DeltaParams): void;
  status(status: StatusParams): void;
  /** The server is up (first start or a restart): reload what is shown. */
  connected(info: ServerCapabilityInfo | undefined): void;
  /** The problem to show (undefined: none). */
  problem(message: string | undefined): void;
}

function workspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

/**
 * Open the settings editor where `setting` can be set. `sessionlsp.serverPath` is
 * machine-overridable: the User tab of a remote window does not list it ("No Settings Found"),
 * so open the workspace's settings when there is a workspace, else the remote machine's.
 */
async function openSettings(setting: string): Promise<void> {
  if (vscode.workspace.workspaceFolders?.length) {
    await vscode.commands.executeCommand("workbench.action.openWorkspaceSettings", { query: setting });
  } else if (vscode.env.remoteName !== undefined) {
    await vscode.commands.executeCommand("workbench.action.openRemoteSettings", { query: setting });
  } else {
    await vscode.commands.executeCommand("workbench.action.openSettings", setting);
  }
}

/** Owns the LanguageClient; `rpc` stays valid across restarts. */
export class ServerConnection implements vscode.Disposable {
  client: LanguageClient | undefined;
  info: ServerCapabilityInfo | undefined;
  private stopping = false;
  private starting: Promise<boolean> | undefined;
  private readonly readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  readonly rpc: Rpc = {
    sendRequest: <P, R, E>(type: RequestType<P, R, E>, params: NoInfer<RequestParam<P>>): Promise<R> => {
      const client = this.client;
      if (client === undefined || !client.isRunning()) {
        return Promise.reject(new Error("the sessionlsp server is not running"));
      }
      return client.sendRequest(type, params);
    },
  };

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly output: vscode.LogOutputChannel,
    private readonly handlers: ServerHandlers,
  ) {}

  /** Resolves once the server is running: now, or when the start under way succeeds. Rejects
   * when no start is under way or it fails, so a prompt never waits on a server that is not
   * coming (the failure itself is shown by `fail`). */
  whenRunning(): Promise<void> {
    if (this.client?.isRunning() === true) return Promise.resolve();
    if (this.starting === undefined) {
      return Promise.reject(new Error("the sessionlsp server is not running"));
    }
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Start the server; resolves true when it runs. Never throws: failures are shown. */
  start(): Promise<boolean> {
    this.starting ??= this.doStart().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  async restart(): Promise<boolean> {
    await this.starting;
    await this.stop();
    return this.start();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.info = undefined;
    if (client === undefined) return;
    this.stopping = true;
    try {
      if (client.state !== State.Stopped) await client.stop(5000);
    } catch (err) {
      this.output.warn(`stopping the server: ${String(err)}`);
    } finally {
      this.stopping = false;
      await client.dispose().catch(() => undefined);
    }
  }

  dispose(): void {
    void this.stop();
  }

  private async doStart(): Promise<boolean> {
    const settings = readSettings();
    const ctx = { home: os.homedir(), workspaceFolder: workspaceFolder() };
    const configured = settings.serverPath.trim() === "" ? "sessionlsp" : settings.serverPath;
    const found = findExecutable(configured, ctx, process.env.PATH);
    if (found === undefined) {
      const message = notFoundMessage(expandPath(configured, ctx));
      this.fail(message, ["Open Settings"], () => openSettings("sessionlsp.serverPath"));
      return false;
    }
    const command = found.command;
    if (found.how === "discovered") this.output.info(`sessionlsp is not on PATH; using ${command}`);
    const apiKey = await this.context.secrets.get(API_KEY_SECRET);
    // No `transport`: the default is stdio without the `--stdio` argument that
    // TransportKind.stdio would append (which `sessionlsp serve` does not accept).
    const serverOptions: ServerOptions = {
      command,
      args: serverArguments(settings, ctx),
      options: { env: serverEnvironment(process.env, apiKey), cwd: ctx.workspaceFolder },
    };
    const stderrTail: string[] = [];
    let startingUp = true;
    let initError: string | undefined;
    const initializationFailedHandler: InitializationFailedHandler = (error) => {
      initError = error instanceof Error ? error.message : String(error);
      return false;
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [],
      outputChannel: this.output,
      initializationOptions: initializationOptions(settings),
      initializationFailedHandler,
      connectionOptions: { maxRestartCount: 0 },
      stdioOptions: {
        stdout: () => undefined, // the protocol stream; only read by the client
        stderr: (input, channel) => {
          const lines = readline.createInterface({ input });
          lines.on("line", (line) => {
            channel.appendLine(line);
            stderrTail.push(line);
            if (stderrTail.length > STDERR_TAIL) stderrTail.shift();
          });
        },
      },
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue, handled: true }),
        closed: () => {
          if (!this.stopping && !startingUp) this.serverExited(command, stderrTail);
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
    };
    const client = new LanguageClient("sessionlsp", "sessionlsp", serverOptions, clientOptions);
    client.onNotification(SyncNotification, (e) => this.handlers.sync(e));
    client.onNotification(DeltaNotification, (d) => this.handlers.delta(d));
    client.onNotification(StatusNotification, (s) => this.handlers.status(s));
    this.client = client;
    try {
      await client.start();
    } catch (err) {
      this.client = undefined;
      const exit = await exitOf(client.serverProcess);
      await client.dispose().catch(() => undefined);
      this.fail(
        startFailure(command, err, initError, exit, stderrTail),
        ["Open Settings", "Show Output"],
        (choice) => (choice === "Show Output" ? this.output.show() : openSettings("sessionlsp")),
      );
      return false;
    } finally {
      startingUp = false;
    }
    const experimental = client.initializeResult?.capabilities.experimental as
      | { sessionlsp?: ServerCapabilityInfo }
      | undefined;
    this.info = experimental?.sessionlsp;
    if (this.info?.protocolVersion !== PROTOCOL_VERSION) {
      this.output.warn(
        `the server speaks protocol version ${String(this.info?.protocolVersion)}; this extension expects ${PROTOCOL_VERSION}`,
      );
    }
    this.output.info(`sessionlsp started: ${command} (provider ${this.info?.provider ?? "?"})`);
    this.handlers.problem(undefined);
    this.handlers.connected(this.info);
    for (const waiter of this.readyWaiters.splice(0)) waiter.resolve();
    return true;
  }

  private serverExited(command: string, stderrTail: readonly string[]): void {
    this.client = undefined;
    this.info = undefined;
    const last = stderrTail.length > 0 ? ` Last log line: ${stderrTail[stderrTail.length - 1]}` : "";
    const message = `The sessionlsp server ("${command}") exited unexpectedly.${last} Its log is in the sessionlsp output.`;
    this.fail(message, ["Restart", "Show Output", "Open Settings"], async (choice) => {
      if (choice === "Restart") await this.restart();
      else if (choice === "Show Output") this.output.show();
      else await openSettings("sessionlsp");
    });
  }

  private fail(
    message: string,
    actions: string[],
    onChoice: (choice: string) => unknown,
  ): void {
    this.output.error(message);
    this.handlers.problem(message);
    const failure = new Error("the sessionlsp server is not running");
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(failure);
    void vscode.window.showErrorMessage(message, ...actions).then((choice) => {
      if (choice !== undefined) void onChoice(choice);
    });
  }
}
