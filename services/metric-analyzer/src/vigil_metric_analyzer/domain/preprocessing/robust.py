"""Robust location, spread and trend of short series (median, MAD, Theil-Sen, Kendall).

Everything takes present values only (no NaN) unless it says otherwise, and is plain numpy so
that 20 metrics x 10 hosts take milliseconds.
"""

from __future__ import annotations

import math

import numpy as np

MAD_TO_SD = 1.4826
"""Consistency factor: MAD x 1.4826 estimates the SD of normal data."""
MEAN_AD_TO_SD = 1.2533
"""sqrt(pi/2): mean absolute deviation x 1.2533 estimates the SD of normal data."""


def scale(values: np.ndarray) -> float:
    """Robust SD: MAD-based; falls back to the mean absolute deviation when over half the
    values are equal (MAD 0, as for mostly-zero error rates), then 0 for a constant series."""
    if len(values) < 2:
        return 0.0
    center = float(np.median(values))
    deviations = np.abs(values - center)
    mad = float(np.median(deviations)) * MAD_TO_SD
    if mad > 0:
        return mad
    return float(np.mean(deviations)) * MEAN_AD_TO_SD


def theil_sen(times: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Theil-Sen line ``(slope, intercept)``: median of pairwise slopes, robust to spikes."""
    if len(values) < 2:
        return 0.0, float(np.median(values)) if len(values) else 0.0
    i, j = np.triu_indices(len(values), k=1)
    dt = times[j] - times[i]
    keep = dt != 0
    slope = float(np.median((values[j] - values[i])[keep] / dt[keep])) if keep.any() else 0.0
    intercept = float(np.median(values - slope * times))
    return slope, intercept


def noise(times: np.ndarray, values: np.ndarray) -> float:
    """Per-minute noise SD of one host: robust SD of the residuals around its Theil-Sen line,
    so a slow trend inside the window is not counted as noise."""
    if len(values) < 6:
        return scale(values)
    slope, intercept = theil_sen(times, values)
    return scale(values - (slope * times + intercept))


def autocorrelation_inflation(times: np.ndarray, values: np.ndarray) -> float:
    """Variance inflation (1 + r) / (1 - r) of rank tests for lag-1 autocorrelation r of the
    residuals around the Theil-Sen line: per-minute metrics are autocorrelated, and treating
    their minutes as independent makes p-values far too small. r is shrunk by its own noise
    (1/sqrt(n)) and clipped to [0, 0.8], so a short window is not penalized for a chance r."""
    if len(values) < 6:
        return 1.0
    slope, intercept = theil_sen(times, values)
    residuals = values - (slope * times + intercept)
    a, b = residuals[:-1] - residuals.mean(), residuals[1:] - residuals.mean()
    denominator = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    r = float(np.sum(a * b)) / denominator if denominator > 0 else 0.0
    r = min(max(r - 1.0 / math.sqrt(len(values)), 0.0), 0.8)
    return (1 + r) / (1 - r)


def kendall_trend_p(times: np.ndarray, values: np.ndarray, inflation: float = 1.0) -> float:
    """One-sided p-value that ``values`` rise with ``times`` (Mann-Kendall, normal approx.,
    tie-corrected, variance multiplied by ``inflation``); 1.0 with fewer than 4 values."""
    n = len(values)
    if n < 4:
        return 1.0
    i, j = np.triu_indices(n, k=1)
    s = float(np.sum(np.sign(values[j] - values[i]) * np.sign(times[j] - times[i])))
    _, counts = np.unique(values, return_counts=True)
    variance = (n * (n - 1) * (2 * n + 5) - float(np.sum(counts * (counts - 1) * (2 * counts + 5))))
    variance *= inflation / 18.0
    if variance <= 0:
        return 1.0
    z = (s - 1.0) / math.sqrt(variance) if s > 0 else (s + 1.0) / math.sqrt(variance)
    return upper_tail(z)


def upper_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def upper_quantile(p: float) -> float:
    """z with P(Z > z) = p (the inverse of :func:`upper_tail`), for 0 < p < 1."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1.0 - p)
