"""One test host against its control data: the sensitivity-independent measurements.

:func:`measure` computes, once per metric and test host, everything the classifier needs at
any sensitivity: the control baseline (level, per-host and between-host noise, trend), the level
shift (Hodges-Lehmann change, SAX deviation in SDs, rank-test p-value), the spread change and
the drift inside the window. The control side (:class:`Baseline`) is computed once per metric.
p-values are only computed where the effect already passes the
most sensitive gates, because below them nothing can fail anyway.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.stats import norm
from scipy.stats import t as t_dist

from vigil_metric_analyzer.domain.detectors import ranks
from vigil_metric_analyzer.domain.preprocessing import robust, sax, series
from vigil_metric_analyzer.domain.sensitivity import LOOSEST

TREND_P = 0.001
"""A control trend is carried into the test window only when this clear (pre/post modes)."""
BAD_TAIL = 0.9
"""Quantile of the bad side compared by the spread rule (p90, or p10 when lower is worse)."""


@dataclass(frozen=True)
class Comparison:
    """Measurements of one metric on one test host against its control.

    Changes are *bad-direction signed*: positive means worse, whichever way is bad.

    Attributes:
        control_level: Control median, carried to the test window when it trends.
        control_trend: Control slope per minute carried forward (0 when not clear).
        noise_sd: Noise SD the deviation is measured in: within-host noise of both sides
            plus the spread between control hosts.
        between_sd: The between-control-host part of ``noise_sd``.
        change: Hodges-Lehmann shift, bad-signed, in the metric's unit.
        relative: ``change`` / ``|control_level|`` (inf from a 0 level).
        deviation_sd: SAX deviation of the test word from the control word, bad-signed.
        robust_sd: ``change / noise_sd``, the continuous counterpart of ``deviation_sd``.
        shift_p: One-sided p-value of the shift (NaN when not computed).
        sd_ratio: Test noise SD / control within-host noise SD.
        tail_change: Bad-side quantile change (p90 up, or p10 down), bad-signed.
        spread_p: One-sided p-value that the test is more spread (NaN when not computed).
        drift_end: Change at the end of the window along the test's trend, bad-signed.
        drift_p: One-sided p-value of a worsening trend (NaN when not computed).
        control_count, test_count: Present minutes on each side.
        test_minutes: Minutes in the test window, present or not.
    """

    control_level: float
    control_trend: float
    noise_sd: float
    between_sd: float
    control_noise: float
    test_noise: float
    change: float
    relative: float
    deviation_sd: float
    robust_sd: float
    shift_p: float
    sd_ratio: float
    tail_change: float
    spread_p: float
    drift_end: float
    drift_p: float
    control_count: int
    test_count: int
    test_minutes: int
    control_mean: float
    test_mean: float
    test_median: float

    def relative_of(self, amount: float) -> float:
        """``amount`` relative to the control level (inf/NaN from a 0 level)."""
        if self.control_level != 0:
            return amount / abs(self.control_level)
        return math.inf if amount > 0 else (0.0 if amount == 0 else -math.inf)

    def in_sds(self, amount: float) -> float:
        """``amount`` in noise SDs (inf when the noise is 0 and the amount is not)."""
        if self.noise_sd > 0:
            return amount / self.noise_sd
        return math.inf if amount > 0 else (0.0 if amount == 0 else -math.inf)


@dataclass(frozen=True)
class Baseline:
    """The control side of a metric, computed once and shared by every test host.

    Attributes:
        hosts: ``(minutes, values)`` of each control host with data.
        envelope: Minute-by-minute median over the control hosts (NaN where none has data).
        noise: Median over control hosts of their per-minute noise SD.
        between: SD between control host levels, widened for predicting one more host from
            few (:func:`_prediction_factor`): with 2 or 5 control hosts the plain estimate is
            often far too small, and a canary host that merely sits on slower hardware would
            then look like a regression.
        trend: Control slope per minute carried to the test window (0 when not clear).
    """

    hosts: list[tuple[np.ndarray, np.ndarray]]
    envelope: np.ndarray
    noise: float
    between: float
    trend: float


def baseline(controls: Sequence[np.ndarray], carry_trend: bool,
             trend: float | None = None) -> Baseline:
    """The :class:`Baseline` of ``controls`` (one array per control host, NaN = missing).

    ``carry_trend``: estimate a clear trend of the control envelope, to carry it forward
    (pre/post modes); ``trend`` overrides it with a slope estimated elsewhere (the whole
    control group's, when a single host is compared with its own earlier window).
    """
    hosts = [(np.flatnonzero(np.isfinite(h)).astype(float), series.present(h)) for h in controls]
    hosts = [(t, v) for t, v in hosts if len(v)]
    env = series.envelope(list(controls))
    levels = np.array([float(np.median(v)) for _, v in hosts])
    between = _between_upper(levels)
    if trend is None:
        trend = _carried_trend(env) if carry_trend else 0.0
    return Baseline(hosts=hosts, envelope=env,
                    noise=float(np.median([robust.noise(t, v) for t, v in hosts])),
                    between=between, trend=trend)


def measure(base: Baseline, test: np.ndarray, sign: float, aligned: bool,
            gap_minutes: float | None = None) -> Comparison:
    """Measures ``test`` (one host, NaN = missing minute) against ``base``. ``sign`` is +1
    when higher is worse, -1 when lower is. ``aligned``: minute k is the same minute on both
    sides (canary); else the control is an earlier window starting ``gap_minutes`` before the
    test window (default: right before it), and the baseline's trend is carried forward (at
    most as far as the control window is long: a trend is not extrapolated into the unknown).

    Both sides must have at least 2 present values.
    """
    hosts, env = base.hosts, base.envelope
    t_times = np.flatnonzero(np.isfinite(test)).astype(float)
    t_values = series.present(test)
    test_noise = robust.noise(t_times, t_values)
    slope = 0.0 if aligned else base.trend
    if aligned:
        pooled = series.present(env)
        level = float(np.median(pooled))
        n = min(len(test), len(env))
        diffs = test[:n] - env[:n]
        d_times = np.flatnonzero(np.isfinite(diffs)).astype(float)
        diffs = diffs[np.isfinite(diffs)]
        control_z_source = env
    else:
        gap = float(len(env)) if gap_minutes is None else gap_minutes
        target = gap + (len(test) - 1) / 2.0
        reach = float(len(env))
        pooled = np.concatenate([v + slope * np.clip(target - t, -reach, reach)
                                 for t, v in hosts])
        level = float(np.median(pooled))
        diffs = t_values - (level + slope * np.clip(gap + t_times - target, -reach, reach))
        d_times = t_times
        control_z_source = pooled
    between = base.between
    noise_sd = math.sqrt((base.noise**2 + test_noise**2) / 2.0 + between**2)
    noise_sd = max(noise_sd, 1e-9 * abs(level))
    if aligned and len(diffs) >= 2:
        change = sign * ranks.walsh_median(diffs)
    else:
        change = sign * ranks.hodges_lehmann(t_values, pooled)
    if noise_sd > 0:
        deviation = sign * sax.deviation((test - level) / noise_sd,
                                         (control_z_source - level) / noise_sd, aligned)
    else:
        deviation = 0.0 if change == 0 else math.copysign(math.inf, change)
    partial = Comparison(
        control_level=level, control_trend=slope, noise_sd=noise_sd, between_sd=between,
        control_noise=base.noise, test_noise=test_noise, change=change, relative=0.0,
        deviation_sd=deviation, robust_sd=0.0, shift_p=math.nan,
        sd_ratio=_ratio(test_noise, base.noise), tail_change=0.0, spread_p=math.nan,
        drift_end=0.0, drift_p=math.nan, control_count=int(sum(len(v) for _, v in hosts)),
        test_count=len(t_values), test_minutes=len(test), control_mean=float(np.mean(pooled)),
        test_mean=float(np.mean(t_values)), test_median=float(np.median(t_values)))
    return _with_tests(partial, sign, aligned, diffs, d_times, t_values, pooled, hosts)


@functools.lru_cache(maxsize=64)
def _prediction_factor(hosts: int) -> float:
    """sqrt(1 + 1/k) * t_{k-1}(q) / z(q) at q = 97.7% (the 2-SD level): how much wider the
    level of one more host can fall from the mean of k hosts than a known SD says, so that
    "n SDs" between hosts means what it means for normal data even with few control hosts.
    Capped at 2: with 2 or 3 control hosts the t-quantile explodes (x6.9 for 2) and a canary
    compared with two primaries could then never fail."""
    q = 0.977
    factor = math.sqrt(1 + 1 / hosts) * float(t_dist.ppf(q, hosts - 1) / norm.ppf(q))
    return min(factor, 2.0)


def _between_upper(levels: np.ndarray) -> float:
    if len(levels) < 2:
        return 0.0
    sd = float(np.std(levels, ddof=1)) if len(levels) < 8 else robust.scale(levels)
    return sd * _prediction_factor(len(levels))


def _with_tests(c: Comparison, sign: float, aligned: bool, diffs: np.ndarray,
                d_times: np.ndarray, t_values: np.ndarray, pooled: np.ndarray,
                hosts: list[tuple[np.ndarray, np.ndarray]]) -> Comparison:
    """Adds relative sizes and, where an effect passes the loosest gates, the p-values."""
    shift_p = math.nan
    inflation = robust.autocorrelation_inflation(d_times, diffs)
    if c.deviation_sd >= LOOSEST.sds and c.change > 0:
        shift_p = (ranks.signed_rank_p(sign * diffs, inflation) if aligned
                   else ranks.rank_sum_p(sign * t_values, sign * pooled, inflation))
    q = BAD_TAIL if sign > 0 else 1.0 - BAD_TAIL
    tail = sign * (float(np.quantile(t_values, q)) - float(np.quantile(pooled, q)))
    spread_p = math.nan
    if c.sd_ratio >= LOOSEST.sd_ratio and tail > 0 and len(t_values) >= 5:
        test_dev = np.abs(t_values - np.median(t_values))
        control_dev = np.concatenate([np.abs(v - np.median(v)) for _, v in hosts])
        spread_p = ranks.rank_sum_p(test_dev, control_dev, inflation)
    drift_end, drift_p = 0.0, math.nan
    if len(diffs) >= 6:
        slope, intercept = robust.theil_sen(d_times, sign * diffs)
        # The fitted end, but never beyond what the last third of the window showed.
        late = (sign * diffs)[d_times >= d_times[-1] - max(2.0, c.test_minutes / 3.0)]
        drift_end = min(intercept + slope * (c.test_minutes - 1), float(np.max(late)))
        if slope > 0 and drift_end > 0 and c.in_sds(drift_end) >= LOOSEST.sds:
            drift_p = robust.kendall_trend_p(d_times, sign * diffs, inflation)
    return replace(c, relative=c.relative_of(c.change), robust_sd=c.in_sds(c.change),
                   shift_p=shift_p, tail_change=tail, spread_p=spread_p, drift_end=drift_end,
                   drift_p=drift_p)


def _ratio(test_noise: float, control_noise: float) -> float:
    if control_noise > 0:
        return test_noise / control_noise
    return math.inf if test_noise > 0 else 1.0


def _carried_trend(env: np.ndarray) -> float:
    """Slope per minute of the control envelope when clearly trending (pre/post modes), so a
    daily traffic trend between the windows is not read as a regression; else 0."""
    times = np.flatnonzero(np.isfinite(env)).astype(float)
    values = env[np.isfinite(env)]
    if len(values) < 8:
        return 0.0
    slope, _ = robust.theil_sen(times, values)
    p = robust.kendall_trend_p(times, values if slope > 0 else -values)
    return slope if p < TREND_P else 0.0
