"""The one table of chat providers.

``server.config`` takes the ``provider`` setting's values and each provider's defaults from
:data:`PROVIDERS`, ``server.service.make_provider`` builds the configured one through it, and
the README's provider table is :func:`markdown_table` (a test keeps them equal). Adding a
provider is one module with its :class:`~server.providers.base.ProviderEntry` (``ENTRY``) plus
one line here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from server.providers import offline, openai
from server.providers.base import Provider, ProviderConfig, ProviderEntry, ProviderNotConfigured

PROVIDERS: Mapping[str, ProviderEntry] = MappingProxyType(
    {
        entry.name: entry
        for entry in (
            openai.ENTRY,
            offline.ENTRY,
        )
    }
)
DEFAULT_PROVIDER = "offline"  # what runs with nothing configured

_SETTING = {"baseUrl": "base_url", "model": "model", "apiKey": "api_key"}


def build(name: str, config: ProviderConfig) -> Provider:
    """Provider ``name`` built from ``config``. Raises KeyError for a name not in the table and
    ProviderNotConfigured when a setting it requires is missing (or its own checks fail)."""
    entry = PROVIDERS[name]
    missing = [key for key in entry.requires if not (getattr(config, _SETTING[key]) or "").strip()]
    if missing:
        raise ProviderNotConfigured(f"the {name} provider needs {' and '.join(missing)} to be set")
    return entry.make(config)


def markdown_table() -> str:
    """The providers as the README shows them."""
    rows = [
        "| provider | what it is | default model | contextLimit | outputLimit | requires |",
        "|---|---|---|---|---|---|",
    ]
    for entry in PROVIDERS.values():
        model = f"`{entry.model}`" if entry.model else "none"
        requires = ", ".join(f"`{key}`" for key in entry.requires) or "nothing"
        rows.append(
            f"| `{entry.name}` | {entry.about} | {model} | {_tokens(entry.context_limit)} | "
            f"{_tokens(entry.output_limit)} | {requires} |"
        )
    return "\n".join(rows) + "\n"


def _tokens(count: int) -> str:
    return f"{count:_}".replace("_", " ")
