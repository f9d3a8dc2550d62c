"""Medians with their spread, and ratios, as every benchmark table shows them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """The median of ``n`` samples with the 10th and 90th percentiles (min and max below 10)."""

    median: float
    p10: float
    p90: float
    n: int

    def show(self, digits: int = 1) -> str:
        return f"{self.median:,.{digits}f} ({self.p10:,.{digits}f}-{self.p90:,.{digits}f})"

    def show_n(self, digits: int = 1) -> str:
        """Like :meth:`show`, naming the range and the sample count."""
        kind = "p10-p90" if self.n >= 10 else "min-max"
        low, high = f"{self.p10:,.{digits}f}", f"{self.p90:,.{digits}f}"
        return f"{self.median:,.{digits}f} ({kind} {low}-{high}, n={self.n})"


def spread(samples: list[float]) -> Spread:
    """Median with p10-p90 from 10 samples on, min-max below (percentiles of fewer samples are
    interpolations between the extremes, not information)."""
    if not samples:
        raise ValueError("no samples")
    if len(samples) < 10:
        return Spread(statistics.median(samples), min(samples), max(samples), len(samples))
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return Spread(statistics.median(samples), deciles[0], deciles[-1], len(samples))


def ratio(a: Spread | float, b: Spread | float) -> str:
    """``a / b`` of the medians as ``1.23x`` (``0.0006x (1/1,663)`` when tiny); ``-`` when ``b``
    is zero."""
    x = a.median if isinstance(a, Spread) else a
    y = b.median if isinstance(b, Spread) else b
    if not y:
        return "-"
    value = x / y
    if 0 < value < 0.01:
        return f"{value:.1g}x (1/{1 / value:,.0f})"
    return f"{value:.2f}x"
