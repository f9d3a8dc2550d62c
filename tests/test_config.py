"""Settings: defaults, file, environment, initializationOptions, --db; later wins."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import server.config
from server.config import Config, ConfigError, default_config_path, load_config
from server.permissions import decide

SECRET = "sk-test-0123456789abcdef"


def _write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def no_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the real user's config file."""
    missing = tmp_path / "no-such-dir" / "config.toml"
    monkeypatch.setattr(server.config, "default_config_path", lambda: missing)


def test_defaults_without_any_source_are_offline() -> None:
    config = load_config(env={})
    assert (config.provider, config.model) == ("offline", "offline")
    assert (config.context_limit, config.output_limit) == (8_000, 1_000)
    assert config.auto_compact is True
    assert config.db is None and config.api_key is None and config.base_url is None
    assert config.log_level == "warning" and config.log_file is None
    assert config.config_file is None
    assert set(config.sources.values()) == {"default"}
    assert config.warnings == ()


def test_openai_defaults_for_limits() -> None:
    config = load_config(env={"SESSIONLSP_PROVIDER": "openai"})
    assert config.provider == "openai"
    assert config.model == ""  # no default model: "not set"
    assert (config.context_limit, config.output_limit) == (128_000, 4_096)
    assert config.sources["context_limit"] == "default"


def test_explicit_limits_win_over_provider_defaults() -> None:
    config = load_config(env={"SESSIONLSP_PROVIDER": "openai"}, init_options={"contextLimit": 32})
    assert config.context_limit == 32
    assert config.output_limit == 4_096


def test_file_values_are_read_with_camel_case_keys(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'provider = "openai"\nmodel = "gpt-x"\nbaseUrl = "http://localhost:8080/v1"\n'
        "contextLimit = 50000\noutputLimit = 2000\nautoCompact = false\n"
        'logLevel = "INFO"\n',
    )
    config = load_config(config_path=str(path), env={})
    assert config.provider == "openai" and config.model == "gpt-x"
    assert config.base_url == "http://localhost:8080/v1"
    assert (config.context_limit, config.output_limit) == (50_000, 2_000)
    assert config.auto_compact is False
    assert config.log_level == "info"
    assert config.config_file == str(path)
    assert config.sources["model"] == f"file {path}"


def test_environment_overrides_file_and_init_options_override_environment(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, 'model = "from-file"\ncontextLimit = 1\noutputLimit = 2\n')
    env = {"SESSIONLSP_MODEL": "from-env", "SESSIONLSP_CONTEXT_LIMIT": "10"}
    config = load_config(config_path=str(path), env=env, init_options={"model": "from-editor"})
    assert config.model == "from-editor"
    assert config.context_limit == 10
    assert config.output_limit == 2
    assert config.sources["model"] == "initializationOptions"
    assert config.sources["context_limit"] == "env SESSIONLSP_CONTEXT_LIMIT"
    assert config.sources["output_limit"] == f"file {path}"


def test_db_override_wins_over_every_other_source(tmp_path: Path) -> None:
    path = _write(tmp_path, 'db = "file.db"\n')
    config = load_config(
        config_path=str(path),
        env={"SESSIONLSP_DB": "/env.db"},
        init_options={"db": "/editor.db"},
        db_override="/cli.db",
    )
    assert config.db == "/cli.db"
    assert config.sources["db"] == "--db"


def test_relative_paths_in_the_file_resolve_against_its_directory(tmp_path: Path) -> None:
    path = _write(tmp_path, 'db = "data/sessions.db"\nlogFile = "/abs/log.txt"\n')
    config = load_config(config_path=str(path), env={})
    assert config.db == str(tmp_path / "data" / "sessions.db")
    assert config.log_file == "/abs/log.txt"


def test_with_init_options_keeps_file_and_environment_values_where_options_are_silent(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, 'model = "from-file"\noutputLimit = 7\n')
    first = load_config(
        config_path=str(path),
        env={"SESSIONLSP_CONTEXT_LIMIT": "10", "SESSIONLSP_API_KEY": SECRET},
        init_options={"model": "editor-1", "contextLimit": 99},
        db_override="/cli.db",
    )
    second = first.with_init_options({"autoCompact": False})
    assert second.model == "from-file"  # the earlier options are replaced, not merged
    assert second.context_limit == 10
    assert second.output_limit == 7
    assert second.auto_compact is False
    assert second.db == "/cli.db"
    assert second.api_key == SECRET
    assert second.sources["auto_compact"] == "initializationOptions"
    assert second.sources["model"] == f"file {path}"
    assert second.with_init_options(None).auto_compact is True


def test_null_and_empty_values_mean_not_set() -> None:
    config = load_config(
        env={"SESSIONLSP_MODEL": "from-env", "SESSIONLSP_CONTEXT_LIMIT": ""},
        init_options={"model": None, "baseUrl": ""},
    )
    assert config.model == "from-env"
    assert config.context_limit == 8_000
    assert config.base_url is None


def test_api_key_prefers_sessionlsp_then_openai_then_file(tmp_path: Path) -> None:
    path = _write(tmp_path, f'apiKey = "{SECRET}-file"\n')
    both = {"SESSIONLSP_API_KEY": f"{SECRET}-own", "OPENAI_API_KEY": f"{SECRET}-openai"}
    config = load_config(config_path=str(path), env=both)
    assert config.api_key == f"{SECRET}-own"
    assert config.sources["api_key"] == "env SESSIONLSP_API_KEY"
    config = load_config(config_path=str(path), env={"OPENAI_API_KEY": f"{SECRET}-openai"})
    assert config.api_key == f"{SECRET}-openai"
    assert config.sources["api_key"] == "env OPENAI_API_KEY"
    config = load_config(config_path=str(path), env={})
    assert config.api_key == f"{SECRET}-file"
    assert config.sources["api_key"] == f"file {path}"


def test_api_key_is_never_in_public_json_or_repr(tmp_path: Path) -> None:
    path = _write(tmp_path, f'apiKey = "{SECRET}"\n')
    for config in (
        load_config(env={"SESSIONLSP_API_KEY": SECRET}),
        load_config(config_path=str(path), env={}),
    ):
        public = config.public_json()
        assert SECRET not in json.dumps(public)
        assert SECRET not in repr(config)
        assert SECRET not in str(config)
        assert SECRET not in repr(config.layers)
        assert public["apiKey"] == f"set (from {config.sources['api_key']})"
    assert load_config(env={}).public_json()["apiKey"] is None


def test_api_key_in_init_options_is_ignored_with_a_warning() -> None:
    config = load_config(env={}, init_options={"apiKey": SECRET})
    assert config.api_key is None
    assert config.sources["api_key"] == "default"
    assert config.warnings == (
        "apiKey in initializationOptions is ignored; "
        "set SESSIONLSP_API_KEY in the server's environment",
    )
    assert all(SECRET not in w for w in config.warnings)
    assert SECRET not in json.dumps(config.public_json())


def test_api_key_from_the_environment_survives_init_options_that_name_one() -> None:
    config = load_config(env={"SESSIONLSP_API_KEY": SECRET}, init_options={"apiKey": "other"})
    assert config.api_key == SECRET


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_file_holding_the_api_key_readable_by_others_is_warned_about(tmp_path: Path) -> None:
    path = _write(tmp_path, f'apiKey = "{SECRET}"\n')
    path.chmod(0o644)
    warnings = load_config(config_path=str(path), env={}).warnings
    assert any("chmod 600" in w for w in warnings)
    assert all(SECRET not in w for w in warnings)
    path.chmod(0o600)
    assert load_config(config_path=str(path), env={}).warnings == ()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"contextLimit": "abc"},
            'contextLimit in initializationOptions must be a non-negative integer, got "abc"',
        ),
        (
            {"outputLimit": -5},
            "outputLimit in initializationOptions must be a non-negative integer, got -5",
        ),
        (
            {"provider": "foo"},
            'provider in initializationOptions must be "openai" or "offline", got "foo"',
        ),
        (
            {"autoCompact": "maybe"},
            "autoCompact in initializationOptions must be true or false "
            '(or 1/0, yes/no, on/off), got "maybe"',
        ),
        (
            {"baseUrl": "localhost:8080"},
            "baseUrl in initializationOptions must be an http:// or https:// URL, "
            'got "localhost:8080"',
        ),
        ({"model": 3}, "model in initializationOptions must be a string, got 3"),
    ],
)
def test_bad_value_names_the_field_and_the_source(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, init_options=options)
    assert str(caught.value) == message


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^SESSIONLSP_OUTPUT_LIMIT in the environment must be"):
        load_config(env={"SESSIONLSP_OUTPUT_LIMIT": "lots"})


def test_bad_file_value_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'logLevel = "loud"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config_path=str(path), env={})
    assert str(caught.value).startswith(f"logLevel in {path} must be")


def test_sandbox_comes_from_the_file_the_environment_or_init_options_and_is_checked(
    tmp_path: Path,
) -> None:
    assert load_config(env={}).sandbox is None  # bwrap when it is on PATH (server/tools/bash.py)
    path = _write(tmp_path, 'sandbox = "none"\n')
    assert load_config(config_path=str(path), env={}).sandbox == "none"
    config = load_config(config_path=str(path), env={"SESSIONLSP_SANDBOX": "BWRAP"})
    assert (config.sandbox, config.sources["sandbox"]) == ("bwrap", "env SESSIONLSP_SANDBOX")
    config = config.with_init_options({"sandbox": "none"})
    assert (config.sandbox, config.sources["sandbox"]) == ("none", "initializationOptions")
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, init_options={"sandbox": "docker"})
    assert str(caught.value) == (
        'sandbox in initializationOptions must be "bwrap" or "none", got "docker"'
    )


def test_bad_api_key_type_in_the_file_is_an_error_without_the_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "apiKey = 12345678\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config_path=str(path), env={})
    assert str(caught.value) == f"apiKey in {path} must be a string"


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("On", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
        (" False ", False),
    ],
)
def test_auto_compact_accepts_common_spellings(spelling: str, expected: bool) -> None:
    assert load_config(env={"SESSIONLSP_AUTO_COMPACT": spelling}).auto_compact is expected
    assert load_config(env={}, init_options={"autoCompact": spelling}).auto_compact is expected


def test_integers_given_as_digit_strings_or_whole_floats_are_accepted() -> None:
    config = load_config(env={}, init_options={"contextLimit": "4096", "outputLimit": 512.0})
    assert (config.context_limit, config.output_limit) == (4_096, 512)


def test_unknown_keys_are_warnings_with_a_hint(tmp_path: Path) -> None:
    path = _write(tmp_path, "context_limit = 5\n[extra]\nx = 1\n")
    config = load_config(config_path=str(path), env={}, init_options={"colour": "blue"})
    assert config.context_limit == 8_000
    assert config.warnings == (
        f'unknown key "context_limit" in {path} is ignored (did you mean "contextLimit"?)',
        f'unknown key "extra" in {path} is ignored',
        'unknown key "colour" in initializationOptions is ignored',
    )


def test_unreadable_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, 'model = "ok"\ncontextLimit = = 3\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config_path=str(path), env={})
    assert str(path) in str(caught.value)
    assert "line 2" in str(caught.value)


def test_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=r"does not exist") as caught:
        load_config(config_path=str(missing), env={})
    assert "--config" in str(caught.value)
    with pytest.raises(ConfigError, match=r"SESSIONLSP_CONFIG"):
        load_config(env={"SESSIONLSP_CONFIG": str(missing)})


def test_missing_default_config_file_is_fine() -> None:
    assert load_config(env={}).config_file is None


def test_config_file_comes_from_the_argument_then_the_environment_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = _write(tmp_path, 'model = "default-file"\n', "default.toml")
    named = _write(tmp_path, 'model = "env-file"\n', "named.toml")
    argument = _write(tmp_path, 'model = "argument-file"\n', "argument.toml")
    monkeypatch.setattr(server.config, "default_config_path", lambda: default)
    env = {"SESSIONLSP_CONFIG": str(named)}
    assert load_config(env={}).model == "default-file"
    assert load_config(env=env).model == "env-file"
    assert load_config(config_path=str(argument), env=env).model == "argument-file"


def test_default_config_path_is_config_toml_in_the_user_config_dir() -> None:
    path = default_config_path()
    assert path.name == "config.toml"
    assert path.parent.name == "sessionlsp"


def test_public_json_shows_every_setting_in_camel_case_with_sources() -> None:
    config = load_config(env={"SESSIONLSP_LOG_LEVEL": "error"}, init_options={"colour": 1})
    public = config.public_json()
    assert public == {
        "provider": "offline",
        "model": "offline",
        "baseUrl": None,
        "contextLimit": 8_000,
        "outputLimit": 1_000,
        "autoCompact": True,
        "db": None,
        "apiKey": None,
        "logFile": None,
        "logLevel": "error",
        "permission": {"read": {"*": "allow"}, "edit": {"*": "ask"}, "bash": {"*": "ask"}},
        "sandbox": None,
        "offlineDelayMs": 40,
        "configFile": None,
        "sources": {
            "provider": "default",
            "model": "default",
            "baseUrl": "default",
            "contextLimit": "default",
            "outputLimit": "default",
            "autoCompact": "default",
            "db": "default",
            "logFile": "default",
            "logLevel": "env SESSIONLSP_LOG_LEVEL",
            "permission": "default",
            "sandbox": "default",
            "offlineDelayMs": "default",
            "apiKey": "default",
        },
        "warnings": ['unknown key "colour" in initializationOptions is ignored'],
    }
    json.dumps(public)  # serialisable as it is


def test_init_options_that_are_not_an_object_are_an_error() -> None:
    with pytest.raises(ConfigError, match=r"initializationOptions must be a JSON object"):
        load_config(env={}, init_options=["a"])  # type: ignore[arg-type]


def test_a_directly_built_config_reports_defaults() -> None:
    public = Config().public_json()
    assert public["provider"] == "offline"
    assert set(public["sources"].values()) == {"default"}


# --- permission ---------------------------------------------------------------------------------


def test_permission_defaults_allow_reading_and_ask_before_edits_and_commands() -> None:
    config = load_config(env={})
    assert decide(config.permission, "read", "a.py").action == "allow"
    assert decide(config.permission, "edit", "a.py").action == "ask"
    assert decide(config.permission, "bash", "ls").action == "ask"
    assert config.sources["permission"] == "default"


def test_permission_is_read_from_a_toml_table_keeping_the_order_of_its_patterns(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        'permission.read = "allow"\n'
        "[permission.bash]\n"
        '"*" = "ask"\n"git status*" = "allow"\n"rm *" = "deny"\n'
        "[permission.edit]\n"
        '"docs/**" = "allow"\n',
    )
    config = load_config(config_path=str(path), env={})
    assert config.permission.to_json() == {
        "read": {"*": "allow"},
        "edit": {"*": "ask", "docs/**": "allow"},
        "bash": {"*": "ask", "git status*": "allow", "rm *": "deny"},
    }
    assert decide(config.permission, "bash", "git status --short").action == "allow"
    assert decide(config.permission, "bash", "rm -rf x").action == "deny"
    assert config.sources["permission"] == f"file {path}"


def test_permission_in_the_environment_is_json_or_a_bare_word() -> None:
    as_json = load_config(env={"SESSIONLSP_PERMISSION": '{"edit": {"*": "allow"}}'})
    assert decide(as_json.permission, "edit", "a.py").action == "allow"
    assert decide(as_json.permission, "bash", "ls").action == "ask"
    bare = load_config(env={"SESSIONLSP_PERMISSION": "deny"})
    assert {decide(bare.permission, k, "x").action for k in ("read", "edit", "bash")} == {"deny"}
    assert bare.sources["permission"] == "env SESSIONLSP_PERMISSION"


def test_a_later_layer_replaces_the_whole_permission_setting(tmp_path: Path) -> None:
    path = _write(tmp_path, '[permission]\nbash = "allow"\nedit = "allow"\n')
    config = load_config(
        config_path=str(path), env={}, init_options={"permission": {"edit": "deny"}}
    )
    assert decide(config.permission, "edit", "a.py").action == "deny"
    assert decide(config.permission, "bash", "ls").action == "ask"  # back to the default
    assert config.sources["permission"] == "initializationOptions"
    kept = config.with_init_options({})
    assert decide(kept.permission, "bash", "ls").action == "allow"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"permission": "sometimes"},
            'permission in initializationOptions must be "allow", "ask" or "deny", got "sometimes"',
        ),
        (
            {"permission": {"bash": {"*": "ask", "rm *": "never"}}},
            'permission.bash["rm *"] in initializationOptions must be "allow", "ask" or "deny", '
            'got "never"',
        ),
        (
            {"permission": {"shell": "ask"}},
            'permission in initializationOptions must be an object with keys "read", "edit" or '
            '"bash", got {"shell": "ask"}',
        ),
        (
            {"permission": {"edit": 1}},
            'permission.edit in initializationOptions must be "allow", "ask" or "deny" or an '
            "object of pattern -> action, got 1",
        ),
    ],
)
def test_a_bad_permission_names_the_part_and_the_source(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, init_options=options)
    assert str(caught.value) == message


def test_bad_permission_json_in_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={"SESSIONLSP_PERMISSION": '{"bash": "allow"'})
    assert str(caught.value).startswith(
        "SESSIONLSP_PERMISSION in the environment must be an action word or a JSON object "
        "(not valid JSON"
    )
