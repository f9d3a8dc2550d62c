"""The effective settings, from defaults and four layers; a later layer wins.

1. defaults (the limits and the model depend on the provider);
2. the TOML file: ``--config PATH``, else ``$SESSIONLSP_CONFIG``, else ``config.toml`` in the
   user config directory (``~/.config/sessionlsp/`` on Linux). A missing default file is fine;
   a missing file named explicitly is an error;
3. environment variables, ``SESSIONLSP_`` plus the name in upper snake case;
4. the editor's ``initializationOptions``;
5. command-line overrides (``--db``).

Keys are camelCase in the file and in initializationOptions. In every layer, an empty string
or null means "not set here". The API key comes from ``$SESSIONLSP_API_KEY``, else
``$OPENAI_API_KEY``, else ``apiKey`` in the file, never from initializationOptions (editors log
those messages). ``permission`` (server/permissions.py) is an object, but a later layer
replaces it whole rather than merging into it: an editor that sets only ``edit`` puts ``bash``
back to its default (ask), which errs toward asking, and what a source said is what applies.
Unknown keys become warnings; values of the wrong kind raise
:class:`ConfigError`, whose message names the key and where it came from. No message, warning
or repr contains the API key.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

import platformdirs

from server.permissions import DEFAULT_RULES, RuleError, Rules, parse_rules
from server.providers.registry import DEFAULT_PROVIDER, PROVIDERS

log = logging.getLogger(__name__)

ProviderName = str  # a key of server.providers.registry.PROVIDERS

CONFIG_ENV = "SESSIONLSP_CONFIG"
API_KEY_ENVS = ("SESSIONLSP_API_KEY", "OPENAI_API_KEY")
API_KEY_KEY = "apiKey"
INIT_OPTIONS = "initializationOptions"
DEFAULT = "default"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
Sandbox = Literal["bwrap", "none"]  # where the bash tool runs commands (server/tools/bash.py)
SANDBOXES: tuple[Sandbox, ...] = ("bwrap", "none")
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class ConfigError(ValueError):
    """A setting could not be used. The message names the setting and its source."""


_UNSET = object()


class _Invalid(Exception):
    """Raised by a parser: ``expected`` completes "... must be <expected>". For a structured
    value, ``path`` names the bad part under the key (``.bash["rm *"]``) and ``got`` is that
    part, so the message shows the part rather than the whole value."""

    def __init__(self, expected: str, path: str = "", got: object = _UNSET):
        super().__init__(expected)
        self.expected = expected
        self.path = path
        self.got = got


@dataclass(frozen=True)
class _Origin:
    """Where a layer's raw values come from, for sources and messages."""

    source: str  # as shown in Config.sources, e.g. "file /home/me/.config/sessionlsp/config.toml"
    label: str  # as named in messages: the file's path, "initializationOptions", ...
    base_dir: Path | None = None  # relative paths resolve against this (the config file's dir)

    def where(self, key: str) -> str:
        """``key in <this source>``, for messages."""
        return f"{key} in {self.label}"


Parser = Callable[[object, _Origin], Any]


def _parse_provider(value: object, origin: _Origin) -> ProviderName:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in PROVIDERS:
            return word
    names = [f'"{name}"' for name in PROVIDERS]
    raise _Invalid(", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])


def _parse_str(value: object, origin: _Origin) -> str:
    if isinstance(value, str):
        return value
    raise _Invalid("a string")


def _parse_url(value: object, origin: _Origin) -> str:
    if isinstance(value, str) and re.match(r"https?://\S+$", value.strip()):
        return value.strip()
    raise _Invalid("an http:// or https:// URL")


def _parse_count(value: object, origin: _Origin) -> int:
    if isinstance(value, bool):
        raise _Invalid("a non-negative integer")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
        return int(value.strip())
    raise _Invalid("a non-negative integer")


def _parse_bool(value: object, origin: _Origin) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise _Invalid("true or false (or 1/0, yes/no, on/off)")


def _parse_path(value: object, origin: _Origin) -> str:
    if not isinstance(value, str):
        raise _Invalid("a path (a string)")
    path = Path(value).expanduser()
    if origin.base_dir is not None and not path.is_absolute():
        path = origin.base_dir / path
    return str(path)


def _parse_log_level(value: object, origin: _Origin) -> str:
    if isinstance(value, str) and value.strip().lower() in LOG_LEVELS:
        return value.strip().lower()
    raise _Invalid(", ".join(f'"{level}"' for level in LOG_LEVELS[:-1]) + ' or "critical"')


def _parse_permission(value: object, origin: _Origin) -> Rules:
    try:
        return parse_rules(value)
    except RuleError as e:
        raise _Invalid(e.expected, e.path, e.value) from None


def _parse_sandbox(value: object, origin: _Origin) -> Sandbox:
    if isinstance(value, str) and value.strip().lower() in SANDBOXES:
        return cast(Sandbox, value.strip().lower())
    raise _Invalid('"bwrap" or "none"')


@dataclass(frozen=True)
class _Key:
    """One setting: its field name, how the file and the environment spell it, its parser."""

    name: str
    camel: str
    env: str
    parse: Parser


KEYS: tuple[_Key, ...] = (
    _Key("provider", "provider", "SESSIONLSP_PROVIDER", _parse_provider),
    _Key("model", "model", "SESSIONLSP_MODEL", _parse_str),
    _Key("base_url", "baseUrl", "SESSIONLSP_BASE_URL", _parse_url),
    _Key("context_limit", "contextLimit", "SESSIONLSP_CONTEXT_LIMIT", _parse_count),
    _Key("output_limit", "outputLimit", "SESSIONLSP_OUTPUT_LIMIT", _parse_count),
    _Key("auto_compact", "autoCompact", "SESSIONLSP_AUTO_COMPACT", _parse_bool),
    _Key("db", "db", "SESSIONLSP_DB", _parse_path),
    _Key("log_file", "logFile", "SESSIONLSP_LOG_FILE", _parse_path),
    _Key("log_level", "logLevel", "SESSIONLSP_LOG_LEVEL", _parse_log_level),
    _Key("permission", "permission", "SESSIONLSP_PERMISSION", _parse_permission),
    _Key("sandbox", "sandbox", "SESSIONLSP_SANDBOX", _parse_sandbox),
    _Key("offline_delay_ms", "offlineDelayMs", "SESSIONLSP_OFFLINE_DELAY_MS", _parse_count),
)
_BY_CAMEL = {key.camel: key for key in KEYS}
_CAMEL = {key.name: key.camel for key in KEYS} | {"api_key": API_KEY_KEY}


@dataclass(frozen=True)
class Setting:
    """One parsed value and where it came from."""

    value: Any
    source: str


@dataclass(frozen=True)
class Layer:
    """The settings one source gave (by field name), and what it said that was ignored."""

    settings: Mapping[str, Setting] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigLayers:
    """Every source's values, kept so that a later layer can be replaced (see
    :meth:`Config.with_init_options`). The API key is kept out of ``repr``."""

    config_file: str | None = None  # the file that was read, if any
    file: Layer = field(default_factory=Layer)
    env: Layer = field(default_factory=Layer)
    init: Layer = field(default_factory=Layer)
    overrides: Layer = field(default_factory=Layer)
    api_key: str | None = field(default=None, repr=False)
    api_key_source: str = DEFAULT

    def in_order(self) -> tuple[Layer, ...]:
        return (self.file, self.env, self.init, self.overrides)


_DEFAULT_ENTRY = PROVIDERS[DEFAULT_PROVIDER]


@dataclass(frozen=True)
class Config:
    provider: ProviderName = DEFAULT_PROVIDER
    model: str = _DEFAULT_ENTRY.model  # "" means not set (openai has no default model)
    base_url: str | None = None
    context_limit: int = _DEFAULT_ENTRY.context_limit  # tokens
    output_limit: int = _DEFAULT_ENTRY.output_limit  # tokens
    auto_compact: bool = True
    db: str | None = None  # None: the store's default path
    api_key: str | None = field(default=None, repr=False)
    log_file: str | None = None
    log_level: str = "warning"
    # What tool calls may run unasked (server/permissions.py); replaced whole by a later layer.
    permission: Rules = DEFAULT_RULES
    sandbox: Sandbox | None = None  # None: bwrap when it is on PATH, else none
    offline_delay_ms: int = 40  # the offline provider's pause between streamed pieces
    # Per field name: "default", "file <path>", "env SESSIONLSP_X", "initializationOptions",
    # or "--db".
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[str, ...] = ()
    layers: ConfigLayers = field(default_factory=ConfigLayers, repr=False, compare=False)

    @property
    def config_file(self) -> str | None:
        """The TOML file that was read, or None when there was none."""
        return self.layers.config_file

    def with_init_options(self, options: Mapping[str, object] | None) -> Config:
        """This configuration with ``options`` as its initializationOptions layer (replacing
        any earlier one); file, environment and command-line values stay where it is silent."""
        return _resolve(replace(self.layers, init=_init_layer(options)))

    def public_json(self) -> dict[str, Any]:
        """Every setting in camelCase, with its source; the API key only as "set (from ...)"."""
        key_state = f"set (from {self.sources.get('api_key', DEFAULT)})" if self.api_key else None
        return {
            "provider": self.provider,
            "model": self.model,
            "baseUrl": _masked_url(self.base_url),
            "contextLimit": self.context_limit,
            "outputLimit": self.output_limit,
            "autoCompact": self.auto_compact,
            "db": self.db,
            "apiKey": key_state,
            "logFile": self.log_file,
            "logLevel": self.log_level,
            "permission": self.permission.to_json(),
            "sandbox": self.sandbox,
            "offlineDelayMs": self.offline_delay_ms,
            "configFile": self.config_file,
            "sources": {camel: self.sources.get(name, DEFAULT) for name, camel in _CAMEL.items()},
            "warnings": list(self.warnings),
        }


def _masked_url(url: str | None) -> str | None:
    """The URL with a password in its user info shown as ``***`` (it is a credential)."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    netloc = f"{user}:***@" + parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def default_config_path() -> Path:
    """``config.toml`` in the user config directory (``$XDG_CONFIG_HOME/sessionlsp`` on
    Linux)."""
    return Path(platformdirs.user_config_dir("sessionlsp", appauthor=False)) / "config.toml"


def load_config(
    *,
    config_path: str | None = None,
    env: Mapping[str, str] | None = None,
    init_options: Mapping[str, object] | None = None,
    db_override: str | None = None,
) -> Config:
    """Read the file, the environment (``os.environ`` when None), the initializationOptions
    and ``--db`` into a :class:`Config`. Raises :class:`ConfigError`."""
    environ: Mapping[str, str] = os.environ if env is None else env
    path, named_by = _choose_config_file(config_path, environ)
    raw = _read_config_file(path, named_by)
    file_layer = Layer()
    file_api_key: str | None = None
    if raw is not None:
        file_layer, file_api_key = _file_layer(path, raw)
    api_key, api_key_source = _api_key(environ, file_api_key, path)
    overrides: dict[str, Setting] = {}
    if db_override:
        overrides["db"] = Setting(_parse_path(db_override, _Origin("--db", "--db")), "--db")
    layers = ConfigLayers(
        config_file=str(path) if raw is not None else None,
        file=file_layer,
        env=_env_layer(environ),
        init=_init_layer(init_options),
        overrides=Layer(MappingProxyType(overrides)),
        api_key=api_key,
        api_key_source=api_key_source,
    )
    return _resolve(layers)


def _choose_config_file(config_path: str | None, env: Mapping[str, str]) -> tuple[Path, str | None]:
    """The file to read and what named it (None for the default location)."""
    if config_path:
        return Path(config_path).expanduser(), "--config"
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser(), CONFIG_ENV
    return default_config_path(), None


def _read_config_file(path: Path, named_by: str | None) -> dict[str, Any] | None:
    """The parsed file, or None when the default file does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if named_by is not None:
            raise ConfigError(f"config file {path} (from {named_by}) does not exist") from None
        log.debug("no config file at %s; using defaults", path)
        return None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # The message ends with "(at line L, column C)".
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def _file_layer(path: Path, raw: Mapping[str, Any]) -> tuple[Layer, str | None]:
    """The file's settings and its ``apiKey`` (kept apart: it is not a layered setting)."""
    origin = _Origin(f"file {path}", str(path), base_dir=path.parent)
    values = dict(raw)
    warnings: list[str] = []
    api_key: str | None = None
    secret = values.pop(API_KEY_KEY, None)
    if secret is not None and secret != "":
        if not isinstance(secret, str):
            raise ConfigError(f"{origin.where(API_KEY_KEY)} must be a string")
        api_key = secret
        warnings.extend(_readable_by_others(path))
    settings, unknown = _parse_camel(values, origin)
    warnings.extend(unknown)
    return Layer(MappingProxyType(settings), tuple(warnings)), api_key


def _readable_by_others(path: Path) -> list[str]:
    if os.name != "posix":
        return []
    try:
        mode = path.stat().st_mode
    except OSError:
        return []
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return [
            f"config file {path} holds apiKey and is readable by other users "
            f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 on it"
        ]
    return []


def _env_layer(env: Mapping[str, str]) -> Layer:
    settings: dict[str, Setting] = {}
    for key in KEYS:
        raw = env.get(key.env)
        if raw is None or raw.strip() == "":
            continue
        origin = _Origin(f"env {key.env}", "the environment")
        settings[key.name] = Setting(_parse(key, raw, origin, key.env), origin.source)
    return Layer(MappingProxyType(settings))


def _init_layer(options: Mapping[str, object] | None) -> Layer:
    if options is None:
        return Layer()
    if not isinstance(options, Mapping):
        raise ConfigError(f"{INIT_OPTIONS} must be a JSON object, got {_describe(options)}")
    values = dict(options)
    warnings: list[str] = []
    if API_KEY_KEY in values:
        del values[API_KEY_KEY]
        warnings.append(
            f"{API_KEY_KEY} in {INIT_OPTIONS} is ignored; "
            "set SESSIONLSP_API_KEY in the server's environment"
        )
    settings, unknown = _parse_camel(values, _Origin(INIT_OPTIONS, INIT_OPTIONS))
    warnings.extend(unknown)
    return Layer(MappingProxyType(settings), tuple(warnings))


def _parse_camel(
    values: Mapping[str, object], origin: _Origin
) -> tuple[dict[str, Setting], list[str]]:
    """Parse camelCase keys; unknown keys become warnings."""
    settings: dict[str, Setting] = {}
    warnings: list[str] = []
    for name, raw in values.items():
        key = _BY_CAMEL.get(name)
        if key is None:
            warnings.append(_unknown_key(name, origin))
            continue
        if raw is None or raw == "":
            continue
        settings[key.name] = Setting(_parse(key, raw, origin, name), origin.source)
    return settings, warnings


def _unknown_key(name: str, origin: _Origin) -> str:
    message = f"unknown key {json.dumps(name)} in {origin.label} is ignored"
    guess = _CAMEL.get(name) or _CAMEL.get(re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower())
    if guess is not None and guess != name:
        message += f' (did you mean "{guess}"?)'
    return message


def _parse(key: _Key, raw: object, origin: _Origin, spelled: str) -> Any:
    """Parse ``raw``, given as ``spelled`` in ``origin``."""
    try:
        return key.parse(raw, origin)
    except _Invalid as e:
        got = raw if e.got is _UNSET else e.got
        message = f"{origin.where(spelled + e.path)} must be {e.expected}, got {_describe(got)}"
        raise ConfigError(message) from None


def _describe(value: object) -> str:
    """A short rendering of a bad value for messages."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _api_key(
    env: Mapping[str, str], file_api_key: str | None, path: Path
) -> tuple[str | None, str]:
    for name in API_KEY_ENVS:
        value = env.get(name, "").strip()
        if value:
            return value, f"env {name}"
    if file_api_key:
        return file_api_key, f"file {path}"
    return None, DEFAULT


def _resolve(layers: ConfigLayers) -> Config:
    """Merge the layers over the defaults (which follow the chosen provider)."""
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers.in_order():
        for name, setting in layer.settings.items():
            merged[name] = setting.value
            sources[name] = setting.source
    provider: ProviderName = merged.get("provider", DEFAULT_PROVIDER)
    defaults = PROVIDERS[provider]
    fallback: dict[str, Any] = {
        "provider": provider,
        "model": defaults.model,
        "base_url": None,
        "context_limit": defaults.context_limit,
        "output_limit": defaults.output_limit,
        "auto_compact": True,
        "db": None,
        "log_file": None,
        "log_level": "warning",
        "permission": DEFAULT_RULES,
        "sandbox": None,
        "offline_delay_ms": 40,
    }
    for key in KEYS:
        merged.setdefault(key.name, fallback[key.name])
    ordered = {key.name: sources.get(key.name, DEFAULT) for key in KEYS}
    ordered["api_key"] = layers.api_key_source
    warnings = tuple(w for layer in layers.in_order() for w in layer.warnings)
    return Config(
        **merged,
        api_key=layers.api_key,
        sources=MappingProxyType(ordered),
        warnings=warnings,
        layers=layers,
    )
