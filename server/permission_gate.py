"""Asking the user before a tool call runs: the questions, the clients that answer them, the wait.

A turn that the rules (server/permissions.py) say must ask calls :meth:`PermissionGate.ask`. The
question is written to the store (``permission_request``, event ``permission.asked``), sent to this
process's client as ``session/requestPermission`` when that client declared
``capabilities.experimental.sessionlsp.permissions``, and the turn's runner thread then waits with
no transaction open (the lease heartbeat keeps running) until the question is settled:

* by this process's client: :meth:`PermissionGate.answer`;
* by a client of another server process following the session: that process saw
  ``permission.asked`` through its sync pump (:meth:`PermissionGate.observe`), asked its own
  client, and wrote the answer; its ``permission.replied`` event reaches this process's pump;
* by ``session/cancel`` or the loss of the lease: the turn settles it as cancelled itself.

The first answer wins (``Tx.answer_permission`` settles only an open question, in one IMMEDIATE
transaction); every follower sees ``permission.replied``, so other clients dismiss the question.

Who can answer: the asking process asks only when its own client declared the capability; when
it did not, the call fails at once with :data:`NO_CLIENT`, even if an editor connected to another
process could have answered. This is the simple sound rule: the asker knows its own client, and
it never waits on a question nobody may see. Other processes' capable clients are asked as well,
in addition.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, cast

from store import Store
from store.models import Event, Json, PermissionOption, PermissionRequest

log = logging.getLogger(__name__)

NO_CLIENT = "permission required: no client can answer"
REJECTED = "rejected by the user"
CANCELLED = "permission request cancelled before it was answered"

Answer = Literal["once", "always", "reject", "cancelled", "unavailable"]

OPTIONS: tuple[Json, ...] = (
    {"optionId": "once", "kind": "allow_once", "name": "Allow once"},
    {"optionId": "always", "kind": "allow_always", "name": "Always allow"},
    {"optionId": "reject", "kind": "reject_once", "name": "Reject"},
)
POLL_S = 0.1  # longest wait between looks at the cancel tokens and the question's row


class PermissionClient(Protocol):
    """The client of this process, as the gate sees it (the LSP front end implements it)."""

    def can_answer_permissions(self) -> bool: ...

    def request_permission(
        self, params: Json, answered: Callable[[PermissionOption | None], None]
    ) -> None:
        """Send ``session/requestPermission`` without blocking; call ``answered`` with the
        option chosen (None: cancelled or failed) from any thread."""
        ...


class Stop(Protocol):
    def is_set(self) -> bool: ...


def request_params(question: PermissionRequest) -> Json:
    """The ``session/requestPermission`` params for a stored question."""
    tool_call: Json = {
        "toolCallId": question.call_id,
        "tool": question.tool,
        "title": question.title,
        "input": question.input,
    }
    if question.diff is not None:
        tool_call["diff"] = question.diff
    return {
        "sessionId": question.session_id,
        "permissionId": question.id,
        "toolCall": tool_call,
        "options": [dict(o) for o in OPTIONS],
    }


def parse_answer(result: object) -> PermissionOption | None:
    """The option a ``session/requestPermission`` result selected; None when it was cancelled
    or is not understood (never read as an approval)."""
    if not isinstance(result, dict):
        return None
    outcome = result.get("outcome")
    if not isinstance(outcome, dict) or outcome.get("outcome") != "selected":
        return None
    option = outcome.get("optionId")
    if option in ("once", "always", "reject"):
        return cast(PermissionOption, option)
    return None


@dataclass(frozen=True)
class Question:
    session_id: str
    message_id: str
    part_id: str
    call_id: str
    tool: str
    title: str
    input: Json
    diff: str | None


class PermissionGate:
    """One per server process: the questions its turns wait on, and its client."""

    def __init__(
        self, store: Store, runner_id: str, follows: Callable[[str], bool] = lambda _: True
    ) -> None:
        self.store = store
        self.runner_id = runner_id
        self.follows = follows  # whether this process's client follows a session
        self.client: PermissionClient | None = None
        self._waiting: dict[str, threading.Event] = {}
        self._guard = threading.Lock()

    def can_ask(self) -> bool:
        client = self.client
        return client is not None and client.can_answer_permissions()

    def ask(self, question: Question, *stops: Stop) -> Answer:
        """Ask, and wait until the question is settled or one of ``stops`` is set."""
        if not self.can_ask():
            return "unavailable"
        with self.store.write() as tx:
            asked = tx.ask_permission(
                question.session_id,
                message_id=question.message_id,
                part_id=question.part_id,
                call_id=question.call_id,
                tool=question.tool,
                title=question.title,
                input=question.input,
                diff=question.diff,
                origin=self.runner_id,
            )
        wake = threading.Event()
        with self._guard:
            self._waiting[asked.id] = wake
        try:
            self._send(asked)
            return self._wait(asked.id, wake, stops)
        finally:
            with self._guard:
                self._waiting.pop(asked.id, None)

    def _wait(self, request_id: str, wake: threading.Event, stops: tuple[Stop, ...]) -> Answer:
        while True:
            with self.store.read() as tx:  # a snapshot, closed before the wait
                current = tx.get_permission_request(request_id)
            if current is None:  # the session was deleted
                return "cancelled"
            if current.status == "answered" and current.option_id is not None:
                return current.option_id
            if current.status == "cancelled":
                return "cancelled"
            if any(s.is_set() for s in stops):
                with self.store.write() as tx:
                    settled, _ = tx.answer_permission(request_id, None, "cancel")
                if settled.status == "answered" and settled.option_id is not None:
                    log.debug("question %s was answered as the turn stopped", request_id)
                return "cancelled"
            wake.wait(POLL_S)
            wake.clear()

    def answer(self, request_id: str, option: PermissionOption | None) -> bool:
        """Write this process's client's answer; True when it is the one that settled it."""
        with self.store.write() as tx:
            _, won = tx.answer_permission(request_id, option, self.runner_id)
        self._wake(request_id)
        return won

    def observe(self, event: Event) -> None:
        """Every outbox event, from any process (the sync pump's observer; must not block)."""
        if event.type == "permission.replied":
            self._wake(str(event.data.get("id")))
        elif event.type == "permission.asked" and event.data.get("origin") != self.runner_id:
            if event.session_id is None or not self.follows(event.session_id):
                return
            client = self.client
            if client is None or not client.can_answer_permissions():
                return
            with self.store.read() as tx:
                question = tx.get_permission_request(str(event.data.get("id")))
            if question is not None and question.status == "open":
                self._send(question)

    def _send(self, question: PermissionRequest) -> None:
        client = self.client
        if client is None:
            return

        def answered(option: PermissionOption | None) -> None:
            try:
                self.answer(question.id, option)
            except Exception:
                log.exception("could not store the answer to %s", question.id)

        client.request_permission(request_params(question), answered)

    def _wake(self, request_id: str) -> None:
        with self._guard:
            wake = self._waiting.get(request_id)
        if wake is not None:
            wake.set()
