"""`vigil verify export` end to end on real PostgreSQL: the orchestrator dispatches a verify
step, a delegate sends its health data through the real gateway stream (a batch resent after a
reconnect), the real metric analyzer judges it, and ``ExportVerification`` on the real API
server returns a replay document that `vigil verify replay` judges as the analyzer did. Another
account cannot export it; missing data is NOT_FOUND; bad ids are INVALID_ARGUMENT naming the
field; old data is swept."""

from __future__ import annotations

import json
import random

import grpc
import pytest
from orchestrator_api import dispatched, refused, step_path, task_result, violations

from vigil.api.v1 import api_pb2
from vigil.delegate.v1 import delegate_pb2
from vigil.events.v1 import verification_pb2 as v
from vigil_cli.verify import replay
from vigil_common import envelope
from vigil_common.verdicts import Sensitivity
from vigil_gateway.adapters.postgres import PRODUCER, GatewayStore, create_token
from vigil_metric_analyzer.handlers import Handlers as MetricHandlers

VERSION = "v1"
CONTROL, TEST = v.HOST_GROUP_CONTROL, v.HOST_GROUP_TEST
PLANNED = 10
SMOKE, VERIFY = step_path(0, 0, 0), step_path(0, 0, 1)

PIPELINE = """
name: canary-{unique}
application: shop
service: demo
environment: prod
stages:
  - name: canary
    workflow:
      phases:
        - name: main
          steps:
            - {{name: smoke, type: shell, script: "true"}}
            - name: verify-canary
              type: verify
              service: demo
              mode: canary
              control_nodes: [node-1, node-2]
              test_nodes: [node-3]
              duration: 10s
              interval: 1s
              sensitivity: {sensitivity}
              thresholds: [{{metric: error_rate_pct, fail_fast_above: 50}}]
"""




async def _start_verify(api, handlers, pool, auth, unique: str, sensitivity: str = "medium"
                        ) -> tuple[str, v.VerificationRef, v.MetricsCollected]:
    """Start the pipeline, finish its shell step; returns the execution id, the verify step's
    VerificationRef and a MetricsCollected template as the orchestrator dispatched them."""
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(
        yaml=PIPELINE.format(unique=unique, sensitivity=sensitivity)), metadata=auth)
    started = await api.executions.StartExecution(api_pb2.StartExecutionRequest(
        pipeline=f"canary-{unique}"), metadata=auth)
    ex_id = started.execution_id
    [smoke] = await dispatched(pool, ex_id)
    await handlers.on_event(task_result(ex_id, smoke.account_id, SMOKE))
    collect = (await dispatched(pool, ex_id))[-1].spec.collect_health_data
    assert collect.ref.verification_id, "the verify step was not dispatched"
    template = v.MetricsCollected(ref=collect.ref, sensitivity=collect.sensitivity,
                                  interval_seconds=collect.interval_seconds,
                                  planned_intervals=PLANNED, mode=collect.mode,
                                  thresholds=collect.thresholds)
    return ex_id, collect.ref, template


def _batch(template: v.MetricsCollected, first: int, count: int, slower: float,
           seed: int = 3) -> v.MetricsCollected:
    rnd = random.Random(seed * 100 + first)
    msg = v.MetricsCollected()
    msg.CopyFrom(template)
    msg.first_interval, msg.partial = first, first + count < PLANNED
    for group, host, factor in ((CONTROL, "node-1", 1.0), (CONTROL, "node-2", 1.03),
                                (TEST, "node-3", slower)):
        for metric, level, sd in (("response_time_ms", 20.0, 1.0), ("error_rate_pct", 1.0, 0.2),
                                  ("requests_per_interval", 40.0, 2.0)):
            scale = factor if metric == "response_time_ms" else 1.0
            msg.series.add(metric=metric, host=host, group=group, points=[
                v.Point(value=level * scale + rnd.gauss(0, sd), present=True)
                for _ in range(count)])
    return msg


def _logs(ref: v.VerificationRef) -> v.LogsCollected:
    logs = v.LogsCollected(ref=ref, sensitivity=v.SENSITIVITY_MEDIUM)
    for host, group in (("node-1", CONTROL), ("node-3", TEST)):
        logs.records.add(host=host, group=group, level="INFO", message="GET /orders 200")
    return logs


def _health(task_id: str, **data) -> delegate_pb2.DelegateMessage:  # noqa: ANN003
    return delegate_pb2.DelegateMessage(health_data=delegate_pb2.HealthData(
        task_id=task_id, attempt=1, **data))


@pytest.fixture
def collect(delegate_gateway, registered_delegate, pool):
    """``await collect(ref, template, slower)``: see ``_collect``."""
    async def run(ref: v.VerificationRef, template: v.MetricsCollected, slower: float) -> None:
        await _collect(registered_delegate, delegate_gateway, pool, ref, template, slower)
    return run


async def _collect(registered_delegate, gateway: str, pool, ref: v.VerificationRef,  # noqa: ANN001
                   template: v.MetricsCollected, slower: float) -> None:
    """The delegate's batches (the first resent after a 'reconnect', with different values
    that must not replace the stored ones) and its logs, then the analyzer consumes them."""
    token = await create_token(pool, ref.account_id)
    task_id = ref.verification_id
    async with registered_delegate(gateway, ref.account_id, token) as call:
        await call.write(_health(task_id, metrics=_batch(template, 0, 5, slower)))
        await call.write(_health(task_id, metrics=_batch(template, 5, 5, slower)))
        await call.write(_health(task_id, metrics=_batch(template, 0, 5, slower, seed=99)))
        await call.write(_health(task_id, logs=_logs(ref)))
        await call.write(delegate_pb2.DelegateMessage(heartbeat=delegate_pb2.Heartbeat()))
        assert (await call.read()).WhichOneof("kind") == "heartbeat"  # all handled
    rows = await pool.fetch(
        "SELECT header_names, header_values, value FROM outbox WHERE producer = $1 AND key = $2 "
        "ORDER BY id", PRODUCER, ref.verification_id.encode())
    analyzer = MetricHandlers(pool, VERSION)
    for r in rows:
        env = envelope.decode([(n, x.encode()) for n, x in zip(
            r["header_names"], r["header_values"], strict=True)], r["value"])
        if isinstance(env.message, v.MetricsCollected):
            await analyzer.on_event(env)


async def _live_verdict(pool, verification_id: str) -> str:
    return await pool.fetchval("SELECT verdict FROM verdicts WHERE verification_id = $1 AND "
                               "analysis = 'metrics'", verification_id)


def _export_request(ex_id: str, **kw) -> api_pb2.ExportVerificationRequest:  # noqa: ANN003
    return api_pb2.ExportVerificationRequest(execution_id=ex_id, **kw)


@pytest.mark.parametrize(("slower", "sensitivity"), [(1.6, "medium"), (1.0, "high")])
async def test_an_exported_verification_replays_to_the_live_verdict(
        api, handlers, pool, auth, collect, unique, slower, sensitivity):
    ex_id, ref, template = await _start_verify(api, handlers, pool, auth, unique, sensitivity)
    await collect(ref, template, slower)
    live = await _live_verdict(pool, ref.verification_id)
    assert live == ("FAIL" if slower > 1 else "PASS")

    out = await api.executions.ExportVerification(_export_request(ex_id, step="verify-canary"),
                                                  metadata=auth)
    assert (out.verification_id, out.step, out.attempt) == (ref.verification_id, VERIFY, 1)
    assert list(out.present) == ["logs", "metrics/0", "metrics/5"]
    assert list(out.missing) == []
    doc = json.loads(out.document_json)
    assert (doc["id"], doc["execution_id"], doc["mode"], doc["sensitivity"]) == (
        ref.verification_id, ex_id, "canary", sensitivity)
    assert doc["hosts"] == {"control": ["node-1", "node-2"], "test": ["node-3"]}
    assert {m["name"]: m["thresholds"].get("fail_fast_above") for m in doc["metrics"]} == {
        "response_time_ms": 1000.0, "error_rate_pct": 50.0, "requests_per_interval": None}
    assert [r["host"] for r in doc["logs"]["test"]] == ["node-3"]
    # The first batch as first received, not as resent.
    latency = next(m for m in doc["metrics"] if m["name"] == "response_time_ms")
    first = _batch(template, 0, 5, slower).series
    sent = [p.value for s in first if (s.metric, s.host) == ("response_time_ms", "node-3")
            for p in s.points]
    assert latency["test"]["node-3"][:5] == sent

    again = replay(doc, [Sensitivity(sensitivity.upper())])
    assert again["verdict_metrics"] == {sensitivity: live}
    # The same through the step's path, its verification id, and as the only verify step.
    for kw in ({"step": VERIFY}, {"verification_id": ref.verification_id}, {}):
        same = await api.executions.ExportVerification(_export_request(ex_id, **kw),
                                                       metadata=auth)
        assert same.document_json == out.document_json


async def test_the_gateway_keeps_each_part_once_and_another_account_cannot_export_it(
        api, handlers, pool, auth, key_for, account, other_account, collect, unique):
    ex_id, ref, template = await _start_verify(api, handlers, pool, auth, unique)
    await collect(ref, template, 1.6)
    rows = await pool.fetch("SELECT part, account_id, execution_id FROM verification_data "
                            "WHERE verification_id = $1 ORDER BY part", ref.verification_id)
    assert [(r["part"], r["account_id"], r["execution_id"]) for r in rows] == [
        ("logs", account, ex_id), ("metrics/0", account, ex_id), ("metrics/5", account, ex_id)]

    other = await key_for(other_account)
    error = await refused(api.executions.ExportVerification(_export_request(ex_id),
                                                            metadata=other),
                          grpc.StatusCode.NOT_FOUND)
    assert ex_id in error.details()
    await refused(api.executions.ExportVerification(_export_request(
        ex_id, account_id=account), metadata=other), grpc.StatusCode.PERMISSION_DENIED)
    await refused(api.executions.ExportVerification(_export_request(ex_id)),
                  grpc.StatusCode.UNAUTHENTICATED)


async def test_a_verify_step_without_stored_data_is_not_found(api, handlers, pool, auth,
                                                              unique):
    ex_id, ref, _ = await _start_verify(api, handlers, pool, auth, unique)
    error = await refused(api.executions.ExportVerification(_export_request(ex_id),
                                                            metadata=auth),
                          grpc.StatusCode.NOT_FOUND)
    assert "no stored data" in error.details() and "verify-canary" in error.details()
    error = await refused(api.executions.ExportVerification(_export_request(
        ex_id, step="deploy-canary"), metadata=auth), grpc.StatusCode.NOT_FOUND)
    assert "step" in error.details() and "verify-canary" in error.details()
    await refused(api.executions.ExportVerification(_export_request(
        ex_id, verification_id="5f0c1f3e-0000-4000-8000-000000000000"), metadata=auth),
        grpc.StatusCode.NOT_FOUND)
    await refused(api.executions.ExportVerification(_export_request(
        "5f0c1f3e-0000-4000-8000-000000000001"), metadata=auth), grpc.StatusCode.NOT_FOUND)


async def test_bad_ids_and_a_step_that_is_not_a_verify_step_are_invalid_arguments(
        api, handlers, pool, auth, unique):
    ex_id, _, _ = await _start_verify(api, handlers, pool, auth, unique)
    cases = [(_export_request("not-a-uuid"), "execution_id"),
             (_export_request(ex_id, verification_id="nope"), "verification_id"),
             (_export_request(ex_id, step="smoke"), "step")]
    for request, field in cases:
        error = await refused(api.executions.ExportVerification(request, metadata=auth),
                              grpc.StatusCode.INVALID_ARGUMENT)
        [(named, why)] = violations(error)
        assert named == field, (named, why)
    [(_, why)] = violations(await refused(api.executions.ExportVerification(
        _export_request(ex_id, step="smoke"), metadata=auth), grpc.StatusCode.INVALID_ARGUMENT))
    assert "not a verify step" in why


async def test_the_retention_sweep_deletes_old_inputs_in_bounded_batches(
        api, handlers, pool, auth, collect, unique):
    ex_id, ref, template = await _start_verify(api, handlers, pool, auth, unique)
    await collect(ref, template, 1.0)
    await pool.execute("UPDATE verification_data SET received_at = now() - interval '31 days' "
                       "WHERE verification_id = $1 AND part <> 'logs'", ref.verification_id)
    store = GatewayStore(pool, VERSION, "gw-sweep")
    assert await store.sweep_verification_data(0) == 0  # 0 days: kept forever
    assert await store.sweep_verification_data(60) == 0  # not that old
    assert await store.sweep_verification_data(30, limit=1) == 1
    while await store.sweep_verification_data(30, limit=1):
        pass
    parts = await pool.fetch("SELECT part FROM verification_data WHERE verification_id = $1",
                             ref.verification_id)
    assert [r["part"] for r in parts] == ["logs"]
    out = await api.executions.ExportVerification(_export_request(ex_id), metadata=auth)
    assert list(out.present) == ["logs"] and out.missing[0].startswith("metrics")
