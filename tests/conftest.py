from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakeprovider.summarizer import ScriptedSummarizer
from server.compaction import CompactionEngine, CompactionSettings
from server.tokens import ModelLimits
from store import Store
from tests.support import FakeClock

# A small model so that tests reach the window with little text: usable = 16 000 - 4 000.
LIMITS = ModelLimits(context=16_000, output=4_000)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed_store(db_path: Path, clock: FakeClock) -> Iterator[Store]:
    """A store whose clock moves only when the test moves ``clock.now``."""
    s = Store(db_path, clock=clock)
    yield s
    s.close()


@pytest.fixture
def summarizer() -> ScriptedSummarizer:
    return ScriptedSummarizer()


@pytest.fixture
def settings() -> CompactionSettings:
    return CompactionSettings(limits=LIMITS)


@pytest.fixture
def engine(
    store: Store, summarizer: ScriptedSummarizer, settings: CompactionSettings
) -> CompactionEngine:
    return CompactionEngine(store, summarizer, settings)
