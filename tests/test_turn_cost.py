"""What every turn reads before it starts must not grow with the session's history."""

from __future__ import annotations

from pathlib import Path

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import CompactionEngine, CompactionSettings
from store import Store
from tests.conftest import LIMITS
from tests.support import add_turn, new_session


def _recovery_steps(tmp_path: Path, turns: int) -> tuple[int, list[str]]:
    """SQLite VM steps of the recovery a turn runs first, and the plans of its SELECTs."""
    store = Store(tmp_path / f"history-{turns}.db")
    try:
        sid = new_session(store)
        for i in range(turns):
            add_turn(store, sid, f"question {i}", f"answer {i}")
        engine = CompactionEngine(store, ScriptedSummarizer(), CompactionSettings(LIMITS))
        engine.recover(sid)  # warm: the first call may create the lease row
        with store.profile() as statements:
            engine.recover(sid)
        plans: list[str] = []
        with store.read() as tx:
            for s in statements:
                if s.sql.startswith("SELECT"):
                    plans += tx.explain(s.sql, ("x",) * s.sql.count("?"))
        return sum(s.vm_steps for s in statements), plans
    finally:
        store.close()


def test_the_recovery_at_the_start_of_each_turn_does_not_read_the_history(
    tmp_path: Path,
) -> None:
    small, _ = _recovery_steps(tmp_path, 100)
    large, plans = _recovery_steps(tmp_path, 1_000)
    assert not [p for p in plans if "SCAN" in p], plans
    # SQLite's count of virtual-machine steps: the same work for 10x the history.
    assert large == small
