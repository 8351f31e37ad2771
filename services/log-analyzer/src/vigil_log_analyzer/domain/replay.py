"""The log part of ``vigil verify replay``: stored records in, clusters and labels out."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from vigil_common.verdicts import Sensitivity
from vigil_log_analyzer.domain.clusterer import Clusterer
from vigil_log_analyzer.domain.clusters import LogEvent
from vigil_log_analyzer.domain.feedback import Feedback
from vigil_log_analyzer.domain.judge import judge_logs
from vigil_log_analyzer.domain.records import parse_records

_LABELS = {"KNOWN": "known", "UNKNOWN": "unknown", "UNEXPECTED_FREQUENCY": "unexpected-frequency"}


def replay_logs(
    control_records: Sequence[Mapping[str, Any]],
    test_records: Sequence[Mapping[str, Any]],
    sensitivity: Sensitivity,
    known: Collection[str] = frozenset(),
    feedback: Iterable[Feedback] = (),
) -> dict[str, Any]:
    """Runs the log analysis on replay-format records (issue 5's ``logs`` part).

    Args:
        control_records: ``{id, host, ts, text}`` dicts of the control group; ``text`` is the
            raw record (header and message, continuation lines joined by ``"\\n"``); ``ts`` is
            an ISO 8601 string (or empty).
        test_records: The same for the test group.
        sensitivity: The sensitivity to judge at.
        known: Cluster ids already known for the service (seen with a previous version).
        feedback: Feedback to apply.

    Returns:
        ``{"verdict": "PASS"|"FAIL"|"NO_DATA", "reason": str, "analyzer": str,
        "line_clusters": {record_id: cluster_id} (every control and test record),
        "cluster_labels": {cluster_id: "known"|"unknown"|"unexpected-frequency"} (test
        clusters), "explanations": [{cluster_id, label, level, verdict, rule, template,
        example, test_counts, control_counts, test_minutes, control_minutes, reason}]}``.
        Deterministic.
    """
    control = [_event(r) for r in control_records]
    test = [_event(r) for r in test_records]
    result = judge_logs(control, test, sensitivity, known, feedback, Clusterer())
    line_clusters = {str(r["id"]): c for r, c in zip(control_records, result.control_ids,
                                                       strict=True)}
    line_clusters.update({str(r["id"]): c for r, c in zip(test_records, result.test_ids,
                                                          strict=True)})
    reasons = {f.subject: f.reason for f in result.findings}
    explanations = [{
        "cluster_id": v.cluster.id, "label": _LABELS[v.cluster.label.value],
        "level": v.cluster.level, "verdict": v.verdict.value, "rule": v.rule,
        "template": v.cluster.template, "example": v.cluster.example,
        "test_counts": v.cluster.test_counts, "control_counts": v.cluster.control_counts,
        "test_minutes": v.cluster.test_minutes, "control_minutes": v.cluster.control_minutes,
        "reason": reasons[v.cluster.id],
    } for v in result.clusters]
    return {
        "verdict": result.verdict.value, "reason": result.reason, "analyzer": result.analyzer,
        "line_clusters": line_clusters,
        "cluster_labels": {v.cluster.id: _LABELS[v.cluster.label.value]
                           for v in result.clusters},
        "explanations": explanations,
    }


def _event(record: Mapping[str, Any]) -> LogEvent:
    text = str(record.get("text", ""))
    parsed = parse_records(text.splitlines() or [""])
    first = parsed[0] if parsed else None
    message = "\n".join(p.message for p in parsed) if parsed else text
    level = first.level if first and first.level else "INFO"
    ts = record.get("ts") or ""
    time = None
    if ts:
        try:
            time = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
        except ValueError:
            time = None
    return LogEvent(host=str(record.get("host", "")), level=level, message=message, time=time)
