"""Symbolic Aggregate approXimation: the deviation between two series in noise SDs.

As in the articles (seed 003), both series are z-normalized on the *control's* level and noise
SD, cut into equal segments (Piecewise Aggregate Approximation: one mean per segment) and each
segment mean becomes a symbol of an alphabet whose cells are bands of standard deviations. The
deviation is the median, over segments, of the distance between the test word's symbol and the
control word's symbol, in SDs. Two properties make it the right statistic here:

- A short spike moves one segment's symbol; the median over segments ignores it.
- In canary mode the words are time-aligned, so a spike or traffic wave that hits the control
  and the test hosts in the same minutes cancels out instead of being flagged.

The alphabet is finer near zero (0.5 SD cells up to 4 SD) and coarser beyond, so thresholds
of 2, 3 and 5 SDs fall on cell edges.
"""

from __future__ import annotations

import numpy as np

BREAKPOINTS = np.array(
    [-12, -10, -8, -6, -5, -4.5, -4, -3.5, -3, -2.5, -2, -1.5, -1, -0.5, 0,
     0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 8, 10, 12], dtype=float)
"""Cell edges of the alphabet, in SDs; symbol k is the cell left of ``BREAKPOINTS[k]``."""

_EDGES = np.concatenate(([BREAKPOINTS[0] - 2.0], BREAKPOINTS, [BREAKPOINTS[-1] + 2.0]))
CENTERS = (_EDGES[:-1] + _EDGES[1:]) / 2.0
"""The value, in SDs, each symbol stands for (middle of its cell; outer cells 1 SD beyond)."""

MAX_SEGMENTS = 10


def paa(z: np.ndarray, segments: int) -> np.ndarray:
    """Piecewise Aggregate Approximation: the NaN-aware mean of ``segments`` equal chunks."""
    chunks = np.array_split(z, segments)
    out = np.full(segments, np.nan)
    for k, chunk in enumerate(chunks):
        finite = chunk[np.isfinite(chunk)]
        if len(finite):
            out[k] = float(finite.mean())
    return out


def word(z: np.ndarray, segments: int) -> np.ndarray:
    """SAX word of a z-normalized series: symbol indices, -1 for a segment without data."""
    means = paa(z, segments)
    symbols = np.searchsorted(BREAKPOINTS, means, side="right")
    symbols[~np.isfinite(means)] = -1
    return symbols


def segments_for(minutes: int) -> int:
    """Word length for a window: one segment per minute up to :data:`MAX_SEGMENTS`."""
    return max(1, min(minutes, MAX_SEGMENTS))


def deviation(test_z: np.ndarray, control_z: np.ndarray, aligned: bool) -> float:
    """Signed deviation of the test word from the control word, in SDs (NaN: no overlap).

    Args:
        test_z: Test series z-normalized on the control level and noise SD.
        control_z: Control series (canary: the per-minute control envelope) normalized alike.
        aligned: Whether minute k of both series is the same wall-clock minute (canary): then
            segment k is compared with segment k; else each test segment with the control
            word's median symbol.
    """
    if aligned:
        n = min(len(test_z), len(control_z))
        segments = segments_for(n)
        t, c = word(test_z[:n], segments), word(control_z[:n], segments)
        both = (t >= 0) & (c >= 0)
        if not both.any():
            return float("nan")
        return float(np.median(CENTERS[t[both]] - CENTERS[c[both]]))
    t = word(test_z, segments_for(len(test_z)))
    c = word(control_z, segments_for(len(control_z)))
    t, c = t[t >= 0], c[c >= 0]
    if not len(t) or not len(c):
        return float("nan")
    return float(np.median(CENTERS[t]) - np.median(CENTERS[c]))
