"""Pure summary statistics: medians, percentiles and spreads of measured samples."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    frac = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * frac)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max, p90, p99 and count of a sample, for tables and JSON."""
    return {
        "n": len(values),
        "median": median(values),
        "min": float(min(values)) if values else math.nan,
        "max": float(max(values)) if values else math.nan,
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
    }


def spread(values: Sequence[float]) -> float:
    """Relative spread of rounds: (max - min) / median, 0 for one value."""
    if len(values) < 2:
        return 0.0
    mid = median(values)
    return (max(values) - min(values)) / mid if mid else math.nan


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan
