// The side-bar chat view: a WebviewViewProvider that renders the controller's state through
// src/webview/ and turns the webview's buttons and input into controller calls.

import { randomBytes } from "node:crypto";
import * as vscode from "vscode";
import type { SessionController } from "./controller";
import { sessionLabel } from "./format";
import type { FromWebview, MetaMessage, ToWebview } from "./viewMessages";
import { ViewDiffer } from "./viewModel";
import { webviewHtml } from "./webview/html";

export const CHAT_VIEW_ID = "sessionlsp.chat";

export interface ChatActions {
  prompt(text: string): Promise<void>;
  newSession(): Promise<void>;
  compact(): Promise<void>;
  cancel(): Promise<void>;
  openSession(sessionId: string): Promise<void>;
}

export class ChatViewProvider implements vscode.WebviewViewProvider, vscode.Disposable {
  private view: vscode.WebviewView | undefined;
  private readonly differ = new ViewDiffer();
  private flushScheduled = false;
  private problem: string | undefined;
  /** The last meta message posted, as JSON: unchanged meta is not posted again. */
  private lastMeta: string | undefined;
  private readonly subscriptions: vscode.Disposable[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly controller: SessionController,
    private readonly actions: ChatActions,
  ) {
    const sub = controller.onChange(() => this.scheduleFlush());
    this.subscriptions.push({ dispose: () => sub.dispose() });
  }

  setProblem(problem: string | undefined): void {
    this.problem = problem;
    this.scheduleFlush();
  }

  focusPrompt(): void {
    void this.post({ type: "focusPrompt" });
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    const webview = view.webview;
    webview.options = {
      enableScripts: true,
      localResourceRoots: [
        vscode.Uri.joinPath(this.extensionUri, "media"),
        vscode.Uri.joinPath(this.extensionUri, "out"),
      ],
    };
    webview.html = webviewHtml({
      cspSource: webview.cspSource,
      nonce: randomBytes(18).toString("base64url"),
      scriptUri: webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, "out", "webview.js")).toString(),
      styleUri: webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, "media", "chat.css")).toString(),
    });
    this.subscriptions.push(
      webview.onDidReceiveMessage((m: FromWebview) => void this.receive(m)),
      view.onDidDispose(() => {
        if (this.view === view) this.view = undefined;
      }),
    );
  }

  dispose(): void {
    for (const d of this.subscriptions.splice(0)) d.dispose();
  }

  private async receive(m: FromWebview): Promise<void> {
    switch (m.type) {
      case "ready":
        this.differ.invalidate();
        this.lastMeta = undefined;
        this.flush();
        return;
      case "prompt":
        return this.actions.prompt(m.text);
      case "newSession":
        return this.actions.newSession();
      case "compact":
        return this.actions.compact();
      case "cancel":
        return this.actions.cancel();
      case "openSession":
        return this.actions.openSession(m.sessionId);
    }
  }

  /** Coalesce the changes of one burst of notifications into one post to the webview. */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.view === undefined) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.view === undefined) return;
    const meta = this.meta();
    const metaJson = JSON.stringify(meta);
    if (metaJson !== this.lastMeta) {
      this.lastMeta = metaJson;
      void this.post(meta);
    }
    const update = this.differ.next(this.controller.transcript, this.controller.notices);
    if (update !== undefined) void this.post(update);
  }

  private meta(): MetaMessage {
    const c = this.controller;
    const status = c.status();
    const retry =
      status?.status === "retry"
        ? `retry ${status.attempt ?? 1}${status.nextRetryAt !== undefined ? ` at ${new Date(status.nextRetryAt).toLocaleTimeString()}` : ""}`
        : null;
    return {
      type: "meta",
      sessionId: c.currentSessionId ?? null,
      sessions: c.sessions.map((s) => ({ id: s.id, label: sessionLabel(s) })),
      state: c.uiState(),
      meter: c.meter ?? null,
      serverProblem: this.problem ?? null,
      retry,
    };
  }

  private async post(message: ToWebview): Promise<void> {
    await this.view?.webview.postMessage(message);
  }
}
