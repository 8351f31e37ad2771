"""New-template detection: does the new version log errors the old one did not?

Each test cluster (see :mod:`vigil_log_analyzer.domain.clusters`) gets one finding, decided by
its label, its level and the sensitivity::

    label                 cluster                      HIGH  MEDIUM  LOW   rule
    UNKNOWN               ERROR, or has an exception   FAIL  FAIL    FAIL  new-error
    UNKNOWN               WARN                         FAIL  PASS    PASS  new-warning
    UNKNOWN               INFO                         PASS  PASS    PASS  new-info
    UNEXPECTED_FREQUENCY  known error, > 3x as often   FAIL  FAIL    PASS  error-frequency
    KNOWN                 anything                     PASS  PASS    PASS  known

A known template that got rarer never fails. No test records at all is NO_DATA.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from vigil_common.verdicts import (
    AnalysisResult,
    Finding,
    Sensitivity,
    Verdict,
    ordered,
    summarize,
)
from vigil_log_analyzer.domain.clusters import (
    FREQUENCY_FACTOR,
    Cluster,
    ClusterLabel,
    LogEvent,
    cluster_events,
    rate_per_host,
)

ANALYZER = "new-template-v1"
"""Versioned name stamped on every result of this module."""


@dataclass(frozen=True)
class LogAnalysisResult(AnalysisResult):
    """An :class:`AnalysisResult` that also carries the test clusters, for storing and
    publishing (the UI shows them as KNOWN / UNKNOWN / UNEXPECTED_FREQUENCY).

    Attributes:
        clusters: Every test cluster, most frequent first; ``findings`` has one finding per
            cluster with ``subject`` = the cluster id.
    """

    clusters: tuple[Cluster, ...] = ()


def judge_logs(
    control: Sequence[LogEvent],
    test: Sequence[LogEvent],
    sensitivity: Sensitivity,
    known_templates: Collection[str] = frozenset(),
) -> LogAnalysisResult:
    """Judges the test group's log records against the control group's.

    Args:
        control: Records of the control group (old version) over the same window as ``test``;
            may be empty (e.g. a first deployment), then only ``known_templates`` count as known.
        test: Records of the test group (new version).
        sensitivity: Picks which new or more frequent clusters fail (see the module table).
        known_templates: Templates, or template ids, accepted as known beforehand (e.g. marked
            known by a user on an earlier run).

    Returns:
        A ``new-template-v1`` result: one finding per test cluster, worst first, plus the
        clusters themselves. Same inputs, same result.
    """
    if not test:
        finding = Finding(
            subject="*",
            host="*",
            verdict=Verdict.NO_DATA,
            reason="no test log records to analyze",
            control_summary={},
            test_summary={},
            rule="no-data",
        )
        return LogAnalysisResult(
            verdict=Verdict.NO_DATA,
            reason=f"NO_DATA: {finding.reason}",
            findings=(finding,),
            analyzer=ANALYZER,
        )
    clusters = cluster_events(control, test, known_templates)
    test_hosts = len({event.host for event in test})
    control_hosts = len({event.host for event in control})
    # Worst verdict first; among equal verdicts errors before the rest, so the reason quotes
    # a new exception rather than a new warning.
    errors_first = sorted(clusters, key=lambda cluster: not cluster.is_error)
    findings = ordered(
        _judge_cluster(cluster, sensitivity, test_hosts, control_hosts) for cluster in errors_first
    )
    verdict, reason = summarize(findings)
    return LogAnalysisResult(
        verdict=verdict, reason=reason, findings=findings, analyzer=ANALYZER, clusters=clusters
    )


def _judge_cluster(
    cluster: Cluster, sensitivity: Sensitivity, test_hosts: int, control_hosts: int
) -> Finding:
    counts = f"{cluster.test_total} in test, {cluster.control_total} in control"
    quoted = f'"{cluster.template}" ({counts}), e.g. "{cluster.example}"'
    if cluster.label is ClusterLabel.UNKNOWN:
        verdict, rule, reason = _judge_new(cluster, sensitivity, quoted)
    elif cluster.label is ClusterLabel.UNEXPECTED_FREQUENCY:
        test_rate = rate_per_host(cluster.test_total, test_hosts)
        control_rate = rate_per_host(cluster.control_total, control_hosts)
        fails = sensitivity is not Sensitivity.LOW
        verdict, rule = (Verdict.FAIL if fails else Verdict.PASS), "error-frequency"
        reason = (
            f"known error {test_rate / control_rate:.1f}x as frequent: {test_rate:.1f} vs "
            f"{control_rate:.1f} per host, more than {FREQUENCY_FACTOR:g}x "
            f"({'fails' if fails else 'tolerated'} at {sensitivity.value}): {quoted}"
        )
    else:
        verdict, rule = Verdict.PASS, "known"
        reason = f"known {cluster.level} template {quoted}"
    return Finding(
        subject=cluster.id,
        host="*",
        verdict=verdict,
        reason=reason,
        control_summary={host: float(count) for host, count in cluster.control_counts.items()},
        test_summary={host: float(count) for host, count in cluster.test_counts.items()},
        rule=rule,
    )


def _judge_new(cluster: Cluster, sensitivity: Sensitivity, quoted: str) -> tuple[Verdict, str, str]:
    """Verdict, rule and reason for an UNKNOWN cluster."""
    if cluster.is_error:
        kind = "ERROR" if cluster.level == "ERROR" else f"{cluster.level} with an exception"
        return Verdict.FAIL, "new-error", f"new {kind} template {quoted}"
    if cluster.level == "WARN":
        fails = sensitivity is Sensitivity.HIGH
        verdict = Verdict.FAIL if fails else Verdict.PASS
        judgement = "fails" if fails else "tolerated"
        reason = f"new WARN template ({judgement} at {sensitivity.value}) {quoted}"
        return verdict, "new-warning", reason
    return Verdict.PASS, "new-info", f"new {cluster.level} template (never fails) {quoted}"
