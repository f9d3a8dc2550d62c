"""Install the peer, opencode, from npm into a cache directory (idempotent).

``python -m bench.opencode_install`` prints the path of the ``opencode`` binary, installing
``opencode-linux-x64@VERSION`` first when it is not there yet. The directory is
``${SESSIONLSP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sessionlsp}/opencode-VERSION``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

VERSION = "1.18.34"
PACKAGE = "opencode-linux-x64"


class InstallError(RuntimeError):
    pass


def cache_dir() -> Path:
    root = os.environ.get("SESSIONLSP_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "sessionlsp"


def install_dir(version: str = VERSION) -> Path:
    return cache_dir() / f"opencode-{version}"


def binary(version: str = VERSION) -> Path:
    return install_dir(version) / "node_modules" / PACKAGE / "bin" / "opencode"


def installed_version(version: str = VERSION) -> str | None:
    manifest = install_dir(version) / "node_modules" / PACKAGE / "package.json"
    try:
        found = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None
    return found if isinstance(found, str) and binary(version).is_file() else None


def ensure(version: str = VERSION) -> Path:
    """The opencode binary of ``version``, installed with npm when missing."""
    if installed_version(version) == version:
        return binary(version)
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise InstallError(f"{PACKAGE} runs on Linux x86_64 only, not {platform.machine()}")
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("npm is not on PATH; it is needed to install opencode for the bench")
    target = install_dir(version)
    target.mkdir(parents=True, exist_ok=True)
    manifest = target / "package.json"
    if not manifest.exists():
        manifest.write_text('{"private": true}\n', encoding="utf-8")
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--no-save", f"{PACKAGE}@{version}"],
        cwd=target,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or installed_version(version) != version:
        raise InstallError(
            f"npm install {PACKAGE}@{version} failed ({result.returncode}):\n"
            + result.stderr[-2000:]
        )
    return binary(version)


if __name__ == "__main__":
    try:
        print(ensure())
    except InstallError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
