"""The log analyzer on real PostgreSQL: stable ids across verifications, baseline learning,
per-account separation, and feedback through the LogFeedbackService gRPC API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vigil.api.v1 import feedback_pb2 as fb
from vigil.api.v1 import feedback_pb2_grpc as fb_grpc
from vigil.events.v1 import verification_pb2 as v
from vigil_common import apikeys, envelope
from vigil_log_analyzer.adapters import grpc_api
from vigil_log_analyzer.domain import ANALYZER
from vigil_log_analyzer.handlers import Handlers

CONTROL, TEST = v.HOST_GROUP_CONTROL, v.HOST_GROUP_TEST
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NPE = ("Unhandled exception processing order {n}\n"
       "\tjava.lang.NullPointerException: Cannot invoke \"Order.getCustomer()\"\n"
       "\tat com.example.orders.OrderService.price(OrderService.java:88)")


def _record(host: str, group: int, level: str, message: str, second: int) -> v.LogRecord:
    record = v.LogRecord(host=host, group=group, level=level, logger="demo", message=message)
    record.time.FromDatetime(T0 + timedelta(seconds=second))
    return record


def _collected(unique: str, run: int, npe_on: tuple[int, ...] = (TEST,),
               account: str | None = None) -> envelope.Envelope:
    ref = v.VerificationRef(verification_id=f"ver-{unique}-{run}", execution_id=f"ex-{unique}",
                            account_id=account or f"acct-{unique}", service="checkout",
                            vigil_version="v1")
    records = []
    for host, group in (("node-1", CONTROL), ("node-2", CONTROL), ("node-3", TEST)):
        records += [_record(host, group, "INFO", f"GET /orders/{n} 200 in {n % 7} ms", n * 6)
                    for n in range(40)]
        records += [_record(host, group, "INFO", f"Cache warmed for tenant {t}", 5)
                    for t in ("acme", "globex", "initech", "hooli", "umbrella")]
        if group in npe_on:
            records += [_record(host, group, "ERROR", NPE.format(n=700 + n), 30 + n)
                        for n in range(3)]
    message = v.LogsCollected(ref=ref, sensitivity=v.SENSITIVITY_MEDIUM, records=records)
    headers, value = envelope.encode(message, source="delegate-gateway",
                                     event_id=f"logs/{unique}/{run}")
    return envelope.decode(headers, value)


async def _verdict(pool, unique: str, run: int) -> dict:
    row = await pool.fetchrow("SELECT * FROM verdicts WHERE verification_id = $1",
                              f"ver-{unique}-{run}")
    return dict(row)


async def _published_findings(pool, unique: str, run: int) -> list[v.Finding]:
    rows = await pool.fetch(
        "SELECT header_names, header_values, value FROM outbox WHERE producer = 'log-analyzer' "
        "AND key = $1 ORDER BY id", f"ex-{unique}".encode())
    for r in rows:
        env = envelope.decode([(n, x.encode()) for n, x in
                               zip(r["header_names"], r["header_values"], strict=True)],
                              r["value"])
        if env.message.ref.verification_id == f"ver-{unique}-{run}":
            return list(env.message.findings)
    raise AssertionError(f"no verdict event for run {run}")


@pytest.fixture
def handlers(pool) -> Handlers:
    return Handlers(pool, "v1")


async def test_new_exception_fails_once_and_lists_its_cluster(pool, handlers, unique):
    await handlers.on_event(_collected(unique, 1))
    await handlers.on_event(_collected(unique, 1))  # redelivered: nothing changes

    verdict = await _verdict(pool, unique, 1)
    assert (verdict["verdict"], verdict["analyzer"]) == ("FAIL", ANALYZER)
    findings = await _published_findings(pool, unique, 1)
    [failing] = [f for f in findings if f.verdict == v.VERDICT_KIND_FAIL]
    assert (failing.label, failing.rule) == ("UNKNOWN", "new-error")
    assert "NullPointerException" in failing.template
    assert failing.example == "Unhandled exception processing order 700"
    assert dict(failing.test_summary) == {"node-3": 3.0}
    assert sum(failing.test_per_minute.values()) == 3
    tenants = [f for f in findings if "tenant" in f.template]
    assert len(tenants) == 1 and tenants[0].label == "KNOWN"


async def test_cluster_ids_are_stable_and_control_clusters_become_known(pool, handlers, unique):
    await handlers.on_event(_collected(unique, 1))
    first = {f.template: f.subject for f in await _published_findings(pool, unique, 1)}
    # The next version's control side is the one that threw: the error is now baseline.
    await handlers.on_event(_collected(unique, 2, npe_on=(CONTROL,)))
    # A later verification without the error in control still knows it.
    await handlers.on_event(_collected(unique, 3, npe_on=(TEST,)))

    third = await _published_findings(pool, unique, 3)
    assert {f.template: f.subject for f in third} == first
    assert (await _verdict(pool, unique, 3))["verdict"] == "PASS"
    stored = await pool.fetchval(
        "SELECT count(*) FROM log_clusters WHERE account_id = $1 AND service = 'checkout' "
        "AND baseline", f"acct-{unique}")
    assert stored == 3


async def test_one_accounts_known_errors_do_not_hide_another_accounts(pool, handlers, unique):
    await handlers.on_event(_collected(f"{unique}-a", 1, npe_on=(CONTROL, TEST),
                                       account=f"a-{unique}"))
    await handlers.on_event(_collected(f"{unique}-b", 1, account=f"b-{unique}"))
    assert (await _verdict(pool, f"{unique}-a", 1))["verdict"] == "PASS"
    assert (await _verdict(pool, f"{unique}-b", 1))["verdict"] == "FAIL"


async def _auth(pool, account: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {await apikeys.create(pool, account, 'test')}"),)


class _Authorized:
    """A stub whose calls carry an API key."""

    def __init__(self, stub: object, auth: tuple[tuple[str, str], ...]):
        self._stub, self._auth = stub, auth

    def __getattr__(self, name: str):  # noqa: ANN204
        method = getattr(self._stub, name)
        return lambda request: method(request, metadata=self._auth)


async def test_feedback_through_the_api_overrides_the_next_verdict(pool, handlers, unique):
    await handlers.on_event(_collected(unique, 1))
    [failing] = [f for f in await _published_findings(pool, unique, 1)
                 if f.verdict == v.VERDICT_KIND_FAIL]
    async with grpc_api.serve(0, pool) as port, \
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=grpc_api.SERVICE))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stub = fb_grpc.LogFeedbackServiceStub(channel)
        for auth, code in (((), grpc.StatusCode.UNAUTHENTICATED),
                           (await _auth(pool, f"other-{unique}"),
                            grpc.StatusCode.PERMISSION_DENIED)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListLogFeedback(fb.ListLogFeedbackRequest(
                    account_id=f"acct-{unique}", service="checkout"), metadata=auth)
            assert refused.value.code() == code
        api = _Authorized(stub, await _auth(pool, f"acct-{unique}"))
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await api.SetLogFeedback(fb.SetLogFeedbackRequest(feedback=fb.LogFeedback(
                account_id=f"acct-{unique}", service="checkout", cluster_id=failing.subject)))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "feedback.risk" in bad.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await api.ListLogFeedback(fb.ListLogFeedbackRequest(account_id=f"acct-{unique}"))
        assert missing.value.details() == "service: is required"

        set_ = await api.SetLogFeedback(fb.SetLogFeedbackRequest(feedback=fb.LogFeedback(
            account_id=f"acct-{unique}", service="checkout", cluster_id=failing.subject,
            risk=fb.LOG_RISK_NO_RISK, reason="known flaky test order")))
        assert "NullPointerException" in set_.feedback.template
        listed = await api.ListLogFeedback(fb.ListLogFeedbackRequest(
            account_id=f"acct-{unique}", service="checkout"))
        assert [(f.cluster_id, f.risk) for f in listed.feedback] == [
            (failing.subject, fb.LOG_RISK_NO_RISK)]

        await handlers.on_event(_collected(unique, 2))
        verdict = await _verdict(pool, unique, 2)
        assert verdict["verdict"] == "PASS", verdict["reason"]
        [decided] = [f for f in await _published_findings(pool, unique, 2)
                     if f.subject == failing.subject]
        assert (decided.rule, decided.risk) == ("feedback-no-risk", "NO_RISK")

        # High risk: fails whenever seen, even once the error is known from a control side.
        await api.SetLogFeedback(fb.SetLogFeedbackRequest(feedback=fb.LogFeedback(
            account_id=f"acct-{unique}", service="checkout", cluster_id=failing.subject,
            risk=fb.LOG_RISK_HIGH)))
        await handlers.on_event(_collected(unique, 3, npe_on=(CONTROL, TEST)))
        assert (await _verdict(pool, unique, 3))["verdict"] == "FAIL"

        deleted = await api.DeleteLogFeedback(fb.DeleteLogFeedbackRequest(
            account_id=f"acct-{unique}", service="checkout", cluster_id=failing.subject))
        assert deleted.deleted
