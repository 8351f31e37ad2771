"""The runner's new task kinds end to end: spec in, reports out (HTTP check, Kubernetes via the
kmock stand-in cluster, health data from a log file with a baseline window)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp
from kube_standin import cluster

from vigil.delegate.v1 import (
    delegate_pb2,
    health_sources_pb2,
    http_pb2,
    kubernetes_pb2,
    tasks_pb2,
)
from vigil.events.v1 import verification_pb2
from vigil_delegate.runner import Runner
from vigil_delegate.targets.kubernetes import KubernetesTarget


async def run(runner: Runner, spec: tasks_pb2.TaskSpec,
              lines: list[str] | None = None) -> list[delegate_pb2.DelegateMessage]:
    assignment = delegate_pb2.TaskAssignment(task_id="t-1", attempt=1, execution_id="e-1",
                                             spec=spec, timeout_seconds=60)
    return await runner.run(assignment, (lines if lines is not None else []).append)


@pytest.fixture
async def site() -> AsyncIterator[str]:
    calls = {"flaky": 0}

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="status: ready")

    async def flaky(_: web.Request) -> web.Response:
        calls["flaky"] += 1
        return web.Response(status=503 if calls["flaky"] < 3 else 200, text="warming up")

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, text="NullPointerException")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_http_check_passes_after_retries_and_fails_with_the_last_reason(
        site: str, tmp_path: Path) -> None:
    runner = Runner(tmp_path)
    lines: list[str] = []
    [ok] = await run(runner, tasks_pb2.TaskSpec(http_check=http_pb2.HttpCheck(
        url=f"{site}/flaky", retries=3, retry_interval_seconds=0.05,
        headers={"Authorization": "Bearer s3cr3t-token"})), lines)
    assert ok.result.success, ok.result.error
    assert ok.result.output.summary == f"GET {site}/flaky: ok (attempt 3/4)"
    assert lines[0] == f"GET {site}/flaky: status 503, expected 2xx (attempt 1/4)"

    [body] = await run(runner, tasks_pb2.TaskSpec(http_check=http_pb2.HttpCheck(
        url=f"{site}/ok", body_contains="ready", expected_status=[200])))
    assert body.result.success

    [bad] = await run(runner, tasks_pb2.TaskSpec(http_check=http_pb2.HttpCheck(
        url=f"{site}/broken", retries=1, retry_interval_seconds=0.05, expected_status=[200])))
    assert not bad.result.success
    assert bad.result.error == f"GET {site}/broken: status 500, expected 200 after 2 attempt(s)"


async def test_kubernetes_tasks_run_through_the_runner_and_refuse_invalid_manifests(
        tmp_path: Path) -> None:
    async with cluster() as (_, api):
        runner = Runner(tmp_path, kubernetes=KubernetesTarget(api, poll_interval_s=0.05))
        spec = kubernetes_pb2.KubernetesDeploy(
            strategy=kubernetes_pb2.KUBERNETES_STRATEGY_ROLLING, namespace="web", name="shop",
            image="shop:1", replicas=2, rollout_timeout_seconds=10)
        [deployed] = await run(runner, tasks_pb2.TaskSpec(kubernetes_deploy=spec))
        assert deployed.result.output.summary == "shop rolled out shop:1 (2 replicas)"

        [waited] = await run(runner, tasks_pb2.TaskSpec(
            kubernetes_wait_rollout=kubernetes_pb2.KubernetesWaitRollout(
                namespace="web", deployment="shop", timeout_seconds=5)))
        assert waited.result.output.summary == (
            "deployment shop successfully rolled out (2 replicas available)")

        spec.labels["team"] = "not a valid label value!"
        [invalid] = await run(runner, tasks_pb2.TaskSpec(kubernetes_deploy=spec))
        assert not invalid.result.success
        assert invalid.result.error.startswith("label team='not a valid label value!'")

        [undone] = await run(runner, tasks_pb2.TaskSpec(
            kubernetes_rollback=kubernetes_pb2.KubernetesRollback(
                strategy=kubernetes_pb2.KUBERNETES_STRATEGY_ROLLING, namespace="web",
                name="shop")))
        assert undone.result.error == ("deployment web/shop: no previous template to roll back "
                                       "to (never updated by Vigil)")


def _stamp(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


async def test_collect_from_a_log_file_compares_the_baseline_window_with_the_current_one(
        tmp_path: Path) -> None:
    before = datetime(2025, 3, 14, 9, 55, tzinfo=UTC)
    after = datetime(2025, 3, 14, 10, 2, tzinfo=UTC)
    (tmp_path / "node-1.log").write_text("".join(
        f"{t.strftime('%Y-%m-%dT%H:%M:%S.000Z')} {lvl} [main] shop - {msg}\n"
        for t, lvl, msg in [(before + timedelta(minutes=1), "INFO", "served"),
                            (after + timedelta(minutes=1), "ERROR", "NullPointerException"),
                            (after + timedelta(minutes=9), "INFO", "outside both windows")]))
    spec = tasks_pb2.TaskSpec(collect_health_data=tasks_pb2.CollectHealthData(
        ref=verification_pb2.VerificationRef(verification_id="v-1"),
        source=tasks_pb2.HealthSource(kind="file", file=health_sources_pb2.FileLogSource(
            path=str(tmp_path))),
        test_hosts=["node-1"], duration_seconds=300, interval_seconds=60,
        window_start=_stamp(after), baseline_window_start=_stamp(before)))
    reports = await run(Runner(tmp_path / "work"), spec)
    assert [r.WhichOneof("kind") for r in reports] == ["health_data", "result"]
    logs = reports[0].health_data.logs
    assert [(r.host, r.group, r.message) for r in logs.records] == [
        ("node-1", verification_pb2.HOST_GROUP_CONTROL, "served"),
        ("node-1", verification_pb2.HOST_GROUP_TEST, "NullPointerException")]
    assert not reports[0].health_data.HasField("metrics")
    assert reports[1].result.output.summary == (
        "collected 0 series and 2 log records from file over 300s")


async def test_an_unknown_health_source_kind_fails_the_task_naming_the_kinds(
        tmp_path: Path) -> None:
    [result] = await run(Runner(tmp_path), tasks_pb2.TaskSpec(
        collect_health_data=tasks_pb2.CollectHealthData(
            source=tasks_pb2.HealthSource(kind="datadog"), test_hosts=["a"],
            duration_seconds=1, interval_seconds=1)))
    assert result.result.error == ("source.kind: 'datadog' is not one of local-process, "
                                   "prometheus, file, elasticsearch")


class _Metrics:
    """A metrics-and-logs source with history: one value per interval, a log line per read."""

    kind, provides = "fake", frozenset({"metrics", "logs"})

    def __init__(self) -> None:
        self.reads = []

    async def collect(self, hosts, window, progress):  # noqa: ANN001, ANN201
        from vigil_delegate.health.logs import LogRecord
        from vigil_delegate.health.sources import Collected
        self.reads.append((window.start, window.intervals))
        return Collected(
            metrics={"response_time_ms": {h: [20.0] * window.intervals for h in hosts}},
            logs={h: [LogRecord(window.start, "INFO", "main", "shop", "served")]
                  for h in hosts})


async def test_collect_sends_metric_batches_while_running_and_stops_when_told(
        tmp_path: Path, monkeypatch) -> None:
    from vigil_delegate import runner as runner_module
    source = _Metrics()
    monkeypatch.setattr(runner_module.sources, "build", lambda *_: source)
    start = datetime(2025, 3, 14, 10, 0, tzinfo=UTC)  # in the past: no waiting
    spec = tasks_pb2.TaskSpec(collect_health_data=tasks_pb2.CollectHealthData(
        ref=verification_pb2.VerificationRef(verification_id="v-1"),
        source=tasks_pb2.HealthSource(kind="fake"), control_hosts=["a"], test_hosts=["b"],
        duration_seconds=600, interval_seconds=60, window_start=_stamp(start),
        mode=verification_pb2.VERIFICATION_MODE_CANARY, batch_intervals=4))
    assignment = delegate_pb2.TaskAssignment(task_id="t-1", attempt=1, spec=spec)
    sent: list[delegate_pb2.DelegateMessage] = []
    reports = await Runner(tmp_path).run(assignment, lambda _: None, emit=sent.append)

    batches = [m.health_data.metrics for m in sent]
    assert [(b.first_interval, b.partial, b.planned_intervals, len(b.series[0].points))
            for b in batches] == [(0, True, 10, 4), (4, True, 10, 4)]
    assert batches[0].window_start.ToDatetime(UTC) == start
    assert [r.WhichOneof("kind") for r in reports] == ["health_data"] * 2 + ["result"]
    final, logs = reports[0].health_data.metrics, reports[1].health_data.logs
    assert (final.first_interval, final.partial) == (8, False)
    assert len(logs.records) == 6  # 3 reads x 2 hosts, all in one LogsCollected
    assert reports[2].result.success

    # Told to stop after the first batch: no more metrics, the logs so far, a success.
    stop = runner_module.Stop()
    sent.clear()

    def emit(msg: delegate_pb2.DelegateMessage) -> None:
        sent.append(msg)
        stop.stop("verification v-1 already has its metrics verdict")

    reports = await Runner(tmp_path).run(assignment, lambda _: None, emit=emit, stop=stop)
    assert len(sent) == 1
    assert [r.WhichOneof("kind") for r in reports] == ["health_data", "result"]
    assert len(reports[0].health_data.logs.records) == 2
    assert reports[1].result.output.summary.startswith(
        "stopped after 4 of 10 intervals (verification v-1 already has its metrics verdict)")
