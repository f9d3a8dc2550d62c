// What `activate` returns: the handle the in-VS-Code tests (editors/vscode/test/) use.

import type { LanguageClient } from "vscode-languageclient/node";
import type { SessionController } from "./controller";

export interface SessionlspApi {
  /** The running client (replaced when the server restarts; undefined while it is not running). */
  readonly client: LanguageClient | undefined;
  /** The session state behind the chat view and the commands. */
  readonly controller: SessionController;
  /** The session the chat view shows. */
  currentSessionId(): string | undefined;
  /** Resolves once the server runs (at once when it already does). */
  whenRunning(): Promise<void>;
  /**
   * Resolves when nothing runs in the session (the shown one by default) in this window: server
   * status idle, no prompt or compact request unanswered, no load or meter refresh in flight.
   */
  waitForIdle(sessionId?: string, timeoutMs?: number): Promise<void>;
  /** Markers whose compaction progress notification is showing. */
  compactionsInProgress(): string[];
}
