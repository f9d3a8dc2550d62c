"""The offline provider: paced so a person sees streaming and cancel, unpaced in tests."""

from __future__ import annotations

import threading

import pytest

from server.config import Config, load_config
from server.providers.base import ChatMessage, ChatRequest, ProviderCancelled, RetryNotice
from server.providers.offline import OfflineProvider
from server.service import make_provider


class Sink:
    def __init__(self) -> None:
        self.pieces: list[str] = []

    def text(self, delta: str) -> None:
        self.pieces.append(delta)

    def reasoning(self, delta: str) -> None:
        pass

    def retry(self, notice: RetryNotice) -> None:
        pass


def request(text: str) -> ChatRequest:
    return ChatRequest(messages=(ChatMessage("user", text),))


def test_pieces_are_streamed_with_the_configured_pause_between_them() -> None:
    pauses: list[float] = []
    provider = OfflineProvider(delay_ms=40, pause=lambda s, cancel: pauses.append(s))
    sink = Sink()
    result = provider.chat(request("hello there"), sink, threading.Event())
    assert "".join(sink.pieces) == result.text
    assert len(sink.pieces) > 5
    assert pauses == [0.04] * (len(sink.pieces) - 1)  # between pieces, none before the first


def test_a_cancel_during_a_pause_stops_the_stream_before_the_next_piece() -> None:
    cancel = threading.Event()

    def pause(seconds: float, token: object) -> None:
        if len(sink.pieces) == 2:
            cancel.set()  # the person pressed cancel while the provider was pausing

    provider = OfflineProvider(delay_ms=40, pause=pause)
    sink = Sink()
    with pytest.raises(ProviderCancelled):
        provider.chat(request("hello there"), sink, cancel)
    assert len(sink.pieces) == 2


def test_the_pace_is_a_setting_paced_by_default_and_zero_turns_it_off() -> None:
    assert Config().offline_delay_ms == 40
    paced = make_provider(Config()).provider
    assert isinstance(paced, OfflineProvider) and paced.delay_s == 0.04
    config = load_config(env={"SESSIONLSP_OFFLINE_DELAY_MS": "0"})
    assert config.sources["offline_delay_ms"] == "env SESSIONLSP_OFFLINE_DELAY_MS"
    unpaced = make_provider(config).provider
    assert isinstance(unpaced, OfflineProvider) and unpaced.delay_s == 0.0


def test_the_answer_gives_no_token_count_of_its_own_so_it_cannot_disagree_with_the_meter() -> None:
    result = OfflineProvider().chat(request("count me"), Sink(), threading.Event())
    assert "tokens" not in result.text.replace("how many tokens", "")
    assert "the context meter shows how many tokens" in result.text
