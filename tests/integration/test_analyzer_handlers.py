"""Both analyzers' use cases (vigil_metric_analyzer / vigil_log_analyzer handlers) on real
PostgreSQL: collected health data in, one verdict row and its two events out, exactly once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from vigil.events.v1 import verification_pb2 as v
from vigil_common import envelope, topics
from vigil_log_analyzer.domain import ANALYZER as LOG_ANALYZER
from vigil_log_analyzer.handlers import Handlers as LogHandlers
from vigil_metric_analyzer.domain import ANALYZER as METRIC_ANALYZER
from vigil_metric_analyzer.handlers import Handlers as MetricHandlers

VERSION = "v1"
CONTROL, TEST = v.HOST_GROUP_CONTROL, v.HOST_GROUP_TEST
NPE = ("Unhandled exception while pricing order 4711\n"
       "\tjava.lang.NullPointerException: Cannot invoke \"Order.getCustomer()\" because "
       "\"order\" is null\n"
       "\tat com.example.orders.OrderService.price(OrderService.java:88)\n"
       "\tat com.example.orders.OrderController.get(OrderController.java:31)")


def _ref(unique: str, service: str = "demo", account: str | None = None) -> v.VerificationRef:
    return v.VerificationRef(verification_id=f"ver-{unique}", execution_id=f"ex-{unique}",
                             account_id=account or f"acct-{unique}", service=service,
                             vigil_version=VERSION)


def _envelope(message, event_id: str) -> envelope.Envelope:
    headers, value = envelope.encode(message, source="delegate-gateway", event_id=event_id)
    return envelope.decode(headers, value)


def _series(metric: str, host: str, group: int, values: list[float]) -> v.MetricSeries:
    return v.MetricSeries(metric=metric, host=host, group=group,
                          points=[v.Point(value=x, present=True) for x in values])


def _metrics(ref: v.VerificationRef) -> v.MetricsCollected:
    """node-3 (test) answers three times slower than node-1 and node-2 (control)."""
    series = []
    for host, group, latency in (("node-1", CONTROL, 20.0), ("node-2", CONTROL, 21.0),
                                 ("node-3", TEST, 63.0)):
        series += [
            _series("response_time_ms", host, group, [latency + (i % 3) for i in range(10)]),
            _series("error_rate_pct", host, group, [0.0] * 10),
            _series("requests_per_interval", host, group, [40.0] * 10),
        ]
    return v.MetricsCollected(ref=ref, sensitivity=v.SENSITIVITY_MEDIUM, series=series,
                              interval_seconds=1.0)


def _record(host: str, group: int, level: str, message: str, second: int) -> v.LogRecord:
    at = datetime(2026, 11, 22, 2, 37, second % 60, tzinfo=UTC)
    record = v.LogRecord(host=host, group=group, level=level, logger="demo.http",
                         message=message)
    record.time.FromDatetime(at)
    return record


def _logs(ref: v.VerificationRef, control_errors: bool = False) -> v.LogsCollected:
    """The same request lines everywhere; node-3 (test) also throws a NullPointerException."""
    records = []
    for host, group in (("node-1", CONTROL), ("node-2", CONTROL), ("node-3", TEST)):
        records += [_record(host, group, "INFO", f"GET /orders/{n} 200 in {10 + n} ms", n)
                    for n in range(20)]
    records += [_record("node-3", TEST, "ERROR", NPE, n) for n in range(3)]
    if control_errors:
        records.append(_record("node-1", CONTROL, "ERROR", NPE, 30))
    return v.LogsCollected(ref=ref, sensitivity=v.SENSITIVITY_MEDIUM, records=records)


async def _verdicts(pool, verification_id: str) -> list[dict]:
    rows = await pool.fetch("SELECT * FROM verdicts WHERE verification_id = $1", verification_id)
    return [dict(r) for r in rows]


async def _published(pool, producer: str, execution_id: str) -> list[tuple[str, envelope.Envelope]]:
    rows = await pool.fetch(
        "SELECT topic, header_names, header_values, value FROM outbox "
        "WHERE producer = $1 AND key = $2 ORDER BY id", producer, execution_id.encode())
    return [(r["topic"], envelope.decode(
        [(n, x.encode()) for n, x in zip(r["header_names"], r["header_values"], strict=True)],
        r["value"])) for r in rows]


@pytest.fixture
def metric_handlers(pool) -> MetricHandlers:
    return MetricHandlers(pool, VERSION)


@pytest.fixture
def log_handlers(pool) -> LogHandlers:
    return LogHandlers(pool, VERSION)


async def test_a_slower_canary_gets_a_metrics_fail_verdict_published_once(
        pool, metric_handlers, unique):
    ref = _ref(unique)
    collected = _envelope(_metrics(ref), f"metrics/task-{unique}/1")

    await metric_handlers.on_event(collected)
    await metric_handlers.on_event(collected)  # redelivered
    await metric_handlers.on_event(_envelope(_metrics(ref), "resent-under-another-id"))

    [verdict] = await _verdicts(pool, ref.verification_id)
    assert (verdict["analysis"], verdict["verdict"], verdict["analyzer"],
            verdict["execution_id"]) == ("metrics", "FAIL", METRIC_ANALYZER, ref.execution_id)
    assert verdict["reason"].startswith("FAIL: ")
    assert "response_time_ms" in verdict["reason"] and "node-3" in verdict["reason"]
    worst = json.loads(verdict["findings"])[0]
    assert (worst["subject"], worst["host"], worst["verdict"]) == (
        "response_time_ms", "node-3", "VERDICT_KIND_FAIL")
    _assert_published_twice(await _published(pool, "metric-analyzer", ref.execution_id), ref,
                            "metrics", v.ANALYSIS_KIND_METRICS, verdict["reason"])


async def test_a_new_null_pointer_exception_on_the_canary_gets_a_logs_fail_verdict_once(
        pool, log_handlers, unique):
    ref = _ref(unique, service=f"demo-{unique}")  # templates are remembered per service
    collected = _envelope(_logs(ref), f"logs/task-{unique}/1")

    await log_handlers.on_event(collected)
    await log_handlers.on_event(collected)  # redelivered

    [verdict] = await _verdicts(pool, ref.verification_id)
    assert (verdict["analysis"], verdict["verdict"], verdict["analyzer"]) == (
        "logs", "FAIL", LOG_ANALYZER)
    assert "java.lang.NullPointerException" in verdict["reason"]
    published = await _published(pool, "log-analyzer", ref.execution_id)
    _assert_published_twice(published, ref, "logs", v.ANALYSIS_KIND_LOGS, verdict["reason"])
    [failing] = [f for f in published[0][1].message.findings
                 if f.verdict == v.VERDICT_KIND_FAIL]
    assert "NullPointerException" in failing.template
    # What only the test side logged is not learned as known: the next canary of the service
    # that throws it fails again.
    again = _ref(f"again-{unique}", service=ref.service, account=ref.account_id)
    await log_handlers.on_event(_envelope(_logs(again), f"logs/task-again-{unique}/1"))
    assert [r["verdict"] for r in await _verdicts(pool, again.verification_id)] == ["FAIL"]


async def test_error_templates_known_to_one_account_do_not_hide_a_new_error_of_another(
        pool, log_handlers, unique):
    """Accounts name their services independently: another account's "checkout" logging the
    same exception on its old version says nothing about this account's canary."""
    service = f"checkout-{unique}"
    theirs = _ref(f"theirs-{unique}", service=service, account=f"theirs-{unique}")
    await log_handlers.on_event(_envelope(_logs(theirs, control_errors=True), "theirs"))
    mine = _ref(f"mine-{unique}", service=service, account=f"mine-{unique}")

    await log_handlers.on_event(_envelope(_logs(mine), "mine"))

    [verdict] = await _verdicts(pool, mine.verification_id)
    assert verdict["verdict"] == "FAIL", verdict["reason"]


def _assert_published_twice(published: list[tuple[str, envelope.Envelope]],
                            ref: v.VerificationRef, analysis: str, kind: int,
                            reason: str) -> None:
    """One VerificationCompleted on the execution's version topic, one on the public topic."""
    assert [topic for topic, _ in published] == [topics.verification_verdicts(VERSION),
                                                 topics.VERIFICATIONS]
    for _, env in published:
        assert (env.type, env.id) == ("vigil.events.v1.VerificationCompleted",
                                      f"verdict/{ref.verification_id}/{analysis}")
        event = env.message
        assert (event.ref, event.analysis, event.verdict, event.reason) == (
            ref, kind, v.VERDICT_KIND_FAIL, reason)
