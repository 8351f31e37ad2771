"""Empirical-Bayes moderation of the between-host spread (v5).

A metric's between-host SD is estimated from its own few control hosts (k - 1 = 4 degrees of
freedom for five primaries): its chi-square sampling error is large, and a metric whose
primaries happen to sit close together (2% where hosts truly differ by 4%) makes a canary on
an ordinary host look like a regression. The metrics of one kind in the same verification run
on the same hosts with the same hardware and traffic mix, so their relative between-host
variances inform each other. As in Smyth's moderated t (limma, 2004), each metric's relative
variance ``s_j^2`` (between-host SD over the control level, squared; ``d_j = k_j - 1``) is
treated as ``s_j^2 ~ sigma_j^2 chi2_{d_j} / d_j`` with ``sigma_j^2`` drawn from a scaled
inverse chi-square prior ``(s0^2, d0)``; the prior is estimated from the kind's metrics by
moments of ``log s_j^2`` (their variance beyond the chi-square sampling variance
``trigamma(d_j/2)`` gives ``d0``; none beyond it: ``d0 = inf``, the metrics share one spread),
and each metric's posterior estimate is ``(d0 s0^2 + d_j s_j^2) / (d0 + d_j)`` with ``d0 + d_j``
degrees of freedom. Nothing is fitted: ``d0`` and ``s0`` come from the verification's own data,
and a metric whose hosts truly differ more than its kind's keeps most of its own estimate when
the kind's metrics disagree (small ``d0``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import replace

import numpy as np
from scipy.special import digamma, polygamma

from vigil_metric_analyzer.domain.detectors.comparison import Baseline, prediction_factor

MIN_METRICS = 3
"""Metrics of a kind needed to estimate the prior (its spread needs at least two, and with
two the estimate of ``d0`` rests on one difference)."""


def trigamma_inverse(y: float) -> float:
    """x with trigamma(x) = y > 0 (Newton's method on 1/trigamma, as in limma)."""
    if y > 1e7:
        return 1.0 / math.sqrt(y)
    if y < 1e-6:
        return 1.0 / y
    x = 0.5 + 1.0 / y
    for _ in range(50):
        tri = float(polygamma(1, x))
        step = tri * (1.0 - tri / y) / float(polygamma(2, x))
        x += step
        if -step / x < 1e-8:
            break
    return x


def prior(variances: Sequence[float], dfs: Sequence[float]) -> tuple[float, float] | None:
    """``(s0^2, d0)`` of the scaled inverse chi-square prior from sample variances with their
    degrees of freedom (Smyth 2004, section 6.2); None with fewer than :data:`MIN_METRICS`
    positive variances. ``d0`` is inf when the variances vary no more than sampling explains."""
    pairs = [(v, d) for v, d in zip(variances, dfs, strict=True) if v > 0 and d > 0]
    if len(pairs) < MIN_METRICS:
        return None
    v = np.array([p[0] for p in pairs])
    d = np.array([p[1] for p in pairs])
    e = np.log(v) - digamma(d / 2) + np.log(d / 2)
    mean = float(np.mean(e))
    excess = float(np.var(e, ddof=1) - np.mean(polygamma(1, d / 2)))
    if excess <= 0:
        return math.exp(mean), math.inf
    d0 = 2.0 * trigamma_inverse(excess)
    return math.exp(mean + float(digamma(d0 / 2)) - math.log(d0 / 2)), d0


def moderate(bases: Sequence[Baseline | None], kinds: Sequence[Hashable]
             ) -> list[Baseline | None]:
    """Each baseline with its between-host SD moderated toward the pooled spread of the
    baselines of the same ``kinds`` key (see above). The widening for predicting one more host
    (:func:`.comparison.prediction_factor`) and the group rules' degrees of freedom keep the
    metric's own ``k - 1``: the posterior's ``d0 + k - 1`` would trust a prior estimated from a
    handful of metrics as if it were known (tried: more false fails, see
    docs/metric-analysis.md). A baseline with fewer than two control hosts, a level of 0 or
    too few metrics in its pool is returned as it is."""
    rel: list[tuple[float, float] | None] = []
    for b in bases:
        k = len(b.hosts) if b is not None else 0
        level = b.level if b is not None else 0.0
        rel.append(((b.between_raw / abs(level)) ** 2, k - 1.0)
                   if b is not None and k >= 2 and level != 0 else None)
    priors = {}
    for kind in set(kinds):
        own = [r for r, kd in zip(rel, kinds, strict=True) if kd == kind and r is not None]
        priors[kind] = prior([r[0] for r in own], [r[1] for r in own])
    out: list[Baseline | None] = []
    for b, r, kind in zip(bases, rel, kinds, strict=True):
        p = priors.get(kind)
        if b is None or r is None or p is None:
            out.append(b)
            continue
        s0, d0 = p
        s2, d = r
        post = s0 if math.isinf(d0) else (d0 * s0 + d * s2) / (d0 + d)
        raw = math.sqrt(post) * abs(b.level)
        out.append(replace(b, between_raw=raw, between=raw * prediction_factor(len(b.hosts))))
    return out
