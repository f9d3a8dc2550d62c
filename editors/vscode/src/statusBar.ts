// The status bar item: the shown session's state and its context use, e.g.
// "$(comment-discussion) idle · 1.2k/7k".

import * as vscode from "vscode";
import type { SessionController } from "./controller";
import { statusText } from "./format";

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(
    "sessionlsp.status",
    vscode.StatusBarAlignment.Right,
    100,
  );
  private problem: string | undefined;
  private readonly sub: { dispose(): void };

  constructor(private readonly controller: SessionController) {
    this.item.name = "sessionlsp";
    this.item.command = "sessionlsp.chat.focus";
    this.sub = controller.onChange((kind) => {
      if (kind === "meta") this.update();
    });
    this.update();
    this.item.show();
  }

  setProblem(problem: string | undefined): void {
    this.problem = problem;
    this.update();
  }

  update(): void {
    const c = this.controller;
    if (this.problem !== undefined) {
      this.item.text = "$(error) sessionlsp";
      this.item.tooltip = this.problem;
      this.item.backgroundColor = new vscode.ThemeColor("statusBarItem.errorBackground");
      return;
    }
    this.item.backgroundColor = undefined;
    const state = c.uiState();
    this.item.text = statusText(state, c.meter);
    const session = c.sessions.find((s) => s.id === c.currentSessionId);
    const lines = [
      `sessionlsp: ${session?.title !== undefined && session.title !== "" ? session.title : (c.currentSessionId ?? "no session")}`,
      `state: ${state}`,
    ];
    if (c.meter !== undefined) {
      lines.push(`context: ${c.meter.tokens.toLocaleString("en-US")} of ${c.meter.usable.toLocaleString("en-US")} usable tokens`);
    }
    this.item.tooltip = lines.join("\n");
  }

  dispose(): void {
    this.sub.dispose();
    this.item.dispose();
  }
}
