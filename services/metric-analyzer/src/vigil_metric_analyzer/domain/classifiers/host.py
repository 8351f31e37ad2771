"""One metric on one test host at one sensitivity: FAIL, INCONCLUSIVE or PASS, and why.

Rules, in order; the first that fails decides (its name is the finding's ``rule``):

1. ``level-shift``: the SAX deviation is >= the sensitivity's SDs, the Hodges-Lehmann change is
   practically large (relative %, or percentage points for error rates, and the metric's
   absolute floor), and its p-value is under the look's alpha - the p-value being clear
   against the minute noise (rank test) and against the host spread and carried-trend error
   (normal tail of the change over its standard error, :mod:`..detectors.comparison`).
2. ``drift``: the same gates for the change at the end of the window along the test-minus-control
   trend, with a Mann-Kendall trend p-value under alpha (a regression that grows).
3. ``spread-increase``: the test noise SD is >= ratio x the control's, the bad-side tail (p90,
   or p10 when lower is worse) is worse (so a tighter or one-sided-better spread never fails),
   and the dispersion test's p under alpha. The product defines a spread regression by the SD
   ratio alone, so the tail is not held to the level shift's relative size. Not for error
   rates, whose minute-to-minute spread follows the traffic, not the version.

Since v4 every rule also needs the change *clearly beyond* the practical size (the
minimum-effect test, :func:`beyond_p`): its one-sided 1 - alpha lower bound must reach the
size, so a change truly at or under the size fails with probability at most alpha.

A level shift large enough but not yet clear gives INCONCLUSIVE, saying how many more minutes
would decide it; anything else PASSes with the numbers. Every gate looks at the bad direction
only, so an improvement never fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vigil_common.verdicts import Sensitivity, Verdict
from vigil_metric_analyzer.domain.detectors.comparison import Comparison
from vigil_metric_analyzer.domain.policy import MetricKind, MetricPolicy
from vigil_metric_analyzer.domain.preprocessing.robust import upper_quantile, upper_tail
from vigil_metric_analyzer.domain.sensitivity import Limits
from vigil_metric_analyzer.domain.summary import amount, number, quantity


@dataclass(frozen=True)
class Decision:
    """The classifier's answer for one metric on one host."""

    verdict: Verdict
    rule: str
    reason: str
    more_minutes: int | None = None


def classify(metric: MetricPolicy, host: str, c: Comparison, sensitivity: Sensitivity,
             lim: Limits, alpha: float) -> Decision:
    """Applies the rules above to the measurements ``c`` of ``metric`` on ``host``."""
    floor = metric.absolute_floor.at(sensitivity)
    practical = _practical_text(metric, sensitivity, lim, floor)
    size = practical_size(metric, c.control_level, lim, floor)
    head = (f"{metric.name} on {host}: {_change(metric, c, c.change)} vs control "
            f"({_levels(metric, c)})")
    level_large = _large(metric, c, c.change, lim, floor) and c.deviation_sd >= lim.sds
    level_beyond = beyond_p(c.change, c.shift_se, size)
    if level_large and c.shift_p < alpha and level_beyond < alpha:
        return Decision(Verdict.FAIL, "level-shift",
                        f"{head}, {_clear(c.shift_z, c.deviation_sd)}, p={_p(c.shift_p)}, "
                        f"{_bound(metric, c, c.change, c.shift_se, alpha)}: above the "
                        f"{practical} with p < {_p(alpha)}")
    drift_sds = c.in_sds(c.drift_end)
    if (_large(metric, c, c.drift_end, lim, floor) and drift_sds >= lim.sds
            and c.drift_p < alpha and beyond_p(c.drift_end, c.drift_se, size) < alpha):
        return Decision(Verdict.FAIL, "drift",
                        f"{metric.name} on {host} drifts to {_change(metric, c, c.drift_end)} "
                        f"vs control by the end of the window ({_sds(drift_sds)} noise SDs, "
                        f"trend p={_p(c.drift_p)}, "
                        f"{_bound(metric, c, c.drift_end, c.drift_se, alpha)}): above the "
                        f"{practical}")
    if (metric.kind is not MetricKind.ERROR_RATE and c.sd_ratio >= lim.sd_ratio
            and c.tail_change > 0 and c.tail_change >= floor and c.spread_p < alpha
            and beyond_p(_log(c.sd_ratio), c.spread_se, math.log(lim.sd_ratio)) < alpha):
        low_ratio = math.exp(_log(c.sd_ratio) - upper_quantile(alpha) * c.spread_se)
        return Decision(Verdict.FAIL, "spread-increase",
                        f"{metric.name} on {host}: noise SD x{_sds(c.sd_ratio)} of control "
                        f"({quantity(c.test_noise, metric.unit)} vs "
                        f"{quantity(c.control_noise, metric.unit)}; at least "
                        f"x{_sds(low_ratio)} with {_confidence(alpha)} confidence), bad tail "
                        f"{_change(metric, c, c.tail_change)}, p={_p(c.spread_p)}: above the "
                        f"{sensitivity.value.lower()} SD ratio {lim.sd_ratio:g}")
    if level_large:
        more = _more_minutes(c, alpha, size)
        wait = (f"about {more} more minutes at the current traffic would decide it"
                if more is not None else
                "more minutes alone would not decide it (the uncertainty is the spread "
                "between hosts or a carried trend's error)")
        if c.shift_p < alpha:
            why = (f"{_bound(metric, c, c.change, c.shift_se, alpha)} is not clearly beyond "
                   f"the {practical}")
        else:
            why = f"p={_p(c.shift_p)} is not under {_p(alpha)}"
        return Decision(Verdict.INCONCLUSIVE, "not-clear",
                        f"{head}, {_clear(c.shift_z, c.deviation_sd)}, but {why} with "
                        f"{c.test_count} test minutes: {wait}", more)
    judgement = "no worse than control" if c.change <= 0 else f"within the {practical}"
    return Decision(Verdict.PASS, "level-shift",
                    f"{head}, {_clear(c.shift_z, c.deviation_sd)}: {judgement}")


def practical_size(metric: MetricPolicy, level: float, lim: Limits, floor: float) -> float:
    """The smallest bad change, in the metric's unit, that is practically large at ``lim``:
    the relative size of ``level`` (percentage points for error rates) or the metric's
    absolute floor, whichever is larger."""
    if metric.kind is MetricKind.ERROR_RATE:
        size = lim.error_points * metric.points_scale
    else:
        size = lim.relative * abs(level)
    return max(size, floor)


def beyond_p(bad: float, se: float, size: float) -> float:
    """One-sided p-value that the true bad change is *beyond* the practical ``size`` (normal
    approximation): the minimum-effect test. Under 1 - alpha confidence, the lower bound
    ``bad - z_alpha * se`` is above ``size`` exactly when this is under alpha, so a change
    that is truly at (or under) the practical size fails with probability at most alpha,
    however the estimate wobbles around it. 0 or 1 when the standard error is 0."""
    if not se > 0:
        return 0.0 if bad > size else 1.0
    return upper_tail((bad - size) / se)


def lower_bound(bad: float, se: float, alpha: float) -> float:
    """The one-sided 1 - alpha lower confidence bound of a bad-signed change."""
    return bad - upper_quantile(alpha) * se if se > 0 else bad


def _bound(metric: MetricPolicy, c: Comparison, bad: float, se: float, alpha: float) -> str:
    return (f"at least {_change(metric, c, lower_bound(bad, se, alpha))} with "
            f"{_confidence(alpha)} confidence")


def _confidence(alpha: float) -> str:
    return f"{100 * (1 - alpha):.4g}%"


def _log(ratio: float) -> float:
    return math.log(ratio) if ratio > 0 else -math.inf


def _large(metric: MetricPolicy, c: Comparison, bad: float, lim: Limits, floor: float) -> bool:
    """Whether a bad-signed change is practically large at these limits."""
    if not bad > 0 or bad < floor:
        return False
    if metric.kind is MetricKind.ERROR_RATE:
        return bad >= lim.error_points * metric.points_scale
    return c.relative_of(bad) >= lim.relative


def _more_minutes(c: Comparison, alpha: float, size: float) -> int | None:
    """Test minutes that would make the same effect clear at ``alpha``, against 0 (the rank
    test; normal approximation: the z-score grows with the square root of the sample) and
    beyond the practical ``size`` (only the minute-noise part of the standard error shrinks
    with more minutes; None when the rest alone keeps the bound under the size), scaled by
    the share of minutes that had data, so low traffic asks for proportionally more time."""
    if not 0 < c.shift_p < 0.5:
        return None
    needed = upper_quantile(alpha)
    z = upper_quantile(c.shift_p)
    ratio = max((needed / z) ** 2, 1.0)
    margin = c.change - size
    fixed = max(c.shift_se**2 - c.within_se**2, 0.0)
    allowed = (margin / needed) ** 2 - fixed if margin > 0 else -1.0
    if allowed <= 0:
        return None
    if c.within_se > 0:
        ratio = max(ratio, c.within_se**2 / allowed)
    extra_points = c.test_count * (ratio - 1.0)
    present_share = c.test_count / max(c.test_minutes, 1)
    return max(1, math.ceil(extra_points / max(present_share, 1e-9)))


def practical_size_text(metric: MetricPolicy, lim: Limits, floor: float) -> str:
    """The practical size a change must reach, as written in reasons: "10%", "1 pp",
    "10% and 5.0 ms" (with an absolute floor)."""
    if metric.kind is MetricKind.ERROR_RATE:
        size = f"{lim.error_points * metric.points_scale:g} pp" if metric.unit != "%" else \
            f"{lim.error_points:g} pp"
    else:
        size = f"{lim.relative * 100:g}%"
    if floor > 0:
        size += f" and {amount(floor, metric.unit)}"
    return size


def _practical_text(metric: MetricPolicy, sensitivity: Sensitivity, lim: Limits,
                    floor: float) -> str:
    return (f"{sensitivity.value.lower()} limits of {practical_size_text(metric, lim, floor)} "
            f"and {lim.sds:g} SDs")


def _change(metric: MetricPolicy, c: Comparison, bad: float) -> str:
    """A bad-signed change as the user reads it: ``+57% (+12.2 ms)`` or ``+3.1 pp``."""
    raw = bad * metric.direction.sign
    absolute = amount(abs(raw), metric.unit)
    signed_abs = ("-" if raw < 0 else "+") + absolute
    if metric.kind is MetricKind.ERROR_RATE or c.control_level == 0:
        return signed_abs
    return f"{raw / abs(c.control_level) * 100:+.0f}% ({signed_abs})"


def _levels(metric: MetricPolicy, c: Comparison) -> str:
    return (f"median {quantity(c.test_median, metric.unit)} vs "
            f"{quantity(c.control_level, metric.unit)}")


def _clear(z: float, sax_sds: float) -> str:
    """How large a change is against the noise: the SAX deviation in per-minute noise SDs (the
    gate), and the change over its standard error (how sure the measurement is)."""
    return f"{_sds(sax_sds)} noise SDs (SAX), {_sds(z)} standard errors"


def _sds(value: float) -> str:
    return number(value) if math.isfinite(value) else "inf"


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.2g}"
