"""The docs cannot drift from the code: what they name must exist.

docs/protocol.md documents every request the server answers and every event type the store can
write; docs/compaction.md names the tests that prove each guarantee; docs/architecture.md names
the modules a prompt, a tool call and a compaction pass through. Renaming a test or a module, or
adding a method or an event type, fails here until the doc says so too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from server.protocol import REQUESTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", "test-output", "out", "dist"}


def _repo_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if path.is_file() and not parts & SKIP_DIRS:
            found.append(path)
    return found


def _emitted_event_types() -> set[str]:
    """Every event type passed as a literal to ``_emit`` in store/."""
    types: set[str] = set()
    for path in (ROOT / "store").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "_emit"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                types.add(node.args[1].value)
    return types


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def test_every_request_method_has_a_section_in_protocol_md() -> None:
    text = (DOCS / "protocol.md").read_text(encoding="utf-8")
    missing = [m for m in REQUESTS if f"### `{m}`" not in text]
    assert not missing, f"protocol.md has no section for {missing}"


def test_every_event_type_the_store_writes_is_in_protocol_md() -> None:
    text = (DOCS / "protocol.md").read_text(encoding="utf-8")
    types = _emitted_event_types()
    assert len(types) >= 10  # the scan found the store's events
    missing = sorted(t for t in types if f"| `{t}` |" not in text)
    assert not missing, f"protocol.md's event table lacks {missing}"


def test_every_test_named_in_compaction_md_exists() -> None:
    text = (DOCS / "compaction.md").read_text(encoding="utf-8")
    named: list[tuple[str, str | None]] = []
    current: str | None = None
    for match in re.finditer(r"`(test_\w+\.py)?(?:::(test_\w+))?", text):
        file, name = match.group(1), match.group(2)
        if file:
            current = file
        if file or name:
            named.append((current or "", name))
    assert named, "compaction.md names no tests"
    problems = []
    for file, name in named:
        path = ROOT / "tests" / file
        if not path.is_file():
            problems.append(f"{file} does not exist")
        elif name is not None and name not in _test_functions(path):
            problems.append(f"{file}::{name} does not exist")
    assert not problems, problems


@pytest.mark.parametrize("doc", ["architecture.md"])
def test_every_module_named_in_the_architecture_exists(doc: str) -> None:
    text = (DOCS / doc).read_text(encoding="utf-8")
    files = _repo_files()
    names = {p.name for p in files}
    paths = {p.relative_to(ROOT).as_posix() for p in files}
    top = {p.name for p in ROOT.iterdir() if p.is_dir()}
    problems = []
    for token in sorted(set(re.findall(r"[\w./-]+\.(?:py|ts|lua|sql|md|json)\b", text))):
        name = token.lstrip("./")
        if name.split("/")[0] in top and "/" in name:
            if name not in paths:
                problems.append(name)
        elif name.rsplit("/", 1)[-1] not in names:
            problems.append(name)
    assert not problems, f"{doc} names files that do not exist: {problems}"
