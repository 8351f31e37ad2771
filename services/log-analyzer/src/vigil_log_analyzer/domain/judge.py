"""The log verdict: cluster both groups, label the test clusters, apply the rules and feedback.

Each test cluster gets one finding, decided by its label, its level and the sensitivity
(issue 6), unless feedback on it (or, for IGNORE, on a similar cluster) overrides::

    label                 cluster                   HIGH  MEDIUM  LOW             rule
    UNKNOWN               ERROR, or has exception   FAIL  FAIL    FAIL            new-error
    UNKNOWN               WARN                      FAIL  PASS    PASS            new-warning
    UNKNOWN               INFO                      PASS  PASS    PASS            new-info
    UNEXPECTED_FREQUENCY  ERROR, or has exception   FAIL  FAIL    FAIL if >= 10x  error-frequency
    UNEXPECTED_FREQUENCY  WARN                      FAIL  PASS    PASS            warning-frequency
    UNEXPECTED_FREQUENCY  INFO                      PASS  PASS    PASS            info-frequency
    KNOWN                 anything                  PASS  PASS    PASS            known

Fewer occurrences than in control never fail. No test records at all is NO_DATA.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from vigil_common.verdicts import (
    AnalysisResult,
    Finding,
    Sensitivity,
    Verdict,
    ordered,
    summarize,
)
from vigil_log_analyzer.domain.clusterer import Clusterer
from vigil_log_analyzer.domain.clusters import (
    LEVEL_RANK,
    Cluster,
    ClusterLabel,
    Exposure,
    LogEvent,
    frequency,
    normalize_level,
)
from vigil_log_analyzer.domain.feedback import Feedback, Risk, feedback_for
from vigil_log_analyzer.domain.records import signature_of
from vigil_log_analyzer.domain.templates import has_exception

ANALYZER = "log-clusters-v2"
"""Versioned name stamped on every result of this module."""

LOW_SENSITIVITY_FACTOR = 10.0
"""At LOW sensitivity an error's unexpected frequency fails only from this rate ratio."""


@dataclass(frozen=True)
class ClusterVerdict:
    """A test cluster with the verdict its rule or feedback gave it.

    Attributes:
        cluster: The cluster (counts, label, template, example).
        verdict: PASS or FAIL.
        rule: The rule or feedback that decided (see the module table; feedback rules are
            ``feedback-high-risk``, ``feedback-medium-risk``, ``feedback-no-risk``,
            ``feedback-ignore`` and ``feedback-ignore-similar``).
        risk: The feedback risk applied, or None.
    """

    cluster: Cluster
    verdict: Verdict
    rule: str
    risk: Risk | None = None


@dataclass(frozen=True)
class LogAnalysisResult(AnalysisResult):
    """An :class:`AnalysisResult` that also carries every cluster and each line's cluster.

    Attributes:
        clusters: The verdict of every test cluster, in the order of ``findings``.
        control_ids: Cluster id of each control event, in input order.
        test_ids: Cluster id of each test event, in input order.
    """

    clusters: tuple[ClusterVerdict, ...] = ()
    control_ids: tuple[str, ...] = ()
    test_ids: tuple[str, ...] = ()


def judge_logs(
    control: Sequence[LogEvent],
    test: Sequence[LogEvent],
    sensitivity: Sensitivity,
    known: Collection[str] = frozenset(),
    feedback: Iterable[Feedback] = (),
    clusterer: Clusterer | None = None,
) -> LogAnalysisResult:
    """Judges the test group's log records against the control group's.

    Args:
        control: Control records (old version, or the pre-deployment window); may be empty.
        test: Test records (new version).
        sensitivity: Picks which new or more frequent clusters fail (module table).
        known: Cluster ids seen with a previous version of the service (stored baseline).
        feedback: The service's feedback; overrides the rules (see ``feedback.py``).
        clusterer: The service's clusterer, seeded with its remembered signatures so ids stay
            stable; it learns this run's signatures. A fresh one when None.

    Returns:
        A ``log-clusters-v2`` result. Same inputs (and same clusterer state), same result.
    """
    clusterer = clusterer or Clusterer()
    control_ids = clusterer.assign([signature_of(e.message) for e in control])
    test_ids = clusterer.assign([signature_of(e.message) for e in test])
    control_ids = [clusterer.resolve(c) for c in control_ids]
    if not test:
        finding = Finding(subject="*", host="*", verdict=Verdict.NO_DATA,
                          reason="no test log records to analyze", control_summary={},
                          test_summary={}, rule="no-data")
        return LogAnalysisResult(verdict=Verdict.NO_DATA, reason=f"NO_DATA: {finding.reason}",
                                 findings=(finding,), analyzer=ANALYZER,
                                 control_ids=tuple(control_ids))
    templates = {info.id: info.template_text for info in clusterer.clusters()}
    clusters = _clusters(control, control_ids, test, test_ids, set(known), templates)
    entries = list(feedback)
    verdicts = [_decide(cluster, sensitivity, entries) for cluster in clusters]
    verdicts.sort(key=lambda v: (not v.cluster.is_error, -v.cluster.test_total, v.cluster.id))
    findings = [_finding(v, sensitivity) for v in verdicts]
    by_subject = dict(zip((f.subject for f in findings), verdicts, strict=True))
    findings_sorted = ordered(findings)
    verdict, reason = summarize(findings_sorted)
    return LogAnalysisResult(
        verdict=verdict, reason=reason, findings=findings_sorted, analyzer=ANALYZER,
        clusters=tuple(by_subject[f.subject] for f in findings_sorted),
        control_ids=tuple(control_ids), test_ids=tuple(test_ids))


def _clusters(control: Sequence[LogEvent], control_ids: Sequence[str],
              test: Sequence[LogEvent], test_ids: Sequence[str], known: set[str],
              templates: dict[str, str]) -> list[Cluster]:
    control_exposure, test_exposure = Exposure.of(control), Exposure.of(test)
    start = min((e.time for e in control if e.time), default=None)
    control_cells: dict[str, Counter[tuple[str, int]]] = {}
    control_counts: dict[str, Counter[str]] = {}
    control_minutes: dict[str, Counter[str]] = {}
    for event, cid in zip(control, control_ids, strict=True):
        minute = int((event.time - start).total_seconds() // 60) if event.time and start else 0
        control_cells.setdefault(cid, Counter())[(event.host, minute)] += 1
        control_counts.setdefault(cid, Counter())[event.host] += 1
        if event.time:
            control_minutes.setdefault(cid, Counter())[event.time.strftime("%H:%M")] += 1
    members: dict[str, list[LogEvent]] = {}
    for event, cid in zip(test, test_ids, strict=True):
        members.setdefault(cid, []).append(event)
    out = []
    for cid, events in members.items():
        level = max((normalize_level(e.level) for e in events), key=LEVEL_RANK.__getitem__)
        in_control = cid in control_counts
        freq = (frequency(control_cells[cid], control_exposure, len(events), test_exposure)
                if in_control else None)
        if not in_control and cid not in known:
            label = ClusterLabel.UNKNOWN
        elif freq is not None and freq.unexpected and len(events) >= 5:
            label = ClusterLabel.UNEXPECTED_FREQUENCY
        else:
            label = ClusterLabel.KNOWN
        out.append(Cluster(
            id=cid, template=templates.get(cid, ""), level=level, label=label,
            example=_first_line(events[0].message),
            has_exception=any(has_exception(e.message) for e in events),
            test_counts=dict(sorted(Counter(e.host for e in events).items())),
            control_counts=dict(sorted(control_counts.get(cid, Counter()).items())),
            test_minutes=dict(sorted(Counter(e.time.strftime("%H:%M") for e in events
                                             if e.time).items())),
            control_minutes=dict(sorted(control_minutes.get(cid, Counter()).items())),
            frequency=freq))
    return out


def _decide(cluster: Cluster, sensitivity: Sensitivity, feedback: list[Feedback]
            ) -> ClusterVerdict:
    found = feedback_for(cluster.id, cluster.template, feedback)
    if found is not None:
        entry, similar = found
        if entry.risk is Risk.HIGH:
            return ClusterVerdict(cluster, Verdict.FAIL, "feedback-high-risk", entry.risk)
        if entry.risk is Risk.MEDIUM:
            fails = sensitivity is Sensitivity.HIGH
            return ClusterVerdict(cluster, Verdict.FAIL if fails else Verdict.PASS,
                                  "feedback-medium-risk", entry.risk)
        if entry.risk is Risk.NO_RISK:
            return ClusterVerdict(cluster, Verdict.PASS, "feedback-no-risk", entry.risk)
        rule = "feedback-ignore-similar" if similar else "feedback-ignore"
        return ClusterVerdict(cluster, Verdict.PASS, rule, entry.risk)
    kind = "error" if cluster.is_error else cluster.level.lower()
    kind = {"warn": "warning"}.get(kind, kind)
    if cluster.label is ClusterLabel.UNKNOWN:
        fails = cluster.is_error or (cluster.level == "WARN" and sensitivity is Sensitivity.HIGH)
        return ClusterVerdict(cluster, Verdict.FAIL if fails else Verdict.PASS, f"new-{kind}")
    if cluster.label is ClusterLabel.UNEXPECTED_FREQUENCY:
        assert cluster.frequency is not None
        if cluster.is_error:
            fails = (sensitivity is not Sensitivity.LOW
                     or cluster.frequency.ratio >= LOW_SENSITIVITY_FACTOR)
        else:
            fails = cluster.level == "WARN" and sensitivity is Sensitivity.HIGH
        return ClusterVerdict(cluster, Verdict.FAIL if fails else Verdict.PASS,
                              f"{kind}-frequency")
    return ClusterVerdict(cluster, Verdict.PASS, "known")


def _finding(decided: ClusterVerdict, sensitivity: Sensitivity) -> Finding:
    cluster = decided.cluster
    counts = f"{cluster.test_total} in test, {cluster.control_total} in control"
    quoted = f'"{cluster.template}" ({counts}), e.g. "{cluster.example}"'
    outcome = "fails" if decided.verdict is Verdict.FAIL else "passes"
    at = f"{outcome} at {sensitivity.value}"
    kind = "ERROR" if cluster.is_error else cluster.level
    rule = decided.rule
    if rule.startswith("feedback"):
        what = rule.removeprefix("feedback-").replace("-", " ")
        reason = f"feedback {what} on {kind} cluster ({at}): {quoted}"
    elif cluster.label is ClusterLabel.UNKNOWN:
        reason = f"new {kind} cluster ({at}): {quoted}"
    elif cluster.label is ClusterLabel.UNEXPECTED_FREQUENCY and cluster.frequency:
        f = cluster.frequency
        reason = (f"known {kind} cluster {f.ratio:.1f}x as frequent ({f.test_rate:.2f} vs "
                  f"{f.control_rate:.2f} per host-minute, z={f.z:.1f}; {at}): {quoted}")
    else:
        reason = f"known {kind} cluster: {quoted}"
    return Finding(
        subject=cluster.id, host="*", verdict=decided.verdict, reason=reason,
        control_summary={h: float(n) for h, n in cluster.control_counts.items()},
        test_summary={h: float(n) for h, n in cluster.test_counts.items()}, rule=rule)


def _first_line(message: str) -> str:
    for line in message.splitlines():
        if line.strip():
            return line.strip()
    return ""
