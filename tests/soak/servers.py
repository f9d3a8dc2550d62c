"""Starting ``sessionlsp serve`` processes whose every output byte is kept on disk.

A server's stdout (the frames it sends its client) is copied to ``<name>.frames`` as it is read,
and its stderr goes to ``<name>.stderr``, so that a run can later be searched for anything that
must never leave the server (the API key). ``spawn`` hands back a :class:`RpcClient` reading
through that copy.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from client.rpc_client import RpcClient
from tests.lsp_support import server_env

ROOT = Path(__file__).resolve().parents[2]  # the checkout: the server runs as ``-m server.cli``


class _Tee(io.RawIOBase):
    """Reads from ``source`` and writes a copy of every byte to ``sink``."""

    def __init__(self, source: IO[bytes], sink: IO[bytes]) -> None:
        super().__init__()
        self._source = source
        self._sink = sink

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        reader = self._source
        data = reader.read1(len(buffer)) if hasattr(reader, "read1") else reader.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        if n:
            self._sink.write(data)
            self._sink.flush()
        return n

    def close(self) -> None:
        if not self.closed:
            for stream in (self._source, self._sink):
                with contextlib.suppress(OSError):
                    stream.close()
        super().close()


def tee(source: IO[bytes], path: Path) -> io.BufferedReader:
    """A buffered reader over ``source`` that appends everything it reads to ``path``."""
    return io.BufferedReader(_Tee(source, path.open("ab")))


def serve_argv(db: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "server.cli", "serve", "--db", str(db), "--config", str(config)]


@dataclass(frozen=True)
class Outputs:
    """Where one server process's output went."""

    frames: Path  # every byte of its stdout
    stderr: Path

    @staticmethod
    def under(directory: Path, name: str) -> Outputs:
        return Outputs(directory / f"{name}.frames", directory / f"{name}.stderr")

    def paths(self) -> list[Path]:
        return [self.frames, self.stderr]


def spawn(
    db: Path,
    config: Path,
    outputs: Outputs,
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
) -> RpcClient:
    """Start a server on ``db``; the environment is cleaned of the caller's SESSIONLSP_*.

    ``wrapper`` is a command the server runs under (e.g. ``setpriv ... --``)."""
    with outputs.stderr.open("ab") as stderr:
        process = subprocess.Popen(
            [*wrapper, *serve_argv(db, config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=server_env(env),
            cwd=ROOT,
        )
    assert process.stdin is not None and process.stdout is not None
    return RpcClient(tee(process.stdout, outputs.frames), process.stdin, process=process)


def kill(client: RpcClient) -> None:
    """SIGKILL the client's server (if it still runs) and wait for it."""
    process = client.process
    if process is not None and process.poll() is None:
        process.kill()
    if process is not None:
        process.wait()
    client.close(timeout=5)


__all__ = ["ROOT", "Outputs", "kill", "serve_argv", "spawn", "tee"]
