"""A scriptable stand-in for ``sessionlsp serve``, for the client and chat tests.

Run as a script (``python tests/procs/fake_sidecar.py [--log FILE] [--exit-on-start CODE]``);
it imports nothing from the project, so its framing is an independent check of the client's.
It speaks the framed JSON-RPC protocol on stdio, single-threaded, and answers:

* ``initialize`` / ``shutdown`` / ``exit``;
* ``session/new``, ``session/load`` (``ses_known`` exists; any other id gets -31001, or the
  ``--unknown-session-code``), ``session/list``, ``session/context``, ``session/compact``
  (a fixed result), ``session/delete``;
* ``session/prompt``: three ``session/delta`` notifications that make up ``Echo: <text>``; when
  the text contains ``compact``, a ``compaction.updated`` pending/completed pair; then
  ``{stopReason: "end_turn", messageId}``. Text containing ``wait`` streams ``Working`` and holds
  the answer until ``session/cancel`` (then ``cancelled``); ``stubborn`` also holds it but meets a
  cancel with one more delta and no answer; ``fail`` ends with ``stopReason: "error"``;
  ``rich`` sends user, reasoning, tool, summary and other-session traffic around two answer
  parts (``Part one``, ``Part two``);
* test helpers: ``test/echo`` (result = params), ``test/notify {count}`` (that many
  ``test/event {i}`` notifications, then ``{}``), ``test/error {code, message, data}``,
  ``test/exit {code}`` (exits without answering), ``test/hang`` (never answered),
  ``test/serverRequest {method, params}`` (sends that request to the client and answers with
  ``{"answer": <the client's response>}``), ``test/stderr {text}`` (writes a stderr line).

A frame whose body is not JSON gets a -32700 error with ``id: null``; reading goes on.
``--log FILE`` appends every message received, one JSON per line.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any

UNKNOWN_SESSION = -31001  # docs/protocol.md
METHOD_NOT_FOUND = -32601
PARSE_ERROR = -32700
KNOWN_SESSION = "ses_known"
NOW_MS = 1_700_000_000_000


def read_frame(stream: IO[bytes]) -> bytes | None:
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise SystemExit("fake_sidecar: frame without Content-Length")
    body = stream.read(length)
    if len(body) != length:
        return None
    return body


def session(session_id: str, title: str = "", directory: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "id": session_id,
        "title": title,
        "time": {"created": NOW_MS, "updated": NOW_MS},
    }
    if directory is not None:
        info["directory"] = directory
    return info


class FakeSidecar:
    def __init__(
        self, out: IO[bytes], log: IO[str] | None, unknown_session: int = UNKNOWN_SESSION
    ) -> None:
        self.out = out
        self.unknown_session = unknown_session
        self.log = log
        self.sessions: dict[str, dict[str, Any]] = {KNOWN_SESSION: session(KNOWN_SESSION, "Known")}
        self.counter = 0
        self.server_request_ids = 0
        # server request id -> the client request it answers
        self.awaiting_client: dict[str, Any] = {}
        # session id -> (request id, message id, stubborn) of a prompt waiting for a cancel
        self.held_prompts: dict[str, tuple[Any, str, bool]] = {}

    # -- wire ---------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}, ensure_ascii=False).encode("utf-8")
        self.out.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.out.flush()

    def result(self, request_id: Any, result: Any) -> None:
        self.send({"id": request_id, "result": result})

    def error(self, request_id: Any, code: int, message: str, data: Any = None) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        self.send({"id": request_id, "error": error})

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_fake{self.counter}"

    # -- dispatch -----------------------------------------------------------------------------

    def handle_body(self, body: bytes) -> None:
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.send({"id": None, "error": {"code": PARSE_ERROR, "message": f"parse: {exc}"}})
            return
        if self.log is not None:
            self.log.write(json.dumps(message, ensure_ascii=False) + "\n")
            self.log.flush()
        method = message.get("method")
        if method is None:
            self.client_answered(message)
            return
        params = message.get("params") or {}
        handler = getattr(self, "on_" + method.replace("/", "_").replace("$", "_"), None)
        if "id" not in message:
            if method == "exit":
                sys.exit(0)
            if method == "session/cancel":
                self.cancel(params)
            return
        request_id = message["id"]
        if handler is None:
            self.error(request_id, METHOD_NOT_FOUND, f"unknown method {method}")
            return
        handler(request_id, params)

    def client_answered(self, message: dict[str, Any]) -> None:
        original = self.awaiting_client.pop(str(message.get("id")), None)
        if original is not None:
            answer = {k: v for k, v in message.items() if k in ("result", "error")}
            self.result(original, {"answer": answer})

    # -- lifecycle ----------------------------------------------------------------------------

    def on_initialize(self, request_id: Any, params: dict[str, Any]) -> None:
        self.result(
            request_id,
            {
                "capabilities": {"experimental": {"sessionlsp": {"protocolVersion": 1}}},
                "serverInfo": {"name": "fake-sidecar", "version": "0"},
            },
        )

    def on_shutdown(self, request_id: Any, params: dict[str, Any]) -> None:
        self.result(request_id, None)

    # -- sessions -----------------------------------------------------------------------------

    def on_session_new(self, request_id: Any, params: dict[str, Any]) -> None:
        sid = self.next_id("ses")
        info = session(sid, params.get("title") or "", params.get("directory"))
        self.sessions[sid] = info
        self.notify(
            "session/sync",
            {"seq": self.counter, "sessionId": sid, "type": "session.created", "data": info},
        )
        self.result(request_id, {"sessionId": sid, "session": info})

    def on_session_load(self, request_id: Any, params: dict[str, Any]) -> None:
        sid = params.get("sessionId")
        if sid not in self.sessions:
            self.error(request_id, self.unknown_session, f"unknown session: {sid}")
            return
        self.result(request_id, {"session": self.sessions[sid], "messages": [], "seq": 0})

    def on_session_list(self, request_id: Any, params: dict[str, Any]) -> None:
        self.result(request_id, {"sessions": list(reversed(self.sessions.values()))})

    def on_session_delete(self, request_id: Any, params: dict[str, Any]) -> None:
        self.sessions.pop(params.get("sessionId", ""), None)
        self.result(request_id, {})

    def on_session_context(self, request_id: Any, params: dict[str, Any]) -> None:
        sid = params.get("sessionId", "")
        if sid not in self.sessions:
            self.error(request_id, self.unknown_session, f"unknown session: {sid}")
            return
        text_part = {
            "id": "prt_c1",
            "messageId": "msg_c1",
            "sessionId": sid,
            "type": "text",
            "text": "What does the function parse_header do with a missing colon?",
        }
        answer_part = {
            "id": "prt_c2",
            "messageId": "msg_c2",
            "sessionId": sid,
            "type": "text",
            "text": "It raises.",
        }
        self.result(
            request_id,
            {
                "sessionId": sid,
                "messages": [
                    {"role": "user", "messageId": "msg_c1", "tokens": 15, "parts": [text_part]},
                    {
                        "role": "assistant",
                        "messageId": "msg_c2",
                        "tokens": 3,
                        "parts": [answer_part],
                    },
                ],
                "tokens": 18,
                "usable": 12_000,
                "contextLimit": 16_000,
                "outputLimit": 4_000,
            },
        )

    def on_session_compact(self, request_id: Any, params: dict[str, Any]) -> None:
        self.result(
            request_id,
            {
                "markerId": "msg_marker1",
                "created": True,
                "status": "completed",
                "summaryMessageId": "msg_summary1",
            },
        )

    # -- prompts ------------------------------------------------------------------------------

    def delta(self, sid: str, message_id: str, text: str) -> None:
        self.notify(
            "session/delta",
            {
                "sessionId": sid,
                "messageId": message_id,
                "partId": message_id.replace("msg", "prt"),
                "field": "text",
                "delta": text,
            },
        )

    def compaction(self, sid: str, status: str) -> None:
        data: dict[str, Any] = {
            "markerId": "msg_marker1",
            "status": status,
            "auto": True,
            "overflow": False,
        }
        if status == "completed":
            data["summaryMessageId"] = "msg_summary1"
        self.notify(
            "session/sync",
            {"seq": self.counter, "sessionId": sid, "type": "compaction.updated", "data": data},
        )

    def on_session_prompt(self, request_id: Any, params: dict[str, Any]) -> None:
        sid = params.get("sessionId", "")
        if sid not in self.sessions:
            self.error(request_id, self.unknown_session, f"unknown session: {sid}")
            return
        text = "".join(p.get("text", "") for p in params.get("prompt", []))
        if not self.sessions[sid]["title"]:  # as the server does: titled by the first prompt
            self.sessions[sid]["title"] = " ".join(text.split())[:60]
        message_id = self.next_id("msg")
        self.notify("session/status", {"sessionId": sid, "status": "busy"})
        if "wait" in text or "stubborn" in text:
            self.delta(sid, message_id, "Working")
            self.held_prompts[sid] = (request_id, message_id, "stubborn" in text)
            return
        if "rich" in text:
            self.rich_turn(sid, text, message_id)
            self.result(request_id, {"stopReason": "end_turn", "messageId": message_id})
            return
        if "fail" in text:
            self.result(
                request_id,
                {
                    "stopReason": "error",
                    "messageId": message_id,
                    "error": {"name": "ProviderError", "message": "boom"},
                },
            )
            return
        reply = f"Echo: {text}"
        third = len(reply) // 3
        for piece in (reply[:third], reply[third : 2 * third], reply[2 * third :]):
            self.delta(sid, message_id, piece)
        if "compact" in text:
            self.compaction(sid, "pending")
            self.compaction(sid, "completed")
        self.notify("session/status", {"sessionId": sid, "status": "idle"})
        self.result(request_id, {"stopReason": "end_turn", "messageId": message_id})

    def sync(self, sid: str, kind: str, data: dict[str, Any]) -> None:
        self.notify(
            "session/sync", {"seq": self.counter, "sessionId": sid, "type": kind, "data": data}
        )

    def rich_turn(self, sid: str, text: str, message_id: str) -> None:
        """Everything a real turn may send that is not the answer, around two answer parts."""
        user_id, summary_id, second_id = (self.next_id("msg") for _ in range(3))

        def info(mid: str, role: str, **extra: Any) -> dict[str, Any]:
            return {
                "id": mid,
                "sessionId": sid,
                "role": role,
                "kind": "normal",
                "time": {"created": NOW_MS},
                **extra,
            }

        def part(pid: str, mid: str, kind: str, **body: Any) -> dict[str, Any]:
            return {"id": pid, "messageId": mid, "sessionId": sid, "type": kind, **body}

        self.sync(sid, "message.updated", info(user_id, "user"))
        self.sync(sid, "message.part.updated", part("prt_u", user_id, "text", text=text))
        self.sync(sid, "message.updated", info(message_id, "assistant"))
        self.notify(
            "session/delta",
            {
                "sessionId": sid,
                "messageId": message_id,
                "partId": "prt_r",
                "partType": "reasoning",
                "field": "text",
                "delta": "thinking...",
            },
        )
        self.sync(sid, "message.part.updated", part("prt_a", message_id, "text", text="Part "))
        self.notify(
            "session/delta",
            {
                "sessionId": sid,
                "messageId": message_id,
                "partId": "prt_a",
                "partType": "text",
                "field": "text",
                "delta": "one",
            },
        )
        self.sync(sid, "message.part.updated", part("prt_a", message_id, "text", text="Part one"))
        self.sync(
            sid,
            "message.part.updated",
            part(
                "prt_t",
                message_id,
                "tool",
                callId="c1",
                tool="read",
                state={"status": "completed", "input": {}, "output": "x", "title": "a.py"},
            ),
        )
        self.sync(
            sid,
            "message.updated",
            info(summary_id, "assistant", summary=True, parentId="msg_marker1"),
        )
        self.notify(
            "session/delta",
            {
                "sessionId": sid,
                "messageId": summary_id,
                "partId": "prt_s",
                "field": "text",
                "delta": "SUMMARY",
            },
        )
        self.notify(
            "session/delta",
            {
                "sessionId": "ses_other",
                "messageId": "msg_x",
                "partId": "prt_x",
                "field": "text",
                "delta": "OTHER",
            },
        )
        self.sync(sid, "message.updated", info(second_id, "assistant"))
        self.sync(sid, "message.part.updated", part("prt_b", second_id, "text", text="Part two"))

    def on_session_cancel(self, request_id: Any, params: dict[str, Any]) -> None:
        self.cancel(params)
        self.result(request_id, None)

    def cancel(self, params: dict[str, Any]) -> None:
        held = self.held_prompts.get(params.get("sessionId", ""))
        if held is None:
            return
        request_id, message_id, stubborn = held
        sid = params["sessionId"]
        if stubborn:
            self.delta(sid, message_id, " still")
            return
        del self.held_prompts[sid]
        self.result(request_id, {"stopReason": "cancelled", "messageId": message_id})

    # -- test helpers -------------------------------------------------------------------------

    def on_test_echo(self, request_id: Any, params: Any) -> None:
        self.result(request_id, params)

    def on_test_notify(self, request_id: Any, params: dict[str, Any]) -> None:
        for i in range(int(params.get("count", 0))):
            self.notify("test/event", {"i": i})
        self.result(request_id, {})

    def on_test_error(self, request_id: Any, params: dict[str, Any]) -> None:
        self.error(request_id, params["code"], params["message"], params.get("data"))

    def on_test_exit(self, request_id: Any, params: dict[str, Any]) -> None:
        sys.stdout.flush()
        sys.exit(int(params.get("code", 3)))

    def on_test_hang(self, request_id: Any, params: dict[str, Any]) -> None:
        return

    def on_test_stderr(self, request_id: Any, params: dict[str, Any]) -> None:
        sys.stderr.write(params.get("text", "") + "\n")
        sys.stderr.flush()
        self.result(request_id, {})

    def on_test_serverRequest(self, request_id: Any, params: dict[str, Any]) -> None:
        self.server_request_ids += 1
        server_id = f"srv-{self.server_request_ids}"
        self.awaiting_client[server_id] = request_id
        self.send({"id": server_id, "method": params["method"], "params": params.get("params")})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log")
    parser.add_argument("--exit-on-start", type=int)
    parser.add_argument("--stderr-on-start", default="")
    parser.add_argument("--unknown-session-code", type=int, default=UNKNOWN_SESSION)
    args, _ = parser.parse_known_args()
    if args.stderr_on_start:
        sys.stderr.write(args.stderr_on_start + "\n")
        sys.stderr.flush()
    if args.exit_on_start is not None:
        return int(args.exit_on_start)
    log = open(args.log, "a", encoding="utf-8") if args.log else None  # noqa: SIM115
    fake = FakeSidecar(sys.stdout.buffer, log, args.unknown_session_code)
    while True:
        body = read_frame(sys.stdin.buffer)
        if body is None:
            return 0
        fake.handle_body(body)


if __name__ == "__main__":
    sys.exit(main())
