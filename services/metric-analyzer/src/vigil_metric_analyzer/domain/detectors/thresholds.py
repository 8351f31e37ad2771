"""The user's metric thresholds (seed 003): fail fast and ignore, decided without analysis."""

from __future__ import annotations

import numpy as np

from vigil_metric_analyzer.domain.policy import MetricPolicy
from vigil_metric_analyzer.domain.preprocessing import series


def fail_fast(metric: MetricPolicy, test: np.ndarray) -> str | None:
    """Why ``test`` breaches the metric's fail-fast threshold, or None.

    Breached when the mean of the host's present values is above ``fail_fast_above``, or when
    ``fail_fast_minutes`` consecutive minutes are above it (a missing minute ends a run).
    """
    threshold = metric.fail_fast_above
    values = series.present(test)
    if threshold is None or not len(values):
        return None
    if metric.fail_fast_minutes is not None:
        run = series.longest_run_above(test, threshold)
        if run >= metric.fail_fast_minutes:
            return f"{run} consecutive minutes above"
    if float(np.mean(values)) > threshold:
        return "mean above"
    return None


def all_ignored(metric: MetricPolicy, test: np.ndarray) -> bool:
    """Whether every present test value is below ``ignore_below`` (pass without analysis)."""
    values = series.present(test)
    return metric.ignore_below is not None and bool(len(values)) and bool(
        np.all(values < metric.ignore_below))
