"""`vigil verify export`'s conversion (vigil_metric_analyzer.export.replay_document): stored
MetricsCollected batches and LogsCollected -> the replay document, which `vigil verify replay`
accepts and judges as the live metric analyzer judged the same events."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.events.v1 import verification_pb2 as v
from vigil_cli.main import main as cli
from vigil_cli.verify import replay
from vigil_common.verdicts import Sensitivity
from vigil_metric_analyzer import batches
from vigil_metric_analyzer.domain import FINAL
from vigil_metric_analyzer.export import ExportError, replay_document
from vigil_metric_analyzer.handlers import judge

CONTROL, TEST = v.HOST_GROUP_CONTROL, v.HOST_GROUP_TEST
START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _ts(t: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(t)
    return out


def _batches(latency_shift: float, errors: float, planned: int = 12, per_batch: int = 3,
             sensitivity: int = v.SENSITIVITY_MEDIUM, mode: int = v.VERIFICATION_MODE_CANARY,
             seed: int = 7) -> list[v.MetricsCollected]:
    """A window of ``planned`` intervals cut in batches; node-1/2 control, node-3 test."""
    rnd = random.Random(seed)
    ref = v.VerificationRef(verification_id="ver-1", execution_id="ex-1", account_id="acct",
                            service="demo", vigil_version="v1")
    values = {}
    for group, host, shift, err in ((CONTROL, "node-1", 0.0, 0.0), (CONTROL, "node-2", 1.0, 0.2),
                                    (TEST, "node-3", latency_shift, errors)):
        values[(group, host)] = {
            "response_time_ms": [20 + shift + rnd.gauss(0, 1.5) for _ in range(planned)],
            "error_rate_pct": [max(0.0, err + rnd.gauss(0, 0.3)) for _ in range(planned)],
            "requests_per_interval": [40 + rnd.gauss(0, 2) for _ in range(planned)],
            "not_in_the_policy": [1.0] * planned,
        }
    out = []
    for first in range(0, planned, per_batch):
        msg = v.MetricsCollected(
            ref=ref, sensitivity=sensitivity, interval_seconds=1.0, first_interval=first,
            partial=first + per_batch < planned, planned_intervals=planned, mode=mode,
            window_start=_ts(START), thresholds=[v.MetricThreshold(
                metric="error_rate_pct", fail_fast_above=25.0, fail_fast_minutes=3)])
        if mode == v.VERIFICATION_MODE_ROLLING:
            msg.control_window_start.CopyFrom(_ts(datetime(2026, 11, 22, 9, 59, 48, tzinfo=UTC)))
        for (group, host), metrics in values.items():
            for metric, series in metrics.items():
                points = [v.Point(value=x, present=True) for x in series[first:first + per_batch]]
                if metric == "response_time_ms" and host == "node-3" and first == 0:
                    points[1] = v.Point(present=False)  # a missing minute stays missing
                msg.series.add(metric=metric, host=host, group=group, points=points)
        out.append(msg)
    return out


def _live(msgs: list[v.MetricsCollected]) -> str:
    """The live analyzer's verdict on the whole window (its final look)."""
    final = next(m for m in msgs if not m.partial)
    return judge(final, batches.merge(msgs), FINAL).verdict.value


@pytest.mark.parametrize(("shift", "errors", "expected"), [
    (12.0, 0.0, "FAIL"),   # +60% latency: a clear regression
    (0.0, 0.0, "PASS"),    # the same version
    (0.0, 30.0, "FAIL"),   # errors over the step's fail-fast threshold
])
def test_an_exported_window_replays_to_the_live_metric_verdict(shift, errors, expected):
    msgs = _batches(shift, errors)
    assert _live(msgs) == expected
    export = replay_document(list(reversed(msgs)), None)  # stored order does not matter
    doc = json.loads(json.dumps(export.document, allow_nan=False))
    out = replay(doc, [Sensitivity.MEDIUM])
    assert out["verdict_metrics"] == {"medium": expected}


def test_the_document_has_the_verifications_metadata_and_the_analyzers_metric_policy():
    msgs = _batches(12.0, 0.0, sensitivity=v.SENSITIVITY_HIGH)
    export = replay_document(msgs, None)
    doc = export.document
    assert (doc["id"], doc["execution_id"], doc["service"], doc["mode"], doc["sensitivity"]) == (
        "ver-1", "ex-1", "demo", "canary", "high")
    assert doc["windows"]["test"] == {"start": "2026-11-22T10:00:00Z", "minutes": 12}
    assert doc["hosts"] == {"control": ["node-1", "node-2"], "test": ["node-3"]}
    metrics = {m["name"]: m for m in doc["metrics"]}
    assert set(metrics) == {"response_time_ms", "error_rate_pct", "requests_per_interval"}
    assert doc["unjudged_metrics"] == ["not_in_the_policy"]  # the analyzer does not judge it
    assert metrics["requests_per_interval"]["direction"] == "decrease_is_bad"
    assert (metrics["response_time_ms"]["kind"], metrics["response_time_ms"]["unit"]) == (
        "latency", "ms")
    assert metrics["error_rate_pct"]["thresholds"] == {"fail_fast_above": 25.0,
                                                        "fail_fast_minutes": 3}
    assert metrics["response_time_ms"]["absolute_floor"] == {"high": 2.0, "medium": 5.0,
                                                             "low": 10.0}
    test = metrics["response_time_ms"]["test"]["node-3"]
    assert len(test) == 12 and test[1] is None and None not in test[2:]
    assert export.present == ["metrics/0", "metrics/3", "metrics/6", "metrics/9"]
    assert export.missing == ["logs (none stored: not collected, or not received yet)"]


def test_batches_never_received_after_an_early_verdict_are_named_missing():
    msgs = _batches(0.0, 30.0)[:2]  # collection stopped after the second batch
    export = replay_document(msgs, None)
    assert export.missing[0] == ("metrics intervals 6-11 (never received: an early verdict "
                                 "stops the collection)")
    out = replay(export.document, [Sensitivity.MEDIUM])
    assert out["verdict_metrics"] == {"medium": "FAIL"}


def test_pre_post_windows_keep_the_live_gap_in_intervals():
    msgs = _batches(0.0, 0.0, mode=v.VERIFICATION_MODE_ROLLING)
    doc = replay_document(msgs, None).document
    # 12 s before the test window at 1 s per interval: 12 intervals ("minutes") of gap.
    assert doc["windows"]["control"] == {"start": "2026-11-22T09:48:00Z", "minutes": 12,
                                         "wall_clock_start": "2026-11-22T09:59:48Z"}
    assert doc["mode"] == "rolling"
    assert replay(doc, [Sensitivity.MEDIUM])["verdict_metrics"] == {"medium": _live(msgs)}


def test_logs_become_replay_records_with_host_time_and_level():
    ref = v.VerificationRef(verification_id="ver-1", execution_id="ex-1", account_id="acct",
                            service="demo")
    logs = v.LogsCollected(ref=ref, sensitivity=v.SENSITIVITY_MEDIUM)
    logs.records.add(host="node-1", group=CONTROL, time=_ts(START), level="INFO",
                     message="GET /orders 200")
    logs.records.add(host="node-3", group=TEST, time=_ts(START), level="ERROR",
                     logger="com.example.Orders",
                     message="Unhandled exception processing order 17\n"
                             "java.lang.NullPointerException\n"
                             "\tat com.example.orders.OrderService.price(OrderService.java:42)")
    export = replay_document(_batches(0.0, 0.0), logs)
    assert export.document["logs"]["control"] == [{
        "id": "control-0", "host": "node-1", "ts": "2026-11-22T10:00:00Z",
        "text": "2026-11-22T10:00:00Z INFO GET /orders 200"}]
    [record] = export.document["logs"]["test"]
    assert record["host"] == "node-3" and record["text"].startswith(
        "2026-11-22T10:00:00Z ERROR com.example.Orders - Unhandled exception")
    assert "logs" in export.present and export.missing == []
    out = replay(export.document, [Sensitivity.MEDIUM])
    assert out["verdict_logs"]["medium"] == "FAIL"  # a new ERROR cluster, as live


def test_nothing_stored_or_parts_of_different_verifications_are_refused():
    with pytest.raises(ExportError, match="no stored data"):
        replay_document([], None)
    a, b = _batches(0.0, 0.0)[:2]
    b.ref.verification_id = "ver-2"
    with pytest.raises(ExportError, match="different verifications"):
        replay_document([a, b], None)


def test_the_cli_replays_an_exported_file(tmp_path, capsys):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(replay_document(_batches(12.0, 0.0), None).document))
    assert cli(["verify", "replay", str(path), "--sensitivity", "medium"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict_metrics"] == {"medium": "FAIL"}
