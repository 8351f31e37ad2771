"""Issue 5 live: metrics batches through the real gateway stream and the real metric analyzer
handlers on real PostgreSQL. Each batch is published once (kind metrics/<first interval>), a
clear regression FAILs before the window's end, later batches neither publish nor change the
verdict, and the delegate is told to stop collecting. Load tests compare with the service's
last passed run."""

from __future__ import annotations

import pytest

from vigil.delegate.v1 import delegate_pb2
from vigil.events.v1 import verification_pb2 as v
from vigil_common import envelope
from vigil_gateway.adapters.postgres import PRODUCER, create_token
from vigil_metric_analyzer.handlers import Handlers as MetricHandlers

VERSION = "v1"
CONTROL, TEST = v.HOST_GROUP_CONTROL, v.HOST_GROUP_TEST
PLANNED = 10


def _ref(unique: str, service: str = "demo") -> v.VerificationRef:
    return v.VerificationRef(verification_id=f"ver-{unique}", execution_id=f"ex-{unique}",
                             account_id=f"acct-{unique}", service=service,
                             vigil_version=VERSION)


def _batch(ref: v.VerificationRef, first: int, count: int, test_errors: float,
           test_latency: float = 20.0, groups=(CONTROL, TEST),  # noqa: ANN001
           mode: int = v.VERIFICATION_MODE_CANARY) -> v.MetricsCollected:
    """Intervals first..first+count-1: node-1/node-2 control, node-3 test."""
    hosts = {CONTROL: [("node-1", 20.0, 0.0), ("node-2", 21.0, 0.0)],
             TEST: [("node-3", test_latency, test_errors)]}
    msg = v.MetricsCollected(ref=ref, sensitivity=v.SENSITIVITY_MEDIUM, interval_seconds=1.0,
                             partial=first + count < PLANNED, first_interval=first,
                             planned_intervals=PLANNED, mode=mode)
    for group in groups:
        for host, latency, errors in hosts[group]:
            for metric, value in (("response_time_ms", latency), ("error_rate_pct", errors),
                                  ("requests_per_interval", 40.0)):
                msg.series.add(metric=metric, host=host, group=group, points=[
                    v.Point(value=value + (k % 3) * (0.5 if metric == "response_time_ms" else 0),
                            present=True) for k in range(first, first + count)])
    return msg


def _envelope(message, event_id: str) -> envelope.Envelope:
    headers, value = envelope.encode(message, source="delegate-gateway", event_id=event_id)
    return envelope.decode(headers, value)


async def _verdicts(pool, verification_id: str) -> list[tuple[str, str]]:
    rows = await pool.fetch("SELECT analysis, verdict FROM verdicts WHERE verification_id = $1",
                            verification_id)
    return [(r["analysis"], r["verdict"]) for r in rows]


@pytest.fixture
def analyzer(pool) -> MetricHandlers:
    return MetricHandlers(pool, VERSION)


async def test_a_clear_regression_fails_at_an_early_batch_and_later_batches_change_nothing(
        pool, analyzer, unique):
    ref = _ref(unique)
    # Batch by batch, one interval each; node-3 serves 30% errors (fail-fast above 10%).
    for first in range(3):
        await analyzer.on_event(_envelope(_batch(ref, first, 1, 30.0), f"b{first}-{unique}"))
        if await _verdicts(pool, ref.verification_id):
            break
    assert first < PLANNED - 1, "no early decision"
    assert await _verdicts(pool, ref.verification_id) == [("metrics", "FAIL")]
    reason = await pool.fetchval("SELECT reason FROM verdicts WHERE verification_id = $1",
                                 ref.verification_id)
    assert "error_rate_pct on node-3" in reason and "fail-fast" in reason
    # The rest of the window, now healthy, and the final batch: no second verdict.
    for k in range(first + 1, PLANNED):
        await analyzer.on_event(_envelope(_batch(ref, k, 1, 0.0), f"b{k}-{unique}"))
    assert await _verdicts(pool, ref.verification_id) == [("metrics", "FAIL")]
    assert await pool.fetchval("SELECT count(*) FROM metric_batches WHERE verification_id = $1",
                               ref.verification_id) == 0
    published = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE producer = 'metric-analyzer' AND key = $1",
        ref.execution_id.encode())
    assert published == 2  # the internal verdict topic and the public one, once each


async def test_a_healthy_canary_in_batches_waits_for_the_final_batch_to_pass(
        pool, analyzer, unique):
    ref = _ref(unique)
    for k in range(PLANNED):
        await analyzer.on_event(_envelope(_batch(ref, k, 1, 0.0), f"b{k}-{unique}"))
        if k < PLANNED - 1:
            assert await _verdicts(pool, ref.verification_id) == []
    assert await _verdicts(pool, ref.verification_id) == [("metrics", "PASS")]


async def test_a_load_test_is_judged_against_the_last_passed_run_of_the_service(
        pool, analyzer, unique):
    load = dict(groups=(TEST,), mode=v.VERIFICATION_MODE_LOAD_TEST)
    service = f"shop-{unique}"

    async def run(name: str, latency: float) -> tuple[str, str]:
        ref = _ref(f"{unique}-{name}", service=service)
        ref.account_id = f"acct-{unique}"
        whole = _whole(_batch(ref, 0, PLANNED, 0.0, latency, **load))
        await analyzer.on_event(_envelope(whole, f"{name}-{unique}"))
        [(_, verdict)] = await _verdicts(pool, ref.verification_id)
        reason = await pool.fetchval("SELECT reason FROM verdicts WHERE verification_id = $1",
                                     ref.verification_id)
        return verdict, reason

    first, why = await run("first", 20.0)  # no baseline yet: thresholds only, then kept
    assert "no passed load test" in why or first in ("PASS", "INCONCLUSIVE"), why
    kept = await pool.fetchval("SELECT verification_id FROM metric_baselines WHERE service = $1",
                               service)
    assert kept == f"ver-{unique}-first"
    assert (await run("same", 20.0))[0] == "PASS"
    assert await pool.fetchval("SELECT verification_id FROM metric_baselines WHERE service = $1",
                               service) == f"ver-{unique}-same"
    slower, why = await run("slower", 60.0)
    assert slower == "FAIL" and "response_time_ms" in why
    assert await pool.fetchval("SELECT verification_id FROM metric_baselines WHERE service = $1",
                               service) == f"ver-{unique}-same"  # a failed run is no baseline


def _whole(msg: v.MetricsCollected) -> v.MetricsCollected:
    msg.partial, msg.first_interval = False, 0
    return msg


# ---- through the gateway's delegate stream ---------------------------------------------------



def _health(task_id: str, batch: v.MetricsCollected) -> delegate_pb2.DelegateMessage:
    return delegate_pb2.DelegateMessage(health_data=delegate_pb2.HealthData(
        task_id=task_id, attempt=1, metrics=batch))


async def _metric_events(pool, verification_id: str) -> list[envelope.Envelope]:
    rows = await pool.fetch(
        "SELECT header_names, header_values, value FROM outbox WHERE producer = $1 AND key = $2 "
        "ORDER BY id", PRODUCER, verification_id.encode())
    return [envelope.decode([(n, x.encode()) for n, x in zip(
        r["header_names"], r["header_values"], strict=True)], r["value"]) for r in rows]


async def test_batches_are_published_once_each_and_a_decided_verification_stops_the_delegate(
        pool, delegate_gateway, registered_delegate, analyzer, unique):
    ref = _ref(unique)
    token = await create_token(pool, ref.account_id)
    task_id = f"task-{unique}"
    async with registered_delegate(delegate_gateway, ref.account_id, token) as call:
        for first in (0, 1):
            await call.write(_health(task_id, _batch(ref, first, 1, 30.0)))
        await call.write(_health(task_id, _batch(ref, 0, 1, 30.0)))  # resent after a reconnect
        await call.write(delegate_pb2.DelegateMessage(heartbeat=delegate_pb2.Heartbeat()))
        assert (await call.read()).WhichOneof("kind") == "heartbeat"  # all three handled

        events = await _metric_events(pool, ref.verification_id)
        assert [e.id for e in events] == [f"metrics/0/{task_id}/1", f"metrics/1/{task_id}/1"]
        for e in events:  # what the analyzer consumes from the topic
            await analyzer.on_event(e)
        assert await _verdicts(pool, ref.verification_id) == [("metrics", "FAIL")]

        # The next batch: not published, and the delegate is told to stop.
        await call.write(_health(task_id, _batch(ref, 2, 1, 30.0)))
        stop = await call.read()
        assert stop.WhichOneof("kind") == "stop_collection"
        assert (stop.stop_collection.task_id, stop.stop_collection.attempt) == (task_id, 1)
        assert "already has its metrics verdict" in stop.stop_collection.reason
    assert len(await _metric_events(pool, ref.verification_id)) == 2
