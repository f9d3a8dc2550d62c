"""The read-only workspace tools: confinement, caps and error reporting."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from server.providers.base import ToolSpec
from server.tools import (
    MAX_GREP_MATCHES,
    MAX_LIST_ENTRIES,
    MAX_OUTPUT_CHARS,
    MAX_OUTPUT_LINES,
    TOOL_SPECS,
    TOOLS,
    Tool,
    ToolOutcome,
    run_tool,
)
from server.tools.base import RunContext
from server.tools.paths import Workspace

needs_symlinks = pytest.mark.skipif(os.name != "posix", reason="symlinks and FIFOs are POSIX")


def call(root: Path, name: str, **arguments: object) -> ToolOutcome:
    return run_tool(name, json.dumps(arguments), root)


def ok(outcome: ToolOutcome) -> str:
    assert outcome.error is None, outcome.error
    return outcome.output


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "app.py").write_text("import os\n\ndef main():\n    return 42\n")
    (root / "src" / "pkg" / "util.py").write_text("def helper():\n    return 'main'\n")
    (root / "README.md").write_text("# Demo\nrun main\n")
    for skipped in (".git", "node_modules", ".venv", "__pycache__"):
        (root / skipped).mkdir()
        (root / skipped / "main.py").write_text("main\n")
    return root


def test_specs_are_json_schemas_for_every_tool() -> None:
    assert [spec.name for spec in TOOL_SPECS] == [
        "read_file",
        "list_files",
        "grep",
        "edit",
        "write",
        "apply_patch",
        "bash",
    ]
    for spec in TOOL_SPECS:
        assert spec.parameters["type"] == "object"
        assert spec.description
        json.dumps(spec.parameters)  # providers send them as they are
    read_file = TOOL_SPECS[0].parameters
    assert read_file["required"] == ["path"]
    assert read_file["properties"]["offset"] == {
        "type": "integer",
        "minimum": 1,
        "description": "First line to read, 1-based (default 1).",
    }


# --- read_file -------------------------------------------------------------------------------


def test_read_file_numbers_lines_from_one(ws: Path) -> None:
    outcome = call(ws, "read_file", path="src/app.py")
    assert ok(outcome) == "    1| import os\n    2| \n    3| def main():\n    4|     return 42"
    assert outcome.title == "src/app.py"
    assert outcome.truncated is False


def test_read_file_returns_the_requested_line_range_and_says_the_file_goes_on(ws: Path) -> None:
    outcome = call(ws, "read_file", path="src/app.py", offset=2, limit=2)
    assert ok(outcome).splitlines() == [
        "    2| ",
        "    3| def main():",
        "(showing lines 2-3; the file goes on: use offset=4 to read more)",
    ]
    assert outcome.truncated is False  # exactly what was asked for
    assert ok(call(ws, "read_file", path="src/app.py", offset=4)) == "    4|     return 42"


def test_read_file_numbers_wide_line_numbers_without_losing_digits(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 123_458)))
    output = ok(call(tmp_path, "read_file", path="big.txt", offset=123_456, limit=2))
    assert output.splitlines()[:2] == ["123456| line 123456", "123457| line 123457"]


def test_read_file_past_the_end_is_an_error_that_gives_the_length(ws: Path) -> None:
    outcome = call(ws, "read_file", path="src/app.py", offset=10)
    assert outcome.error == 'offset 10 is past the end of "src/app.py", which has 4 lines'
    assert outcome.output == ""


def test_read_file_of_an_empty_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("")
    assert ok(call(tmp_path, "read_file", path="empty.txt")) == "(empty.txt is empty)"


def test_read_file_understands_crlf_and_bad_utf8(tmp_path: Path) -> None:
    (tmp_path / "dos.txt").write_bytes(b"one\r\ntwo \xff\r\n")
    assert ok(call(tmp_path, "read_file", path="dos.txt")) == "    1| one\n    2| two \ufffd"


def test_read_file_cuts_long_lines_and_marks_the_outcome_truncated(tmp_path: Path) -> None:
    (tmp_path / "min.js").write_text("short\n" + "x" * 5_000 + "\nend\n")
    outcome = call(tmp_path, "read_file", path="min.js")
    lines = ok(outcome).splitlines()
    assert lines[0] == "    1| short"
    assert lines[1] == "    2| " + "x" * 2_000 + " … [line cut: 3000 more characters]"
    assert lines[2] == "    3| end"
    assert outcome.truncated is True


def test_read_file_caps_lines_with_a_hint_to_use_offset(tmp_path: Path) -> None:
    (tmp_path / "long.txt").write_text("".join(f"{i}\n" for i in range(1, 5_001)))
    outcome = call(tmp_path, "read_file", path="long.txt")
    lines = ok(outcome).splitlines()
    assert outcome.truncated is True
    assert len(lines) <= MAX_OUTPUT_LINES
    assert lines[-2] == " 1999| 1999"
    assert lines[-1] == (
        "(output capped at 2000 lines / 50000 characters: showing lines 1-1999; "
        "use offset=2000 to see more)"
    )
    follow = ok(call(tmp_path, "read_file", path="long.txt", offset=2000, limit=1))
    assert follow.splitlines()[0] == " 2000| 2000"


def test_read_file_caps_characters_with_a_hint_to_use_offset(tmp_path: Path) -> None:
    (tmp_path / "wide.txt").write_text(("y" * 1_000 + "\n") * 200)
    outcome = call(tmp_path, "read_file", path="wide.txt")
    assert outcome.truncated is True
    assert len(outcome.output) <= MAX_OUTPUT_CHARS
    last_shown = outcome.output.splitlines()[-2]
    shown = int(last_shown.split("|")[0])
    assert outcome.output.endswith(f"use offset={shown + 1} to see more)")


def test_read_file_refuses_binary_files(tmp_path: Path) -> None:
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    outcome = call(tmp_path, "read_file", path="image.png")
    assert outcome.error == '"image.png" is a binary file; these tools read text files only'


def test_read_file_refuses_a_directory_and_a_missing_file(ws: Path) -> None:
    assert call(ws, "read_file", path="src").error == (
        '"src" is a directory; use list_files to see what it holds'
    )
    assert call(ws, "read_file", path="src/nope.py").error == '"src/nope.py" does not exist'


# --- confinement ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../outside.txt", "src/../../outside.txt", "src/..", ".."])
def test_dot_dot_is_refused(ws: Path, path: str) -> None:
    (ws.parent / "outside.txt").write_text("secret\n")
    outcome = call(ws, "read_file", path=path)
    assert (
        outcome.error == f"path {json.dumps(path)} contains '..'; paths must stay in the workspace"
    )
    assert call(ws, "list_files", path=path).error is not None
    assert call(ws, "grep", pattern="secret", path=path).error is not None


def test_absolute_path_is_refused_even_inside_the_root(ws: Path) -> None:
    inside = str(ws / "src" / "app.py")
    outcome = call(ws, "read_file", path=inside)
    assert outcome.error is not None and "is absolute" in outcome.error
    assert call(ws, "read_file", path="/etc/passwd").error == (
        'path "/etc/passwd" is absolute; give a path relative to the workspace root'
    )


@needs_symlinks
def test_symlink_to_etc_is_refused_in_read_file(ws: Path) -> None:
    (ws / "etc").symlink_to("/etc")
    (ws / "passwd").symlink_to("/etc/passwd")
    for path in ("etc/passwd", "passwd", "etc/no-such-file", "etc"):
        outcome = call(ws, "read_file", path=path)
        assert outcome.error == f"path {json.dumps(path)} leads outside the workspace"
        assert "root:" not in outcome.output


@needs_symlinks
def test_symlinks_leading_outside_are_skipped_in_list_files_and_grep(ws: Path) -> None:
    outside = ws.parent / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("main = 'secret'\n")
    (ws / "etc").symlink_to("/etc")
    (ws / "out").symlink_to(outside)
    (ws / "secret.py").symlink_to(outside / "secret.py")
    listing = ok(call(ws, "list_files")).splitlines()
    assert not {"etc", "etc/", "out", "out/", "secret.py"} & set(listing)
    found = ok(call(ws, "grep", pattern="secret|root"))
    assert found == "No matches."
    assert call(ws, "list_files", path="out").error == 'path "out" leads outside the workspace'


@needs_symlinks
def test_symlinks_inside_the_root_are_listed_but_directory_links_not_followed(ws: Path) -> None:
    (ws / "app_link.py").symlink_to(ws / "src" / "app.py")
    (ws / "src_link").symlink_to(ws / "src")
    (ws / "dangling").symlink_to(ws / "nowhere")
    listing = ok(call(ws, "list_files")).splitlines()
    assert "app_link.py" in listing and "src_link/" in listing
    assert not any(entry.startswith("src_link/") and entry != "src_link/" for entry in listing)
    assert "dangling" not in listing
    assert ok(call(ws, "read_file", path="app_link.py")).startswith("    1| import os")
    assert ok(call(ws, "read_file", path="src_link/app.py")).startswith("    1| import os")
    found = ok(call(ws, "grep", pattern="return 42")).splitlines()
    assert found == ["app_link.py:4:     return 42", "src/app.py:4:     return 42"]


@needs_symlinks
def test_fifos_are_neither_read_nor_searched(ws: Path) -> None:
    os.mkfifo(ws / "pipe")
    (ws / "pipe_link").symlink_to(ws / "pipe")
    assert call(ws, "read_file", path="pipe").error == '"pipe" is not a regular file'
    assert call(ws, "grep", pattern="x", path="pipe_link").error == (
        '"pipe_link" is not a regular file'
    )
    assert "pipe" not in ok(call(ws, "list_files"))
    assert ok(call(ws, "grep", pattern="zzz")) == "No matches."  # the walk did not block


def test_errors_do_not_reveal_the_root_path(ws: Path) -> None:
    for outcome in (
        call(ws, "read_file", path="missing.txt"),
        call(ws, "read_file", path="src"),
        call(ws, "list_files", path="README.md"),
        call(ws, "grep", pattern="(", path="src"),
    ):
        assert outcome.error is not None
        assert str(ws) not in outcome.error


# --- list_files ------------------------------------------------------------------------------


def test_list_files_is_recursive_sorted_and_marks_directories(ws: Path) -> None:
    outcome = call(ws, "list_files")
    assert ok(outcome).splitlines() == [
        "README.md",
        "src/",
        "src/app.py",
        "src/pkg/",
        "src/pkg/util.py",
    ]
    assert outcome.title == "."


def test_list_files_skips_vcs_dependency_and_cache_directories(ws: Path) -> None:
    listing = ok(call(ws, "list_files"))
    for skipped in (".git", "node_modules", ".venv", "__pycache__"):
        assert skipped not in listing


def test_list_files_under_a_subdirectory_shows_paths_from_the_root(ws: Path) -> None:
    assert ok(call(ws, "list_files", path="src/pkg")) == "src/pkg/util.py"
    assert ok(call(ws, "list_files", path="./src/pkg/")) == "src/pkg/util.py"


def test_list_files_pattern_matches_names_and_relative_paths(ws: Path) -> None:
    assert ok(call(ws, "list_files", pattern="*.py")).splitlines() == [
        "src/app.py",
        "src/pkg/util.py",
    ]
    assert ok(call(ws, "list_files", pattern="src/pkg/*")) == "src/pkg/util.py"
    assert ok(call(ws, "list_files", pattern="pkg")) == "src/pkg/"
    assert ok(call(ws, "list_files", pattern="*.rs")) == '(no entries match "*.rs" in .)'


def test_list_files_of_a_file_is_an_error(ws: Path) -> None:
    assert call(ws, "list_files", path="README.md").error == (
        '"README.md" is not a directory; use read_file to read a file'
    )


def test_list_files_caps_entries_with_a_hint(tmp_path: Path) -> None:
    for i in range(MAX_LIST_ENTRIES + 20):
        (tmp_path / f"f{i:04}.txt").write_text("")
    outcome = call(tmp_path, "list_files")
    lines = ok(outcome).splitlines()
    assert outcome.truncated is True
    assert len(lines) == MAX_LIST_ENTRIES + 1
    assert lines[0] == "f0000.txt" and lines[-2] == "f0499.txt"
    assert lines[-1] == (
        "(500 entries shown; there are more: list a subdirectory or give a pattern)"
    )


# --- grep ------------------------------------------------------------------------------------


def test_grep_prints_path_line_and_text(ws: Path) -> None:
    outcome = call(ws, "grep", pattern=r"\bmain\b")
    assert ok(outcome).splitlines() == [
        "README.md:2: run main",
        "src/app.py:3: def main():",
        "src/pkg/util.py:2:     return 'main'",
    ]
    assert outcome.title == r"\bmain\b"
    assert outcome.truncated is False


def test_grep_include_filters_file_names(ws: Path) -> None:
    assert ok(call(ws, "grep", pattern="main", include="*.md")) == "README.md:2: run main"
    assert ok(call(ws, "grep", pattern="main", include="util.*")) == (
        "src/pkg/util.py:2:     return 'main'"
    )


def test_grep_in_one_directory_or_one_file(ws: Path) -> None:
    assert ok(call(ws, "grep", pattern="main", path="src/pkg")) == (
        "src/pkg/util.py:2:     return 'main'"
    )
    assert ok(call(ws, "grep", pattern="def", path="src/app.py")) == "src/app.py:3: def main():"


def test_grep_without_matches_says_so(ws: Path) -> None:
    assert ok(call(ws, "grep", pattern="no such text")) == "No matches."


def test_grep_bad_regex_is_an_error(ws: Path) -> None:
    outcome = call(ws, "grep", pattern="(unclosed")
    assert outcome.error is not None
    assert outcome.error.startswith('invalid regular expression "(unclosed": missing )')
    assert outcome.output == ""


def test_grep_caps_matches_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "many.txt").write_text("hit\n" * (MAX_GREP_MATCHES + 50))
    outcome = call(tmp_path, "grep", pattern="hit")
    lines = ok(outcome).splitlines()
    assert outcome.truncated is True
    assert len(lines) == MAX_GREP_MATCHES + 1
    assert lines[-2] == "many.txt:200: hit"
    assert lines[-1] == ("(200 matches shown; there are more: narrow the pattern, path or include)")


def test_grep_caps_characters_too(tmp_path: Path) -> None:
    (tmp_path / "wide.txt").write_text(("hit" + "z" * 1_500 + "\n") * 100)
    outcome = call(tmp_path, "grep", pattern="hit")
    assert outcome.truncated is True
    assert len(outcome.output) <= MAX_OUTPUT_CHARS
    assert outcome.output.endswith("narrow the pattern, path or include)")


def test_grep_skips_binary_files_and_names_files_over_1_mb(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(b"needle\x00\x01")
    (tmp_path / "huge.log").write_text("needle\n" + "x" * 1_100_000)
    (tmp_path / "small.txt").write_text("needle\n")
    outcome = call(tmp_path, "grep", pattern="needle")
    assert ok(outcome).splitlines() == [
        "small.txt:1: needle",
        "(skipped 1 files over 1 MB: huge.log)",
    ]
    assert outcome.truncated is True
    assert call(tmp_path, "grep", pattern="needle", path="blob.bin").error == (
        '"blob.bin" is a binary file; these tools read text files only'
    )


# --- arguments -------------------------------------------------------------------------------


def test_invalid_json_arguments_are_an_error(ws: Path) -> None:
    outcome = run_tool("read_file", '{"path": ', ws)
    assert outcome.error is not None
    assert outcome.error.startswith("arguments are not valid JSON: ")
    assert outcome.title == "read_file"
    assert run_tool("read_file", "[1, 2]", ws).error == "arguments must be a JSON object"


def test_unknown_tool_is_an_error(ws: Path) -> None:
    outcome = run_tool("write_file", "{}", ws)
    assert outcome.error == (
        'unknown tool "write_file"; the tools are read_file, list_files, grep, edit, write,'
        " apply_patch, bash"
    )


def test_an_unknown_tool_never_runs_grep(ws: Path, spawned: list[subprocess.Popen[bytes]]) -> None:
    outcome = run_tool("write_file", '{"pattern": "main"}', ws)
    assert outcome.error is not None and "write_file" in outcome.error
    assert outcome.output == ""
    assert spawned == []  # grep runs in a child: none was started


def test_the_specs_are_the_table_of_tools_offered_to_the_model() -> None:
    assert tuple(tool.spec for tool in TOOLS.values() if tool.offered) == TOOL_SPECS
    assert {name: tool.kind for name, tool in TOOLS.items()} == {
        "read_file": "read",
        "list_files": "read",
        "grep": "search",
        "edit": "edit",
        "write": "edit",
        "apply_patch": "edit",
        "bash": "execute",
    }
    # every tool is offered since the permission gate asks before edits and commands
    assert {name for name, tool in TOOLS.items() if not tool.offered} == set()


def test_a_tool_added_to_the_table_runs_its_own_function(
    ws: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[subprocess.Popen[bytes]]
) -> None:
    """Before the table, a tool given a spec but no branch of run_tool's if-chain ran grep."""
    spec = ToolSpec(
        name="echo",
        description="Say the text back.",
        parameters={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
            "additionalProperties": False,
        },
    )

    def echo(
        workspace: Workspace, args: Mapping[str, Any], title: str, _: RunContext
    ) -> ToolOutcome:
        return ToolOutcome(output=str(args["text"]), title=title)

    monkeypatch.setattr(
        "server.tools.TOOLS", {**TOOLS, "echo": Tool(spec, echo, "read", title_from="text")}
    )
    assert call(ws, "echo", text="main") == ToolOutcome(output="main", title="main")
    assert call(ws, "echo").error == 'missing required argument "text"'
    assert spawned == []


def test_wrong_argument_types_missing_and_unknown_arguments_are_errors(ws: Path) -> None:
    assert call(ws, "read_file", path=3).error == 'argument "path" must be a string'
    assert call(ws, "read_file", path="README.md", offset="2").error == (
        'argument "offset" must be an integer'
    )
    assert call(ws, "read_file", path="README.md", limit=0).error == (
        'argument "limit" must be at least 1, got 0'
    )
    assert call(ws, "read_file").error == 'missing required argument "path"'
    assert call(ws, "grep", pattern="x", glob="*.py").error == (
        'unknown argument "glob"; grep takes pattern, path, include'
    )


def test_every_spec_is_a_valid_json_schema_checked_by_the_jsonschema_library() -> None:
    for tool in TOOLS.values():
        Draft202012Validator.check_schema(tool.spec.parameters)


def test_empty_arguments_and_null_optionals_mean_defaults(ws: Path) -> None:
    assert ok(run_tool("list_files", "", ws)) == ok(call(ws, "list_files"))
    assert ok(call(ws, "read_file", path="README.md", offset=None, limit=2.0)) == (
        "    1| # Demo\n    2| run main"
    )


# --- file names that are not UTF-8 ---------------------------------------------------------


def make_latin1_file(root: Path, content: bytes = b"needle\n") -> None:
    """``caf\\xe9.txt``: a Latin-1 name, as old archives hold; it cannot be decoded as UTF-8."""
    fd = os.open(os.path.join(os.fsencode(root), b"caf\xe9.txt"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)


def storable(outcome: ToolOutcome) -> ToolOutcome:
    """The outcome, after checking every text in it can be written as UTF-8 (as SQLite must)."""
    for text in (outcome.output, outcome.title, outcome.error or ""):
        text.encode("utf-8")
    return outcome


def test_list_files_reports_a_file_name_that_is_not_utf8_escaped_instead_of_failing_the_turn(
    tmp_path: Path,
) -> None:
    make_latin1_file(tmp_path)
    (tmp_path / "plain.txt").write_text("x\n")
    assert ok(storable(call(tmp_path, "list_files"))).splitlines() == [
        "caf\\xe9.txt",
        "plain.txt",
    ]
    assert ok(storable(call(tmp_path, "list_files", pattern="*.txt"))).count("\n") == 1


def test_grep_reports_a_file_name_that_is_not_utf8_escaped_instead_of_failing_the_turn(
    tmp_path: Path,
) -> None:
    make_latin1_file(tmp_path)
    assert ok(storable(call(tmp_path, "grep", pattern="needle"))) == "caf\\xe9.txt:1: needle"
    assert ok(storable(call(tmp_path, "grep", pattern="needle", include="*.txt"))) == (
        "caf\\xe9.txt:1: needle"
    )


def test_a_file_name_that_is_not_utf8_can_be_read_and_searched_by_its_escaped_name(
    tmp_path: Path,
) -> None:
    make_latin1_file(tmp_path)
    outcome = storable(call(tmp_path, "read_file", path="caf\\xe9.txt"))
    assert ok(outcome) == "    1| needle"
    assert outcome.title == "caf\\xe9.txt"
    assert ok(storable(call(tmp_path, "grep", pattern="ne+dle", path="caf\\xe9.txt"))) == (
        "caf\\xe9.txt:1: needle"
    )


def test_paths_and_patterns_with_lone_surrogates_come_back_escaped_never_raw(
    tmp_path: Path,
) -> None:
    make_latin1_file(tmp_path)
    # A model can write a lone surrogate in JSON ("\udce9"); nothing may echo it back raw.
    read = storable(run_tool("read_file", '{"path": "caf\\udce9.txt"}', tmp_path))
    assert ok(read) == "    1| needle"
    missing = storable(run_tool("read_file", '{"path": "x\\ud800.txt"}', tmp_path))
    assert missing.error == '"x\\\\ud800.txt" does not exist'
    assert storable(run_tool("grep", '{"pattern": "\\udce9"}', tmp_path)).error is None


# --- a pattern that backtracks for ever ------------------------------------------------------

CATASTROPHIC = "(a+)+$"  # over "a" * 40 + "!", Python's re would take days


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """Every child process the tools start, recorded so a test can see that it is gone."""
    children: list[subprocess.Popen[bytes]] = []

    class Recorded(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            children.append(self)

    monkeypatch.setattr(subprocess, "Popen", Recorded)  # server.tools calls subprocess.Popen
    return children


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class Counter:
    """A thread that counts while the test runs: it only counts if nothing holds the GIL."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.count += 1

    def __enter__(self) -> Counter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_catastrophic_regex_ends_as_a_timeout_error_while_the_rest_of_the_process_runs_on(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    (tmp_path / "trap.txt").write_text("a" * 40 + "!\n")
    with Counter() as counter:
        arguments = json.dumps({"pattern": CATASTROPHIC})
        outcome = run_tool("grep", arguments, tmp_path, grep_timeout_s=1)
    assert outcome.error == "grep timed out after 1 s; use a simpler pattern or search fewer files"
    assert outcome.output == ""
    assert outcome.title == CATASTROPHIC
    # Over at least one second, a thread ticking every 10 ms got to run: the GIL stayed free.
    assert counter.count >= 20
    assert len(spawned) == 1 and gone(spawned[0].pid)


def test_cancelling_a_running_grep_ends_it_promptly_with_a_cancelled_error(
    tmp_path: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    (tmp_path / "trap.txt").write_text("a" * 40 + "!\n")
    cancel = threading.Event()
    result: list[ToolOutcome] = []
    worker = threading.Thread(
        target=lambda: result.append(
            run_tool("grep", json.dumps({"pattern": CATASTROPHIC}), tmp_path, cancel=cancel)
        )
    )
    worker.start()
    while not spawned and worker.is_alive():  # the child exists: the grep is under way
        worker.join(0.01)
    cancel.set()
    worker.join(5)  # generous: the default time limit (10 s) is what must not be waited for
    assert not worker.is_alive()
    assert result[0].error == "grep cancelled"
    assert gone(spawned[0].pid)
