"""Per-minute series as numpy arrays: missing minutes are NaN, never zero."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Series = Sequence[float | None]
"""Per-minute values of one metric on one host, oldest first; ``None`` = no data."""


def as_array(values: Series) -> np.ndarray:
    """``values`` as float64 with NaN for missing minutes (``None`` or NaN)."""
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def present(values: np.ndarray) -> np.ndarray:
    """The measured values of a series, in time order."""
    return values[np.isfinite(values)]


def ignore_below(values: np.ndarray, threshold: float | None) -> np.ndarray:
    """``values`` with minutes below ``threshold`` turned into missing minutes."""
    if threshold is None:
        return values
    out = values.copy()
    out[out < threshold] = np.nan
    return out


def drop_warmup(values: np.ndarray, minutes: int) -> np.ndarray:
    """``values`` without its first ``minutes`` minutes (load-test warm-up)."""
    return values[minutes:] if minutes > 0 else values


def longest_run_above(values: np.ndarray, threshold: float) -> int:
    """Longest number of consecutive minutes above ``threshold``; a missing minute breaks it."""
    best = run = 0
    for above in values > threshold:  # NaN compares False: a gap ends the run
        run = run + 1 if above else 0
        best = max(best, run)
    return best


def envelope(hosts: Sequence[np.ndarray]) -> np.ndarray:
    """Minute-by-minute median over hosts (NaN where no host has data); shorter hosts padded."""
    length = max(len(h) for h in hosts)
    stacked = np.full((len(hosts), length), np.nan)
    for row, host in enumerate(hosts):
        stacked[row, : len(host)] = host
    counts = np.isfinite(stacked).sum(axis=0)
    out = np.full(length, np.nan)
    has = counts > 0
    if has.any():
        out[has] = np.nanmedian(stacked[:, has], axis=0)
    return out
