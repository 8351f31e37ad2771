"""A stored verification's events -> the `vigil verify replay` document (pure).

`vigil verify export` (issue 5: "stored verifications can be exported in the same format"):
the gateway keeps every health-data report of a verification (``verification_data``,
migration 0014); the orchestrator's ``ExportVerification`` turns them into the replay format
(docs/metric-analysis.md) with :func:`replay_document`, the one place that does it, so the
API and the tests export alike.

The document says what the live analyzer judged, the way it judged it:

- metrics and their kind, unit, direction, thresholds and absolute floors come from the
  analyzer's own policy for the event (:func:`vigil_metric_analyzer.handlers.policy_for`:
  the default policies with the step's thresholds); metrics the policy does not know are not
  judged live and are left out (listed in ``unjudged_metrics``);
- the series are the batches merged as the analyzer merges them (:func:`batches.merge`);
- the replay format counts in intervals ("minutes"); when the interval is not 60 s, the
  control window's ``start`` is placed so that the gap to the test window, in minutes, is the
  live gap in intervals (pre/post modes carry a control trend over it), and
  ``wall_clock_start`` keeps the real time;
- log records become ``{id, host, ts, text}`` with the level (and logger) in the text, as
  the log analyzer's record parser expects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.events.v1 import verification_pb2 as v
from vigil_common import verdict_events
from vigil_common.kafka import RejectedEvent
from vigil_metric_analyzer import batches
from vigil_metric_analyzer.domain.policy import Direction, MetricPolicy
from vigil_metric_analyzer.handlers import MODES, gap_intervals, policy_for

FORMAT = "vigil-verify-replay/1"
_DIRECTIONS = {Direction.HIGHER_IS_WORSE: "increase_is_bad",
               Direction.LOWER_IS_WORSE: "decrease_is_bad"}
_GROUPS = {v.HOST_GROUP_CONTROL: "control", v.HOST_GROUP_TEST: "test"}


class ExportError(ValueError):
    """The stored data cannot be turned into a replay document; the message says why."""


@dataclass
class Export:
    """A replay document and what it was built from."""

    document: dict[str, Any]
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def replay_document(metrics: Sequence[v.MetricsCollected], logs: v.LogsCollected | None,
                    parts: Sequence[str] = (), live: Mapping[str, Any] | None = None) -> Export:
    """The replay document of one verification.

    Args:
        metrics: Its metrics batches, in any order (one whole-window batch, or partial ones).
        logs: Its logs, or None when none were stored.
        parts: Names of the stored parts, for ``present`` (default: derived from the data).
        live: Extra facts to carry under ``live`` (e.g. the verdicts the step received).

    Raises:
        ExportError: when there is nothing to export or the batches disagree on what they
            belong to.
    """
    if not metrics and logs is None:
        raise ExportError("no stored data")
    refs = {(m.ref.verification_id, m.ref.account_id) for m in metrics}
    if logs is not None:
        refs.add((logs.ref.verification_id, logs.ref.account_id))
    if len(refs) != 1:
        raise ExportError(f"the parts belong to different verifications: {sorted(refs)}")
    ordered = sorted(metrics, key=lambda m: (m.first_interval, m.partial))
    last = next((m for m in reversed(ordered) if not m.partial), ordered[-1] if ordered else None)
    ref = (last or logs).ref  # type: ignore[union-attr]
    sensitivity = (last or logs).sensitivity  # type: ignore[union-attr]
    doc: dict[str, Any] = {
        "format": FORMAT, "id": ref.verification_id, "execution_id": ref.execution_id,
        "service": ref.service,
        "sensitivity": verdict_events.sensitivity(sensitivity).value.lower(),
    }
    missing: list[str] = []
    if last is not None:
        doc.update(_metrics_part(ordered, last, doc, missing))
    else:
        doc.update({"mode": "canary", "metrics": [], "hosts": {"control": [], "test": []}})
        missing.append("metrics (no batch stored)")
    doc["logs"] = _logs(logs) if logs is not None else {"control": [], "test": []}
    if logs is None:
        missing.append("logs (none stored: not collected, or not received yet)")
    if live:
        doc["live"] = dict(live)
    present = list(parts) or sorted(
        [_part(m) for m in metrics] + (["logs"] if logs is not None else []))
    return Export(doc, present, missing)


def _part(m: v.MetricsCollected) -> str:
    return f"metrics/{m.first_interval}" if m.partial or m.first_interval else "metrics"


def _metrics_part(ordered: list[v.MetricsCollected], last: v.MetricsCollected,
                  doc: dict[str, Any], missing: list[str]) -> dict[str, Any]:
    try:
        policy = policy_for(last)
    except RejectedEvent as exc:  # the analyzer refused it too: nothing was judged
        raise ExportError(f"the metric analyzer could not judge these metrics: {exc}") from exc
    mode = MODES[last.mode].value
    window = batches.merge(ordered)
    planned = last.planned_intervals or batches.covered(ordered)
    covered = _covered_intervals(ordered)
    gaps = _ranges(sorted(set(range(planned)) - covered))
    final = any(not m.partial for m in ordered)
    if gaps:
        why = "" if final else ": an early verdict stops the collection"
        missing.append(f"metrics intervals {gaps} (never received{why})")
    elif not final:
        missing.append("the final metrics batch")
    out: dict[str, Any] = {"mode": mode, "interval_seconds": last.interval_seconds,
                           "planned_intervals": planned,
                           "warmup_minutes": policy.warmup_minutes}
    out["windows"] = _windows(last, planned)
    hosts: dict[str, set[str]] = {"control": set(), "test": set()}
    exported, unjudged = [], []
    names = sorted({name for group in window.values() for name in group})
    for name in names:
        metric = policy.metrics.get(name)
        if metric is None:
            unjudged.append(name)
            continue
        entry = _metric(metric)
        for group, key in _GROUPS.items():
            series = window.get(group, {}).get(name, {})
            entry[key] = {host: [x if x is None or math.isfinite(x) else None for x in values]
                          for host, values in sorted(series.items())}
            hosts[key].update(series)
        exported.append(entry)
    out["hosts"] = {k: sorted(h) for k, h in hosts.items()}
    out["metrics"] = exported
    if unjudged:
        out["unjudged_metrics"] = unjudged
    if mode == "load_test":
        missing.append("load_test: the baseline run the analyzer compared with is not part of "
                       "the stored data (control is empty)")
    return out


def _metric(m: MetricPolicy) -> dict[str, Any]:
    thresholds = {k: val for k, val in (("ignore_below", m.ignore_below),
                                        ("fail_fast_above", m.fail_fast_above),
                                        ("fail_fast_minutes", m.fail_fast_minutes))
                  if val is not None}
    entry: dict[str, Any] = {"name": m.name, "kind": m.kind.value, "unit": m.unit,
                             "direction": _DIRECTIONS[m.direction], "critical": m.critical,
                             "thresholds": thresholds}
    floor = m.absolute_floor
    if (floor.high, floor.medium, floor.low) != (0.0, 0.0, 0.0):
        entry["absolute_floor"] = {"high": floor.high, "medium": floor.medium, "low": floor.low}
    return entry


def _windows(msg: v.MetricsCollected, planned: int) -> dict[str, Any]:
    test_start = msg.window_start.ToDatetime(tzinfo=UTC) if msg.HasField("window_start") \
        else None
    test = {"start": _iso(test_start), "minutes": planned}
    control: dict[str, Any] = {"start": test["start"], "minutes": planned}
    gap = gap_intervals(msg)
    if gap is not None and test_start is not None:
        control["start"] = _iso(test_start - timedelta(minutes=gap))
        control["wall_clock_start"] = _iso(msg.control_window_start.ToDatetime(tzinfo=UTC))
    return {"control": control, "test": test}


def _covered_intervals(ordered: Sequence[v.MetricsCollected]) -> set[int]:
    seen: set[int] = set()
    for m in ordered:
        width = max((len(s.points) for s in m.series), default=0)
        seen.update(range(m.first_interval, m.first_interval + width))
    return seen


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    out: list[str] = []
    for k in values:
        if out and int(out[-1].rpartition("-")[2]) == k - 1:
            out[-1] = f"{out[-1].partition('-')[0]}-{k}"
        else:
            out.append(str(k))
    return ", ".join(out)


def _logs(msg: v.LogsCollected) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {"control": [], "test": []}
    for k, r in enumerate(msg.records):
        key = _GROUPS.get(r.group)
        if key is None:
            continue
        ts = _iso(r.time.ToDatetime(tzinfo=UTC)) if r.HasField("time") else ""
        head = " ".join(x for x in (ts, r.level or "INFO") if x)
        logger = f"{r.logger} - " if r.logger else ""
        out[key].append({"id": f"{key}-{k}", "host": r.host, "ts": ts,
                         "text": f"{head} {logger}{r.message}"})
    return out


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t is not None else None
