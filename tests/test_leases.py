"""Runner leases (store/leases.py): who may run a session, and when a lease may be taken over."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import RunnerId, Store
from store.ids import new_id
from store.leases import HOST, pid_alive
from tests.support import FakeClock

TIMEOUT_MS = 10_000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(5_000_000)


@pytest.fixture
def leases(db_path: Path, clock: FakeClock) -> Iterator[Store]:
    s = Store(db_path, clock=clock, lease_timeout_ms=TIMEOUT_MS)
    yield s
    s.close()


@pytest.fixture
def sid(leases: Store) -> str:
    with leases.write() as tx:
        return tx.create_session("leased").id


def acquire(store: Store, session_id: str, runner: RunnerId) -> bool:
    with store.write() as tx:
        return tx.acquire_lease(session_id, runner)


def heartbeat(store: Store, session_id: str, runner: RunnerId) -> bool:
    with store.write() as tx:
        return tx.heartbeat(session_id, runner)


def holder(store: Store, session_id: str) -> str | None:
    with store.read() as tx:
        lease = tx.get_lease(session_id)
    return lease.owner if lease else None


def reaped_child_pid() -> int:
    """The pid of a child process that has exited and been reaped: no such process now."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def zombie() -> Iterator[int]:
    """The pid of a child process that has exited but is not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # wait for the exit, do not reap
    yield child.pid
    child.wait()


def test_acquire_a_free_session(leases: Store, sid: str, clock: FakeClock) -> None:
    me = RunnerId.fresh()
    assert acquire(leases, sid, me)
    with leases.read() as tx:
        lease = tx.get_lease(sid)
        assert tx.holds_lease(sid, me)
    assert lease is not None
    assert (lease.owner, lease.host, lease.pid) == (me.owner, HOST, os.getpid())
    assert lease.acquired_at == lease.heartbeat_at == clock.now


def test_live_other_owner_blocks_acquire(leases: Store, sid: str) -> None:
    first, second = RunnerId.fresh(), RunnerId.fresh()
    assert acquire(leases, sid, first)
    assert not acquire(leases, sid, second)
    assert holder(leases, sid) == first.owner
    with leases.read() as tx:
        assert not tx.holds_lease(sid, second)


def test_same_owner_reacquires_and_keeps_its_acquired_time(
    leases: Store, sid: str, clock: FakeClock
) -> None:
    me = RunnerId.fresh()
    assert acquire(leases, sid, me)
    started = clock.now
    clock.now += TIMEOUT_MS * 3  # even a stale lease of its own
    assert acquire(leases, sid, me)
    with leases.read() as tx:
        lease = tx.get_lease(sid)
    assert lease is not None
    assert lease.acquired_at == started
    assert lease.heartbeat_at == clock.now


def test_lease_of_a_process_that_is_gone_is_taken_over(leases: Store, sid: str) -> None:
    dead = RunnerId(owner=new_id("run"), host=HOST, pid=reaped_child_pid())
    assert not pid_alive(dead.pid)
    assert acquire(leases, sid, dead)
    me = RunnerId.fresh()
    assert acquire(leases, sid, me)
    assert holder(leases, sid) == me.owner


def test_lease_of_a_zombie_process_is_taken_over(leases: Store, sid: str, zombie: int) -> None:
    with open(f"/proc/{zombie}/stat", encoding="ascii") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] == "Z"  # it exists, as a zombie
    dead = RunnerId(owner=new_id("run"), host=HOST, pid=zombie)
    assert acquire(leases, sid, dead)
    me = RunnerId.fresh()
    assert acquire(leases, sid, me)
    assert holder(leases, sid) == me.owner


def test_lease_on_another_host_is_not_judged_by_local_pids(leases: Store, sid: str) -> None:
    remote = RunnerId(owner=new_id("run"), host=HOST + "-elsewhere", pid=reaped_child_pid())
    assert acquire(leases, sid, remote)
    assert not acquire(leases, sid, RunnerId.fresh())
    assert holder(leases, sid) == remote.owner


def test_lease_without_heartbeat_expires_after_the_timeout(
    leases: Store, sid: str, clock: FakeClock
) -> None:
    first, second = RunnerId.fresh(), RunnerId.fresh()
    assert acquire(leases, sid, first)
    clock.now += TIMEOUT_MS - 1
    assert not acquire(leases, sid, second)
    clock.now += 2
    assert acquire(leases, sid, second)
    assert holder(leases, sid) == second.owner
    with leases.read() as tx:
        lease = tx.get_lease(sid)
    assert lease is not None
    assert lease.acquired_at == clock.now  # a new lease, not the old one's time


def test_heartbeat_keeps_the_lease_alive(leases: Store, sid: str, clock: FakeClock) -> None:
    first, second = RunnerId.fresh(), RunnerId.fresh()
    assert acquire(leases, sid, first)
    for _ in range(5):
        clock.now += TIMEOUT_MS - 1
        assert heartbeat(leases, sid, first)
        assert not acquire(leases, sid, second)
    with leases.read() as tx:
        lease = tx.get_lease(sid)
    assert lease is not None
    assert lease.heartbeat_at == clock.now


def test_heartbeat_returns_false_after_takeover(leases: Store, sid: str, clock: FakeClock) -> None:
    first, second = RunnerId.fresh(), RunnerId.fresh()
    assert acquire(leases, sid, first)
    clock.now += TIMEOUT_MS + 1
    assert acquire(leases, sid, second)
    assert not heartbeat(leases, sid, first)
    assert heartbeat(leases, sid, second)
    with leases.read() as tx:
        assert not tx.holds_lease(sid, first)
        assert tx.holds_lease(sid, second)


def test_heartbeat_without_a_lease_returns_false(leases: Store, sid: str) -> None:
    assert not heartbeat(leases, sid, RunnerId.fresh())
    assert holder(leases, sid) is None


def test_release_only_by_the_owner(leases: Store, sid: str) -> None:
    owner, other = RunnerId.fresh(), RunnerId.fresh()
    assert acquire(leases, sid, owner)
    with leases.write() as tx:
        tx.release_lease(sid, other)
    assert holder(leases, sid) == owner.owner
    with leases.write() as tx:
        tx.release_lease(sid, owner)
    assert holder(leases, sid) is None
    assert acquire(leases, sid, other)  # free again


def test_released_lease_of_the_previous_owner_does_not_remove_the_new_one(
    leases: Store, sid: str, clock: FakeClock
) -> None:
    first, second = RunnerId.fresh(), RunnerId.fresh()
    assert acquire(leases, sid, first)
    clock.now += TIMEOUT_MS + 1
    assert acquire(leases, sid, second)
    with leases.write() as tx:
        tx.release_lease(sid, first)
    assert holder(leases, sid) == second.owner


def test_deleting_the_session_deletes_its_lease(leases: Store, sid: str) -> None:
    me = RunnerId.fresh()
    assert acquire(leases, sid, me)
    with leases.write() as tx:
        tx.delete_session(sid)
    with leases.read() as tx:
        assert tx.get_lease(sid) is None
        row = tx._row("SELECT count(*) FROM lease WHERE session_id = ?", (sid,))
    assert row == (0,)
    assert not heartbeat(leases, sid, me)


def test_leases_are_per_session(leases: Store, sid: str) -> None:
    with leases.write() as tx:
        other_sid = tx.create_session("other").id
    first, second = RunnerId.fresh(), RunnerId.fresh()
    assert acquire(leases, sid, first)
    assert acquire(leases, other_sid, second)
    assert holder(leases, sid) == first.owner
    assert holder(leases, other_sid) == second.owner
