"""The Sidecar and the sync pump without a server: start-up recovery and gap-free following."""

from __future__ import annotations

from pathlib import Path

from server.config import load_config
from server.service import Sidecar
from server.sync import SyncPump
from server.turn import SessionStatus
from store import RunnerId, Store
from store.ids import new_id
from store.leases import HOST
from store.models import Event, TextPart
from tests.support import add_prompt, new_session
from tests.test_leases import reaped_child_pid


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.statuses: list[SessionStatus] = []

    def event(self, event: Event) -> None:
        self.events.append(event)

    def delta(
        self, session_id: str, message_id: str, part_id: str, part_type: str, delta: str
    ) -> None:
        pass

    def status(self, status: SessionStatus) -> None:
        self.statuses.append(status)


def test_start_up_recovery_closes_what_a_dead_runner_left(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = Store(db)
    sid = new_session(store)
    prompt = add_prompt(store, sid, "question")
    dead = RunnerId(owner=new_id("run"), host=HOST, pid=reaped_child_pid())
    with store.write() as tx:
        assert tx.acquire_lease(sid, dead)
        reply = tx.add_message(sid, "reply", parent_id=prompt.id, runner=dead.owner)
        tx.put_part(reply.id, TextPart("half an ans"))
    store.close()

    config = load_config(config_path=None, env={}, db_override=str(db))
    sidecar = Sidecar(config, Recorder())
    try:
        assert sidecar.recover_all() == 1
        with sidecar.store.read() as tx:
            closed = tx.require_message(reply.id)
            lease = tx.get_lease(sid)
        assert closed.error is not None and closed.error.name == "Interrupted"
        assert lease is None
        with sidecar.store.read() as tx:
            assert tx.sessions_to_recover() == []
    finally:
        sidecar.close()


def test_following_late_backfills_what_the_pump_already_passed(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    sent: list[Event] = []
    pump = SyncPump(store, sent.append)
    try:
        with store.read() as tx:
            before = tx.last_seq()
        sid = new_session(store)
        add_prompt(store, sid, "one")  # committed while nobody follows the session
        assert sent == []
        pump.follow(sid, after=before)
        add_prompt(store, sid, "two")
        pump.catch_up()
        with store.read() as tx:
            expected = [e.seq for e in tx.events_after(before, sid)]
        assert [e.seq for e in sent] == expected  # all of them, in order, once each
        assert sent[0].type == "session.created"
    finally:
        pump.stop()
        store.close()


def test_following_from_a_loaded_cursor_skips_what_the_client_has(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    sent: list[Event] = []
    pump = SyncPump(store, sent.append)
    try:
        sid = new_session(store)
        add_prompt(store, sid, "already loaded")
        with store.read() as tx:
            cursor = tx.last_seq()
        pump.follow(sid, after=cursor)
        add_prompt(store, sid, "new")
        assert sent and all(e.seq > cursor for e in sent)
        assert [e.seq for e in sent] == sorted({e.seq for e in sent})
    finally:
        pump.stop()
        store.close()
