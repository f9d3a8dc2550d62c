// Entry point: wires the server connection, the session controller, the chat view, the status
// bar, the compaction progress and the commands together.

import * as vscode from "vscode";
import { ResponseError } from "vscode-languageclient/node";
import type { SessionlspApi } from "./api";
import { CHAT_VIEW_ID, ChatViewProvider } from "./chatView";
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

  const actions = {
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

  const revealChat = async (): Promise<void> => {
    await vscode.commands.executeCommand(`${CHAT_VIEW_ID}.focus`);
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
    vscode.commands.registerCommand("sessionlsp.newSession", async () => {
      await revealChat();
      await actions.newSession();
      chat?.focusPrompt();
    }),
    vscode.commands.registerCommand("sessionlsp.prompt", async (text?: unknown) => {
      const prompt = await argumentOrAsk(text, {
        title: "sessionlsp: Prompt",
        prompt: "Send a prompt to the session shown in the chat view (a new one when none is)",
      });
      if (prompt === undefined || prompt.trim() === "") return;
      await revealChat();
      await actions.prompt(prompt);
    }),
    vscode.commands.registerCommand("sessionlsp.compact", async (instructions?: unknown) => {
      if (controller.currentSessionId === undefined) {
        void vscode.window.showInformationMessage("sessionlsp: no session is open.");
        return;
      }
      const given = await argumentOrAsk(instructions, {
        title: "sessionlsp: Compact Session",
        prompt: "Optional: what the summary must keep (Enter with nothing to compact without)",
      });
      if (given === undefined) return;
      await actions.compact(given);
    }),
    vscode.commands.registerCommand("sessionlsp.cancel", () => actions.cancel()),
    vscode.commands.registerCommand("sessionlsp.showContext", async () => {
      const sessionId = controller.currentSessionId;
      if (sessionId === undefined) {
        void vscode.window.showInformationMessage("sessionlsp: no session is open.");
        return;
      }
      const uri = ContextDocuments.uriFor(sessionId);
      contextDocs.refresh(uri);
      const doc = await vscode.workspace.openTextDocument(uri);
      await vscode.window.showTextDocument(doc, { preview: true, preserveFocus: false });
    }),
    vscode.commands.registerCommand("sessionlsp.openSession", async (id?: unknown) => {
      if (typeof id === "string") {
        await revealChat();
        await actions.openSession(id);
        return;
      }
      await run("open session", async () => {
        const sessions = await controller.refreshSessions();
        const pick = await vscode.window.showQuickPick(
          sessions.map((s) => ({
            label: sessionTitle(s),
            description: s.directory ?? "",
            detail: `${s.id} · updated ${shortTime(s.time.updated)}`,
            id: s.id,
            picked: s.id === controller.currentSessionId,
          })),
          { title: "sessionlsp: Open Session", placeHolder: "Pick a session", matchOnDetail: true },
        );
        if (pick === undefined) return;
        await revealChat();
        await controller.openSession(pick.id);
      });
    }),
    vscode.commands.registerCommand("sessionlsp.setApiKey", async () => {
      const key = await vscode.window.showInputBox({
        title: "sessionlsp: Set API Key",
        prompt:
          "Stored in VS Code's secret storage and given to the server as SESSIONLSP_API_KEY. Leave empty to remove it.",
        password: true,
        ignoreFocusOut: true,
      });
      if (key === undefined) return;
      if (key.trim() === "") await context.secrets.delete(API_KEY_SECRET);
      else await context.secrets.store(API_KEY_SECRET, key.trim());
      await server.restart();
      void vscode.window.showInformationMessage(
        key.trim() === "" ? "sessionlsp: API key removed." : "sessionlsp: API key stored.",
      );
    }),
    vscode.commands.registerCommand("sessionlsp.restartServer", () => server.restart()),
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
