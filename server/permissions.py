"""Permission rules: may the model run this tool call, must the user be asked, or is it denied?

Pure functions over the ``permission`` setting (parsed here, layered by server/config.py) and a
session's remembered "always" answers (kept by the store). Nothing here waits, asks or does I/O.

Three keys, as in opencode: ``read`` (read_file, list_files, grep, glob), ``edit`` (every tool
that changes files: edit, write, apply_patch) and ``bash``. Each is an action (``"allow"``,
``"ask"``, ``"deny"``) or an ordered object of wildcard patterns, matched against the path
relative to the session directory (``read``, ``edit``) or the command (``bash``). **The last
matching rule wins.** A key's rules start with the default ``"*"`` rule (read allow, edit ask,
bash ask) unless the user gave ``"*"`` themselves, so a subject no pattern names gets the default.

Wildcards (opencode's): ``*`` is any run of characters *including* ``/`` and spaces, ``?`` is
one character, everything else is literal, and a pattern matches the whole subject. ``**`` is
accepted and means the same as ``*`` (so ``docs/**`` reads as a glob user expects). For ``bash``,
a pattern ending in `` *`` also matches the bare command: ``git status *`` matches ``git status``.

Traps, each with its guard:

* ``*`` crosses directories: ``docs/*.md`` also matches ``docs/a/b.md``. Chosen so that opencode
  configurations carry over unchanged and ``"*"`` means everything; write ``docs/*.md`` knowing it.
* ``docs/../.env`` matches ``docs/**`` as text. Paths are normalised (``posixpath.normpath``)
  before matching, so it is decided as ``.env``.
* ``git status; rm -rf ~`` matches ``git status*`` as text. A command is split into its simple
  commands at ``;``, ``&&``, ``||``, ``|``, ``&``, parentheses and newlines (quotes respected), each
  is decided on its own, and the strictest answer wins (deny > ask > allow). Command
  substitution (``$(...)``, backticks, ``<(...)``) cannot be split that way: a command holding
  one is never allowed by a pattern narrower than ``"*"``; it is asked about instead. A command
  whose quotes do not close is treated the same way.
* Bash rules are a convenience, not a sandbox: ``bash -c 'rm -rf x'`` is the command ``bash``,
  and wrappers (``sudo``, ``env``, ``xargs``) are not unwrapped.
* A remembered "always" must not undo a configured ``deny`` (the configuration may have changed
  since the user answered): remembered rules are appended after the configured ones, but a
  configured ``deny`` is final. See :func:`decide`.
* An "always" on ``rm foo`` must not allow every ``rm``: :func:`always_patterns` widens only
  commands with known subcommands (``git status --short`` -> ``git status *``); any other
  command is remembered exactly as it was run.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol, TypeAlias, cast, get_args

Action: TypeAlias = Literal["allow", "ask", "deny"]
Key: TypeAlias = Literal["read", "edit", "bash"]
Source: TypeAlias = Literal["default", "config", "remembered"]

ACTIONS: tuple[Action, ...] = get_args(Action)
KEYS: tuple[Key, ...] = get_args(Key)
DEFAULT_ACTIONS: Mapping[Key, Action] = {"read": "allow", "edit": "ask", "bash": "ask"}
CATCH_ALL = "*"
_STRICTNESS: Mapping[Action, int] = {"allow": 0, "ask": 1, "deny": 2}

# Which rule a tool's calls answer to. A tool missing here is an error (KeyError), never
# silently allowed: see tests/test_permissions.py, which checks every tool in server/tools.
TOOL_KEYS: Mapping[str, Key] = {
    "read_file": "read",
    "list_files": "read",
    "grep": "read",
    "glob": "read",
    "edit": "edit",
    "write": "edit",
    "apply_patch": "edit",
    "bash": "bash",
}

# How many leading words name a command in "always" patterns (opencode calls this arity):
# ``git status --short`` is remembered as ``git status *``. Longer prefixes are listed too and
# the longest match wins (``npm run test`` -> ``npm run test *``). Commands not listed are
# remembered exactly.
ARITY: Mapping[str, int] = {
    "git": 2,
    "npm": 2,
    "npm run": 3,
    "pnpm": 2,
    "pnpm run": 3,
    "yarn": 2,
    "yarn run": 3,
    "bun": 2,
    "bun run": 3,
    "cargo": 2,
    "go": 2,
    "docker": 2,
    "docker compose": 3,
    "kubectl": 2,
    "pip": 2,
    "uv": 2,
    "uv run": 3,
    "poetry": 2,
    "poetry run": 3,
    "make": 2,
}

_SEPARATOR_CHARS = frozenset(";&|()\n")
_SUBSTITUTION = re.compile(r"\$\(|`|<\(|>\(")


class RuleError(ValueError):
    """A ``permission`` value that cannot be used. ``path`` locates the bad part under the
    setting (``""``, ``.bash``, ``.bash["rm *"]``), ``expected`` completes "... must be
    <expected>" and ``value`` is the bad part itself."""

    def __init__(self, path: str, expected: str, value: object):
        super().__init__(f"permission{path} must be {expected}, got {_describe(value)}")
        self.path = path
        self.expected = expected
        self.value = value


@dataclass(frozen=True)
class Rule:
    """One pattern and what it decides, and where it came from (for messages)."""

    key: Key
    pattern: str
    action: Action
    source: Source = "config"

    def describe(self) -> str:
        """``bash rule "rm *": "deny" (from the configuration)``."""
        where = {
            "default": "the default",
            "config": "the configuration",
            "remembered": 'an earlier "always" answer',
        }[self.source]
        rule = f"{json.dumps(self.pattern)}: {json.dumps(self.action)}"
        return f"{self.key} rule {rule} (from {where})"


@dataclass(frozen=True)
class Rules:
    """Per key, the ordered rules; the last one that matches wins."""

    read: tuple[Rule, ...]
    edit: tuple[Rule, ...]
    bash: tuple[Rule, ...]

    def for_key(self, key: Key) -> tuple[Rule, ...]:
        rules: tuple[Rule, ...] = getattr(self, key)
        return rules

    def to_json(self) -> dict[str, dict[str, str]]:
        """As the setting is written, with the default catch-all rules made explicit."""
        return {key: {r.pattern: r.action for r in self.for_key(key)} for key in KEYS}


def _with_default(key: Key, rules: Sequence[Rule]) -> tuple[Rule, ...]:
    """``rules`` behind the key's default catch-all, unless they have their own (which would
    override the default everywhere anyway)."""
    if any(r.pattern == CATCH_ALL for r in rules):
        return tuple(rules)
    return (Rule(key, CATCH_ALL, DEFAULT_ACTIONS[key], "default"), *rules)


DEFAULT_RULES = Rules(**{key: _with_default(key, ()) for key in KEYS})


@dataclass(frozen=True)
class Decision:
    """What to do with one call, the rule that said so, and the subject it was decided on (for a
    compound command, the simple command that decided). ``note`` says why an allowing rule was
    not followed, when it was not."""

    action: Action
    rule: Rule
    subject: str
    note: str = ""

    def explain(self) -> str:
        """One line for a tool error or a log: what was decided, on what, by which rule."""
        verb = {"allow": "is allowed by", "ask": "needs approval under", "deny": "is denied by"}
        text = f"{json.dumps(self.subject)} {verb[self.action]} the {self.rule.describe()}"
        return f"{text}; {self.note}" if self.note else text

    def tool_error(self) -> str:
        """The tool error the model gets for a denied call: it names the rule, so the model
        (and the user reading along) knows what to change instead of retrying."""
        return f"permission denied: {self.explain()}"


class Remembered(Protocol):
    """A stored "always" answer (store.models.PermissionRule has this shape)."""

    @property
    def key(self) -> str: ...

    @property
    def pattern(self) -> str: ...


# --- parsing ------------------------------------------------------------------------------------


def parse_rules(value: object) -> Rules:
    """The ``permission`` setting as :class:`Rules`. Accepts an action word for every key, or an
    object whose keys are ``read``/``edit``/``bash`` and whose values are an action word or an
    object of pattern -> action word. A string starting with ``{`` is read as JSON (how the
    environment variable carries an object). Raises :class:`RuleError`."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            expected = f"an action word or a JSON object (not valid JSON: {e})"
            raise RuleError("", expected, value) from None
    if isinstance(value, str):
        action = _parse_action(value, "")
        return Rules(**{key: (Rule(key, CATCH_ALL, action),) for key in KEYS})
    if not isinstance(value, Mapping):
        raise RuleError("", f"{_ACTION_WORDS} or an object with keys {_KEY_WORDS}", value)
    per_key: dict[Key, tuple[Rule, ...]] = {key: DEFAULT_RULES.for_key(key) for key in KEYS}
    for name, entry in value.items():
        if name not in KEYS:
            raise RuleError("", f"an object with keys {_KEY_WORDS}", {name: entry})
        key = cast(Key, name)
        per_key[key] = _parse_key(key, entry)
    return Rules(**per_key)


_ACTION_WORDS = '"allow", "ask" or "deny"'
_KEY_WORDS = '"read", "edit" or "bash"'


def _parse_key(key: Key, entry: object) -> tuple[Rule, ...]:
    path = f".{key}"
    if isinstance(entry, str):
        return (Rule(key, CATCH_ALL, _parse_action(entry, path)),)
    if not isinstance(entry, Mapping):
        raise RuleError(path, f"{_ACTION_WORDS} or an object of pattern -> action", entry)
    rules = []
    for pattern, action in entry.items():
        if not isinstance(pattern, str) or not pattern.strip():
            raise RuleError(path, "an object whose patterns are non-empty strings", pattern)
        rules.append(Rule(key, pattern, _parse_action(action, f"{path}[{json.dumps(pattern)}]")))
    return _with_default(key, rules)


def _parse_action(value: object, path: str) -> Action:
    if isinstance(value, str) and value.strip().lower() in ACTIONS:
        return cast(Action, value.strip().lower())
    raise RuleError(path, _ACTION_WORDS, value)


def _describe(value: object) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


# --- matching -----------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _compile(pattern: str, bare_prefix: bool) -> re.Pattern[str]:
    optional_tail = bare_prefix and pattern.endswith(" *")
    if optional_tail:
        pattern = pattern[:-2]
    pieces = []
    for part in re.split(r"(\*+|\?)", pattern):
        if part.startswith("*"):
            pieces.append(".*")
        elif part == "?":
            pieces.append(".")
        else:
            pieces.append(re.escape(part))
    if optional_tail:
        pieces.append("(?: .*)?")
    return re.compile("".join(pieces), re.DOTALL)


def matches(pattern: str, subject: str, *, key: Key = "read") -> bool:
    """Whether ``pattern`` matches all of ``subject`` (see the module docstring for the
    wildcards; ``key="bash"`` adds the bare-command rule for a trailing `` *``)."""
    return _compile(pattern, key == "bash").fullmatch(subject) is not None


def normalize_path(path: str) -> str:
    """A path relative to the session directory as rules see it: ``./docs//a/../b.md`` ->
    ``docs/b.md``, the directory itself -> ``.``."""
    return posixpath.normpath(path) if path else "."


def split_command(command: str) -> list[str] | None:
    """The simple commands in ``command``, each with its words joined by one space; None when
    the command cannot be split safely (command substitution, unclosed quotes)."""
    if _SUBSTITUTION.search(command):
        return None
    lexer = shlex.shlex(command, posix=True, punctuation_chars="();<>|&\n")
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError:
        return None
    commands: list[str] = []
    words: list[str] = []
    for token in tokens:
        if token and set(token) <= _SEPARATOR_CHARS:
            if words:
                commands.append(" ".join(words))
            words = []
        else:
            words.append(token)
    if words:
        commands.append(" ".join(words))
    return commands


def _last_match(rules: Iterable[Rule], key: Key, subject: str) -> Rule | None:
    found = None
    for rule in rules:
        if matches(rule.pattern, subject, key=key):
            found = rule
    return found


def _decide_one(
    rules: Rules, key: Key, subject: str, remembered: Sequence[Rule], splittable: bool
) -> Decision:
    configured = _last_match(rules.for_key(key), key, subject)
    if configured is None:  # only when Rules were built without a catch-all
        configured = Rule(key, CATCH_ALL, DEFAULT_ACTIONS[key], "default")
    if configured.action == "deny":
        return Decision("deny", configured, subject)
    chosen = _last_match(remembered, key, subject) or configured
    exact = chosen.source == "remembered" and chosen.pattern == subject
    if chosen.action == "allow" and not splittable and chosen.pattern != CATCH_ALL and not exact:
        note = "the command cannot be checked part by part (command substitution or quoting)"
        return Decision("ask", chosen, subject, note)
    return Decision(chosen.action, chosen, subject)


def decide(rules: Rules, key: Key, subject: str, remembered: Iterable[Remembered] = ()) -> Decision:
    """What to do with a call whose ``key`` subject is ``subject`` (a path relative to the
    session directory, or a bash command).

    The configured rules are tried first, the last match winning; a configured ``deny`` is
    final. Otherwise the session's remembered "always" rules for this key (allow rules,
    appended after the configured ones) win where one matches. A compound command is decided
    per simple command, and the strictest answer is returned.
    """
    allowing = tuple(
        Rule(key, r.pattern, "allow", "remembered") for r in remembered if r.key == key
    )
    if key != "bash":
        return _decide_one(rules, key, normalize_path(subject), allowing, True)
    parts = split_command(subject)
    if parts is None:
        return _decide_one(rules, key, " ".join(subject.split()), allowing, False)
    if not parts:
        return _decide_one(rules, key, "", allowing, True)
    decisions = [_decide_one(rules, key, part, allowing, True) for part in parts]
    return max(decisions, key=lambda d: _STRICTNESS[d.action])


def key_for_tool(tool: str) -> Key:
    """The rule key a tool answers to. Raises KeyError for a tool with no key."""
    try:
        return TOOL_KEYS[tool]
    except KeyError:
        raise KeyError(f"tool {tool!r} has no permission key; add it to TOOL_KEYS") from None


# --- "always" -----------------------------------------------------------------------------------


def always_patterns(key: Key, subject: str) -> list[str]:
    """What an "always" answer to a call on ``subject`` remembers, one pattern per simple
    command (a compound command's parts are each remembered).

    ``read``/``edit``: the exact normalised path. ``bash``: for a command with known
    subcommands (:data:`ARITY`), its name words plus `` *`` (``git status --short`` ->
    ``git status *``, which also matches ``git status``); otherwise the command exactly, words
    joined by one space. A command that cannot be split (command substitution) is remembered
    exactly and whole, so it only ever matches itself.
    """
    if key != "bash":
        return [normalize_path(subject)]
    parts = split_command(subject)
    if parts is None:
        return [" ".join(subject.split())]
    patterns: list[str] = []
    for part in parts:
        pattern = _command_pattern(part)
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def _command_pattern(command: str) -> str:
    words = command.split(" ")
    arity = 0
    for size in (2, 1):
        prefix = " ".join(words[:size])
        if len(words) >= size and prefix in ARITY:
            arity = ARITY[prefix]
            break
    name = words[:arity]
    if arity == 0 or len(words) < arity or any(w.startswith("-") or not w for w in name):
        return command
    return " ".join(name) + " *"
