"""SQL for runner leases, and the rule for when a lease's owner counts as dead."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from store.base import Row, TxBase
from store.ids import new_id
from store.models import Lease

HOST = socket.gethostname()


@dataclass(frozen=True)
class RunnerId:
    """Who runs a session: a process on a host, and a unique owner id within it."""

    owner: str
    host: str
    pid: int

    @staticmethod
    def fresh() -> RunnerId:
        """A new owner id for this process."""
        return RunnerId(owner=new_id("run"), host=HOST, pid=os.getpid())


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _lease(row: Row) -> Lease:
    return Lease(*row)


_COLS = "session_id, owner, host, pid, acquired_at, heartbeat_at"


class LeaseOps(TxBase):
    def get_lease(self, session_id: str) -> Lease | None:
        row = self._row(f"SELECT {_COLS} FROM lease WHERE session_id = ?", (session_id,))
        return _lease(row) if row else None

    def lease_is_live(self, lease: Lease) -> bool:
        """Live unless its process is gone from this host or it stopped heartbeating."""
        if lease.host == HOST and not pid_alive(lease.pid):
            return False
        return self.now() - lease.heartbeat_at < self.lease_timeout_ms

    def acquire_lease(self, session_id: str, runner: RunnerId) -> bool:
        """Claim the session for ``runner`` unless a live other runner holds it."""
        current = self.get_lease(session_id)
        now = self.now()
        if current is not None and current.owner != runner.owner and self.lease_is_live(current):
            return False
        acquired = current.acquired_at if current and current.owner == runner.owner else now
        self._exec(
            f"INSERT OR REPLACE INTO lease ({_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, runner.owner, runner.host, runner.pid, acquired, now),
        )
        return True

    def holds_lease(self, session_id: str, runner: RunnerId) -> bool:
        lease = self.get_lease(session_id)
        return lease is not None and lease.owner == runner.owner

    def heartbeat(self, session_id: str, runner: RunnerId) -> bool:
        """Refresh the lease; False when ``runner`` no longer holds it."""
        changed = self._exec(
            "UPDATE lease SET heartbeat_at = ? WHERE session_id = ? AND owner = ?",
            (self.now(), session_id, runner.owner),
        )
        return changed == 1

    def release_lease(self, session_id: str, runner: RunnerId) -> None:
        self._exec(
            "DELETE FROM lease WHERE session_id = ? AND owner = ?", (session_id, runner.owner)
        )
