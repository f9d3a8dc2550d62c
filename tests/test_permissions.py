"""Permission rules: parsing the setting, wildcards, the last match winning, compound commands,
remembered "always" answers, what they remember and how the store keeps them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from server.permissions import (
    DEFAULT_RULES,
    TOOL_KEYS,
    Key,
    RuleError,
    Rules,
    always_patterns,
    decide,
    key_for_tool,
    matches,
    normalize_path,
    parse_rules,
    split_command,
)
from server.tools import TOOLS
from store import NotFound, Store

EXAMPLE = parse_rules(
    {
        "bash": {"*": "ask", "git status*": "allow", "rm *": "deny"},
        "edit": {"*": "ask", "docs/**": "allow"},
    }
)


@dataclass(frozen=True)
class Stored:
    key: str
    pattern: str


def action(rules: Rules, key: Key, subject: str, remembered: tuple[Stored, ...] = ()) -> str:
    return decide(rules, key, subject, remembered).action


# --- parsing ------------------------------------------------------------------------------------


def test_defaults_allow_reading_and_ask_before_editing_or_running_commands() -> None:
    assert action(DEFAULT_RULES, "read", "src/main.py") == "allow"
    assert action(DEFAULT_RULES, "edit", "src/main.py") == "ask"
    assert action(DEFAULT_RULES, "bash", "ls") == "ask"
    assert decide(DEFAULT_RULES, "edit", "x").rule.source == "default"


def test_a_bare_word_sets_all_three_keys() -> None:
    rules = parse_rules("deny")
    assert [action(rules, key, "x") for key in ("read", "edit", "bash")] == ["deny"] * 3
    assert parse_rules(" Allow ") == parse_rules("allow")


def test_a_word_per_key_sets_that_key_and_leaves_the_others_at_their_defaults() -> None:
    rules = parse_rules({"edit": "allow"})
    assert action(rules, "edit", "a.py") == "allow"
    assert action(rules, "bash", "ls") == "ask"
    assert action(rules, "read", "a.py") == "allow"


def test_patterns_without_a_catch_all_fall_back_to_the_keys_default() -> None:
    rules = parse_rules({"edit": {"docs/**": "allow"}})
    assert action(rules, "edit", "docs/a.md") == "allow"
    assert action(rules, "edit", "src/a.py") == "ask"
    assert rules.to_json()["edit"] == {"*": "ask", "docs/**": "allow"}


def test_a_json_object_in_a_string_is_read_as_the_setting() -> None:
    assert parse_rules('{"bash": {"git *": "allow"}}') == parse_rules({"bash": {"git *": "allow"}})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("maybe", 'permission must be "allow", "ask" or "deny", got "maybe"'),
        (3, 'permission must be "allow", "ask" or "deny" or an object with keys'),
        ({"bsh": "allow"}, 'permission must be an object with keys "read", "edit" or "bash", '),
        ({"bash": ["ls"]}, 'permission.bash must be "allow", "ask" or "deny" or an object'),
        (
            {"bash": {"rm *": "never"}},
            'permission.bash["rm *"] must be "allow", "ask" or "deny", got "never"',
        ),
        ({"edit": {"": "allow"}}, "permission.edit must be an object whose patterns are non-empty"),
        ('{"bash": ', "permission must be an action word or a JSON object (not valid JSON"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_key_and_the_value(value: object, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules(value)
    assert str(caught.value).startswith(message)


# --- wildcards ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "subject", "key", "expected"),
    [
        ("docs/**", "docs/a/b.md", "edit", True),
        ("docs/**", "docs", "edit", False),
        ("docs/*.md", "docs/a.md", "edit", True),
        ("docs/*.md", "docs/a/b.md", "edit", True),  # opencode's `*` crosses directories
        ("docs/*.md", "docs/a.mdx", "edit", False),
        ("*.env", ".env", "read", True),
        ("src/?.py", "src/a.py", "read", True),
        ("src/?.py", "src/ab.py", "read", False),
        ("a+b(1).txt", "a+b(1).txt", "read", True),  # regex characters are literal
        ("a.txt", "abtxt", "read", False),
        ("git status*", "git status --short", "bash", True),
        ("git status *", "git status", "bash", True),  # a trailing " *" also matches bare
        ("git status *", "git statusx", "bash", False),
        ("git status *", "git status", "edit", False),  # only for commands
        ("git *", "git log --oneline", "bash", True),
        ("rm *", "rmdir x", "bash", False),
    ],
)
def test_wildcards_match_the_whole_subject(
    pattern: str, subject: str, key: Key, expected: bool
) -> None:
    assert matches(pattern, subject, key=key) is expected


def test_paths_are_normalised_before_matching_so_dot_dot_cannot_sneak_past_a_pattern() -> None:
    assert normalize_path("./docs//a/../b.md") == "docs/b.md"
    assert normalize_path("") == "."
    decision = decide(EXAMPLE, "edit", "docs/../.env")
    assert (decision.action, decision.subject) == ("ask", ".env")


# --- the last match wins ------------------------------------------------------------------------


def test_the_last_matching_rule_wins() -> None:
    assert action(EXAMPLE, "bash", "git status --short") == "allow"
    assert action(EXAMPLE, "bash", "rm -rf build") == "deny"
    assert action(EXAMPLE, "bash", "ls") == "ask"
    assert action(EXAMPLE, "edit", "docs/guide/intro.md") == "allow"
    reordered = parse_rules({"bash": {"git status*": "allow", "*": "ask"}})
    assert action(reordered, "bash", "git status") == "ask"


def test_a_denial_names_the_rule_that_denied() -> None:
    decision = decide(EXAMPLE, "bash", "rm -rf build")
    assert decision.rule.pattern == "rm *"
    assert decision.tool_error() == (
        'permission denied: "rm -rf build" is denied by the bash rule "rm *": "deny" '
        "(from the configuration)"
    )


# --- compound commands --------------------------------------------------------------------------


def test_a_compound_command_is_split_at_its_operators_respecting_quotes() -> None:
    assert split_command('git add . && git commit -m "a; b" | cat\nls') == [
        "git add .",
        "git commit -m a; b",
        "cat",
        "ls",
    ]
    assert split_command("echo $(rm x)") is None
    assert split_command("echo 'open") is None


def test_each_part_of_a_compound_command_is_decided_and_the_strictest_wins() -> None:
    decision = decide(EXAMPLE, "bash", "git status; rm -rf ~")
    assert (decision.action, decision.subject, decision.rule.pattern) == (
        "deny",
        "rm -rf ~",
        "rm *",
    )
    assert action(EXAMPLE, "bash", "git status && make") == "ask"
    assert action(EXAMPLE, "bash", "git status && git status --short") == "allow"


def test_command_substitution_is_never_allowed_by_a_narrow_pattern() -> None:
    decision = decide(EXAMPLE, "bash", "git status $(rm -rf ~)")
    assert decision.action == "ask"
    assert "command substitution" in decision.note
    assert action(parse_rules({"bash": "allow"}), "bash", "echo `date`") == "allow"
    assert action(EXAMPLE, "bash", "rm $(ls)") == "deny"


# --- remembered "always" answers ----------------------------------------------------------------


def test_a_remembered_always_wins_over_a_configured_ask() -> None:
    remembered = (Stored("bash", "make test *"), Stored("edit", "src/a.py"))
    assert action(EXAMPLE, "bash", "make test -k x", remembered) == "allow"
    assert decide(EXAMPLE, "bash", "make test", remembered).rule.source == "remembered"
    assert action(EXAMPLE, "edit", "src/a.py", remembered) == "allow"
    assert action(EXAMPLE, "edit", "src/b.py", remembered) == "ask"


def test_a_remembered_always_applies_only_to_its_own_key() -> None:
    assert action(EXAMPLE, "bash", "src/a.py", (Stored("edit", "*"),)) == "ask"


def test_a_configured_deny_wins_over_a_remembered_always() -> None:
    remembered = (Stored("bash", "rm *"), Stored("bash", "*"))
    decision = decide(EXAMPLE, "bash", "rm -rf build", remembered)
    assert (decision.action, decision.rule.source) == ("deny", "config")


def test_an_exact_remembered_command_allows_itself_even_with_command_substitution() -> None:
    command = "echo $(date)"
    assert always_patterns("bash", command) == [command]
    assert action(EXAMPLE, "bash", command, (Stored("bash", command),)) == "allow"
    assert action(EXAMPLE, "bash", "echo $(date) x", (Stored("bash", command),)) == "ask"


@pytest.mark.parametrize(
    ("key", "subject", "patterns"),
    [
        ("bash", "git status --short", ["git status *"]),
        ("bash", "git status", ["git status *"]),
        ("bash", "npm run test -- -x", ["npm run test *"]),
        ("bash", "git -C sub status", ["git -C sub status"]),  # an option where the verb goes
        ("bash", "rm  foo.txt", ["rm foo.txt"]),  # unknown commands: exactly, never "rm *"
        ("bash", "git add . && git commit -m x; git add y", ["git add *", "git commit *"]),
        ("edit", "./src/../docs/a.md", ["docs/a.md"]),
        ("read", "notes.txt", ["notes.txt"]),
    ],
)
def test_always_remembers_the_command_name_for_known_tools_and_exact_text_otherwise(
    key: Key, subject: str, patterns: list[str]
) -> None:
    assert always_patterns(key, subject) == patterns


@pytest.mark.parametrize(
    ("key", "subject"),
    [
        ("bash", "git status --short"),
        ("bash", "git status"),
        ("bash", "rm  foo.txt"),
        ("bash", "ls && make check"),
        ("edit", "./docs/a.md"),
    ],
)
def test_what_always_remembers_matches_the_call_it_answered(key: Key, subject: str) -> None:
    remembered = tuple(Stored(key, p) for p in always_patterns(key, subject))
    assert action(DEFAULT_RULES, key, subject, remembered) == "allow"


# --- tools --------------------------------------------------------------------------------------


def test_every_tool_has_a_permission_key() -> None:
    assert set(TOOLS) <= set(TOOL_KEYS)
    assert key_for_tool("apply_patch") == key_for_tool("write") == key_for_tool("edit") == "edit"
    assert key_for_tool("glob") == "read"
    assert key_for_tool("bash") == "bash"
    with pytest.raises(KeyError, match="no permission key"):
        key_for_tool("webfetch")


# --- remembered in the store --------------------------------------------------------------------


def test_a_remembered_permission_survives_reopening_the_store(db_path: Path) -> None:
    first = Store(db_path)
    with first.write() as tx:
        sid = tx.create_session("perm", "/p").id
        tx.remember_permission(sid, "bash", "git status *")
        tx.remember_permission(sid, "edit", "src/a.py")
    first.close()

    again = Store(db_path)
    with again.read() as tx:
        stored = tx.remembered_permissions(sid)
    again.close()
    assert [(r.key, r.pattern, r.action) for r in stored] == [
        ("bash", "git status *", "allow"),
        ("edit", "src/a.py", "allow"),
    ]
    assert decide(DEFAULT_RULES, "bash", "git status --short", stored).action == "allow"
    assert decide(DEFAULT_RULES, "edit", "src/b.py", stored).action == "ask"


def test_remembering_writes_a_permission_remembered_event_in_the_same_transaction(
    store: Store,
) -> None:
    with store.write() as tx:
        sid = tx.create_session().id
        seq = tx.last_seq()
        rule = tx.remember_permission(sid, "bash", "make test *")
        events = tx.events_after(seq)
    assert [(e.type, e.session_id) for e in events] == [("permission.remembered", sid)]
    assert events[0].data == {
        "id": rule.id,
        "sessionId": sid,
        "key": "bash",
        "pattern": "make test *",
        "action": "allow",
        "time": {"created": rule.time_created},
    }


def test_remembering_the_same_pattern_twice_stores_it_once_and_sends_no_second_event(
    store: Store,
) -> None:
    with store.write() as tx:
        sid = tx.create_session().id
        first = tx.remember_permission(sid, "bash", "git status *")
    with store.write() as tx:
        seq = tx.last_seq()
        again = tx.remember_permission(sid, "bash", "git status *")
        assert tx.events_after(seq) == []
        assert again == first
        assert len(tx.remembered_permissions(sid)) == 1


def test_remembered_permissions_belong_to_their_session(store: Store) -> None:
    with store.write() as tx:
        one = tx.create_session().id
        two = tx.create_session().id
        tx.remember_permission(one, "edit", "docs/a.md")
        assert tx.remembered_permissions(two) == []
        with pytest.raises(NotFound):
            tx.remember_permission("ses_missing", "edit", "docs/a.md")
        with pytest.raises(ValueError, match="key and a pattern"):
            tx.remember_permission(one, "edit", "")


def test_deleting_the_session_removes_its_remembered_permissions(store: Store) -> None:
    with store.write() as tx:
        sid = tx.create_session().id
        tx.remember_permission(sid, "bash", "git status *")
    with store.write() as tx:
        tx.delete_session(sid)
        count = tx.connection.execute("SELECT count(*) FROM permission_rule").fetchone()
    assert count is not None and count[0] == 0


def test_stored_rules_come_after_the_configured_ones_but_a_configured_deny_still_wins(
    store: Store,
) -> None:
    with store.write() as tx:
        sid = tx.create_session().id
        for pattern in always_patterns("bash", "git push origin main && rm -rf build"):
            tx.remember_permission(sid, "bash", pattern)
    with store.read() as tx:
        stored = tx.remembered_permissions(sid)
    assert [r.pattern for r in stored] == ["git push *", "rm -rf build"]
    configured = parse_rules({"bash": {"*": "ask", "git push *": "ask", "rm *": "deny"}})
    assert decide(configured, "bash", "git push origin dev", stored).action == "allow"
    denied = decide(configured, "bash", "rm -rf build", stored)
    assert (denied.action, denied.rule.pattern, denied.rule.source) == ("deny", "rm *", "config")


# --- questions (permission_request) -------------------------------------------------------------


def _ask(store: Store, sid: str, origin: str = "run_a") -> str:
    with store.write() as tx:
        asked = tx.ask_permission(
            sid,
            message_id="msg_1",
            part_id="prt_1",
            call_id="call_1",
            tool="edit",
            title="a.txt",
            input={"path": "a.txt"},
            diff="--- a/a.txt\n+++ b/a.txt\n",
            origin=origin,
        )
    return asked.id


def test_a_question_is_settled_by_the_first_answer_only(db_path: Path) -> None:
    store = Store(db_path)
    with store.write() as tx:
        sid = tx.create_session("perm", "/p").id
    qid = _ask(store, sid)
    with store.write() as tx:
        first, won = tx.answer_permission(qid, "once", "run_a")
    with store.write() as tx:
        second, won_again = tx.answer_permission(qid, "reject", "run_b")
    with store.read() as tx:
        events = [(e.type, e.data) for e in tx.events_after(0, sid)]
        still_open = tx.open_permission_requests(sid)
    store.close()
    assert won and not won_again
    assert first.allowed and second.option_id == "once" and second.answered_by == "run_a"
    assert still_open == []
    types = [t for t, _ in events]
    assert types.count("permission.asked") == 1 and types.count("permission.replied") == 1
    asked = next(d for t, d in events if t == "permission.asked")
    assert asked["toolCallId"] == "call_1" and asked["diff"].startswith("--- a/a.txt")
    replied = next(d for t, d in events if t == "permission.replied")
    assert replied["outcome"] == {"outcome": "selected", "optionId": "once"}
    assert replied["by"] == "run_a"


def test_cancelling_open_questions_settles_them_as_cancelled(db_path: Path) -> None:
    store = Store(db_path)
    with store.write() as tx:
        sid = tx.create_session("perm", "/p").id
    qid = _ask(store, sid)
    with store.write() as tx:
        assert tx.cancel_open_permissions(sid, "interrupted") == 1
        assert tx.cancel_open_permissions(sid, "interrupted") == 0
        settled = tx.get_permission_request(qid)
    store.close()
    assert settled is not None and settled.status == "cancelled" and not settled.allowed
    assert settled.reply_json()["outcome"] == {"outcome": "cancelled"}
