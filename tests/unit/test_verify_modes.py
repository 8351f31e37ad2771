"""Verify steps in every mode (issue 5): validated with field paths, carried to the delegate's
CollectHealthData (mode, batch size, pre-deployment window, Prometheus source); the delegate's
batch plan and on-disk batches; the analyzer's policy from MetricsCollected."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.delegate.v1 import delegate_pb2
from vigil.events.v1 import verification_pb2 as v
from vigil_common.verdicts import AnalysisResult, Verdict
from vigil_delegate.health.sources import Window
from vigil_delegate.pending import PendingReports
from vigil_delegate.runner import batch_plan
from vigil_metric_analyzer import handlers
from vigil_metric_analyzer.domain import Mode
from vigil_orchestrator import translate
from vigil_orchestrator.domain import PipelineInvalid, parse_pipeline, plan, start

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
PROM = {"url": "http://prometheus:9090", "host_label": "pod"}


def _pipeline(step: dict) -> dict:
    return {"name": "p", "stages": [{"name": "s", "workflow": {
        "phases": [{"name": "main", "steps": [step]}]}}]}


def _verify(**fields) -> dict:  # noqa: ANN003
    return {"name": "verify", "type": "verify", "service": "shop", "test_nodes": ["pod-b"],
            "duration": "10m", "interval": "1m", **fields}


def _violations(step: dict) -> dict[str, str]:
    with pytest.raises(PipelineInvalid) as bad:
        parse_pipeline(_pipeline(step))
    return dict(bad.value.problems)


def _collect(step: dict):  # noqa: ANN202
    spec = parse_pipeline(_pipeline(step))
    d = start("ex-1", "acme", spec.name, "v1", {}, plan(spec, {}, "ex-1"), T0)
    (cmd,) = d.commands
    return translate.dispatch_command(d.execution, cmd, T0).spec.collect_health_data


PATH = "stages[0].workflow.phases[0].steps[0]"


def test_every_mode_is_accepted_and_a_bad_one_is_named_with_the_choices():
    parse_pipeline(_pipeline(_verify(mode="canary", control_nodes=["pod-a"])))
    parse_pipeline(_pipeline(_verify(mode="rolling", prometheus=PROM, analyses=["metrics"])))
    parse_pipeline(_pipeline(_verify(mode="blue_green", prometheus=PROM, analyses=["metrics"],
                                     control_nodes=["pod-a"])))
    parse_pipeline(_pipeline(_verify(mode="load_test")))
    assert _violations(_verify(mode="shadow", control_nodes=["pod-a"])) == {
        f"{PATH}.mode": "must be one of canary, rolling, blue_green, load_test"}


def test_each_mode_asks_for_what_it_needs_naming_the_field():
    assert f"{PATH}.control_nodes" in _violations(_verify(mode="canary"))
    pre_post = _violations(_verify(mode="rolling"))
    assert pre_post[f"{PATH}.prometheus"].startswith("required for mode rolling")
    assert pre_post[f"{PATH}.analyses"].startswith("must be [metrics] with prometheus")
    assert _violations(_verify(mode="load_test", control_nodes=["pod-a"])) == {
        f"{PATH}.control_nodes": "must be left out for load_test: the baseline is the "
                                 "service's last passed load test"}
    bad = _violations(_verify(mode="load_test", batch_intervals=0, analyses=["metrics"],
                              prometheus={"url": "prometheus:9090", "queries": [{"metric": "x"}]}))
    assert set(bad) == {f"{PATH}.batch_intervals", f"{PATH}.prometheus.url",
                        f"{PATH}.prometheus.queries[0]"}


def test_the_mode_batch_size_and_pre_deployment_window_reach_the_delegate():
    canary = _collect(_verify(control_nodes=["pod-a"]))
    assert (canary.mode, canary.batch_intervals, canary.source.kind) == (
        v.VERIFICATION_MODE_CANARY, 0, "local-process")
    assert not canary.HasField("baseline_window_start")

    rolling = _collect(_verify(mode="rolling", prometheus=PROM, analyses=["metrics"],
                               batch_intervals=2))
    assert (rolling.mode, rolling.batch_intervals) == (v.VERIFICATION_MODE_ROLLING, 2)
    assert (rolling.source.kind, rolling.source.prometheus.host_label) == ("prometheus", "pod")
    assert list(rolling.additional_sources) == [] and list(rolling.control_hosts) == []
    # The pre-deployment window: the step's 10 minutes, ending when its stage started.
    assert rolling.baseline_window_start.ToDatetime(UTC) == T0 - timedelta(minutes=10)

    load = _collect(_verify(mode="load_test"))
    assert load.mode == v.VERIFICATION_MODE_LOAD_TEST and list(load.control_hosts) == []


def test_a_window_is_cut_into_batches_the_last_one_possibly_shorter():
    assert batch_plan(10, 1) == [(k, 1) for k in range(10)]
    assert batch_plan(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert batch_plan(3, 60) == [(0, 3)]
    window = Window.starting(T0, 600, 60)
    part = window.part(4, 4)
    assert (part.start, part.end, part.intervals) == (
        T0 + timedelta(minutes=4), T0 + timedelta(minutes=8), 4)


def _health(first: int) -> delegate_pb2.DelegateMessage:
    return delegate_pb2.DelegateMessage(health_data=delegate_pb2.HealthData(
        task_id="t/1", attempt=1, metrics=v.MetricsCollected(partial=True, first_interval=first)))


def test_batches_sent_while_running_survive_a_restart_without_finishing_the_task(tmp_path: Path):
    pending = PendingReports(tmp_path)
    pending.add("t/1", 1, _health(0))
    pending.add("t/1", 1, _health(1))
    # A restart: the batches are sent again, but the task is not finished (it may run again).
    again = PendingReports(tmp_path)
    assert [[r.health_data.metrics.first_interval for r in rs] for rs in again.all()] == [[0, 1]]
    assert not again.has("t/1", 1)
    # The task finishes: its final reports follow the batches, in one file, until the ack.
    result = delegate_pb2.DelegateMessage(result=delegate_pb2.TaskResult(task_id="t/1",
                                                                        attempt=1))
    again.put("t/1", 1, [result])
    [reports] = again.all()
    assert [r.WhichOneof("kind") for r in reports] == ["health_data", "health_data", "result"]
    assert again.has("t/1", 1)
    again.ack("t/1", 1)
    assert again.all() == [] and not again.has("t/1", 1)


def test_a_torn_last_batch_is_left_out(tmp_path: Path):
    pending = PendingReports(tmp_path)
    pending.add("t/1", 1, _health(0))
    [path] = tmp_path.glob("*.partial")
    path.write_bytes(path.read_bytes() + b"\x00\x00\x01\x00partial")
    assert [len(rs) for rs in pending.all()] == [1]


def _stamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def test_the_analyzer_takes_mode_and_window_gap_from_the_event():
    msg = v.MetricsCollected(mode=v.VERIFICATION_MODE_ROLLING, interval_seconds=60,
                             window_start=_stamp(T0),
                             control_window_start=_stamp(T0 - timedelta(minutes=30)))
    policy = handlers.policy_for(msg)
    assert (policy.mode, policy.gap_minutes) == (Mode.ROLLING, 30.0)
    assert handlers.policy_for(v.MetricsCollected()).mode is Mode.CANARY
    assert handlers.policy_for(v.MetricsCollected()).gap_minutes is None


def test_a_load_test_becomes_the_baseline_when_it_passes_or_seeds_a_first_one():
    def result(verdict: Verdict) -> AnalysisResult:
        return AnalysisResult(verdict=verdict, reason="", findings=[], analyzer="x")
    assert handlers.keeps_baseline(result(Verdict.PASS), had_baseline=True)
    assert not handlers.keeps_baseline(result(Verdict.INCONCLUSIVE), had_baseline=True)
    assert handlers.keeps_baseline(result(Verdict.INCONCLUSIVE), had_baseline=False)
    assert not handlers.keeps_baseline(result(Verdict.FAIL), had_baseline=False)
