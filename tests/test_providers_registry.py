"""The provider table: config, the service and the README all read it."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import Config, ConfigError
from server.providers.offline import OfflineProvider
from server.providers.registry import DEFAULT_PROVIDER, PROVIDERS, markdown_table
from server.service import make_provider
from server.summarizers import OfflineSummarizer, ProviderSummarizer

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_shows_the_table() -> None:
    assert markdown_table() in README.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_each_providers_defaults_come_from_its_entry(name: str) -> None:
    entry = PROVIDERS[name]
    config = Config().with_init_options({"provider": name})
    assert (config.provider, config.model) == (name, entry.model)
    assert (config.context_limit, config.output_limit) == (entry.context_limit, entry.output_limit)


def test_the_default_provider_is_in_the_table() -> None:
    entry = PROVIDERS[DEFAULT_PROVIDER]
    config = Config()
    assert (config.provider, config.model) == (DEFAULT_PROVIDER, entry.model)
    assert (config.context_limit, config.output_limit) == (entry.context_limit, entry.output_limit)
    assert Config().with_init_options({}).provider == DEFAULT_PROVIDER


def test_an_unknown_provider_is_refused_naming_every_provider() -> None:
    with pytest.raises(ConfigError) as caught:
        Config().with_init_options({"provider": "foo"})
    for name in PROVIDERS:
        assert f'"{name}"' in str(caught.value)


def test_make_provider_builds_through_the_table() -> None:
    offline = make_provider(Config())
    assert isinstance(offline.provider, OfflineProvider)
    assert isinstance(offline.summarizer, OfflineSummarizer)
    configured = Config().with_init_options(
        {"provider": "openai", "baseUrl": "http://127.0.0.1:9/v1", "model": "m"}
    )
    assert isinstance(make_provider(configured).summarizer, ProviderSummarizer)
    missing = make_provider(Config().with_init_options({"provider": "openai"}))
    assert missing.provider is None
    assert missing.problem == "the openai provider needs baseUrl and model to be set"
