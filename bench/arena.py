"""What every side-by-side figure needs: a work directory, the shared fake, both systems."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import opencode_peer, sessionlsp_peer
from bench.fake_provider import FakeProvider
from bench.limits import Limits
from bench.opencode_peer import OpenCodeHome, OpenCodeServer
from bench.sessionlsp_peer import SessionlspServer


@dataclass
class Arena:
    workdir: Path
    fake: FakeProvider
    opencode_binary: Path
    quick: bool

    @property
    def config(self) -> Path:
        return sessionlsp_peer.empty_config(self.workdir)

    def db(self, name: str) -> Path:
        return self.workdir / f"{name}.db"

    def sessionlsp_env(self, limits: Limits) -> dict[str, str]:
        return sessionlsp_peer.env(self.fake.base_url, limits)

    @contextlib.contextmanager
    def sessionlsp(self, name: str, limits: Limits) -> Iterator[SessionlspServer]:
        """``sessionlsp serve`` on the database ``name``."""
        with sessionlsp_peer.serve(self.db(name), self.config, self.sessionlsp_env(limits)) as s:
            yield s

    def opencode_home(self, name: str) -> OpenCodeHome:
        return OpenCodeHome(self.workdir / f"opencode-{name}")

    def opencode_env(self, home: OpenCodeHome, limits: Limits) -> dict[str, str]:
        return home.env(self.fake.base_url, limits)

    @contextlib.contextmanager
    def opencode(self, home: OpenCodeHome, limits: Limits) -> Iterator[OpenCodeServer]:
        """``opencode serve`` with its data in ``home``."""
        env = self.opencode_env(home, limits)
        with opencode_peer.serve(self.opencode_binary, home, env) as server:
            yield server
