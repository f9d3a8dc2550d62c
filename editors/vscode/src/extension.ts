// Entry point: wires the server connection, the session controller, the chat view, the status
// bar, the compaction progress and the commands together.

import * as vscode from "vscode";
import { ResponseError } from "vscode-languageclient/node";
import type { SessionlspApi } from "./api";
import { CHAT_VIEW_ID, type ChatActions, ChatViewProvider } from "./chatView";
import { CompactionProgress } from "./compactionProgress";
import { CONTEXT_SCHEME, renderContext } from "./contextDocument";
import { SessionController } from "./controller";
import { sessionTitle, shortTime } from "./format";
import { ErrorCodes, type PromptResult } from "./protocol";
import { API_KEY_SECRET, ServerConnection } from "./server";
import { StatusBar } from "./statusBar";

const LAST_SESSION_KEY = "sessionlsp.lastSession";

/** The connection of the active extension, for deactivate(). */
let running: ServerConnection | undefined;

class ContextDocuments implements vscode.TextDocumentContentProvider {
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  constructor(private readonly controller: SessionController) {}

  static uriFor(sessionId: string): vscode.Uri {
    return vscode.Uri.from({ scheme: CONTEXT_SCHEME, path: `/${sessionId}.md` });
  }

  refresh(uri: vscode.Uri): void {
    this.changed.fire(uri);
  }

  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const sessionId = uri.path.replace(/^\//, "").replace(/\.md$/, "");
    try {
      return renderContext(await this.controller.context(sessionId));
    } catch (err) {
      return `# Model context of ${sessionId}\n\nNot available: ${errorText(err)}\n`;
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function workspaceDirectory(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

/** A command's string argument, else what the user types (undefined: the box was dismissed). */
async function argumentOrAsk(arg: unknown, options: vscode.InputBoxOptions): Promise<string | undefined> {
  return typeof arg === "string" ? arg : vscode.window.showInputBox({ ignoreFocusOut: true, ...options });
}

async function revealChat(): Promise<void> {
  await vscode.commands.executeCommand(`${CHAT_VIEW_ID}.focus`);
}

/** The user actions the chat view and the commands share; each shows its failure, never throws. */
interface Actions extends ChatActions {
  compact(instructions?: string): Promise<void>;
}

/** What the commands act on, built once by `activate`. */
interface CommandContext {
  readonly extension: vscode.ExtensionContext;
  readonly server: ServerConnection;
  readonly controller: SessionController;
  readonly chat: ChatViewProvider;
  readonly contextDocs: ContextDocuments;
  readonly actions: Actions;
  /** Run a user action; show what went wrong instead of throwing. */
  run(what: string, action: () => Promise<unknown>): Promise<void>;
}

/**
 * Every command, by the id package.json declares in `contributes.commands`; `activate` registers
 * them all in one loop. `arg` is the first argument given to `executeCommand` (the tests pass the
 * prompt, the compaction instructions or a session id this way); without one, commands ask.
 */
const COMMANDS: Record<string, (c: CommandContext, arg?: unknown) => unknown> = {
  "sessionlsp.newSession": async (c) => {
    await revealChat();
    await c.actions.newSession();
    c.chat.focusPrompt();
  },
  "sessionlsp.prompt": async (c, text) => {
    const prompt = await argumentOrAsk(text, {
      title: "sessionlsp: Prompt",
      prompt: "Send a prompt to the session shown in the chat view (a new one when none is)",
    });
    if (prompt === undefined || prompt.trim() === "") return;
    await revealChat();
    await c.actions.prompt(prompt);
  },
  "sessionlsp.compact": async (c, instructions) => {
    if (c.controller.currentSessionId === undefined) {
      void vscode.window.showInformationMessage("sessionlsp: no session is open.");
      return;
    }
    const given = await argumentOrAsk(instructions, {
      title: "sessionlsp: Compact Session",
      prompt: "Optional: what the summary must keep (Enter with nothing to compact without)",
    });
    if (given === undefined) return;
    await c.actions.compact(given);
  },
  "sessionlsp.cancel": (c) => c.actions.cancel(),
  "sessionlsp.showContext": async (c) => {
    const sessionId = c.controller.currentSessionId;
    if (sessionId === undefined) {
      void vscode.window.showInformationMessage("sessionlsp: no session is open.");
      return;
    }
    const uri = ContextDocuments.uriFor(sessionId);
    c.contextDocs.refresh(uri);
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc, { preview: true, preserveFocus: false });
  },
  "sessionlsp.openSession": async (c, id) => {
    if (typeof id === "string") {
      await revealChat();
      await c.actions.openSession(id);
      return;
    }
    await c.run("open session", async () => {
      const sessions = await c.controller.refreshSessions();
      const pick = await vscode.window.showQuickPick(
        sessions.map((s) => ({
          label: sessionTitle(s),
          description: s.directory ?? "",
          detail: `${s.id} · updated ${shortTime(s.time.updated)}`,
          id: s.id,
          picked: s.id === c.controller.currentSessionId,
        })),
        { title: "sessionlsp: Open Session", placeHolder: "Pick a session", matchOnDetail: true },
      );
      if (pick === undefined) return;
      await revealChat();
      await c.controller.openSession(pick.id);
    });
  },
  "sessionlsp.setApiKey": async (c) => {
    const key = await vscode.window.showInputBox({
      title: "sessionlsp: Set API Key",
      prompt:
        "Stored in VS Code's secret storage and given to the server as SESSIONLSP_API_KEY. Leave empty to remove it.",
      password: true,
      ignoreFocusOut: true,
    });
    if (key === undefined) return;
    if (key.trim() === "") await c.extension.secrets.delete(API_KEY_SECRET);
    else await c.extension.secrets.store(API_KEY_SECRET, key.trim());
    await c.server.restart();
    void vscode.window.showInformationMessage(
      key.trim() === "" ? "sessionlsp: API key removed." : "sessionlsp: API key stored.",
    );
  },
  "sessionlsp.restartServer": (c) => c.server.restart(),
};

export async function activate(context: vscode.ExtensionContext): Promise<SessionlspApi> {
  const output = vscode.window.createOutputChannel("sessionlsp", { log: true });
  let chat: ChatViewProvider | undefined;
  let statusBar: StatusBar | undefined;

  // The handlers run only once the server has started, after `controller` exists; the
  // controller talks through server.rpc, which follows restarts.
  const server = new ServerConnection(context, output, {
    sync: (e) => controller.handleSync(e),
    delta: (d) => controller.handleDelta(d),
    status: (s) => controller.handleStatus(s),
    connected: () => void restore(),
    problem: (message) => {
      chat?.setProblem(message);
      statusBar?.setProblem(message);
    },
  });
  const controller = new SessionController(server.rpc, {
    directory: workspaceDirectory(),
    log: (m) => output.warn(m),
  });

  async function restore(): Promise<void> {
    try {
      if (controller.currentSessionId !== undefined) {
        await controller.reconnected();
        return;
      }
      const sessions = await controller.refreshSessions();
      const last = context.workspaceState.get<string>(LAST_SESSION_KEY);
      if (last !== undefined && sessions.some((s) => s.id === last)) {
        await controller.openSession(last);
      }
    } catch (err) {
      output.error(`restoring the session: ${errorText(err)}`);
    }
  }

  controller.onChange((kind) => {
    if (kind !== "meta") return;
    const id = controller.currentSessionId;
    if (id !== undefined && context.workspaceState.get(LAST_SESSION_KEY) !== id) {
      void context.workspaceState.update(LAST_SESSION_KEY, id);
    }
  });

  /** Run a user action; show what went wrong instead of throwing. */
  async function run(what: string, action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } catch (err) {
      if (err instanceof ResponseError && err.code === ErrorCodes.providerNotConfigured) {
        const choice = await vscode.window.showErrorMessage(`sessionlsp: ${err.message}`, "Open Settings");
        if (choice !== undefined) {
          await vscode.commands.executeCommand("workbench.action.openSettings", "sessionlsp");
        }
        return;
      }
      output.error(`${what}: ${errorText(err)}`);
      void vscode.window.showErrorMessage(`sessionlsp: ${what} failed: ${errorText(err)}`);
    }
  }

  async function reportTurn(result: PromptResult): Promise<void> {
    if (result.stopReason !== "error" || result.error === undefined) return;
    const e = result.error;
    const auth = e.status === 401 || e.status === 403;
    const choice = await vscode.window.showErrorMessage(
      `sessionlsp: ${e.name}: ${e.message}`,
      ...(auth ? ["Set API Key"] : []),
    );
    if (choice === "Set API Key") await vscode.commands.executeCommand("sessionlsp.setApiKey");
  }

  const actions: Actions = {
    prompt: (text: string) =>
      run("prompt", async () => {
        await server.whenRunning();
        await reportTurn(await controller.prompt(text));
      }),
    newSession: () => run("new session", () => controller.newSession()),
    compact: (instructions?: string) => run("compact", () => controller.compact(instructions)),
    cancel: () => run("cancel", () => controller.cancel()),
    openSession: (sessionId: string) => run("open session", () => controller.openSession(sessionId)),
  };

  chat = new ChatViewProvider(context.extensionUri, controller, actions);
  statusBar = new StatusBar(controller);
  const progress = new CompactionProgress(controller);
  const contextDocs = new ContextDocuments(controller);

  const commandContext: CommandContext = {
    extension: context,
    server,
    controller,
    chat,
    contextDocs,
    actions,
    run,
  };

  context.subscriptions.push(
    output,
    server,
    chat,
    statusBar,
    progress,
    { dispose: () => controller.dispose() },
    vscode.window.registerWebviewViewProvider(CHAT_VIEW_ID, chat),
    vscode.workspace.registerTextDocumentContentProvider(CONTEXT_SCHEME, contextDocs),
    ...Object.entries(COMMANDS).map(([id, command]) =>
      vscode.commands.registerCommand(id, (arg?: unknown) => command(commandContext, arg)),
    ),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration("sessionlsp")) void server.restart();
    }),
  );

  running = server;
  await server.start();

  return {
    get client() {
      return server.client;
    },
    controller,
    currentSessionId: () => controller.currentSessionId,
    whenRunning: () => server.whenRunning(),
    waitForIdle: (sessionId, timeoutMs) => controller.waitForIdle(sessionId, timeoutMs),
    compactionsInProgress: () => progress.showing(),
  };
}

/** Stops the server (shutdown, exit) before the extension host goes away. */
export function deactivate(): Promise<void> | undefined {
  return running?.stop();
}
