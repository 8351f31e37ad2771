"""One test host against its control data: the sensitivity-independent measurements.

:func:`measure` computes, once per metric and test host, everything the classifier needs at
any sensitivity: the control baseline (level, per-host and between-host noise, trend), the level
shift (Hodges-Lehmann change, its standard error and z, SAX deviation, rank-test p-value), the
spread change and the drift inside the window. The control side (:class:`Baseline`) is computed
once per metric. p-values are only computed where the effect already passes the most sensitive
gates, because below them nothing can fail anyway.

Two scales of "noise": ``noise_sd`` is the per-minute noise (the SAX unit, the host rules'
"noise SDs" gate: one host's change must stand out from its minutes' wobble), and ``shift_se``
is the standard error of the measured change, built from every source that can move it
without a regression - the minute noise of both sides (autocorrelation-corrected with the
metric's pooled estimate: minutes are not independent), the spread between hosts (a canary on
slower hardware) and the error of a control trend carried forward (a noisy slope extrapolated
15 minutes is uncertain). ``shift_se`` makes the host p-value honest and is what the group
rules (:mod:`.group`) average over hosts.
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
        deviation_sd: SAX deviation of the test word from the control word, bad-signed, in
            per-minute noise SDs (descriptive: how the change compares with a minute's wobble).
        robust_sd: ``change / noise_sd``, the continuous counterpart of ``deviation_sd``.
        shift_se: Standard error of ``change``: minute noise of both sides
            (autocorrelation-corrected), between-host spread, carried-trend error.
        shift_z: ``change / shift_se``: the change in noise SDs of the measurement, the
            sensitivity's "noise SDs" gate.
        within_se: The minute-noise part of ``shift_se`` alone (what pooling hosts averages).
        trend_sd: The carried-trend part of ``shift_se`` (common to every test host).
        shift_p: One-sided p-value of the shift (NaN when not computed): the larger of the rank
            test's and the normal tail of ``shift_z``, so the change is clear against the
            minute noise and against host spread and trend error alike.
        sd_ratio: Test noise SD / control within-host noise SD.
        spread_se: Standard error of ``log(sd_ratio)``: the sampling error of both robust SDs
            (widened for autocorrelated minutes) and, against a control group, how far one
            host's noise SD sits from another's without any change (:func:`_spread_se`).
        tail_change: Bad-side quantile change (p90 up, or p10 down), bad-signed.
        spread_p: One-sided p-value that the test is more spread (NaN when not computed).
        drift_end: Change at the end of the window along the test's trend, bad-signed.
        drift_slope: Slope per minute of the bad-signed differences (Theil-Sen).
        drift_se: Standard error of ``drift_end`` (fitted line's error at the window's end,
            between-host spread, carried-trend error at that distance).
        drift_z: ``drift_end / drift_se``.
        drift_line_se: The fitted line's part of ``drift_se`` alone.
        drift_slope_se: Standard error of ``drift_slope`` from the minute noise.
        drift_trend_sd: The carried-trend part of ``drift_se`` (common to every test host).
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
    shift_se: float
    shift_z: float
    within_se: float
    trend_sd: float
    shift_p: float
    sd_ratio: float
    spread_se: float
    tail_change: float
    spread_p: float
    drift_end: float
    drift_slope: float
    drift_se: float
    drift_z: float
    drift_line_se: float
    drift_slope_se: float
    drift_trend_sd: float
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
        """``amount`` in per-minute noise SDs (inf when the noise is 0 and the amount is not)."""
        return _over(amount, self.noise_sd)


def _over(amount: float, sd: float) -> float:
    """``amount / sd``, +-inf when ``sd`` is 0 and the amount is not."""
    if sd > 0:
        return amount / sd
    return math.inf if amount > 0 else (0.0 if amount == 0 else -math.inf)


@dataclass(frozen=True)
class Baseline:
    """The control side of a metric, computed once and shared by every test host.

    Attributes:
        hosts: ``(minutes, values)`` of each control host with data.
        envelope: Minute-by-minute median over the control hosts (NaN where none has data).
        noise: Median over control hosts of their per-minute noise SD.
        between: SD between control host levels, widened for predicting one more host from
            few (:func:`prediction_factor`): with 2 or 5 control hosts the plain estimate is
            often far too small, and a canary host that merely sits on slower hardware would
            then look like a regression.
            v5: the judge replaces it (and ``between_raw``) with the SD moderated toward the
            verification's other metrics (:mod:`.between`).
        level: Median of the control hosts' medians (the scale of the relative spread).
        between_raw: The plain SD between control host levels (0 with one host): how far the
            control group's level may sit from the population's, for group comparisons.
        trend: Control slope per minute carried to the test window (0 when not clear).
        trend_se: Standard error of ``trend`` (0 when none is carried).
        host_noises: Each control host's per-minute noise SD (``noise`` is their median).
        slope_var: Variance between the control hosts' own slopes (Theil-Sen), 0 with one.
        inflation: Variance inflation for the metric's autocorrelated minutes, estimated over
            all control hosts (:func:`~..preprocessing.robust.pooled_inflation`); None when
            they have too few consecutive minutes, and each comparison estimates its own.
    """

    hosts: list[tuple[np.ndarray, np.ndarray]]
    envelope: np.ndarray
    noise: float
    between: float
    between_raw: float
    trend: float
    trend_se: float
    host_noises: tuple[float, ...]
    inflation: float | None
    slope_var: float
    level: float = 0.0


def baseline(controls: Sequence[np.ndarray], carry_trend: bool,
             trend: tuple[float, float] | None = None,
             inflation: float | None = None) -> Baseline:
    """The :class:`Baseline` of ``controls`` (one array per control host, NaN = missing).

    ``carry_trend``: estimate a clear trend of the control envelope, to carry it forward
    (pre/post modes); ``trend`` overrides it with ``(slope, standard error)`` estimated
    elsewhere (the whole control group's, when a single host is compared with its own earlier
    window), and ``inflation`` the group's autocorrelation inflation likewise.
    """
    hosts = [(np.flatnonzero(np.isfinite(h)).astype(float), series.present(h)) for h in controls]
    hosts = [(t, v) for t, v in hosts if len(v)]
    env = series.envelope(list(controls))
    levels = np.array([float(np.median(v)) for _, v in hosts])
    if inflation is None:
        inflation = robust.pooled_inflation(hosts)
    if trend is None:
        trend = _carried_trend(env, inflation) if carry_trend else (0.0, 0.0)
    noises = tuple(robust.noise(t, v) for t, v in hosts)
    return Baseline(hosts=hosts, envelope=env, noise=float(np.median(noises)),
                    host_noises=noises,
                    between=_between_upper(levels), between_raw=_between_sd(levels),
                    trend=trend[0], trend_se=trend[1], inflation=inflation,
                    slope_var=_slope_var(hosts),
                    level=float(np.median(levels)) if len(levels) else 0.0)


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
    trend_mid = trend_end = 0.0  # how far the carried trend is extrapolated (minutes)
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
        c_times = np.concatenate([t for t, _ in hosts])
        pooled = np.concatenate([v + slope * np.clip(target - t, -reach, reach)
                                 for t, v in hosts])
        level = float(np.median(pooled))
        diffs = t_values - (level + slope * np.clip(gap + t_times - target, -reach, reach))
        d_times = t_times
        control_z_source = pooled
        trend_mid = float(np.mean(np.clip(target - c_times, -reach, reach)))
        trend_end = trend_mid + min((len(test) - 1) / 2.0, reach)
    inflation = (base.inflation if base.inflation is not None
                 else robust.autocorrelation_inflation(d_times, diffs))
    between = base.between
    noise_sd = math.sqrt((base.noise**2 + test_noise**2) / 2.0 + between**2)
    noise_sd = max(noise_sd, 1e-9 * abs(level))
    if aligned and len(diffs) >= 2:
        change = sign * ranks.walsh_median(diffs)
        # Per-minute differences: the control envelope's noise is in them already.
        level_var = robust.noise(d_times, diffs) ** 2 / len(diffs)
    else:
        change = sign * ranks.hodges_lehmann(t_values, pooled)
        level_var = test_noise**2 / len(t_values) + base.noise**2 / len(pooled)
    level_var *= robust.HL_EFFICIENCY * inflation
    trend_var = (base.trend_se * trend_mid) ** 2  # the slope's error, carried that far
    shift_se = math.sqrt(level_var + between**2 + trend_var)
    if noise_sd > 0:
        deviation = sign * sax.deviation((test - level) / noise_sd,
                                         (control_z_source - level) / noise_sd, aligned)
    else:
        deviation = 0.0 if change == 0 else math.copysign(math.inf, change)
    partial = Comparison(
        control_level=level, control_trend=slope, noise_sd=noise_sd, between_sd=between,
        control_noise=base.noise, test_noise=test_noise, change=change, relative=0.0,
        deviation_sd=deviation, robust_sd=0.0, shift_se=shift_se, shift_z=_over(change, shift_se),
        within_se=math.sqrt(level_var), trend_sd=math.sqrt(trend_var), shift_p=math.nan,
        sd_ratio=_ratio(test_noise, base.noise),
        spread_se=_spread_se(base, len(t_values), inflation), tail_change=0.0,
        spread_p=math.nan,
        drift_end=0.0, drift_slope=0.0, drift_se=0.0, drift_z=0.0, drift_line_se=0.0,
        drift_trend_sd=abs(base.trend_se * trend_end), drift_slope_se=0.0, drift_p=math.nan,
        control_count=int(sum(len(v) for _, v in hosts)), test_count=len(t_values),
        test_minutes=len(test), control_mean=float(np.mean(pooled)),
        test_mean=float(np.mean(t_values)), test_median=float(np.median(t_values)))
    control_var = 0.0 if aligned else robust.HL_EFFICIENCY * inflation * base.noise**2 / len(
        pooled)
    extra_var = control_var + between**2 + (base.trend_se * trend_end) ** 2
    return _with_tests(partial, sign, aligned, diffs, d_times, t_values, pooled, hosts,
                       inflation, extra_var)


@functools.lru_cache(maxsize=64)
def prediction_factor(hosts: int) -> float:
    """sqrt(1 + 1/k) * t_{k-1}(q) / z(q) at q = 97.7% (the 2-SD level): how much wider the
    level of one more host can fall from the mean of k hosts than a known SD says, so that
    "n SDs" between hosts means what it means for normal data even with few control hosts.
    Capped at 2: with 2 or 3 control hosts the t-quantile explodes (x6.9 for 2) and a canary
    compared with two primaries could then never fail."""
    q = 0.977
    factor = math.sqrt(1 + 1 / hosts) * float(t_dist.ppf(q, hosts - 1) / norm.ppf(q))
    return min(factor, 2.0)


def _slope_var(hosts: list[tuple[np.ndarray, np.ndarray]]) -> float:
    slopes = [robust.theil_sen(t, v)[0] for t, v in hosts if len(v) >= 6]
    return float(np.var(slopes, ddof=1)) if len(slopes) >= 2 else 0.0


def _between_sd(levels: np.ndarray) -> float:
    if len(levels) < 2:
        return 0.0
    return float(np.std(levels, ddof=1)) if len(levels) < 8 else robust.scale(levels)


def _between_upper(levels: np.ndarray) -> float:
    if len(levels) < 2:
        return 0.0
    return _between_sd(levels) * prediction_factor(len(levels))


def _with_tests(c: Comparison, sign: float, aligned: bool, diffs: np.ndarray,
                d_times: np.ndarray, t_values: np.ndarray, pooled: np.ndarray,
                hosts: list[tuple[np.ndarray, np.ndarray]], inflation: float,
                extra_var: float) -> Comparison:
    """Adds relative sizes and, where an effect passes the loosest gates, the p-values.
    ``extra_var``: variance of the drift's end beyond the fitted line's own error (the control
    level, between-host spread, the carried trend at the window's end)."""
    shift_p = math.nan
    if c.deviation_sd >= LOOSEST.sds and c.change > 0:
        rank_p = (ranks.signed_rank_p(sign * diffs, inflation) if aligned
                  else ranks.rank_sum_p(sign * t_values, sign * pooled, inflation))
        shift_p = max(rank_p, robust.upper_tail(c.shift_z))
    q = BAD_TAIL if sign > 0 else 1.0 - BAD_TAIL
    tail = sign * (float(np.quantile(t_values, q)) - float(np.quantile(pooled, q)))
    spread_p = math.nan
    if c.sd_ratio >= LOOSEST.sd_ratio and tail > 0 and len(t_values) >= 5:
        test_dev = np.abs(t_values - np.median(t_values))
        control_dev = np.concatenate([np.abs(v - np.median(v)) for _, v in hosts])
        spread_p = ranks.rank_sum_p(test_dev, control_dev, inflation)
    drift_end = slope = drift_se = drift_z = line_se = slope_se = 0.0
    drift_p = math.nan
    if len(diffs) >= 6:
        bad = sign * diffs
        slope, intercept = robust.theil_sen(d_times, bad)
        # The fitted end, but never beyond what the last third of the window showed.
        late = bad[d_times >= d_times[-1] - max(2.0, c.test_minutes / 3.0)]
        drift_end = min(intercept + slope * (c.test_minutes - 1), float(np.max(late)))
        residual_sd = robust.scale(bad - (intercept + slope * d_times))
        slope_se, line_se = robust.line_se(d_times, residual_sd, inflation,
                                           c.test_minutes - 1.0)
        drift_se = math.sqrt(line_se**2 + extra_var)
        drift_z = _over(drift_end, drift_se)
        if slope > 0 and drift_end > 0 and c.in_sds(drift_end) >= LOOSEST.sds:
            drift_p = robust.kendall_trend_p(d_times, bad, inflation)
    return replace(c, relative=c.relative_of(c.change), robust_sd=c.in_sds(c.change),
                   shift_p=shift_p, tail_change=tail, spread_p=spread_p, drift_end=drift_end,
                   drift_slope=slope, drift_se=drift_se, drift_z=drift_z, drift_line_se=line_se,
                   drift_slope_se=slope_se, drift_p=drift_p)


LOG_SD_VAR = 1.35
"""n x variance of log(robust SD) for independent normal data: MAD-based SDs are ~37%
efficient, so var(log SD) is about 1 / (2 x 0.37 x n)."""


def log_sd_var(points: float, inflation: float) -> float:
    """Sampling variance of the log of a robust SD from ``points`` minutes whose lag-1
    autocorrelation phi gives the mean's ``inflation`` (1 + phi) / (1 - phi): the variance of
    a variance estimate is inflated by (1 + phi^2) / (1 - phi^2) (Bartlett), less than a
    mean's."""
    phi = (inflation - 1.0) / (inflation + 1.0)
    return LOG_SD_VAR * (1 + phi * phi) / (1 - phi * phi) / max(points, 1.0)


def _spread_se(base: Baseline, test_points: int, inflation: float) -> float:
    """Standard error of log(test noise SD / control noise SD) for one test host.

    The test host's own sampling error, plus: against its own earlier window (one control
    host), that window's sampling error; against a control group, the spread of the control
    hosts' log noise SDs beyond their sampling error (hosts differ in noise as they differ in
    level, and a test host is one more host) and the error of the control median."""
    own = log_sd_var(test_points, inflation)
    per_host = [len(v) for _, v in base.hosts]
    noises = [n for n in base.host_noises if n > 0]
    control = log_sd_var(float(np.mean(per_host)) if per_host else 1.0, inflation)
    if len(noises) < 2:
        return math.sqrt(own + control)
    observed = float(np.var(np.log(noises), ddof=1))
    hosts = max(observed - control, 0.0)
    return math.sqrt(own + hosts + max(observed, control) / len(noises))


def _ratio(test_noise: float, control_noise: float) -> float:
    if control_noise > 0:
        return test_noise / control_noise
    return math.inf if test_noise > 0 else 1.0


def _carried_trend(env: np.ndarray, inflation: float | None) -> tuple[float, float]:
    """``(slope per minute, its standard error)`` of the control envelope when clearly trending
    (pre/post modes), so a daily traffic trend between the windows is not read as a regression;
    else ``(0, 0)``. The trend test allows for autocorrelated minutes like every other test
    here: without it a wandering (AR) control window reads as a "clear" trend, and carrying
    that slope 15 minutes forward invents a regression or hides one."""
    times = np.flatnonzero(np.isfinite(env)).astype(float)
    values = env[np.isfinite(env)]
    if len(values) < 8:
        return 0.0, 0.0
    slope, intercept = robust.theil_sen(times, values)
    if inflation is None:
        inflation = robust.autocorrelation_inflation(times, values)
    p = robust.kendall_trend_p(times, values if slope > 0 else -values, inflation)
    if p >= TREND_P:
        return 0.0, 0.0
    residual_sd = robust.scale(values - (intercept + slope * times))
    slope_se, _ = robust.line_se(times, residual_sd, inflation, 0.0)
    return slope, slope_se
