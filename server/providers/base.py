"""What every chat provider offers, in provider-neutral types.

A provider turns a :class:`ChatRequest` into a streamed answer. It knows nothing of the store,
of sessions or of JSON-RPC: it reports text as it arrives through a :class:`StreamSink`, returns
a :class:`ChatResult` when the model stops, and raises one of the exceptions below otherwise.
Exception messages never contain secrets (API keys, Authorization headers): they reach users.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ChatRole = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: its name, what it does, and a JSON Schema for arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for. ``arguments`` is the raw JSON text the model produced."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    role: ChatRole
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # for role "tool": the call this message answers


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int | None = None
    model: str | None = None  # overrides the provider's configured model for this request


@dataclass(frozen=True)
class Usage:
    """Token counts as the provider reported them."""

    input: int = 0
    output: int = 0
    reasoning: int = 0
    cache_read: int = 0
    total: int | None = None


@dataclass(frozen=True)
class ChatResult:
    finish: FinishReason
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    model: str | None = None
    reasoning: str = ""


@dataclass(frozen=True)
class RetryNotice:
    """The provider is waiting before trying again."""

    attempt: int  # 1 for the first retry
    delay_s: float
    reason: str  # e.g. "429 Too Many Requests"; never holds secrets


class StreamSink(Protocol):
    """Receives an answer while it streams. Called on the provider's thread."""

    def text(self, delta: str) -> None: ...

    def reasoning(self, delta: str) -> None: ...

    def retry(self, notice: RetryNotice) -> None: ...


class CancelToken(Protocol):
    """Anything with ``is_set()``, such as a ``threading.Event``."""

    def is_set(self) -> bool: ...


class ProviderError(Exception):
    """The provider could not answer. ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable


class ContextOverflow(ProviderError):
    """The provider rejected the request as longer than the model's context."""


class ProviderNotConfigured(ProviderError):
    """Settings the provider needs (base URL, model, key) are missing."""


class ProviderCancelled(Exception):
    """The cancel token was set; the HTTP stream (if any) has been closed."""


@dataclass(frozen=True)
class ProviderInfo:
    name: str  # "openai", "offline"
    model: str
    context_limit: int  # tokens; 0 = unknown
    output_limit: int
    extra: Mapping[str, Any] = field(default_factory=dict)


class Provider(Protocol):
    @property
    def info(self) -> ProviderInfo: ...

    def chat(self, request: ChatRequest, sink: StreamSink, cancel: CancelToken) -> ChatResult:
        """Stream one answer. Raises ProviderError (ContextOverflow when too long),
        ProviderCancelled when ``cancel`` is set (checked between chunks, and the stream is
        closed promptly even while the provider is silent)."""
        ...


class ProviderConfig(Protocol):
    """The settings a provider is built from (``server.config.Config`` has them)."""

    @property
    def model(self) -> str: ...

    @property
    def base_url(self) -> str | None: ...

    @property
    def api_key(self) -> str | None: ...

    @property
    def context_limit(self) -> int: ...

    @property
    def output_limit(self) -> int: ...

    @property
    def offline_delay_ms(self) -> int: ...  # the offline provider's pause between pieces


@dataclass(frozen=True)
class ProviderEntry:
    """What ``server.providers.registry`` knows of a provider: its defaults, what must be
    configured, and how to build it. Config, the service and the docs all read these."""

    name: str  # the value of the ``provider`` setting
    about: str  # one line for the docs
    model: str  # the default model; "" when there is none and ``model`` must be set
    context_limit: int  # default contextLimit, tokens
    output_limit: int  # default outputLimit, tokens
    requires: tuple[Literal["baseUrl", "model", "apiKey"], ...]  # settings that must be set
    language_model: bool  # False: compaction summaries are written without a model
    make: Callable[[ProviderConfig], Provider]  # may raise ProviderNotConfigured
