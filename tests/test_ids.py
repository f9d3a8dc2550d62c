"""Ids (store/ids.py): time-ordered, strictly increasing in a process, unique across processes."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from store import ids
from store.ids import new_id, parse, time_of

ROOT = Path(__file__).resolve().parent.parent

# A child that makes ids once released through stdin. argv: count, frozen-ms (0: real clock).
ID_CHILD = """
import sys, types
from store import ids
count, frozen = int(sys.argv[1]), int(sys.argv[2])
if frozen:
    ids.time = types.SimpleNamespace(time_ns=lambda: frozen * 1_000_000)
print("ready", flush=True)
sys.stdin.readline()
made = [ids.new_id("msg") for _ in range(count)]
sys.stdout.write("\\n".join(made) + "\\n")
"""


@pytest.fixture
def restore_id_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that push the process's id clock around put it back afterwards."""
    monkeypatch.setattr(ids, "_last", ids._last)


def frozen_clock(monkeypatch: pytest.MonkeyPatch, ms: int) -> None:
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: ms * 1_000_000))


def test_id_shape_is_prefix_time_counter_random() -> None:
    id_ = new_id("ses")
    prefix, body = id_.split("_", 1)
    assert prefix == "ses"
    assert len(body) == 12 + 4 + 8
    int(body, 16)  # all hex
    assert body == body.lower()


def test_id_carries_its_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    id_ = new_id("msg")
    after = time.time_ns() // 1_000_000
    assert before <= time_of(id_) <= after


def test_ids_made_later_sort_after_earlier_ones() -> None:
    made = [new_id("msg") for _ in range(2_000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    times = [time_of(i) for i in made]
    assert times == sorted(times)


def test_thousands_of_ids_in_one_millisecond_are_strictly_increasing(
    monkeypatch: pytest.MonkeyPatch, restore_id_state: None
) -> None:
    now = time.time_ns() // 1_000_000
    frozen_clock(monkeypatch, now)
    made = [new_id("msg") for _ in range(70_000)]  # more than the 16-bit counter holds
    assert all(a < b for a, b in itertools.pairwise(made))
    stamps = [parse(i) for i in made]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert stamps[0][0] == now


def test_ids_keep_increasing_when_the_wall_clock_goes_backwards(
    monkeypatch: pytest.MonkeyPatch, restore_id_state: None
) -> None:
    now = time.time_ns() // 1_000_000
    frozen_clock(monkeypatch, now)
    first = new_id("msg")
    frozen_clock(monkeypatch, now - 60_000)
    second = new_id("msg")
    assert second > first


def test_new_id_after_a_future_id_sorts_after_it(restore_id_state: None) -> None:
    future_ms = time.time_ns() // 1_000_000 + 3_600_000
    future = f"msg_{future_ms:012x}{0:04x}deadbeef"
    made = new_id("msg", after=future)
    assert made > future
    assert parse(made) > parse(future)
    # and the process never goes back behind it
    assert new_id("msg") > made


def test_new_id_after_a_future_id_with_a_full_counter_moves_to_the_next_millisecond(
    restore_id_state: None,
) -> None:
    future_ms = time.time_ns() // 1_000_000 + 3_600_000
    future = f"msg_{future_ms:012x}{0xFFFF:04x}00000000"
    made = new_id("msg", after=future)
    assert made > future
    assert parse(made) == (future_ms + 1, 0)


def test_new_id_after_an_old_id_is_just_a_new_id() -> None:
    old = "msg_" + "0" * 24
    made = new_id("msg", after=old)
    assert made > old
    assert abs(time_of(made) - time.time_ns() // 1_000_000) < 60_000


def _make_ids_in_two_processes(count: int, frozen_ms: int) -> list[list[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ID_CHILD, str(count), str(frozen_ms)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:  # release both together
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=30)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0]
    return [out.split() for out in outs]


def test_ids_made_concurrently_in_two_processes_are_unique() -> None:
    a, b = _make_ids_in_two_processes(5_000, 0)
    assert len(a) == len(b) == 5_000
    assert a == sorted(a)
    assert b == sorted(b)
    assert len(set(a) | set(b)) == 10_000


def test_ids_from_two_processes_with_identical_clocks_are_unique() -> None:
    # Both children make exactly the same (millisecond, counter) stamps; only the random tail
    # can keep their ids apart.
    now = time.time_ns() // 1_000_000
    a, b = _make_ids_in_two_processes(5_000, now)
    assert [parse(i) for i in a] == [parse(i) for i in b]
    assert len(set(a) | set(b)) == 10_000
