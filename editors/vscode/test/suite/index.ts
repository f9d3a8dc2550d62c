// Phase B of `npm test`: checks run inside the extension host through the `vscode` API.
// The workbench loads this module (bundled to out/test/index.js) as extensionTestsPath and
// calls run(); when it settles, the workbench calls codeAutomationExit(0 or 1), which the
// harness (test/run-code-server.mjs) turns into its own exit code.
import * as vscode from "vscode";

import type { SessionlspApi } from "../../src/api";
import { CONTEXT_SCHEME } from "../../src/contextDocument";
import type { RequestType } from "vscode-jsonrpc";
import { ContextRequest, LoadSessionRequest } from "../../src/protocol";
import { assert, Suite, waitFor } from "./runner";

const EXTENSION_ID = "sessionlsp.sessionlsp";
/** The palette commands the extension must offer (package.json may add more). */
const REQUIRED_COMMANDS = [
  "sessionlsp.newSession",
  "sessionlsp.prompt",
  "sessionlsp.compact",
  "sessionlsp.cancel",
  "sessionlsp.showContext",
  "sessionlsp.openSession",
  "sessionlsp.setApiKey",
];

interface StoredMessage {
  info: { id: string; role: string; kind: string; finish?: string };
  parts: { type: string; text?: string }[];
}

function textOf(m: StoredMessage): string {
  return m.parts
    .filter((p) => p.type === "text")
    .map((p) => p.text ?? "")
    .join("");
}

async function activated(): Promise<SessionlspApi> {
  const ext = vscode.extensions.getExtension<SessionlspApi>(EXTENSION_ID);
  assert(ext !== undefined, `${EXTENSION_ID} is not loaded`);
  const api = await ext.activate();
  assert(
    api !== undefined && typeof api.currentSessionId === "function",
    "activate() returned no API",
  );
  return api;
}

function client(api: SessionlspApi): NonNullable<SessionlspApi["client"]> {
  const c = api.client;
  assert(c !== undefined, "the API has no language client");
  return c;
}

/** Send a typed request by its method name. The suite is bundled apart from the extension, so
 * its RequestType objects come from another copy of vscode-jsonrpc, whose parameter-structure
 * check (an identity test) refuses them with "Unknown parameter structure auto". */
function request<P, R>(api: SessionlspApi, type: RequestType<P, R, void>, params: P): Promise<R> {
  return client(api).sendRequest<R>(type.method, params);
}

const suite = new Suite();

suite.test("activate returns the API and its language client is running", async () => {
  const api = await activated();
  await api.whenRunning();
  const c = client(api);
  assert(c.isRunning(), `the language client is not running (state ${c.state})`);
  const caps = c.initializeResult?.capabilities.experimental as
    { sessionlsp?: { protocolVersion?: number; provider?: string } } | undefined;
  assert(caps?.sessionlsp?.protocolVersion === 1, `server capabilities: ${JSON.stringify(caps)}`);
  assert(
    caps.sessionlsp.provider === "offline",
    `provider is ${caps.sessionlsp.provider}, not offline`,
  );
});

suite.test("every palette command is registered", async () => {
  await activated();
  const ext = vscode.extensions.getExtension(EXTENSION_ID);
  const contributed = ((ext?.packageJSON.contributes?.commands ?? []) as { command: string }[]).map(
    (c) => c.command,
  );
  const missingFromManifest = REQUIRED_COMMANDS.filter((id) => !contributed.includes(id));
  assert(missingFromManifest.length === 0, `package.json lacks ${missingFromManifest.join(", ")}`);
  const registered = new Set(await vscode.commands.getCommands(true));
  const unregistered = contributed.filter((id) => !registered.has(id));
  assert(unregistered.length === 0, `contributed but not registered: ${unregistered.join(", ")}`);
});

suite.test("a prompt sent with the prompt command is stored with its answer", async () => {
  const api = await activated();
  await vscode.commands.executeCommand("sessionlsp.newSession");
  const sessionId = await waitFor("a current session", () => api.currentSessionId());
  const text = `suite prompt ${Date.now()}: where is the tokenizer?`;
  await vscode.commands.executeCommand("sessionlsp.prompt", text);
  await api.waitForIdle(sessionId, 30_000);
  const loaded = await request(api, LoadSessionRequest, { sessionId });
  const at = loaded.messages.findIndex((m) => m.info.role === "user" && textOf(m) === text);
  assert(at >= 0, `the prompt is not stored in ${sessionId}`);
  const reply = loaded.messages[at + 1];
  assert(
    reply?.info.role === "assistant" && reply.info.finish === "stop",
    `no finished answer: ${JSON.stringify(reply)}`,
  );
  assert(textOf(reply).includes(text), "the offline answer does not quote the prompt");
});

suite.test(
  "Show Model Context opens a read-only document holding the prompt just sent",
  async () => {
    const api = await activated();
    const sessionId = api.currentSessionId();
    assert(sessionId !== undefined, "no current session");
    const text = `context check ${Date.now()}`;
    await vscode.commands.executeCommand("sessionlsp.prompt", text);
    await api.waitForIdle(sessionId, 30_000);
    await vscode.commands.executeCommand("sessionlsp.showContext");
    const editor = await waitFor("the context document to be the active editor", () => {
      const e = vscode.window.activeTextEditor;
      return e?.document.uri.scheme === CONTEXT_SCHEME ? e : undefined;
    });
    const doc = editor.document;
    await waitFor("the context document to hold the prompt", () => doc.getText().includes(text));
    assert(doc.getText().includes(sessionId), "the context document does not name the session");
    // A document from a TextDocumentContentProvider has no file system behind it, so VS Code
    // opens it read-only (phase A also checks that typing into it changes nothing).
    assert(
      vscode.workspace.fs.isWritableFileSystem(doc.uri.scheme) !== true,
      `${doc.uri.scheme} is a writable file system`,
    );
    assert(!doc.isUntitled && !doc.isDirty, "the context document is untitled or dirty");
  },
);

suite.test("the compact command compacts the shown session", async () => {
  const api = await activated();
  const sessionId = api.currentSessionId();
  assert(sessionId !== undefined, "no current session");
  await vscode.commands.executeCommand("sessionlsp.compact", "keep the file names");
  await api.waitForIdle(sessionId, 30_000);
  const ctx = await request(api, ContextRequest, { sessionId });
  assert(
    ctx.markerId !== undefined && ctx.summaryMessageId !== undefined,
    `context: ${JSON.stringify(ctx)}`,
  );
});

export async function run(): Promise<void> {
  await suite.run();
}
