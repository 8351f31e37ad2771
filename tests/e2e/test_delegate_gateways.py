"""Delegates through real processes: two delegate-gateway instances, task-dispatch and a
delegate (`python -m ...` like `make run`), on the real broker and PostgreSQL.

The delegate moves to the other gateway when the one holding it crashes, and tasks
dispatched while it moves still reach it; who is connected where is queryable; a broadcast
probe aggregates the delegates' answers; a task no delegate can take fails with the reason.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from vigil.delegate.v1 import delegate_pb2, delegate_pb2_grpc
from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import envelope, topics, tracing
from vigil_local.plane import DelegatePlane

pytestmark = pytest.mark.asyncio(loop_scope="module")
ACCOUNT = "acme"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def plane(tmp_path_factory):
    async with DelegatePlane(tmp_path_factory.mktemp("plane")) as p:
        await p.start_dispatch(DISPATCH_SWEEP_SECONDS="0.3")
        a = await p.start_gateway("gateway-a", GATEWAY_TOKEN_RECHECK_SECONDS="1")
        b = await p.start_gateway("gateway-b", GATEWAY_TOKEN_RECHECK_SECONDS="1")
        p.delegate_token = await p.token(ACCOUNT)
        await p.start_delegate("d1", ACCOUNT, p.delegate_token, [a, b],
                               DELEGATE_CAPABILITIES="shell,probe",
                               DELEGATE_SELECTORS="cluster=eu", DELEGATE_HEARTBEAT_SECONDS="1")
        await p.wait_connected(ACCOUNT, "d1")
        yield p


async def _dispatch(plane: DelegatePlane, execution: str, n: int, capability: str = "shell",
                    validity: float = 0.0, spec: spec_pb2.TaskSpec | None = None,
                    traceparent: tracing.TraceContext | None = None) -> list[str]:
    ids = [f"{execution}/task-{i}" for i in range(n)]
    producer = AIOKafkaProducer(bootstrap_servers=plane.bootstrap)
    await producer.start()
    try:
        for task_id in ids:
            headers, value = envelope.encode(tasks_pb2.DispatchTask(
                task_id=task_id, attempt=1, account_id=ACCOUNT, execution_id=execution,
                capability=capability, timeout_seconds=30, validity_seconds=validity,
                spec=spec or spec_pb2.TaskSpec(noop=spec_pb2.NoOp(echo=task_id))),
                source="e2e-test", traceparent=traceparent)
            await producer.send_and_wait(topics.dispatch_commands(plane.version), value,
                                         key=execution.encode(), headers=headers)
    finally:
        await producer.stop()
    return ids


async def _results(plane: DelegatePlane, execution: str, count: int,
                   timeout: float = 30.0, topic: str = "") -> list:
    return [ev.message for ev in await _events(plane, execution, count, timeout, topic)]


async def _events(plane: DelegatePlane, execution: str, count: int, timeout: float = 30.0,
                  topic: str = "") -> list[envelope.Envelope]:
    """The first ``count`` events of the execution on ``topic`` (default: task results)."""
    consumer = AIOKafkaConsumer(topic or topics.task_results(plane.version),
                                bootstrap_servers=plane.bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await consumer.start()
    found: dict[str, object] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    ev = envelope.decode(r.headers, r.value)
                    if getattr(ev.message, "execution_id", None) == execution:
                        found[ev.id] = ev
    finally:
        await consumer.stop()
    return list(found.values())


async def test_tasks_dispatched_while_the_delegate_moves_to_another_gateway_still_reach_it(
        plane):
    holder = await plane.wait_connected(ACCOUNT, "d1")
    plane.kill(holder)  # a crash: no DelegateDisconnected, dispatch still thinks it is there
    execution = str(uuid.uuid4())
    ids = await _dispatch(plane, execution, 3)
    other = await plane.wait_connected(ACCOUNT, "d1", not_on=holder)
    assert other != holder
    results = await _results(plane, execution, 3)
    assert sorted(r.task_id for r in results) == ids
    assert all(isinstance(r, tasks_pb2.TaskSucceeded) for r in results)
    # Restart the crashed instance, so the delegate has two gateways again.
    await plane.supervisor.stop(holder)
    await plane.start_gateway(holder, GATEWAY_TOKEN_RECHECK_SECONDS="1")


async def test_who_is_connected_where_is_listed_and_a_probe_aggregates_every_answer(plane):
    holder = await plane.wait_connected(ACCOUNT, "d1")
    auth = (("authorization", f"Bearer {await plane.api_key(ACCOUNT)}"),)
    stranger = (("authorization", f"Bearer {await plane.api_key('someone-else')}"),)
    async with grpc.aio.insecure_channel(plane.gateways["gateway-a"]) as channel:
        admin = delegate_pb2_grpc.DelegateAdminStub(channel)
        for metadata, code in (((), grpc.StatusCode.UNAUTHENTICATED),
                               (stranger, grpc.StatusCode.PERMISSION_DENIED)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await admin.ListDelegates(delegate_pb2.ListDelegatesRequest(
                    account_id=ACCOUNT), metadata=metadata, timeout=10)
            assert refused.value.code() == code
        listed = await admin.ListDelegates(delegate_pb2.ListDelegatesRequest(
            connected_only=True), metadata=auth, timeout=10)
        [d1] = listed.delegates
        assert (d1.name, d1.gateway_id, list(d1.selectors)) == ("d1", holder, ["cluster=eu"])
        host, port = plane.gateways["gateway-b"].rsplit(":", 1)
        done = await admin.Probe(delegate_pb2.ProbeRequest(
            account_id=ACCOUNT, capability="probe", timeout_seconds=5,
            check=spec_pb2.ProbeCheck(tcp_connect=f"{host}:{port}")), metadata=auth, timeout=30)
        assert (done.ok_count, done.missing_count) == (1, 0), done
        assert "connected in" in done.answers[0].detail
        nobody = await admin.Probe(delegate_pb2.ProbeRequest(
            account_id=ACCOUNT, capability="kubernetes", timeout_seconds=5,
            check=spec_pb2.ProbeCheck(has_selector="cluster=eu")), metadata=auth, timeout=30)
        assert "no connected delegate of account 'acme' has capability 'kubernetes'" in \
            nobody.summary
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vigil_cli.main", "delegates", "list", "--connected",
        "--gateway", plane.gateways["gateway-b"], stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "VIGIL_API_KEY": auth[0][1].removeprefix("Bearer ")})
    out, _ = await cli.communicate()
    assert cli.returncode == 0
    assert [line.split()[:3] for line in out.decode().splitlines()[1:]] == [
        ["d1", "connected", holder]]


async def test_a_task_no_delegate_can_take_fails_after_its_validity_with_the_reason(plane):
    execution = str(uuid.uuid4())
    await _dispatch(plane, execution, 1, capability="kubernetes", validity=1.0)
    [failed] = await _results(plane, execution, 1)
    assert isinstance(failed, tasks_pb2.TaskFailed)
    assert failed.kind == tasks_pb2.TASK_FAILURE_KIND_NOT_ASSIGNED
    assert "needs capability 'kubernetes'" in failed.error


async def test_one_trace_covers_dispatch_the_delegate_and_every_event_it_causes(plane):
    """The trace of the DispatchTask continues through task-dispatch, the gateway and the
    delegate: TaskStarted, the progress and the result carry its trace id, each as its own
    span (nothing is re-rooted at the delegate hop)."""
    await plane.wait_connected(ACCOUNT, "d1")
    root = tracing.new_trace()
    execution = str(uuid.uuid4())
    await _dispatch(plane, execution, 1, traceparent=root, spec=spec_pb2.TaskSpec(
        shell_script=spec_pb2.ShellScript(script="echo traced")))

    [result] = await _events(plane, execution, 1)
    [started] = await _events(plane, execution, 1, topic=topics.delegate_events(plane.version))
    [progress] = await _events(plane, execution, 1, topic=topics.task_progress(plane.version))

    assert isinstance(result.message, tasks_pb2.TaskSucceeded), result.message
    assert "traced" in list(progress.message.lines)
    traces = [tracing.parse(ev.traceparent) for ev in (started, progress, result)]
    assert all(t is not None and t.trace_id == root.trace_id for t in traces), traces
    assert len({t.span_id for t in traces} | {root.span_id}) == 4
