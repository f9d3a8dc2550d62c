// A second, independent ACP client: the official TypeScript SDK drives `sessionlsp acp` over
// stdio (newline-delimited JSON-RPC) through initialize, session/new and one prompt, and prints
// what it saw as one JSON object on stdout. Any message the SDK cannot frame or parse against
// its v1 schema fails the run.
//
//   node client.mjs <sessionlsp executable> <session cwd> [extra `sessionlsp acp` args...]
import { spawn } from "node:child_process";
import { Readable, Writable } from "node:stream";
import * as acp from "@agentclientprotocol/sdk";

const [command, cwd, ...extra] = process.argv.slice(2);
if (!command || !cwd) {
  console.error("usage: node client.mjs <sessionlsp> <cwd> [args...]");
  process.exit(2);
}

const child = spawn(command, ["acp", ...extra], { stdio: ["pipe", "pipe", "inherit"] });
const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
const stream = acp.ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));

const updates = [];
const app = acp
  .client({ name: "sessionlsp-ts-test" })
  .onNotification(acp.methods.client.session.update, ({ params }) => {
    updates.push(params);
  })
  .onRequest(acp.methods.client.session.requestPermission, () => ({
    outcome: { outcome: "cancelled" },
  }));

const summary = await app.connectWith(stream, async (agent) => {
  const init = await agent.request(acp.methods.agent.initialize, {
    protocolVersion: acp.PROTOCOL_VERSION,
    clientCapabilities: {},
  });
  const session = await agent.request(acp.methods.agent.session.new, { cwd, mcpServers: [] });
  const answer = await agent.request(acp.methods.agent.session.prompt, {
    sessionId: session.sessionId,
    prompt: [{ type: "text", text: "hello" }],
  });
  const mine = updates.filter((n) => n.sessionId === session.sessionId).map((n) => n.update);
  return {
    protocolVersion: init.protocolVersion,
    agentInfo: init.agentInfo ?? null,
    sessionId: session.sessionId,
    stopReason: answer.stopReason,
    kinds: mine.map((u) => u.sessionUpdate),
    text: mine
      .filter((u) => u.sessionUpdate === "agent_message_chunk" && u.content.type === "text")
      .map((u) => u.content.text)
      .join(""),
  };
});

child.stdin.end();
const { code, signal } = await exited;
console.log(JSON.stringify({ ...summary, exit: { code, signal } }));
