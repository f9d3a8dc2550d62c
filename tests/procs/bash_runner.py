"""A stand-in for the server that runs one ``bash`` tool call, for the test that SIGKILLs it.

Run from the repository root as::

    python -m tests.procs.bash_runner ROOT SANDBOX COMMAND

It calls ``run_tool("bash", ...)`` in its main thread and prints the outcome as one JSON line
(if it lives that long).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from server.config import SANDBOXES
from server.tools import ToolSettings, run_tool


def main() -> int:
    root, sandbox, command = sys.argv[1], sys.argv[2], sys.argv[3]
    assert sandbox in SANDBOXES
    settings = ToolSettings(sandbox="bwrap" if sandbox == "bwrap" else "none")
    arguments = json.dumps({"command": command})
    outcome = run_tool("bash", arguments, Path(root), settings=settings, include_unoffered=True)
    print(json.dumps(asdict(outcome)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
