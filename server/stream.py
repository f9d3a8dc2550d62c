"""One model answer, streamed: deltas to the client at once, durable text at most every interval.

``StepSink`` is what a provider streams into during one step of a turn. Each delta goes to the
client as soon as it arrives; the stored text part is appended to at most every
``interval_s`` (and when the provider falls silent, so a stalled stream never leaves shown
text unsaved), each write fenced by the session's lease. The trap: ids sort in creation order
and clients order parts by id, so the reasoning part's id is taken before the text's.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from server.ownership import Ownership, tick
from server.providers.base import RetryNotice, ToolCall
from store import Store
from store.ids import new_id
from store.models import Message, ReasoningPart, TextPart, TokenUsage

log = logging.getLogger(__name__)

# a session's state, as clients see it; "waiting": a turn waits for a permission answer
Status = Literal["idle", "busy", "compacting", "retry", "waiting"]


class StreamReport(Protocol):
    """Where the sink reports: the turn's status port."""

    def status(
        self,
        status: Literal["idle", "busy", "compacting", "retry"],
        notice: RetryNotice | None = None,
    ) -> None: ...

    def delta(self, message_id: str, part_id: str, part_type: str, delta: str) -> None: ...


@dataclass(frozen=True)
class Step:
    reply_id: str
    finish: str
    usage: TokenUsage | None
    tool_calls: tuple[tuple[str, ToolCall], ...]


class StepSink:
    """Streams deltas to the listener at once and makes them durable at most every interval."""

    def __init__(
        self,
        session_id: str,
        reply: Message,
        *,
        store: Store,
        ownership: Ownership,
        report: StreamReport,
        interval_s: float,
    ) -> None:
        self.session_id = session_id
        self.reply = reply
        self.store = store
        self.ownership = ownership
        self.report = report
        self.interval_s = interval_s
        # Ids sort in creation order and clients order parts by id: reasoning comes before the
        # answer it leads to.
        self.reasoning_id = new_id("prt")
        self.text_id = new_id("prt")
        self.text_chunks: list[str] = []
        self.reasoning_chunks: list[str] = []
        self.text_stored = 0  # characters already written (and announced) durably
        self.reasoning_stored = 0
        self.last_flush = time.monotonic()
        self.dirty = False
        self.retrying = False
        self._flush_lock = threading.Lock()  # the runner thread and the silence flusher

    def flushing_while_silent(self) -> AbstractContextManager[None]:
        """Also write streamed text when the provider goes quiet: writes happen on the next
        chunk otherwise, so a stalled stream would leave what was shown unsaved."""
        return tick(self.interval_s, self._flush_if_silent, "flush-while-silent")

    def _flush_if_silent(self) -> bool:
        if self.dirty and time.monotonic() - self.last_flush >= self.interval_s:
            try:
                self.flush()
            except Exception:  # the runner's own writes report the failure
                log.debug("background flush failed", exc_info=True)
        return True

    def _emit(self, part_id: str, part_type: str, delta: str) -> None:
        if self.retrying:
            self.retrying = False
            self.report.status("busy")
        self.report.delta(self.reply.id, part_id, part_type, delta)
        self.dirty = True
        if time.monotonic() - self.last_flush >= self.interval_s:
            self.flush()

    def text(self, delta: str) -> None:
        if delta:
            self.text_chunks.append(delta)
            self._emit(self.text_id, "text", delta)

    def reasoning(self, delta: str) -> None:
        if delta:
            self.reasoning_chunks.append(delta)
            self._emit(self.reasoning_id, "reasoning", delta)

    def retry(self, notice: RetryNotice) -> None:
        self.retrying = True
        self.report.status("retry", notice)

    def flush(self) -> None:
        """Write what has streamed so far (fenced by the lease)."""
        with self._flush_lock:
            if not self.dirty:
                return
            self.dirty = False  # a chunk arriving during the write sets it again
            reasoning = "".join(self.reasoning_chunks)
            text = "".join(self.text_chunks)
            try:
                with self.store.write() as tx:
                    self.ownership.fence(tx, self.session_id)
                    if len(reasoning) > self.reasoning_stored:
                        body = ReasoningPart(reasoning)
                        start = self.reasoning_stored
                        tx.append_part_text(self.reply.id, body, self.reasoning_id, start)
                    if len(text) > self.text_stored:
                        body_t = TextPart(text)
                        tx.append_part_text(self.reply.id, body_t, self.text_id, self.text_stored)
            except BaseException:
                self.dirty = True
                raise
            self.reasoning_stored, self.text_stored = len(reasoning), len(text)
            self.last_flush = time.monotonic()
