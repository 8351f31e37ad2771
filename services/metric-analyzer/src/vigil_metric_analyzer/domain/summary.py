"""Robust summaries of one host's metric series, and how to write numbers in reasons."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Median, mean and count of the present values of one series.

    Attributes:
        count: Number of present values (missing intervals and NaN are not counted).
        median: Median of the present values; what comparisons decide on, as one spike moves
            it no more than one ordinary value would.
        mean: Mean of the present values; what fail-fast thresholds look at.
    """

    count: int
    median: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """Summarizes ``values``, which must be present values (see :func:`present`)."""
        if not values:
            raise ValueError("cannot summarize an empty series")
        return cls(
            count=len(values),
            median=float(statistics.median(values)),
            mean=float(statistics.fmean(values)),
        )

    def as_dict(self) -> dict[str, float]:
        """The summary as a finding's ``control_summary``/``test_summary``."""
        return {"median": self.median, "mean": self.mean, "count": float(self.count)}


def present(values: Sequence[float | None]) -> list[float]:
    """The values of a series that were measured: ``None`` and NaN mean "no data"."""
    return [float(value) for value in values if value is not None and not math.isnan(value)]


def number(value: float) -> str:
    """A value for a reason: one decimal, or two significant digits below 1 (``0.25``)."""
    if value == 0 or abs(value) >= 1 or not math.isfinite(value):
        return f"{value:.1f}"
    return f"{value:.2g}"


def quantity(value: float, unit: str) -> str:
    """``value`` with its unit: ``"31.2 ms"``, ``"2.5%"``, ``"0.25"`` when unitless."""
    if unit == "%":
        return f"{number(value)}%"
    return f"{number(value)} {unit}".rstrip()


def amount(value: float, unit: str) -> str:
    """A difference with its unit; percentages become percentage points (``"1 pp"``)."""
    if unit == "%":
        return f"{number(value)} pp"
    return quantity(value, unit)


def signed(text: str) -> str:
    """``text`` (a formatted number) with a ``+`` unless it already has a sign."""
    return text if text.startswith("-") else f"+{text}"
