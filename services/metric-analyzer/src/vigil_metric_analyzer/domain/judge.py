"""The metric judge ``sax-robust-v5``: a verification's metrics in, one explained verdict out.

For every metric of the policy and every test host, in this order (the first that decides
gives the finding's ``rule``):

1. ``no-data``: the host has no value for the metric in the window -> NO_DATA.
2. ``fail-fast``: the host's mean is above ``fail_fast_above``, or ``fail_fast_minutes``
   consecutive minutes are -> FAIL at once, without analysis.
3. ``ignore-below``: every value is below ``ignore_below`` -> PASS without analysis; otherwise
   values below it are left out on both sides.
4. ``min-points``: fewer than ``min_points`` values -> NO_DATA, or INCONCLUSIVE when the values
   were there but ignored; the reason says how many more minutes are needed.
5. ``no-control``: no control host has enough values -> NO_DATA.
6. The comparison (:mod:`.detectors.comparison`) and its rules (:mod:`.classifiers.host`):
   ``level-shift``, ``drift``, ``spread-increase``, ``not-clear`` (INCONCLUSIVE).
7. ``host-outlier``: a comparison FAIL on fewer than half of the compared test hosts of a
   metric is a difference of those hosts, not of the new version every test host runs: it
   PASSes, saying so (:func:`.scorers.verdict.consistent`), unless the group rule below fails.

Per metric with at least 3 compared test hosts, one more finding (host ``*``) judges the test
group as a whole (:mod:`.detectors.group`, :mod:`.classifiers.group`): ``group-shift``,
``group-drift``, ``group-spread``. A version's regression is shared by its hosts, and over the
group the host-to-host spread that hides it on each host averages out.

Which control data a test host is compared with depends on the mode: canary - every control
host, minute by minute; rolling/blue-green - the same host's pre-deployment window where the
host name persists, else the whole control group; load test - the baseline run, warm-up
minutes dropped. The verdict is the worst finding (:func:`vigil_common.verdicts.combine`).
Same inputs, same result: nothing here is random or reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from vigil_common.verdicts import AnalysisResult, Finding, Sensitivity, Verdict
from vigil_metric_analyzer.domain.classifiers.group import classify_group
from vigil_metric_analyzer.domain.classifiers.host import classify, lower_bound
from vigil_metric_analyzer.domain.detectors import between, thresholds
from vigil_metric_analyzer.domain.detectors.comparison import (
    Baseline,
    Comparison,
    baseline,
    measure,
)
from vigil_metric_analyzer.domain.detectors.group import GroupComparison, measure_group
from vigil_metric_analyzer.domain.policy import MetricKind, MetricPolicy, Mode, VerificationPolicy
from vigil_metric_analyzer.domain.preprocessing import series
from vigil_metric_analyzer.domain.preprocessing.series import Series
from vigil_metric_analyzer.domain.scorers.looks import FINAL, Look
from vigil_metric_analyzer.domain.scorers.verdict import ALL_HOSTS, consistent, result_of
from vigil_metric_analyzer.domain.sensitivity import limits
from vigil_metric_analyzer.domain.summary import quantity

GroupData = Mapping[str, Mapping[str, Series]]
"""One group's data: ``{metric: {host: values}}``, one value per minute, ``None`` = no data."""


@dataclass(frozen=True)
class _Case:
    """One metric on one test host, measured once for every sensitivity."""

    metric: MetricPolicy
    host: str
    fixed: Finding | None = None
    comparison: Comparison | None = None
    control_hosts: int = 0
    paired: bool = False


@dataclass(frozen=True)
class _Group:
    """One metric's test group, measured once for every sensitivity."""

    metric: MetricPolicy
    comparison: GroupComparison


def judge_metrics(control: GroupData, test: GroupData, policy: VerificationPolicy,
                  look: Look = FINAL) -> AnalysisResult:
    """Judges the test group against the control group for every metric of ``policy``.

    Args:
        control: ``{metric: {host: values}}`` of the control group: the primaries (canary), the
            pre-deployment window (rolling, blue/green) or the baseline run (load test).
        test: The same for the test group.
        policy: Metrics, sensitivity and mode.
        look: Which look at a growing window this is; p-values must be under its alpha.

    Returns:
        A ``sax-robust-v5`` result, one finding per metric and test host (and one per metric
        for its test group), worst first.
    """
    return judge_sensitivities(control, test, policy, [policy.sensitivity], look)[
        policy.sensitivity]


def judge_sensitivities(control: GroupData, test: GroupData, policy: VerificationPolicy,
                        sensitivities: Iterable[Sensitivity], look: Look = FINAL
                        ) -> dict[Sensitivity, AnalysisResult]:
    """:func:`judge_metrics` at several sensitivities, measuring the data only once."""
    cases, groups, extra = _measure_all(control, test, policy)
    out = {}
    for s in sensitivities:
        # Any failing metric fails the verification, so the group rules share one budget:
        # the look's alpha split over metrics and their three rules (Bonferroni), keeping the
        # verification's false-fail chance from the group rules under alpha however many
        # metrics it has.
        alpha = look.alpha / max(3 * len(groups), 1)
        size_alpha = _group_size_alpha(policy, look.alpha)
        group_findings = [_group_finding(g, s, alpha, size_alpha) for g in groups]
        confirmed = {f.subject for f in group_findings if f.verdict is Verdict.FAIL}
        hosts = consistent([_finding(case, s, look) for case in cases], confirmed)
        out[s] = result_of(extra + hosts + group_findings)
    return out


def judge_thresholds_only(test: GroupData, policy: VerificationPolicy) -> AnalysisResult:
    """Plain threshold verification without a control group (no analysis, no ML).

    Each metric with a ``fail_fast_above`` is checked on every test host: FAIL when breached
    (mean, or the consecutive-minutes rule), NO_DATA when the host has no values, else PASS.
    Without any threshold the result is INCONCLUSIVE: there is nothing to judge against.
    """
    checked = [m for m in policy.metrics.values() if m.fail_fast_above is not None]
    if not checked:
        return result_of([_note(ALL_HOSTS, Verdict.INCONCLUSIVE, "no-thresholds",
                                "no metric has a fail_fast_above threshold, and without a "
                                "control group there is nothing else to compare with")])
    hosts = _hosts(test)
    findings = []
    for metric in checked:
        data = {h: series.as_array(test.get(metric.name, {}).get(h, ())) for h in hosts}
        if not any(len(series.present(v)) for v in data.values()):
            findings.append(_note(metric.name, Verdict.NO_DATA, "no-data",
                                  f"no test data for {metric.name} on any host"))
            continue
        for host, values in data.items():
            findings.append(_fixed_checks(metric, host, values) or _within(metric, host, values))
    return result_of(findings)


def _within(metric: MetricPolicy, host: str, values: np.ndarray) -> Finding:
    mean = float(np.mean(series.present(values)))
    return _fixed(metric, host, Verdict.PASS, "fail-fast", values,
                  f"{metric.name} on {host}: mean {quantity(mean, metric.unit)} is within the "
                  f"threshold {quantity(metric.fail_fast_above or 0, metric.unit)}")


def _measure_all(control: GroupData, test: GroupData, policy: VerificationPolicy
                 ) -> tuple[list[_Case], list[_Group], list[Finding]]:
    if not policy.metrics:
        return [], [], [_note(ALL_HOSTS, Verdict.INCONCLUSIVE, "no-metrics",
                              "the policy has no metrics to verify")]
    test_hosts, control_hosts = _hosts(test), _hosts(control)
    warmup = policy.warmup_minutes if policy.mode is Mode.LOAD_TEST else 0
    cases: list[_Case] = []
    groups: list[_Group] = []
    extra: list[Finding] = []
    prepared = []
    for name, metric in policy.metrics.items():
        tests = {h: series.drop_warmup(series.as_array(test.get(name, {}).get(h, ())), warmup)
                 for h in test_hosts}
        controls = {h: series.drop_warmup(series.as_array(control.get(name, {}).get(h, ())),
                                          warmup) for h in control_hosts}
        if not any(len(series.present(v)) for v in tests.values()):
            extra.append(_note(name, Verdict.NO_DATA, "no-data",
                               f"no test data for {name} on any host"))
            continue
        controls = {h: series.ignore_below(v, metric.ignore_below) for h, v in controls.items()}
        usable = {h: v for h, v in controls.items()
                  if len(series.present(v)) >= metric.min_points}
        group = (baseline(list(usable.values()), carry_trend=_carries_trend(policy))
                 if usable else None)
        prepared.append((metric, tests, usable, group))
    # v5: each metric's between-host spread moderated toward the spread pooled over the
    # verification's metrics (empirical Bayes, :mod:`.detectors.between`): relative to the
    # level, error rates in a pool of their own.
    bases = between.moderate([p[3] for p in prepared],
                             [p[0].kind is MetricKind.ERROR_RATE for p in prepared])
    prepared = [(m, t, u, b) for (m, t, u, _), b in zip(prepared, bases, strict=True)]
    for metric, tests, usable, group in prepared:
        mine = [_case(metric, policy, host, values, usable, group)
                for host, values in tests.items()]
        cases.extend(mine)
        compared = [c for c in mine if c.comparison is not None]
        if group is not None and compared:
            paired = all(c.paired for c in compared)
            whole = measure_group([c.comparison for c in compared if c.comparison], group,
                                  paired)
            if whole is not None:
                groups.append(_Group(metric, whole))
    return cases, groups, extra


def _carries_trend(policy: VerificationPolicy) -> bool:
    return policy.mode in (Mode.ROLLING, Mode.BLUE_GREEN)


def _case(metric: MetricPolicy, policy: VerificationPolicy, host: str, raw: np.ndarray,
          controls: Mapping[str, np.ndarray], group: Baseline | None) -> _Case:
    fixed = _fixed_checks(metric, host, raw)
    if fixed is not None:
        return _Case(metric, host, fixed=fixed)
    if thresholds.all_ignored(metric, raw):
        n = len(series.present(raw))
        return _Case(metric, host, fixed=_fixed(
            metric, host, Verdict.PASS, "ignore-below", raw,
            f"{metric.name} on {host}: all {n} values are below the ignore threshold "
            f"{quantity(metric.ignore_below or 0, metric.unit)}, passed without analysis"))
    values = series.ignore_below(raw, metric.ignore_below)
    count = len(series.present(values))
    if count < max(metric.min_points, 2):
        verdict = Verdict.INCONCLUSIVE if len(series.present(raw)) >= metric.min_points \
            else Verdict.NO_DATA
        return _Case(metric, host, fixed=_fixed(
            metric, host, verdict, "min-points", values,
            f"{metric.name} on {host}: {count} usable values in {len(values)} minutes, fewer "
            f"than the {metric.min_points} needed: "
            f"{_minutes_for(metric.min_points - count, count, len(values))}"))
    if not controls or group is None:
        return _Case(metric, host, fixed=_fixed(
            metric, host, Verdict.NO_DATA, "no-control", values,
            f"{metric.name} on {host}: no control host has {metric.min_points} values to "
            "compare with"))
    base, hosts, paired = group, len(controls), False
    if policy.mode is not Mode.CANARY and host in controls:
        # Node by node: the host's own earlier window, with the whole group's trend.
        base = baseline([controls[host]], carry_trend=False, trend=(group.trend, group.trend_se),
                        inflation=group.inflation)
        hosts, paired = 1, True
    comparison = measure(base, values, metric.direction.sign, policy.mode.time_aligned,
                         policy.gap_minutes)
    return _Case(metric, host, comparison=comparison, control_hosts=hosts, paired=paired)


def _fixed_checks(metric: MetricPolicy, host: str, raw: np.ndarray) -> Finding | None:
    """no-data and fail-fast: decided before (and without) any analysis."""
    values = series.present(raw)
    if not len(values):
        return _fixed(metric, host, Verdict.NO_DATA, "no-data", raw,
                      f"no test data for {metric.name} on {host} in {len(raw)} minutes")
    why = thresholds.fail_fast(metric, raw)
    if why is not None:
        return _fixed(metric, host, Verdict.FAIL, "fail-fast", raw,
                      f"{metric.name} on {host}: {why} the fail-fast threshold "
                      f"{quantity(metric.fail_fast_above or 0, metric.unit)} (mean "
                      f"{quantity(float(np.mean(values)), metric.unit)}), failed without "
                      "analysis")
    return None


def _finding(case: _Case, sensitivity: Sensitivity, look: Look) -> Finding:
    if case.fixed is not None:
        return case.fixed
    c = case.comparison
    assert c is not None
    decision = classify(case.metric, case.host, c, sensitivity, limits(sensitivity), look.alpha)
    control = {"median": c.control_level, "mean": c.control_mean, "count": c.control_count,
               "noise_sd": c.control_noise, "between_host_sd": c.between_sd,
               "hosts": case.control_hosts, "trend_per_minute": c.control_trend}
    sign = case.metric.direction.sign
    test = {"median": c.test_median, "mean": c.test_mean, "count": c.test_count,
            "minutes": c.test_minutes, "noise_sd": c.test_noise, "change": sign * c.change,
            "change_pct": 100 * sign * c.relative if math.isfinite(c.relative) else math.nan,
            "deviation_sd": c.deviation_sd, "robust_deviation_sd": c.robust_sd,
            "change_se": c.shift_se, "change_sds": c.shift_z, "drift_sds": c.drift_z,
            "p_value": c.shift_p, "sd_ratio": c.sd_ratio, "drift_end": sign * c.drift_end,
            "drift_p": c.drift_p, "spread_p": c.spread_p, "alpha": look.alpha}
    if c.shift_se > 0 and c.change > 0:
        # The minimum-effect test's bound: how large the change at least is (1 - alpha).
        lower = lower_bound(c.change, c.shift_se, look.alpha)
        test["change_lower"] = sign * lower
        relative = c.relative_of(lower)
        test["change_lower_pct"] = 100 * sign * relative if math.isfinite(relative) else math.nan
    if decision.more_minutes is not None:
        test["more_minutes_needed"] = decision.more_minutes
    return Finding(subject=case.metric.name, host=case.host, verdict=decision.verdict,
                   reason=decision.reason, control_summary=_clean(control),
                   test_summary=_clean(test), rule=decision.rule)


def _group_size_alpha(policy: VerificationPolicy, look_alpha: float) -> float | None:
    """The level of the group rules' minimum-effect test (v5), only in before/after modes.

    There the test group is compared with an earlier window (or run): the comparison is
    confounded with time, and traffic, data and neighbours change between the windows by a few
    percent with no deployment at all. "Clearly different from zero" is then no evidence of a
    regression; only "clearly beyond the practical size" is, so the group change's lower
    bound must reach it (at the look's alpha: a further condition on top of the split test
    against zero, so it can only remove FAILs). In canary mode control and test run in the same
    minutes, nothing but the version and the hosts differs, and the group rules keep testing
    against zero (the practical size is still required of the estimate)."""
    return None if policy.mode.time_aligned else look_alpha


def _group_finding(group: _Group, sensitivity: Sensitivity, alpha: float,
                   size_alpha: float | None = None) -> Finding:
    g, metric = group.comparison, group.metric
    decision = classify_group(metric, g, sensitivity, limits(sensitivity), alpha, size_alpha)
    sign = metric.direction.sign
    relative = g.relative_of(g.change)
    test = {"hosts": g.hosts, "deviating_hosts": g.deviating, "change": sign * g.change,
            "change_pct": 100 * sign * relative if math.isfinite(relative) else math.nan,
            "change_se": g.change_se, "change_sds": g.change_z, "p_value": g.change_p,
            "drift_end": sign * g.drift_end, "drift_sds": g.drift_z, "drift_p": g.drift_p,
            "sd_ratio": g.sd_ratio, "spread_p": g.spread_p, "alpha": alpha}
    return Finding(subject=metric.name, host=ALL_HOSTS, verdict=decision.verdict,
                   reason=decision.reason,
                   control_summary=_clean({"median": g.control_level,
                                           "hosts": g.control_hosts}),
                   test_summary=_clean(test), rule=decision.rule)


def _clean(summary: dict[str, float]) -> dict[str, float]:
    """Numbers for a finding: finite floats only (a NaN p-value means "not computed")."""
    return {k: float(v) for k, v in summary.items() if math.isfinite(float(v))}


def _minutes_for(points: int, have: int, minutes: int) -> str:
    if have == 0 or minutes == 0:
        return "needs minutes with traffic on this host"
    more = math.ceil(points * minutes / have)
    return f"about {more} more minutes at the current traffic would give enough data"


def _fixed(metric: MetricPolicy, host: str, verdict: Verdict, rule: str, values: np.ndarray,
           reason: str) -> Finding:
    present = series.present(values)
    test = {"count": float(len(present)), "minutes": float(len(values))}
    if len(present):
        test |= {"median": float(np.median(present)), "mean": float(np.mean(present))}
    return Finding(subject=metric.name, host=host, verdict=verdict, reason=reason,
                   control_summary={}, test_summary=test, rule=rule)


def _note(subject: str, verdict: Verdict, rule: str, reason: str) -> Finding:
    return Finding(subject=subject, host=ALL_HOSTS, verdict=verdict, reason=reason,
                   control_summary={}, test_summary={}, rule=rule)


def _hosts(group: GroupData) -> list[str]:
    """Every host of a group over all its metrics, sorted so findings come in a fixed order."""
    return sorted({host for per_host in group.values() for host in per_host})
