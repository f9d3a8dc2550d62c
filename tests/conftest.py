from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.compaction import CompactionEngine, CompactionSettings
from server.tokens import ModelLimits
from store import Store
from tests.support import ScriptedSummarizer

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
