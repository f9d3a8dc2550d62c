"""The tools that change files: edit, write and apply_patch. Confined like the read tools,
atomic, all or nothing; offered to the model behind the permission gate (server/turn.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from server.tools import TOOL_SPECS, TOOLS, Plan, ToolOutcome, apply_plan, plan_tool, run_tool

needs_symlinks = pytest.mark.skipif(os.name != "posix", reason="symlinks and modes are POSIX")


def call(root: Path, name: str, **arguments: object) -> ToolOutcome:
    return run_tool(name, json.dumps(arguments), root, include_unoffered=True)


def ok(outcome: ToolOutcome) -> str:
    assert outcome.error is None, outcome.error
    return outcome.output


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file and directory under ``root`` (and beside it), byte for byte."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.parent.rglob("*")):
        key = str(path.relative_to(root.parent))
        found[key] = None if path.is_dir() or path.is_symlink() else path.read_bytes()
    return found


def patch(*lines: str) -> str:
    return "\n".join(("*** Begin Patch", *lines, "*** End Patch"))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("import os\n\ndef main():\n    return 42\n")
    (root / "README.md").write_text("# Demo\nrun main\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret\n")
    return root


# --- offered -----------------------------------------------------------------------------------


def test_the_edit_tools_are_offered_now_that_the_permission_gate_asks() -> None:
    names = [spec.name for spec in TOOL_SPECS]
    assert {"edit", "write", "apply_patch"} <= set(names)
    assert {TOOLS[n].kind for n in ("edit", "write", "apply_patch")} == {"edit"}


# --- edit ------------------------------------------------------------------------------------


def test_edit_replaces_the_unique_string_and_returns_the_diff_and_the_old_content(
    ws: Path,
) -> None:
    outcome = call(ws, "edit", path="src/app.py", oldString="return 42", newString="return 43")
    assert ok(outcome) == "Edited src/app.py: 1 replacement (+1 -1 lines)."
    assert outcome.title == "src/app.py"
    assert (ws / "src" / "app.py").read_text() == "import os\n\ndef main():\n    return 43\n"
    assert outcome.metadata is not None
    [file] = outcome.metadata["files"]
    assert file["path"] == "src/app.py"
    assert file["action"] == "update"
    assert file["before"] == "import os\n\ndef main():\n    return 42\n"
    assert file["diff"] == (
        "--- a/src/app.py\n+++ b/src/app.py\n@@ -1,4 +1,4 @@\n import os\n \n def main():\n"
        "-    return 42\n+    return 43\n"
    )


def test_edit_with_zero_matches_is_an_error_that_shows_the_nearest_lines(ws: Path) -> None:
    before = snapshot(ws)
    outcome = call(ws, "edit", path="src/app.py", oldString="def mian():", newString="x")
    assert outcome.error is not None
    assert outcome.error.startswith(
        'oldString was not found in "src/app.py"; the file is unchanged. The nearest lines:\n'
    )
    assert "    3| def main():" in outcome.error
    assert snapshot(ws) == before


def test_edit_with_several_matches_without_replace_all_is_an_error_naming_the_lines(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.txt").write_text("x = 1\ny = 2\nx = 1\n")
    outcome = call(tmp_path, "edit", path="a.txt", oldString="x = 1", newString="x = 3")
    assert outcome.error == (
        'oldString occurs 2 times in "a.txt"; the file is unchanged. Add surrounding lines to '
        "make it unique, or set replaceAll to replace every occurrence. It occurs at:\n"
        "    1| x = 1\n    3| x = 1"
    )
    assert (tmp_path / "a.txt").read_text() == "x = 1\ny = 2\nx = 1\n"


def test_edit_with_replace_all_replaces_every_occurrence(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x = 1\ny = 2\nx = 1\n")
    outcome = call(
        tmp_path, "edit", path="a.txt", oldString="x = 1", newString="x = 3", replaceAll=True
    )
    assert ok(outcome) == "Edited a.txt: 2 replacements (+2 -2 lines)."
    assert (tmp_path / "a.txt").read_text() == "x = 3\ny = 2\nx = 3\n"


def test_edit_refuses_a_binary_file(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(b"abc\x00def")
    outcome = call(tmp_path, "edit", path="blob.bin", oldString="abc", newString="xyz")
    assert outcome.error == '"blob.bin" is a binary file; the edit tools change text files only'
    assert (tmp_path / "blob.bin").read_bytes() == b"abc\x00def"


def test_edit_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9\n")
    outcome = call(tmp_path, "edit", path="latin.txt", oldString="caf", newString="tea")
    assert outcome.error == (
        '"latin.txt" is not UTF-8 text; the edit tools change UTF-8 files only'
    )


def test_edit_of_a_crlf_file_keeps_crlf(tmp_path: Path) -> None:
    (tmp_path / "dos.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    outcome = call(tmp_path, "edit", path="dos.txt", oldString="one\ntwo", newString="1\n2\n2.5")
    ok(outcome)
    assert (tmp_path / "dos.txt").read_bytes() == b"1\r\n2\r\n2.5\r\nthree\r\n"


def test_edit_with_the_same_old_and_new_string_is_an_error(ws: Path) -> None:
    outcome = call(ws, "edit", path="README.md", oldString="main", newString="main")
    assert outcome.error == "oldString and newString are the same; there is nothing to change"


# --- write -----------------------------------------------------------------------------------


def test_write_creates_a_file_and_its_parents(ws: Path) -> None:
    outcome = call(ws, "write", path="docs/new/notes.md", content="# Notes\nhello\n")
    assert ok(outcome) == "Created docs/new/notes.md (2 lines)."
    assert (ws / "docs" / "new" / "notes.md").read_text() == "# Notes\nhello\n"
    assert outcome.metadata is not None
    [file] = outcome.metadata["files"]
    assert file["before"] is None
    assert file["action"] == "add"
    assert file["diff"].startswith("--- /dev/null\n+++ b/docs/new/notes.md\n@@ -0,0 +1,2 @@\n")


def test_write_overwrites_a_file_and_returns_its_old_content(ws: Path) -> None:
    outcome = call(ws, "write", path="README.md", content="# Demo\nrun it\n")
    assert ok(outcome) == "Wrote README.md (+1 -1 lines)."
    assert (ws / "README.md").read_text() == "# Demo\nrun it\n"
    assert outcome.metadata is not None
    assert outcome.metadata["files"][0]["before"] == "# Demo\nrun main\n"


def test_write_refuses_a_directory_and_a_binary_file(ws: Path) -> None:
    assert call(ws, "write", path="src", content="x").error == '"src" is a directory, not a file'
    (ws / "blob.bin").write_bytes(b"\x00\x01")
    outcome = call(ws, "write", path="blob.bin", content="x")
    assert outcome.error == '"blob.bin" is a binary file; the edit tools change text files only'
    assert (ws / "blob.bin").read_bytes() == b"\x00\x01"


@needs_symlinks
def test_an_atomic_write_keeps_the_file_mode(ws: Path) -> None:
    target = ws / "run.sh"
    target.write_text("echo hi\n")
    target.chmod(0o751)
    ok(call(ws, "write", path="run.sh", content="echo bye\n"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o751
    ok(call(ws, "edit", path="run.sh", oldString="bye", newString="again"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o751
    assert target.read_text() == "echo again\n"


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_atomic_write_leaves_the_file_and_no_temporary_file_behind(
    ws: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    before = snapshot(ws)

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(f"server.tools.edits.os.{failing}", fail)
    outcome = call(ws, "write", path="README.md", content="new\n")
    assert outcome.error is not None and "No space left on device" in outcome.error
    assert snapshot(ws) == before


def test_a_failed_write_of_a_new_file_removes_the_directories_it_made(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(ws)

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("server.tools.edits.os.fsync", fail)
    assert call(ws, "write", path="a/b/c.txt", content="x\n").error is not None
    assert snapshot(ws) == before


def test_write_refuses_content_with_a_lone_surrogate(ws: Path) -> None:
    outcome = run_tool(
        "write", '{"path": "a.txt", "content": "x\\ud800"}', ws, include_unoffered=True
    )
    assert outcome.error is not None and "lone surrogate" in outcome.error
    assert not (ws / "a.txt").exists()


@needs_symlinks
def test_a_file_name_that_is_not_utf8_can_be_edited_by_its_escaped_name(tmp_path: Path) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.txt")
    with open(raw, "wb") as handle:
        handle.write(b"tea\n")
    outcome = call(tmp_path, "edit", path="caf\\xe9.txt", oldString="tea", newString="coffee")
    assert ok(outcome) == "Edited caf\\xe9.txt: 1 replacement (+1 -1 lines)."
    with open(raw, "rb") as handle:
        assert handle.read() == b"coffee\n"
    assert outcome.metadata is not None
    json.dumps(outcome.metadata, ensure_ascii=False).encode("utf-8")  # no lone surrogate


# --- confinement -----------------------------------------------------------------------------


def escapes(path: str) -> dict[str, dict[str, object]]:
    """The arguments of each file-changing tool, aimed at ``path``."""
    return {
        "edit": {"path": path, "oldString": "secret", "newString": "owned"},
        "write": {"path": path, "content": "owned\n"},
        "apply_patch-add": {"patchText": patch(f"*** Add File: {path}", "+owned")},
        "apply_patch-update": {
            "patchText": patch(f"*** Update File: {path}", "@@", "-secret", "+owned")
        },
        "apply_patch-delete": {"patchText": patch(f"*** Delete File: {path}")},
        "apply_patch-move": {
            "patchText": patch(
                "*** Update File: README.md", f"*** Move to: {path}", "@@", "-run main", "+x"
            )
        },
    }


@pytest.mark.parametrize("case", list(escapes("x")))
@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("../outside/secret.txt", "contains '..'"),
        ("src/../../outside/secret.txt", "contains '..'"),
        ("/etc/passwd", "is absolute"),
        ("ABSOLUTE", "is absolute"),
    ],
)
def test_paths_with_dot_dot_or_absolute_are_refused_by_every_file_changing_tool(
    ws: Path, case: str, path: str, error: str
) -> None:
    if path == "ABSOLUTE":
        path = str(ws.parent / "outside" / "secret.txt")
    before = snapshot(ws)
    arguments = escapes(path)[case]
    outcome = call(ws, case.split("-", maxsplit=1)[0], **arguments)
    assert outcome.error is not None and error in outcome.error, outcome.error
    assert str(ws) not in outcome.error
    assert snapshot(ws) == before


@needs_symlinks
@pytest.mark.parametrize("case", list(escapes("x")))
@pytest.mark.parametrize("path", ["out/secret.txt", "secret_link", "dangling"])
def test_symlinks_leading_outside_are_refused_by_every_file_changing_tool(
    ws: Path, case: str, path: str
) -> None:
    (ws / "out").symlink_to(ws.parent / "outside")
    (ws / "secret_link").symlink_to(ws.parent / "outside" / "secret.txt")
    (ws / "dangling").symlink_to(ws.parent / "outside" / "new.txt")
    before = snapshot(ws)
    outcome = call(ws, case.split("-", maxsplit=1)[0], **escapes(path)[case])
    assert outcome.error == f"path {json.dumps(path)} leads outside the workspace"
    assert snapshot(ws) == before


@needs_symlinks
def test_a_symlink_inside_the_workspace_is_written_through_and_stays_a_link(ws: Path) -> None:
    (ws / "link.md").symlink_to("README.md")
    ok(call(ws, "edit", path="link.md", oldString="run main", newString="run all"))
    assert (ws / "link.md").is_symlink()
    assert (ws / "README.md").read_text() == "# Demo\nrun all\n"


# --- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("edit", {"path": "a", "oldString": "x"}, 'missing required argument "newString"'),
        ("edit", {"path": "a", "oldString": 1, "newString": "y"}, "must be a string"),
        (
            "edit",
            {"path": "a", "oldString": "x", "newString": "y", "replaceAll": "yes"},
            'argument "replaceAll" must be a boolean (true or false)',
        ),
        ("edit", {"path": "a", "oldString": "", "newString": "y"}, '"oldString" must not be'),
        ("write", {"path": "a"}, 'missing required argument "content"'),
        ("write", {"path": "a", "content": "x", "mode": 1}, 'unknown argument "mode"'),
        ("apply_patch", {}, 'missing required argument "patchText"'),
        ("apply_patch", {"patchText": ["x"]}, 'argument "patchText" must be a string'),
    ],
)
def test_schema_violations_are_errors_that_name_the_field(
    ws: Path, name: str, arguments: dict[str, object], error: str
) -> None:
    outcome = call(ws, name, **arguments)
    assert outcome.error is not None and error in outcome.error, outcome.error


# --- apply_patch -----------------------------------------------------------------------------


def test_a_patch_adds_updates_moves_and_deletes_together(ws: Path) -> None:
    (ws / "old.txt").write_text("keep\nchange me\n")
    (ws / "gone.txt").write_text("bye\n")
    text = patch(
        "*** Add File: new/hello.txt",
        "+hello",
        "+world",
        "*** Update File: src/app.py",
        "@@ def main():",
        "-    return 42",
        "+    return 43",
        "*** Update File: old.txt",
        "*** Move to: moved/new.txt",
        "@@",
        " keep",
        "-change me",
        "+changed",
        "*** Delete File: gone.txt",
    )
    outcome = call(ws, "apply_patch", patchText=text)
    assert ok(outcome) == (
        "Applied the patch:\nA new/hello.txt\nM src/app.py\nR old.txt -> moved/new.txt\nD gone.txt"
    )
    assert (ws / "new" / "hello.txt").read_text() == "hello\nworld\n"
    assert (ws / "src" / "app.py").read_text() == "import os\n\ndef main():\n    return 43\n"
    assert (ws / "moved" / "new.txt").read_text() == "keep\nchanged\n"
    assert not (ws / "old.txt").exists()
    assert not (ws / "gone.txt").exists()
    assert outcome.metadata is not None
    files = outcome.metadata["files"]
    assert [(f["path"], f["action"]) for f in files] == [
        ("new/hello.txt", "add"),
        ("src/app.py", "update"),
        ("moved/new.txt", "move"),
        ("gone.txt", "delete"),
    ]
    assert files[2]["movedFrom"] == "old.txt"
    assert files[2]["before"] == "keep\nchange me\n"
    assert files[3]["diff"] == "--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n"


def test_a_patch_with_one_failing_hunk_writes_nothing(ws: Path) -> None:
    (ws / "gone.txt").write_text("bye\n")
    before = snapshot(ws)
    text = patch(
        "*** Add File: new.txt",
        "+hello",
        "*** Delete File: gone.txt",
        "*** Update File: README.md",
        "@@",
        "-run main",
        "+run all",
        "*** Update File: src/app.py",
        "@@",
        "-    return 41",
        "+    return 43",
    )
    outcome = call(ws, "apply_patch", patchText=text)
    assert outcome.error is not None
    assert outcome.error.startswith(
        'hunk 1 of "src/app.py" does not match the file; nothing was changed. It expects:\n'
        "    return 41\nThe nearest lines in the file:\n"
    )
    assert "    4|     return 42" in outcome.error
    assert snapshot(ws) == before


def test_a_patch_whose_second_file_fails_to_write_leaves_every_file_and_no_temporary_file(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(ws)
    real_fsync = os.fsync
    calls: list[int] = []

    def fsync_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr("server.tools.edits.os.fsync", fsync_once)
    text = patch(
        "*** Update File: README.md",
        "-run main",
        "+run all",
        "*** Add File: deep/new.txt",
        "+new",
    )
    outcome = call(ws, "apply_patch", patchText=text)
    assert outcome.error == 'cannot write "deep/new.txt": Input/output error'
    assert snapshot(ws) == before


def test_a_patch_keeps_crlf_line_endings(tmp_path: Path) -> None:
    (tmp_path / "dos.txt").write_bytes(b"one\r\ntwo\r\n")
    ok(call(tmp_path, "apply_patch", patchText=patch("*** Update File: dos.txt", "-two", "+2")))
    assert (tmp_path / "dos.txt").read_bytes() == b"one\r\n2\r\n"


def test_a_patch_hunk_matches_despite_trailing_whitespace(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("def f():  \n    pass\n")
    text = patch("*** Update File: a.py", "@@", " def f():", "-    pass", "+    return 1")
    ok(call(tmp_path, "apply_patch", patchText=text))
    assert (tmp_path / "a.py").read_text() == "def f():  \n    return 1\n"


def test_a_malformed_patch_is_an_error_that_names_the_line(ws: Path) -> None:
    assert call(ws, "apply_patch", patchText="*** Update File: a").error == (
        'the patch must start with "*** Begin Patch"'
    )
    outcome = call(ws, "apply_patch", patchText=patch("*** Frobnicate: a"))
    assert outcome.error == (
        "line 2 of the patch: expected '*** Add File: ', '*** Update File: ' or "
        "'*** Delete File: ', got \"*** Frobnicate: a\""
    )
    outcome = call(ws, "apply_patch", patchText=patch("*** Add File: a.txt", "no plus"))
    assert outcome.error is not None and outcome.error.startswith("line 3 of the patch")


def test_a_patch_refuses_to_add_a_file_that_exists_or_move_onto_one(ws: Path) -> None:
    before = snapshot(ws)
    outcome = call(ws, "apply_patch", patchText=patch("*** Add File: README.md", "+x"))
    assert outcome.error == ("\"README.md\" already exists; use '*** Update File:' to change it")
    text = patch("*** Update File: README.md", "*** Move to: src/app.py", "-run main", "+x")
    outcome = call(ws, "apply_patch", patchText=text)
    assert outcome.error == 'cannot move "README.md" to "src/app.py": it already exists'
    assert snapshot(ws) == before


# --- plan, then apply ------------------------------------------------------------------------


def test_a_plan_shows_the_diff_and_writes_nothing_until_applied(ws: Path) -> None:
    before = snapshot(ws)
    arguments = json.dumps({"path": "README.md", "oldString": "run main", "newString": "go"})
    plan = plan_tool("edit", arguments, ws)
    assert isinstance(plan, Plan)
    assert plan.metadata["files"][0]["diff"].endswith("-run main\n+go\n")
    assert snapshot(ws) == before
    outcome = apply_plan(plan)
    assert ok(outcome) == "Edited README.md: 1 replacement (+1 -1 lines)."
    assert outcome.metadata == plan.metadata
    assert (ws / "README.md").read_text() == "# Demo\ngo\n"


def test_a_plan_is_not_applied_over_a_file_changed_since(ws: Path) -> None:
    arguments = json.dumps({"path": "README.md", "content": "planned\n"})
    plan = plan_tool("write", arguments, ws)
    assert isinstance(plan, Plan)
    (ws / "README.md").write_text("changed by the user\n")
    outcome = apply_plan(plan)
    assert outcome.error == '"README.md" changed since the edit was planned; read it again'
    assert (ws / "README.md").read_text() == "changed by the user\n"


def test_planning_a_failing_edit_returns_its_error(ws: Path) -> None:
    outcome = plan_tool("edit", json.dumps({"path": "nope.txt", "oldString": "a"}), ws)
    assert isinstance(outcome, ToolOutcome)
    assert outcome.error == 'missing required argument "newString"'
    outcome = plan_tool("read_file", json.dumps({"path": "README.md"}), ws)
    assert isinstance(outcome, ToolOutcome)
    assert outcome.error == "read_file changes no file"
