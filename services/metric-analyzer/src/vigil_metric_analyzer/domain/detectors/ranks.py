"""Rank tests in numpy (normal approximation, tie- and continuity-corrected), one-sided.

scipy's versions are exact but about 20x slower per call; at 20 metrics x 10 hosts x 3 rules
per verification the approximation keeps a verification in milliseconds, and the decisions it
feeds have an effect-size gate of at least 2 SDs in front of them anyway.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

from vigil_metric_analyzer.domain.preprocessing.robust import upper_tail


def signed_rank_p(differences: np.ndarray, inflation: float = 1.0) -> float:
    """P-value that paired ``differences`` are centred above 0 (Wilcoxon signed-rank);
    ``inflation`` multiplies the variance (autocorrelated minutes carry less information)."""
    d = differences[differences != 0]
    n = len(d)
    if n == 0:
        return 1.0
    ranks = rankdata(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    mean = n * (n + 1) / 4.0
    _, counts = np.unique(ranks, return_counts=True)
    variance = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(counts**3 - counts)) / 48.0
    variance *= inflation
    if variance <= 0:
        return 1.0
    return upper_tail((w_plus - mean - 0.5) / math.sqrt(variance))


def rank_sum_p(test: np.ndarray, control: np.ndarray, inflation: float = 1.0) -> float:
    """P-value that ``test`` tends to be larger than ``control`` (Mann-Whitney U), with the
    variance multiplied by ``inflation``."""
    n1, n2 = len(test), len(control)
    if n1 == 0 or n2 == 0:
        return 1.0
    ranks = rankdata(np.concatenate([test, control]))
    u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    _, counts = np.unique(ranks, return_counts=True)
    ties = float(np.sum(counts**3 - counts))
    variance = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))) * inflation
    if variance <= 0:
        return 1.0
    return upper_tail((u - n1 * n2 / 2.0 - 0.5) / math.sqrt(variance))


def hodges_lehmann(test: np.ndarray, control: np.ndarray) -> float:
    """Hodges-Lehmann shift: median of all differences test_i - control_j."""
    return float(np.median(np.subtract.outer(test, control)))


def walsh_median(differences: np.ndarray) -> float:
    """One-sample Hodges-Lehmann estimate: median of the Walsh averages (d_i + d_j) / 2."""
    i, j = np.triu_indices(len(differences))
    return float(np.median((differences[i] + differences[j]) / 2.0))
