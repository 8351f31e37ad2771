"""The plain threshold check: canary hosts against control hosts, metric by metric.

For every metric of the policy and every test host, checks run in this order and the first
that decides gives the host's finding (its ``rule``):

1. ``no-data``: the host has no value at all for the metric -> NO_DATA.
2. ``fail-fast``: the mean of its values is above ``fail_fast_above`` -> FAIL, no comparison.
3. ``min-points``: fewer than ``min_points`` values -> NO_DATA.
4. ``ignore-below``: every value is below ``ignore_below`` -> PASS without analysis; otherwise
   the values below it are left out and the rest is compared.
5. ``no-control``: no control host has enough values -> NO_DATA.
6. ``median-change``: the host's median is compared with the median of each control host
   (pairwise, as canary nodes are compared with each primary node). It fails when the change in
   the bad direction is above both the relative tolerance and the absolute floor against *every*
   control host: being as slow as one old-version node is not a regression of the new version.

A control host without enough values gets its own NO_DATA finding, and a metric missing from
either side one ``"*"`` finding, so missing data always shows. The overall verdict is the worst
finding (:func:`vigil_common.verdicts.combine`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vigil_common.verdicts import AnalysisResult, Finding, Verdict, ordered, summarize
from vigil_metric_analyzer.domain.policy import Direction, MetricPolicy, VerificationPolicy
from vigil_metric_analyzer.domain.summary import Summary, amount, present, quantity, signed

ANALYZER = "threshold-v1"
"""Versioned name stamped on every result of this module."""

Series = Sequence[float | None]
"""Per-interval values of one metric on one host, oldest first; ``None`` = no data."""

GroupData = Mapping[str, Mapping[str, Series]]
"""One group's data: ``{metric: {host: values}}``."""

ALL_HOSTS = "*"


def judge_metrics(
    control: GroupData, test: GroupData, policy: VerificationPolicy
) -> AnalysisResult:
    """Judges canary (test) hosts against control hosts for every metric of ``policy``.

    Args:
        control: ``{metric: {host: values}}`` of the control group (e.g. primary nodes on the
            old version), covering the same time window as ``test``.
        test: The same for the test group (e.g. canary nodes on the new version).
        policy: Metrics to judge and the sensitivity; metrics not in it are not judged.

    Returns:
        A ``threshold-v1`` result with one finding per metric and test host (plus NO_DATA
        findings for control hosts without enough data), worst first. Same inputs, same result.
    """
    if not policy.metrics:
        return _nothing_to_verify("the policy has no metrics to verify", "no-metrics")
    test_hosts = _hosts(test)
    control_hosts = _hosts(control)
    findings: list[Finding] = []
    for name, metric in policy.metrics.items():
        controls, control_findings = _control_summaries(
            metric, {host: control.get(name, {}).get(host, ()) for host in control_hosts}
        )
        findings.extend(control_findings)
        series = {host: test.get(name, {}).get(host, ()) for host in test_hosts}
        if not any(present(values) for values in series.values()):
            findings.append(_no_data(name, ALL_HOSTS, f"no test data for {name} on any host"))
            continue
        for host, values in series.items():
            findings.append(_judge_test_host(metric, policy, host, values, controls))
    return _result(findings)


def judge_thresholds_only(test: GroupData, policy: VerificationPolicy) -> AnalysisResult:
    """Plain threshold verification without a control group: only ``fail_fast_above`` counts.

    Each metric with a ``fail_fast_above`` is checked on every test host: FAIL when the host's
    mean is above it, NO_DATA when the host has no or too few values, else PASS. Metrics
    without a threshold are not checked; when none has one the result is INCONCLUSIVE, since
    there is nothing to judge the data against.
    """
    thresholds = [
        (metric, metric.fail_fast_above)
        for metric in policy.metrics.values()
        if metric.fail_fast_above is not None
    ]
    if not thresholds:
        return _nothing_to_verify(
            "no metric has a fail_fast_above threshold, and without a control group there is "
            "nothing else to compare with",
            "no-thresholds",
        )
    hosts = _hosts(test)
    findings: list[Finding] = []
    for metric, threshold in thresholds:
        series = {host: test.get(metric.name, {}).get(host, ()) for host in hosts}
        if not any(present(values) for values in series.values()):
            reason = f"no test data for {metric.name} on any host"
            findings.append(_no_data(metric.name, ALL_HOSTS, reason))
            continue
        for host, values in series.items():
            early = _precheck(metric, host, values)
            findings.append(early or _under_threshold(metric, threshold, host, values))
    return _result(findings)


def _hosts(group: GroupData) -> list[str]:
    """Every host of a group, over all its metrics, sorted so findings come in a fixed order."""
    return sorted({host for per_host in group.values() for host in per_host})


def _control_summaries(
    metric: MetricPolicy, series: Mapping[str, Series]
) -> tuple[dict[str, Summary], list[Finding]]:
    """Summaries of the control hosts with enough data, and NO_DATA findings for the others."""
    summaries: dict[str, Summary] = {}
    findings: list[Finding] = []
    for host, values in series.items():
        values = present(values)
        if len(values) >= metric.min_points:
            summaries[host] = Summary.of(values)
            continue
        reason = (
            f"{metric.name} on control host {host}: {len(values)} values, "
            f"fewer than the {metric.min_points} needed"
        )
        findings.append(
            Finding(
                subject=metric.name,
                host=host,
                verdict=Verdict.NO_DATA,
                reason=reason,
                control_summary=Summary.of(values).as_dict() if values else {},
                test_summary={},
                rule="min-points",
            )
        )
    if not series or not any(present(values) for values in series.values()):
        return {}, [_no_data(metric.name, ALL_HOSTS, f"no control data for {metric.name}")]
    return summaries, findings


def _precheck(metric: MetricPolicy, host: str, values: Series) -> Finding | None:
    """The checks before any comparison: no data, fail-fast, too few values."""
    measured = present(values)
    if not measured:
        return _no_data(metric.name, host, f"no test data for {metric.name} on {host}")
    summary = Summary.of(measured)
    if metric.fail_fast_above is not None and summary.mean > metric.fail_fast_above:
        reason = (
            f"{metric.name} on {host}: mean {quantity(summary.mean, metric.unit)} is above the "
            f"fail-fast threshold {quantity(metric.fail_fast_above, metric.unit)}"
        )
        return _finding(metric, host, Verdict.FAIL, reason, {}, summary, "fail-fast")
    if summary.count < metric.min_points:
        reason = (
            f"{metric.name} on {host}: {summary.count} values, "
            f"fewer than the {metric.min_points} needed"
        )
        return _finding(metric, host, Verdict.NO_DATA, reason, {}, summary, "min-points")
    return None


def _under_threshold(metric: MetricPolicy, threshold: float, host: str, values: Series) -> Finding:
    summary = Summary.of(present(values))
    reason = (
        f"{metric.name} on {host}: mean {quantity(summary.mean, metric.unit)} is within the "
        f"threshold {quantity(threshold, metric.unit)}"
    )
    return _finding(metric, host, Verdict.PASS, reason, {}, summary, "fail-fast")


def _judge_test_host(
    metric: MetricPolicy,
    policy: VerificationPolicy,
    host: str,
    values: Series,
    controls: Mapping[str, Summary],
) -> Finding:
    early = _precheck(metric, host, values)
    if early is not None:
        return early
    measured = present(values)
    if metric.ignore_below is not None:
        kept = [value for value in measured if value >= metric.ignore_below]
        if not kept:
            reason = (
                f"{metric.name} on {host}: all {len(measured)} values are below the ignore "
                f"threshold {quantity(metric.ignore_below, metric.unit)}"
            )
            return _finding(
                metric, host, Verdict.PASS, reason, {}, Summary.of(measured), "ignore-below"
            )
        measured = kept
    summary = Summary.of(measured)
    if not controls:
        reason = f"{metric.name} on {host}: no control host has enough data to compare with"
        return _finding(metric, host, Verdict.NO_DATA, reason, {}, summary, "no-control")
    return _compare(metric, policy, host, summary, controls)


def _compare(
    metric: MetricPolicy,
    policy: VerificationPolicy,
    host: str,
    summary: Summary,
    controls: Mapping[str, Summary],
) -> Finding:
    """Pairwise median comparison; quotes the control host the test host is closest to."""
    tolerance = metric.relative_tolerance.at(policy.sensitivity)
    floor = metric.absolute_floor.at(policy.sensitivity)
    changes = {
        control_host: _bad_change(metric.direction, control.median, summary.median)
        for control_host, control in controls.items()
    }
    closest = min(changes, key=lambda control_host: changes[control_host])
    failed = all(
        absolute > 0 and absolute > floor and relative > tolerance
        for absolute, relative in changes.values()
    )
    control = controls[closest]
    limits = (
        f"the {policy.sensitivity.value} limits of {tolerance * 100:g}% "
        f"and {amount(floor, metric.unit)}"
    )
    if failed:
        verdict, judgement = Verdict.FAIL, f"above {limits}"
        if len(controls) > 1:
            judgement += f", worse than all {len(controls)} control hosts"
    elif changes[closest][0] <= 0:
        verdict, judgement = Verdict.PASS, "no worse than control"
    else:
        verdict, judgement = Verdict.PASS, f"within {limits}"
    reason = (
        f"{metric.name} on {host} {_change_text(metric, control.median, summary.median)} vs "
        f"control {closest} (median {quantity(summary.median, metric.unit)} vs "
        f"{quantity(control.median, metric.unit)}), {judgement}"
    )
    return _finding(metric, host, verdict, reason, control.as_dict(), summary, "median-change")


def _bad_change(direction: Direction, control: float, test: float) -> tuple[float, float]:
    """The change towards worse as ``(absolute, relative)``; negative means an improvement.

    Relative is the fraction of ``|control|``; from a control of 0 any worsening is infinitely
    large relatively, so the absolute floor alone decides.
    """
    absolute = test - control if direction is Direction.HIGHER_IS_WORSE else control - test
    if control != 0:
        return absolute, absolute / abs(control)
    if absolute > 0:
        return absolute, float("inf")
    return absolute, float("-inf") if absolute < 0 else 0.0


def _change_text(metric: MetricPolicy, control: float, test: float) -> str:
    """``"+62%"``, or ``"+2.3 pp"`` for percentages, or the absolute change from a 0 control."""
    delta = test - control
    if metric.unit == "%":
        return signed(amount(delta, metric.unit))
    if control == 0:
        return signed(amount(delta, metric.unit))
    return f"{delta / abs(control) * 100:+.0f}%"


def _finding(
    metric: MetricPolicy,
    host: str,
    verdict: Verdict,
    reason: str,
    control_summary: dict[str, float],
    test_summary: Summary,
    rule: str,
) -> Finding:
    return Finding(
        subject=metric.name,
        host=host,
        verdict=verdict,
        reason=reason,
        control_summary=control_summary,
        test_summary=test_summary.as_dict(),
        rule=rule,
    )


def _no_data(subject: str, host: str, reason: str) -> Finding:
    return Finding(
        subject=subject,
        host=host,
        verdict=Verdict.NO_DATA,
        reason=reason,
        control_summary={},
        test_summary={},
        rule="no-data",
    )


def _nothing_to_verify(reason: str, rule: str) -> AnalysisResult:
    finding = Finding(
        subject=ALL_HOSTS,
        host=ALL_HOSTS,
        verdict=Verdict.INCONCLUSIVE,
        reason=reason,
        control_summary={},
        test_summary={},
        rule=rule,
    )
    return _result([finding])


def _result(findings: list[Finding]) -> AnalysisResult:
    worst_first = ordered(findings)
    verdict, reason = summarize(worst_first)
    return AnalysisResult(verdict=verdict, reason=reason, findings=worst_first, analyzer=ANALYZER)
