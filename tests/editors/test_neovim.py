"""The Neovim plugin (editors/neovim) in real headless Neovim 0.11.4, against the real server.

Each test starts ``nvim --embed --headless --clean`` through pynvim with the plugin on
'runtimepath', points the plugin at ``.venv/bin/sessionlsp serve --db <tmp>`` and drives it with
its commands; Lua helpers (nvim_helpers.lua, the global ``H`` inside Neovim) wait with
``vim.wait`` on conditions. The openai provider, pointed at the in-process fake server, is used
where a turn must stay open (cancel) or a compaction must fail. The last test checks that
Debian's Neovim 0.7.2 refuses the plugin in one line.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pynvim  # type: ignore[import-untyped]
import pytest

from fakeprovider.openai_server import FakeOpenAI, HttpError, Reply, Stall

pytestmark = pytest.mark.slow  # real Neovim processes driving real servers

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
NVIM = BIN / "nvim"
SESSIONLSP = BIN / "sessionlsp"
PLUGIN = REPO / "editors" / "neovim"
HERE = Path(__file__).resolve().parent
HELPERS = HERE / "nvim_helpers.lua"
LEGACY_SCRIPT = HERE / "nvim_legacy.lua"
LEGACY_NVIM = Path("/usr/bin/nvim")
WAIT_MS = 30_000  # generous: the machine is shared; a pass never depends on it


def lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a program to its end (at most 120 s), its output captured as text."""
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


class Editor:
    """One headless Neovim with the plugin loaded and the helpers in the global ``H``."""

    def __init__(self, nv: Any, db: Path) -> None:
        self.nv = nv
        self.db = db

    def lua(self, code: str, *args: Any) -> Any:
        return self.nv.exec_lua(code, *args)

    def setup(self, **options: Any) -> None:
        options.setdefault("cmd", [str(SESSIONLSP), "serve", "--db", str(self.db)])
        options.setdefault("open", "current")
        self.lua("require('sessionlsp').setup(...)", options)

    def wait(self, condition: str, what: str, *args: Any) -> None:
        """Wait inside Neovim until the Lua expression ``condition`` is true."""
        self.lua(
            f"local args = {{...}}; H.wait({WAIT_MS}, function() return {condition} end,"
            f" {lua_string(what)})",
            *args,
        )

    def new_session(self, title: str = "") -> tuple[str, int]:
        sid, buf = self.lua("return {H.new_session(...)}", title)
        return str(sid), int(buf)

    def text(self, buf: int) -> str:
        return str(self.lua("return H.text(...)", buf))

    def lines(self, buf: int) -> list[str]:
        return list(self.lua("return H.lines(...)", buf))

    def stored(self, sid: str) -> list[dict[str, Any]]:
        return list(self.lua("return H.stored(...)", sid))

    def wait_turn_done(self, sid: str, replies: int) -> list[dict[str, Any]]:
        """Wait until the chat buffer shows ``replies`` answers, none in progress (which it
        does only once their end is stored); returns the stored messages."""
        self.wait(
            "H.answers_shown(args[1]) >= args[2]", f"{replies} finished answers", sid, replies
        )
        stored = self.stored(sid)
        assert sum(1 for m in stored if m["role"] == "assistant" and m["finished"]) >= replies
        return stored


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Neovim's and the servers' state, cache, config and data under tmp_path; no sessionlsp
    settings from the environment (so the offline provider is used unless a test says)."""
    for name in list(os.environ):
        if name.startswith("SESSIONLSP_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("SESSIONLSP_OFFLINE_DELAY_MS", "0")  # the offline provider unpaced
    for name in ("STATE", "CACHE", "CONFIG", "DATA"):
        path = tmp_path / name.lower()
        path.mkdir()
        monkeypatch.setenv(f"XDG_{name}_HOME", str(path))
    return dict(os.environ)


@pytest.fixture
def editor(tmp_path: Path, clean_env: dict[str, str]) -> Iterator[Editor]:
    nv = pynvim.attach(
        "child",
        argv=[str(NVIM), "--embed", "--headless", "--clean", "--cmd", f"set rtp^={PLUGIN}"],
    )
    try:
        nv.exec_lua(f"_G.H = dofile({lua_string(str(HELPERS))})")
        ed = Editor(nv, tmp_path / "sessions.db")
        yield ed
        nv.exec_lua("H.shutdown()")
    finally:
        nv.close()


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunk_chars=4, prompt_tokens=50, completion_tokens=10) as f:
        yield f


def use_fake(ed: Editor, fake: FakeOpenAI) -> None:
    ed.setup(init_options={"provider": "openai", "model": "fake-model", "baseUrl": fake.base_url})


def count_deltas(ed: Editor) -> None:
    ed.lua(
        "_G.deltas = {}; require('sessionlsp.client').on('session/delta',"
        " function(p) table.insert(_G.deltas, p.delta) end)"
    )


# -- prompting and streaming --------------------------------------------------------------


def test_prompt_from_ui_input_streams_the_answer_into_the_chat_buffer_as_stored(
    editor: Editor,
) -> None:
    editor.setup(open="vsplit")
    assert editor.lua("return require('sessionlsp').status()") == ""  # nothing started yet
    sid, buf = editor.new_session("Parser questions")
    # the chat opened in a vertical split, focused
    layout = editor.lua("return vim.fn.winlayout()")
    assert layout[0] == "row" and len(layout[1]) == 2
    assert editor.lua("return vim.api.nvim_get_current_buf()") == buf
    count_deltas(editor)
    editor.lua(
        "vim.ui.input = function(opts, on_confirm) _G.asked = opts.prompt;"
        " on_confirm('Why does the parser reject empty arrays?') end"
    )
    editor.lua("vim.cmd('SessionPrompt')")
    stored = editor.wait_turn_done(sid, 1)

    assert editor.lua("return _G.asked") == "sessionlsp> "
    prompt, reply = stored[-2], stored[-1]
    assert prompt["text"] == "Why does the parser reject empty arrays?"
    assert reply["text"].startswith('You said: "Why does the parser reject empty arrays?"')
    deltas = editor.lua("return _G.deltas")
    assert len(deltas) > 1 and "".join(deltas) == reply["text"]  # it streamed, in pieces
    lines = editor.lines(buf)
    assert lines[0] == "# Parser questions"
    assert lines[lines.index("## You") + 2] == prompt["text"]
    assert lines[lines.index("## Assistant (offline)") + 2] == reply["text"]
    assert editor.lua("return vim.bo[...].filetype", buf) == "markdown"


def test_streamed_deltas_are_appended_without_rewriting_earlier_lines(
    editor: Editor, fake: FakeOpenAI
) -> None:
    use_fake(editor, fake)
    sid, buf = editor.new_session()
    editor.lua("vim.cmd('SessionPrompt first question')")
    editor.wait_turn_done(sid, 1)
    before = editor.lines(buf)

    answer = "The first line of the answer,\nthen a second line\n\nand a last one after a gap."
    fake.push(Reply(answer, chunk_chars=5), when="chat")
    count_deltas(editor)
    editor.lua(
        "_G.edits = {}; vim.api.nvim_buf_attach(..., false, {on_lines = function(_, b, _, first,"
        " last, new_last) table.insert(_G.edits, {first, last, new_last,"
        " vim.api.nvim_buf_line_count(b)}) end})",
        buf,
    )
    editor.lua("vim.cmd('SessionPrompt second question')")
    stored = editor.wait_turn_done(sid, 2)

    after = editor.lines(buf)
    assert stored[-1]["text"] == answer
    assert after[: len(before)] == before
    assert "\n".join(after).endswith("\n" + answer)
    edits = editor.lua("return _G.edits")
    deltas = editor.lua("return _G.deltas")
    assert len(deltas) == math.ceil(len(answer) / 5)
    # no edit reaches into what was there before, and none replaces more than one line
    assert all(first >= len(before) for first, _, _, _ in edits), str(edits)
    assert all(last - first <= 1 for first, last, _, _ in edits), str(edits)
    # the first delta inserted the part's lines; each later one was an edit of the buffer's
    # last line (appending to it, maybe adding lines)
    appends = [e for e in edits if e[1] - e[0] == 1 and e[2] == e[3]]
    assert len(appends) >= len(deltas) - 1


# -- compaction --------------------------------------------------------------------------


def test_compaction_is_a_closed_fold_with_completed_status_and_the_summary(
    editor: Editor,
) -> None:
    editor.setup()
    sid, buf = editor.new_session()
    editor.lua("vim.cmd('SessionPrompt Keep the parser small')")
    editor.wait_turn_done(sid, 1)
    # record every state the marker's header shows, as each edit lands
    editor.lua("H.record_marker_states(...)", buf)
    editor.lua("vim.cmd('SessionCompact Keep file names.')")
    editor.wait(
        "H.find_line(H.chat_buf(args[1]), '## Compaction: completed (manual)') ~= nil",
        "the completed marker",
        sid,
    )
    lines = editor.lines(buf)
    header = lines.index("## Compaction: completed (manual)") + 1  # 1-based line number
    summary = next(m for m in editor.stored(sid) if m["kind"] == "summary")
    fold = editor.lua(
        "local b, l = ...; vim.api.nvim_set_current_buf(b);"
        " return {vim.fn.foldlevel(l), vim.fn.foldclosed(l), vim.fn.foldclosedend(l),"
        " vim.fn.foldtextresult(l), vim.fn.foldlevel(l - 1)}",
        buf,
        header,
    )
    level, start, end, text, level_before = fold
    assert (level, start, level_before) == (1, header, 0)
    assert text.startswith("## Compaction: completed (manual)")
    folded = "\n".join(lines[start - 1 : end])
    assert "Instructions: Keep file names." in folded
    assert summary["text"].strip() in folded
    assert "### Summary (extractive)" in folded
    editor.wait("H.marker_states[#H.marker_states] == 'completed'", "the last state")
    assert editor.lua("return H.marker_states") == ["pending", "running", "completed"]


def test_compaction_progress_reaches_the_lsp_progress_handler_and_autocmd(
    editor: Editor,
) -> None:
    editor.setup()
    sid, _ = editor.new_session()
    editor.lua("vim.cmd('SessionPrompt something to compact')")
    editor.wait_turn_done(sid, 1)
    editor.lua("H.record_progress()")
    editor.lua("vim.cmd('SessionCompact')")
    editor.wait("#H.progress_events >= 2", "begin and end progress")
    marker = next(m for m in editor.stored(sid) if m["kind"] == "marker")["id"]
    token = f"sessionlsp/compact/{marker}"
    handled = editor.lua("return H.progress_handled")
    assert handled == [
        {"token": token, "kind": "begin", "title": "Compacting session", "message": "summarizing"},
        {"token": token, "kind": "end", "message": "completed"},
    ]
    events = editor.lua("return H.progress_events")
    assert events == [
        {"token": token, "kind": "begin", "client": "sessionlsp"},
        {"token": token, "kind": "end", "client": "sessionlsp"},
    ]


def test_cancelled_compaction_shows_failed_with_its_reason(
    editor: Editor, fake: FakeOpenAI
) -> None:
    use_fake(editor, fake)
    sid, buf = editor.new_session()
    editor.lua("vim.cmd('SessionPrompt one')")
    editor.wait_turn_done(sid, 1)
    fake.push(Stall(after_chunks=1, text="## Objective\n"), when="summary")
    editor.lua("vim.cmd('SessionCompact')")
    editor.wait(
        "H.find_line(H.chat_buf(args[1]), '## Compaction: running') ~= nil"
        " and require('sessionlsp').status():find('^sessionlsp: compacting') ~= nil",
        "a running compaction",
        sid,
    )
    editor.lua("vim.cmd('SessionCancel')")
    editor.wait(
        "H.find_line(H.chat_buf(args[1]), '## Compaction: failed') ~= nil",
        "the failed marker",
        sid,
    )
    lines = editor.lines(buf)
    assert "## Compaction: failed (manual) - cancelled: compaction cancelled" in lines
    assert "### Summary: cancelled" in lines


def test_a_reopened_chat_shows_each_compactions_state_straight_from_the_load(
    editor: Editor, fake: FakeOpenAI
) -> None:
    use_fake(editor, fake)
    sid, buf = editor.new_session()
    editor.lua("vim.cmd('SessionPrompt one')")
    editor.wait_turn_done(sid, 1)
    editor.lua("vim.cmd('SessionCompact')")
    editor.wait(
        "H.find_line(H.chat_buf(args[1]), '## Compaction: completed') ~= nil",
        "the completed compaction",
        sid,
    )
    editor.lua("vim.cmd('SessionPrompt two')")
    editor.wait_turn_done(sid, 2)
    fake.push(Stall(after_chunks=1, text="## Objective\n"), when="summary")
    editor.lua("vim.cmd('SessionCompact')")
    editor.wait(
        "H.find_line(H.chat_buf(args[1]), '## Compaction: running') ~= nil",
        "a running compaction",
        sid,
    )
    editor.lua("vim.cmd('SessionCancel')")
    editor.wait(
        "H.find_line(H.chat_buf(args[1]), '## Compaction: failed') ~= nil",
        "the failed compaction",
        sid,
    )
    editor.lua("vim.api.nvim_buf_delete(..., {force = true})", buf)
    editor.lua("H.record_requests()")
    # the lines as drawn when the load's answer is applied, before anything else can arrive
    editor.lua(
        "require('sessionlsp').open(..., {done = function(err, view)"
        " _G.at_load = err and {'error: ' .. tostring(err.message)} or H.lines(view.buf) end})",
        sid,
    )
    editor.wait("_G.at_load ~= nil", "the reopened chat")
    at_load = list(editor.lua("return _G.at_load"))
    headers = [line for line in at_load if line.startswith("## Compaction: ")]
    assert headers == [
        "## Compaction: completed (manual)",
        "## Compaction: failed (manual) - cancelled: compaction cancelled",
    ]
    methods = editor.lua("return H.requests")
    assert "session/load" in methods
    assert "session/events" not in methods


# -- cancel ------------------------------------------------------------------------------


def test_cancel_keeps_the_streamed_text_and_marks_the_turn_cancelled(
    editor: Editor, fake: FakeOpenAI
) -> None:
    use_fake(editor, fake)
    sid, buf = editor.new_session()
    count_deltas(editor)
    fake.push(Stall(after_chunks=3, text="partial answer\nthat never ends"), when="chat")
    editor.lua("vim.cmd('SessionPrompt go')")
    editor.wait(
        "#_G.deltas >= 3 and H.text(H.chat_buf(args[1])):find('partial answ', 1, true) ~= nil"
        " and require('sessionlsp').status():find('^sessionlsp: busy') ~= nil",
        "three streamed pieces while busy",
        sid,
    )
    assert "## Assistant (fake-model): in progress" in editor.lines(buf)
    editor.lua("vim.cmd('SessionCancel')")
    editor.wait(
        "H.find_line(H.chat_buf(args[1]), '## Assistant (fake-model): cancelled') ~= nil",
        "the cancelled header",
        sid,
    )
    assert fake.wait_for_disconnects(1, timeout=WAIT_MS / 1000)
    reply = editor.stored(sid)[-1]
    assert reply["error"] == "Cancelled"
    assert reply["text"] == "partial answ"
    lines = editor.lines(buf)
    assert lines[lines.index("## Assistant (fake-model): cancelled") + 2] == "partial answ"
    editor.wait(
        "require('sessionlsp').status():find('^sessionlsp: idle') ~= nil", "idle after cancel"
    )


# -- other clients -----------------------------------------------------------------------


def test_a_prompt_from_another_process_shows_up_in_the_buffer(
    editor: Editor, clean_env: dict[str, str]
) -> None:
    editor.setup()
    sid, buf = editor.new_session()
    editor.lua("vim.cmd('SessionPrompt from the editor')")
    editor.wait_turn_done(sid, 1)
    done = run(
        [str(SESSIONLSP), "chat", "--db", str(editor.db), "--session", sid, "from the cli"],
        clean_env,
    )
    assert done.returncode == 0, done.stderr
    stored = editor.wait_turn_done(sid, 2)
    prompt, reply = stored[-2], stored[-1]
    assert prompt["text"] == "from the cli"
    assert reply["text"].startswith('You said: "from the cli"')
    editor.wait(
        "H.text(H.chat_buf(args[1])):find(args[2], 1, true) ~= nil",
        "the cli's reply",
        sid,
        reply["text"],
    )
    lines = editor.lines(buf)
    assert lines.count("## You") == 2
    assert lines[-1] == reply["text"]
    assert lines[-3] == "## Assistant (offline)"


# -- commands ----------------------------------------------------------------------------


def test_session_list_picks_with_ui_select_and_opens_the_history(editor: Editor) -> None:
    editor.setup()
    alpha, alpha_buf = editor.new_session("alpha")
    editor.lua("vim.cmd('SessionPrompt remember alpha')")
    editor.wait_turn_done(alpha, 1)
    editor.lua("vim.cmd('SessionCompact')")
    editor.wait(
        "H.find_line(H.chat_buf(args[1]), '## Compaction: completed') ~= nil", "compaction", alpha
    )
    beta, _ = editor.new_session("beta")
    editor.lua("vim.api.nvim_buf_delete(..., {force = true})", alpha_buf)
    editor.lua(
        "vim.ui.select = function(items, opts, on_choice) _G.offered = {}; for _, s in"
        " ipairs(items) do table.insert(_G.offered, opts.format_item(s)) end;"
        " for _, s in ipairs(items) do if s.title == 'alpha' then on_choice(s) end end end"
    )
    editor.lua("vim.cmd('SessionList')")
    editor.wait("require('sessionlsp.chat').buffer(args[1]) ~= nil", "alpha reopened", alpha)
    offered = editor.lua("return _G.offered")
    assert [o.split()[0] for o in offered] == ["beta", "alpha"]  # newest first
    assert offered[1].endswith(alpha) and offered[0].endswith(beta)
    editor.wait(
        "H.find_line(H.chat_buf(args[1]), '## Compaction: completed (manual)') ~= nil",
        "the compaction's status from the load",
        alpha,
    )
    buf = editor.lua("return require('sessionlsp.chat').buffer(...)", alpha)
    assert editor.lua("return vim.api.nvim_get_current_buf()") == buf
    text = editor.text(buf)
    for message in editor.stored(alpha):
        assert message["text"].strip() in text
    assert editor.lua("return require('sessionlsp').current_session()") == alpha


def test_session_context_shows_the_next_request_in_a_read_only_scratch_buffer(
    editor: Editor,
) -> None:
    editor.setup()
    sid, _ = editor.new_session()
    editor.lua("vim.cmd('SessionPrompt what will the model see?')")
    stored = editor.wait_turn_done(sid, 1)
    editor.lua("vim.cmd('SessionContext')")
    name = f"sessionlsp://{sid}/context"
    editor.wait("vim.fn.bufnr(args[1]) ~= -1", "the context buffer", name)
    buf = editor.lua("return vim.fn.bufnr(...)", name)
    context = editor.lua("return H.request('session/context', {sessionId = ...})", sid)
    options = editor.lua(
        "local b = ...; return {vim.bo[b].modifiable, vim.bo[b].readonly, vim.bo[b].buftype,"
        " vim.bo[b].filetype, vim.api.nvim_get_current_buf() == b}",
        buf,
    )
    assert options == [False, True, "nofile", "markdown", True]
    lines = editor.lines(buf)
    assert lines[0] == f"# Context of {sid}"
    assert lines[2] == (
        f"{context['tokens']} tokens of {context['usable']} usable"
        f" (context limit {context['contextLimit']}, output limit {context['outputLimit']})"
    )
    for message in context["messages"]:
        assert f"## {message['role']} {message['messageId']} ({message['tokens']} tokens)" in lines
    assert stored[0]["text"] in lines and stored[1]["text"] in lines


def test_statusline_shows_the_state_and_context_use(editor: Editor) -> None:
    editor.setup()
    sid, _ = editor.new_session()
    editor.lua("vim.cmd('SessionPrompt ' .. string.rep('many words to fill the window ', 200))")
    editor.wait_turn_done(sid, 1)
    context = editor.lua("return H.request('session/context', {sessionId = ...})", sid)
    assert context["tokens"] > 1000  # so the k-format is exercised

    def k(n: int) -> str:
        return str(n) if n < 1000 else f"{n / 1000:.1f}".removesuffix(".0") + "k"

    expected = f"sessionlsp: idle {k(context['tokens'])}/{k(context['usable'])}"
    editor.wait("require('sessionlsp').status() == args[1]", expected, expected)
    editor.lua("vim.o.statusline = \"%{v:lua.require'sessionlsp'.status()}\"")
    assert editor.lua("return vim.api.nvim_eval_statusline(vim.o.statusline, {}).str") == expected


def test_statusline_shows_retrying_while_the_provider_asks_to_wait(
    editor: Editor, fake: FakeOpenAI
) -> None:
    use_fake(editor, fake)
    sid, _ = editor.new_session()
    fake.push(HttpError(429, headers={"retry-after-ms": "300"}), when="chat")
    editor.lua(
        "H.statuses = {}; vim.api.nvim_create_autocmd('User', {pattern = 'SessionlspStatus',"
        " callback = function() table.insert(H.statuses, require('sessionlsp').status()) end})"
    )
    editor.lua("vim.cmd('SessionPrompt hello')")
    stored = editor.wait_turn_done(sid, 1)
    assert stored[-1]["text"] == "Echo: hello"
    states = [s.split()[1] for s in editor.lua("return H.statuses") if s.startswith("sessionlsp: ")]
    assert "retrying" in states
    retry = states.index("retrying")
    assert "busy" in states[:retry] and "busy" in states[retry:]
    assert any(s.startswith("sessionlsp: retrying #1") for s in editor.lua("return H.statuses"))
    editor.wait("require('sessionlsp').status():find('^sessionlsp: idle') ~= nil", "idle again")


# -- setup problems ----------------------------------------------------------------------


def test_missing_executable_says_how_to_fix_it(editor: Editor, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-sessionlsp"
    editor.setup(cmd=[str(missing), "serve"])
    editor.lua("H.capture_notify(); vim.cmd('SessionNew')")
    editor.wait("#H.notes > 0", "a message")
    notes = editor.lua("return H.notes")
    assert len(notes) == 1
    assert notes[0]["msg"] == (
        f"sessionlsp: cannot start the server: `{missing}` is not an executable on $PATH. "
        "Install sessionlsp (in a checkout, ./dev creates .venv/bin/sessionlsp) or give its "
        "path: require('sessionlsp').setup({ cmd = { '/path/to/sessionlsp', 'serve' } })"
    )
    assert editor.lua("return require('sessionlsp').status()") == ""
    assert editor.lua("return #vim.lsp.get_clients()") == 0
    editor.lua("vim.cmd('checkhealth sessionlsp')")
    report = "\n".join(editor.lua("return H.lines(0)"))
    assert f"ERROR server executable not found: `{missing}`" in report


def test_a_server_that_exits_is_reported_with_the_log_to_read(editor: Editor) -> None:
    editor.setup(cmd=["sh", "-c", "echo 'cannot work today' >&2; exit 3"])
    editor.lua("H.capture_notify(); vim.cmd('SessionNew')")
    editor.wait("H.notes_text():find('stopped unexpectedly', 1, true) ~= nil", "the exit message")
    log = editor.lua("return vim.lsp.get_log_path()")
    assert editor.lua("return H.notes_text()").count("sessionlsp: the server stopped") == 1
    assert (
        "sessionlsp: the server stopped unexpectedly (exit code 3). Its error output is in the"
        f" LSP log: {log}. Run :checkhealth sessionlsp; the next :Session command starts it again."
    ) in editor.lua("return H.notes_text()")
    editor.wait(
        "vim.fn.filereadable(args[1]) == 1 and table.concat(vim.fn.readfile(args[1]), '\\n')"
        ":find('cannot work today', 1, true) ~= nil",
        "the server's stderr in the LSP log",
        log,
    )


def test_bad_init_options_are_refused_with_the_servers_reason(editor: Editor) -> None:
    editor.setup(init_options={"contextLimit": "lots"})
    editor.lua("H.capture_notify(); vim.cmd('SessionNew')")
    editor.wait("#H.notes > 0", "a message")
    notes = editor.lua("return H.notes_text()")
    assert notes == (
        "sessionlsp: the server refused to start: contextLimit in initializationOptions must be"
        ' a non-negative integer, got "lots" (check init_options in'
        " require('sessionlsp').setup() and `sessionlsp config`)"
    )
    editor.wait("#vim.lsp.get_clients() == 0", "the refused server to be stopped")
    assert editor.lua("return require('sessionlsp').status()") == ""


def test_the_api_key_reaches_the_server_but_never_the_lsp_log(
    editor: Editor, fake: FakeOpenAI
) -> None:
    editor.lua("vim.lsp.set_log_level('trace'); H.capture_notify()")
    editor.setup(
        init_options={"provider": "openai", "baseUrl": fake.base_url, "apiKey": "sk-init-options"},
        cmd_env={"SESSIONLSP_API_KEY": "sk-cmd-env", "SESSIONLSP_MODEL": "model-from-env"},
    )
    sid, _ = editor.new_session()
    editor.lua("vim.cmd('SessionPrompt hello')")
    editor.wait_turn_done(sid, 1)
    request = fake.requests[-1]
    assert request.headers["authorization"] == "Bearer sk-cmd-env"
    assert request.body["model"] == "model-from-env"  # the rest of cmd_env still arrives
    assert editor.lua("return vim.env.SESSIONLSP_API_KEY") is None  # only for the spawn
    assert "init_options.apiKey is ignored" in editor.lua("return H.notes_text()")
    log = editor.lua("return vim.lsp.get_log_path()")
    editor.wait(
        "table.concat(vim.fn.readfile(args[1]), '\\n'):find('Starting RPC client', 1, true) ~= nil",
        "the spawn options in the LSP log",
        log,
    )
    text = Path(log).read_text()
    assert "model-from-env" in text and "initializationOptions" in text  # it logs both
    assert "sk-cmd-env" not in text and "sk-init-options" not in text


# -- health, help ------------------------------------------------------------------------


def test_checkhealth_starts_the_server_and_reports_its_version_and_settings(
    editor: Editor,
) -> None:
    editor.setup(init_options={"contextLimit": 9000})
    editor.lua("vim.cmd('checkhealth sessionlsp')")
    report = editor.lua("return H.lines(0)")
    text = "\n".join(report)
    assert "ERROR" not in text and "WARNING" not in text, text
    ok = [line for line in report if "OK " in line]
    assert any(line.endswith(f"OK Neovim {nvim_version()} (needs 0.10 or newer)") for line in ok)
    assert any(line.endswith(f"OK server executable: {SESSIONLSP}") for line in ok)
    started = f"OK server started: sessionlsp {version('sessionlsp')}"
    assert any(line.endswith(started) for line in ok)
    assert any(line.endswith("OK protocol version 1") for line in ok)
    assert "- provider: offline" in text and "- model: offline" in text
    assert "- contextLimit: 9000" in text and "- autoCompact: true" in text
    assert "- usable window: 8000 tokens" in text  # 9000 - min(1000, 20000)
    assert f"- database: {editor.db}" in text  # the file the server opened
    assert "- API key: not set" in text
    editor.wait("#vim.lsp.get_clients() == 0", "the probe server to be gone")


def nvim_version() -> str:
    out = subprocess.run([str(NVIM), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[1].removeprefix("v")


def test_help_file_has_tags_for_the_commands_and_functions(tmp_path: Path) -> None:
    doc = tmp_path / "doc"
    shutil.copytree(PLUGIN / "doc", doc)
    subprocess.run(
        ["timeout", "60", str(NVIM), "--headless", "--clean", "-c", f"helptags {doc}", "-c", "qa!"],
        check=True,
        capture_output=True,
    )
    tags = {line.split("\t")[0] for line in (doc / "tags").read_text().splitlines()}
    assert {
        "sessionlsp",
        "sessionlsp.txt",
        "sessionlsp-setup",
        ":SessionNew",
        ":SessionPrompt",
        ":SessionCompact",
        ":SessionCancel",
        ":SessionList",
        ":SessionContext",
        "sessionlsp.status()",
        "sessionlsp-health",
    } <= tags


# -- the transcript model alone ----------------------------------------------------------


def test_transcript_applies_deltas_by_offset_and_ignores_repeated_events(editor: Editor) -> None:
    result = editor.lua(
        """
        local T = require('sessionlsp.transcript')
        local t = T.new('ses_1')
        local out = {}
        local function sync(seq, kind, data)
          return t:apply_sync({seq = seq, sessionId = 'ses_1', type = kind, data = data})
        end
        local function text() return t:get('msg_2').parts[1].text end
        t:load({session = {id = 'ses_1', title = 't'}, seq = 5, messages = {}})
        out.old = sync(5, 'message.updated', {id = 'msg_1', role = 'user'}) == nil
        sync(6, 'message.updated', {id = 'msg_2', role = 'assistant'})
        t:apply_delta({sessionId = 'ses_1', messageId = 'msg_2', partId = 'prt_1',
                       partType = 'text', delta = 'Héllo'})
        -- the durable write of what the deltas already brought: nothing changes
        out.covered = sync(7, 'message.part.delta', {id = 'prt_1', messageId = 'msg_2',
          sessionId = 'ses_1', type = 'text', offset = 0, delta = 'Héllo'}) == nil
        -- partly new: only the new end is added (offsets count characters, not bytes)
        sync(8, 'message.part.delta', {id = 'prt_1', messageId = 'msg_2', sessionId = 'ses_1',
          type = 'text', offset = 3, delta = 'lo wörld'})
        out.appended = text()
        out.repeated = sync(8, 'message.part.delta', {id = 'prt_1', messageId = 'msg_2',
          sessionId = 'ses_1', type = 'text', offset = 11, delta = '!'}) == nil
        out.gap = sync(9, 'message.part.delta', {id = 'prt_1', messageId = 'msg_2',
          sessionId = 'ses_1', type = 'text', offset = 20, delta = '?'}).reload
        sync(10, 'message.part.updated', {id = 'prt_1', messageId = 'msg_2', sessionId = 'ses_1',
          type = 'text', text = 'Final.'})
        out.replaced = text()
        out.finished = sync(11, 'message.updated', {id = 'msg_2', role = 'assistant',
          finish = 'stop'}).finished
        out.other = t:apply_sync({seq = 12, sessionId = 'ses_2', type = 'session.deleted',
          data = {id = 'ses_2'}}) == nil
        sync(13, 'message.updated', {id = 'msg_0', role = 'user'})
        out.order = t.order
        return out
        """
    )
    assert result == {
        "old": True,
        "covered": True,
        "appended": "Héllo wörld",
        "repeated": True,
        "gap": True,
        "replaced": "Final.",
        "finished": True,
        "other": True,
        "order": ["msg_0", "msg_2"],
    }


def test_transcript_takes_compaction_states_from_the_load_and_newer_events_only(
    editor: Editor,
) -> None:
    result = editor.lua(
        """
        local T = require('sessionlsp.transcript')
        local t = T.new('ses_1')
        local out = {}
        local function state(id)
          local status, err = t:compaction_state(id)
          return {status, err and err.message or vim.NIL}
        end
        local function updated(seq, data)
          return t:apply_sync({seq = seq, sessionId = 'ses_1', type = 'compaction.updated',
                               data = data})
        end
        t:load({session = {id = 'ses_1'}, seq = 9, messages = {}, compactions = {
          {markerId = 'msg_1', status = 'completed', auto = false, overflow = false,
           summaryMessageId = 'msg_2', attempts = 1},
          {markerId = 'msg_5', status = 'failed', auto = true, overflow = false,
           error = {code = 'provider', message = 'no credit'}, attempts = 3},
          {markerId = 'msg_8', status = 'running', auto = false, overflow = false, attempts = 1},
        }})
        out.loaded = {state('msg_1'), state('msg_5'), state('msg_8'), state('msg_9')}
        -- an event the load already covers changes nothing; a newer one wins
        out.old = updated(9, {markerId = 'msg_8', status = 'failed'}) == nil
        out.new = updated(10, {markerId = 'msg_8', status = 'completed'}).compaction.status
        out.after = state('msg_8')
        -- a reload replaces every state
        t:load({session = {id = 'ses_1'}, seq = 12, messages = {}, compactions = {
          {markerId = 'msg_5', status = 'completed', attempts = 4}}})
        out.reloaded = {state('msg_5'), state('msg_8')}
        return out
        """
    )
    assert result == {
        "loaded": [
            ["completed", None],
            ["failed", "no credit"],
            ["running", None],
            ["pending", None],
        ],
        "old": True,
        "new": "completed",
        "after": ["completed", None],
        "reloaded": [["completed", None], ["pending", None]],
    }


def test_deltas_never_extend_text_read_from_the_history(editor: Editor) -> None:
    result = editor.lua(
        """
        local T = require('sessionlsp.transcript')
        local t = T.new('ses_1')
        local out = {}
        local function sync(seq, kind, data)
          data.sessionId, data.messageId = 'ses_1', 'msg_1'
          return t:apply_sync({seq = seq, sessionId = 'ses_1', type = kind, data = data})
        end
        local function delta(part, text)
          return t:apply_delta({sessionId = 'ses_1', messageId = 'msg_1', partId = part,
                                partType = 'text', delta = text})
        end
        local function text(i) return t:get('msg_1').parts[i].text end
        -- opened while the answer streams: the history has the last durable write, 'abc', while
        -- the deltas are already past 'abcdef'
        t:load({session = {id = 'ses_1'}, seq = 5, messages = {{
          info = {id = 'msg_1', role = 'assistant'},
          parts = {{id = 'prt_1', messageId = 'msg_1', type = 'text', text = 'abc'}}}}})
        out.ignored = delta('prt_1', 'ghi') == nil
        out.kept = text(1)
        sync(6, 'message.part.delta', {id = 'prt_1', type = 'text', offset = 3, delta = 'defghi'})
        out.durable = text(1)
        -- a part the deltas built keeps taking them after the durable write of its whole text
        delta('prt_2', 'one')
        sync(7, 'message.part.updated', {id = 'prt_2', type = 'text', text = 'one'})
        delta('prt_2', ' two')
        out.streamed = text(2)
        return out
        """
    )
    assert result == {
        "ignored": True,
        "kept": "abc",
        "durable": "abcdefghi",
        "streamed": "one two",
    }


def test_a_chat_reopened_while_its_answer_streams_shows_the_durable_text(
    editor: Editor,
) -> None:
    editor.setup()
    sid, buf = editor.new_session()
    editor.lua(
        """
        local sid, buf = ...
        local id = require('sessionlsp.client').client_id()
        local handlers = vim.lsp.get_client_by_id(id).handlers
        _G.feed = function(method, params) handlers[method](nil, params, {client_id = id}) end
        _G.delta = function(text)
          feed('session/delta', {sessionId = sid, messageId = 'msg_zz', partId = 'prt_zz',
                                 partType = 'text', field = 'text', delta = text})
        end
        vim.api.nvim_buf_delete(buf, {force = true})
        delta('The begin')  -- no chat buffer: nobody shows it
        require('sessionlsp').open(sid)
        require('sessionlsp.chat').with_view(sid, function(err) _G.reopened = err == nil end)
        """,
        sid,
        buf,
    )
    editor.wait("_G.reopened", "the reopened chat's history")
    buf = editor.lua(
        """
        local sid = ...
        delta('ning,')  -- the history had no text yet: this alone would be a wrong start
        feed('session/sync', {seq = 1000000, sessionId = sid, type = 'message.part.delta',
          data = {id = 'prt_zz', messageId = 'msg_zz', sessionId = sid, type = 'text',
                  field = 'text', offset = 0, delta = 'The beginning,'}})
        return require('sessionlsp.chat').buffer(sid)
        """,
        sid,
    )
    assert editor.lines(buf)[-1] == "The beginning,"


# The event streams in tests/fixtures/transcript_streams.json, each with the end state it must
# give; editors/vscode/src/unit/transcriptStreams.test.ts runs the same file through the VS Code
# extension's model. The adapter below turns transcript.lua's state into the file's neutral form.
STREAMS = REPO / "tests" / "fixtures" / "transcript_streams.json"
STREAM_CASES: list[dict[str, Any]] = json.loads(STREAMS.read_text(encoding="utf-8"))

RUN_STREAM = """
local case = ...
local t = require('sessionlsp.transcript').new(case.load.session.id)
t:load(case.load)
local reload = false
for _, step in ipairs(case.steps) do
  local change
  if step.sync then change = t:apply_sync(step.sync) else change = t:apply_delta(step.delta) end
  reload = reload or (change ~= nil and change.reload == true)
end
local messages = {}
for _, m in ipairs(t:list()) do
  local parts = {}
  for _, p in ipairs(m.parts) do
    local text = nil
    if p.type == 'text' or p.type == 'reasoning' then text = p.text end
    parts[#parts + 1] = {id = p.id, type = p.type, text = text,
                         status = p.type == 'tool' and p.state.status or nil}
  end
  messages[#messages + 1] = {id = m.info.id, kind = m.info.kind, finish = m.info.finish,
                             error = m.info.error and m.info.error.name, parts = parts}
end
local compactions = {}
for marker, data in pairs(t.compactions) do
  compactions[#compactions + 1] = {marker, data.status}
end
return {title = t.session.title, deleted = t.deleted, needsReload = reload,
        messages = messages, compactions = compactions}
"""


@pytest.mark.parametrize("case", STREAM_CASES, ids=[c["name"] for c in STREAM_CASES])
def test_transcript_gives_the_shared_streams_end_state(
    editor: Editor, case: dict[str, Any]
) -> None:
    state = editor.lua(RUN_STREAM, case)
    # Lua has no empty-object/empty-list distinction: the pairs come back as a list
    state["compactions"] = dict(state["compactions"])
    assert state == case["expect"]


# -- Neovim 0.7 --------------------------------------------------------------------------


def test_neovim_0_7_refuses_in_one_line_naming_the_minimum_version(
    clean_env: dict[str, str],
) -> None:
    if not LEGACY_NVIM.exists():
        pytest.fail(
            f"{LEGACY_NVIM} is missing: run `apt-get install neovim`"
            " (Debian's Neovim 0.7.2; CI installs it)"
        )
    script = (
        f"lua local ok, e = pcall(dofile, {lua_string(str(LEGACY_SCRIPT))});"
        ' if not ok then io.stderr:write(tostring(e) .. "\\n"); vim.cmd("cquit 1") end'
    )
    argv = ["timeout", "60", str(LEGACY_NVIM), "--headless", "--clean"]
    done = run([*argv, "--cmd", f"set rtp^={PLUGIN}", "-c", script], clean_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    messages = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    assert messages == [
        "sessionlsp.nvim needs Neovim 0.10 or newer (this is 0.7.2); the plugin is not loaded."
    ]
