"""Pure summary statistics: medians, percentiles and spreads of measured samples."""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.load import percentile  # the load generator's summaries use it too


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
