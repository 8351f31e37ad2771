"""One metric's whole test group at one sensitivity: FAIL or PASS, and why.

The same product gates as the host rules (:mod:`.host`), applied to the group's estimates
(:mod:`..detectors.group`); the first that fails decides:

1. ``group-shift``: the mean change over the test hosts is practically large and >= the
   sensitivity's SDs of its standard error, with the t p-value under the look's alpha.
2. ``group-drift``: the same gates for the mean change at the window's end, with the hosts'
   slopes rising (t p-value under alpha).
3. ``group-spread``: the geometric-mean SD ratio >= the sensitivity's ratio, the bad tail worse,
   p under alpha; not for error rates.

In before/after modes (v5) group-shift and group-drift also take the minimum-effect test:
the one-sided t lower bound of the estimate at ``size_alpha`` must reach the practical size,
because a change between two windows is confounded with time (see ``judge._group_size_alpha``).

Otherwise PASS (rule ``group-shift``, with the numbers). The group never gives INCONCLUSIVE:
each host's ``not-clear`` already says when more minutes are needed.
"""

from __future__ import annotations

import math

from scipy.stats import t as t_dist

from vigil_common.verdicts import Sensitivity, Verdict
from vigil_metric_analyzer.domain.classifiers.host import Decision, practical_size_text
from vigil_metric_analyzer.domain.detectors.group import GroupComparison, t_upper
from vigil_metric_analyzer.domain.policy import MetricKind, MetricPolicy
from vigil_metric_analyzer.domain.sensitivity import Limits
from vigil_metric_analyzer.domain.summary import amount, number

GROUP_RULES = frozenset({"group-shift", "group-drift", "group-spread"})


def classify_group(metric: MetricPolicy, g: GroupComparison, sensitivity: Sensitivity,
                   lim: Limits, alpha: float, size_alpha: float | None = None) -> Decision:
    """Applies the rules above to the group estimates ``g`` of ``metric``. ``alpha`` is the
    level of the tests against zero; ``size_alpha``, when given, that of the minimum-effect
    test of group-shift and group-drift (the t lower bound must reach the practical size)."""
    floor = metric.absolute_floor.at(sensitivity)
    level = sensitivity.value.lower()
    limits = f"{level} limits of {practical_size_text(metric, lim, floor)}"
    who = f"{metric.name} over {g.hosts} test hosts"
    size = _practical(metric, g, lim, floor)
    if (_large(metric, g, g.change, lim, floor) and g.change_z >= lim.sds and g.change_p < alpha
            and _beyond(g.change, g.change_se, g.change_df, size, size_alpha)):
        return Decision(Verdict.FAIL, "group-shift",
                        f"{who}: mean change {_change(metric, g, g.change)} vs control "
                        f"({g.deviating} of {g.hosts} hosts worse), {_sds(g.change_z)} noise "
                        f"SDs, p={_p(g.change_p)}"
                        f"{_bound(metric, g, g.change, g.change_se, g.change_df, size_alpha)}: "
                        f"above the {limits} and "
                        f"{lim.sds:g} SDs")
    if (_large(metric, g, g.drift_end, lim, floor) and g.drift_z >= lim.sds
            and g.drift_p < alpha
            and _beyond(g.drift_end, g.drift_se, g.drift_df, size, size_alpha)):
        return Decision(Verdict.FAIL, "group-drift",
                        f"{who} drift to a mean {_change(metric, g, g.drift_end)} vs control by "
                        f"the end of the window ({_sds(g.drift_z)} noise SDs, slopes "
                        f"p={_p(g.drift_p)}"
                        f"{_bound(metric, g, g.drift_end, g.drift_se, g.drift_df, size_alpha)}"
                        f"): above the {limits} and "
                        f"{lim.sds:g} SDs")
    if (metric.kind is not MetricKind.ERROR_RATE and g.sd_ratio >= lim.sd_ratio
            and g.tail_change > 0 and g.tail_change >= floor and g.spread_p < alpha):
        return Decision(Verdict.FAIL, "group-spread",
                        f"{who}: noise SD x{_sds(g.sd_ratio)} of control (geometric mean), bad "
                        f"tail {_change(metric, g, g.tail_change)}, p={_p(g.spread_p)}: above "
                        f"the {level} SD ratio {lim.sd_ratio:g}")
    judgement = ("no worse than control" if g.change <= 0 else
                 f"within the {limits} and {lim.sds:g} SDs")
    return Decision(Verdict.PASS, "group-shift",
                    f"{who}: mean change {_change(metric, g, g.change)} vs control, "
                    f"{_sds(g.change_z)} noise SDs: {judgement}")


def _beyond(bad: float, se: float, df: float, size: float, size_alpha: float | None) -> bool:
    """The minimum-effect test: the estimate's one-sided ``1 - size_alpha`` t lower bound
    reaches the practical ``size`` (always true when not applied)."""
    return size_alpha is None or t_upper(bad, se, df, null=size) < size_alpha


def _bound(metric: MetricPolicy, g: GroupComparison, bad: float, se: float, df: float,
           size_alpha: float | None) -> str:
    if size_alpha is None or not se > 0:
        return ""
    low = bad - float(t_dist.isf(size_alpha, df)) * se
    return f", at least {_change(metric, g, low)} with {100 * (1 - size_alpha):.4g}% confidence"


def _practical(metric: MetricPolicy, g: GroupComparison, lim: Limits, floor: float) -> float:
    if metric.kind is MetricKind.ERROR_RATE:
        size = lim.error_points * metric.points_scale
    else:
        size = lim.relative * abs(g.control_level)
    return max(size, floor)


def _large(metric: MetricPolicy, g: GroupComparison, bad: float, lim: Limits,
           floor: float) -> bool:
    if not bad > 0 or bad < floor:
        return False
    if metric.kind is MetricKind.ERROR_RATE:
        return bad >= lim.error_points * metric.points_scale
    return g.relative_of(bad) >= lim.relative


def _change(metric: MetricPolicy, g: GroupComparison, bad: float) -> str:
    raw = bad * metric.direction.sign
    signed_abs = ("-" if raw < 0 else "+") + amount(abs(raw), metric.unit)
    if metric.kind is MetricKind.ERROR_RATE or g.control_level == 0:
        return signed_abs
    return f"{raw / abs(g.control_level) * 100:+.0f}% ({signed_abs})"


def _sds(value: float) -> str:
    return number(value) if math.isfinite(value) else "inf"


def _p(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2g}"
