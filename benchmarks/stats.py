"""Small statistics shared by every section: percentiles, ratios and number formatting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Summary", "fmt", "ratio", "summarize"]


@dataclass(frozen=True)
class Summary:
    """p50 / p99 (and count, mean, max) of one set of measurements, in the unit they were taken."""

    n: int
    p50: float
    p99: float
    mean: float
    max: float

    def scaled(self, factor: float) -> Summary:
        """The same summary with every value multiplied (e.g. seconds → milliseconds)."""
        return Summary(
            self.n, self.p50 * factor, self.p99 * factor, self.mean * factor, self.max * factor
        )


def summarize(values: Sequence[float] | np.ndarray) -> Summary:
    """Summary of ``values``; NaNs when there are none (the report then says "n/a")."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if data.size == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan)
    p50, p99 = np.percentile(data, [50, 99])
    return Summary(int(data.size), float(p50), float(p99), float(data.mean()), float(data.max()))


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when either is missing or the denominator is 0."""
    if not (np.isfinite(numerator) and np.isfinite(denominator)) or denominator == 0:
        return float("nan")
    return float(numerator / denominator)


def fmt(value: float | int | None, digits: int = 3) -> str:
    """A number with ``digits`` significant figures (thousands grouped); "n/a" when missing."""
    if value is None:
        return "n/a"
    value = float(value)
    if not np.isfinite(value):
        return "n/a"
    if abs(value) < 1e-9:  # float noise around zero
        return "0"
    magnitude = abs(value)
    if magnitude >= 10**digits:
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - int(np.floor(np.log10(magnitude))))
    return f"{value:,.{decimals}f}"
