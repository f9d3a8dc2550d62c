// A progress notification (window.withProgress, location Notification) for as long as a
// compaction of a session this window follows is pending or running, whoever started it (the
// Compact button, an automatic compaction inside a turn, or another editor on the same
// database). Cancelling the notification sends session/cancel. A failure is reported once.

import * as vscode from "vscode";
import type { CompactionChange, SessionController } from "./controller";

export class CompactionProgress implements vscode.Disposable {
  private readonly open = new Map<string, { report(message: string): void; end(): void }>();
  private readonly sub: { dispose(): void };

  constructor(private readonly controller: SessionController) {
    this.sub = controller.onCompaction((change) => this.update(change));
  }

  /** Markers whose progress notification is showing (tests look at this). */
  showing(): string[] {
    return [...this.open.keys()];
  }

  private update({ compaction: c }: CompactionChange): void {
    const active = c.status === "pending" || c.status === "running";
    const entry = this.open.get(c.markerId);
    if (active) {
      if (entry === undefined) this.begin(c.markerId, c.auto, c.overflow);
      this.open.get(c.markerId)?.report(c.status === "running" ? "writing the summary" : "waiting to start");
      return;
    }
    entry?.end();
    this.open.delete(c.markerId);
    if (c.status === "failed" && c.error !== undefined && c.error.code !== "cancelled") {
      void vscode.window.showWarningMessage(
        `sessionlsp: compaction failed (${c.error.code}): ${c.error.message}`,
      );
    }
  }

  private begin(markerId: string, auto: boolean, overflow: boolean): void {
    const kind = overflow ? "after an overflow" : auto ? "automatically" : "";
    let end: () => void = () => undefined;
    let progress: vscode.Progress<{ message?: string }> | undefined;
    const pending: string[] = [];
    this.open.set(markerId, {
      report: (message) => {
        if (progress === undefined) pending.push(message);
        else progress.report({ message });
      },
      end: () => end(),
    });
    void vscode.window.withProgress(
      {
        location: vscode.ProgressLocation.Notification,
        title: `sessionlsp: compacting the session${kind === "" ? "" : ` ${kind}`}`,
        cancellable: true,
      },
      (p, token) =>
        new Promise<void>((resolve) => {
          progress = p;
          for (const message of pending.splice(0)) p.report({ message });
          end = resolve;
          if (!this.open.has(markerId)) resolve();
          token.onCancellationRequested(() => {
            void this.controller.cancel().catch(() => undefined);
          });
        }),
    );
  }

  dispose(): void {
    this.sub.dispose();
    for (const entry of this.open.values()) entry.end();
    this.open.clear();
  }
}
