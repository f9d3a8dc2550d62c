"""Guarantee 12: usable-window and overflow arithmetic as in the reference."""

from __future__ import annotations

from server.tokens import ModelLimits, estimate_text, is_overflow
from store.models import TokenUsage


def test_usable_window_reserves_the_smaller_of_20000_and_max_output() -> None:
    assert ModelLimits(context=200_000, output=64_000).usable() == 180_000  # output capped at 32k
    assert ModelLimits(context=128_000, output=16_384).usable() == 128_000 - 16_384
    assert ModelLimits(context=16_000, output=4_000).usable() == 12_000


def test_usable_window_uses_a_separate_input_limit_when_the_model_has_one() -> None:
    assert ModelLimits(context=400_000, output=128_000, input=272_000).usable() == 252_000


def test_unknown_output_limit_counts_as_32000() -> None:
    assert ModelLimits(context=100_000, output=0).usable() == 80_000


def test_unknown_context_size_never_overflows() -> None:
    huge = TokenUsage(input=10**9)
    assert ModelLimits(context=0, output=4_000).usable() == 0
    assert not is_overflow(huge, ModelLimits(context=0, output=4_000))


def test_overflow_counts_the_provider_total_when_reported() -> None:
    limits = ModelLimits(context=16_000, output=4_000)
    assert is_overflow(TokenUsage(input=1, total=12_000), limits)
    assert not is_overflow(TokenUsage(input=11_000, output=999, total=11_999), limits)


def test_overflow_sums_input_output_and_cache_without_a_total() -> None:
    limits = ModelLimits(context=16_000, output=4_000)
    usage = TokenUsage(input=6_000, output=1_000, cache_read=4_000, cache_write=1_000)
    assert usage.count() == 12_000
    assert is_overflow(usage, limits)
    assert not is_overflow(TokenUsage(input=6_000, output=1_000, cache_read=4_999), limits)


def test_overflow_never_fires_with_auto_compaction_off() -> None:
    limits = ModelLimits(context=16_000, output=4_000)
    assert not is_overflow(TokenUsage(input=50_000), limits, auto_compact=False)


def test_tokens_are_estimated_as_characters_over_four_rounded_up() -> None:
    assert estimate_text("") == 0
    assert estimate_text("abcd") == 1
    assert estimate_text("abcde") == 2
