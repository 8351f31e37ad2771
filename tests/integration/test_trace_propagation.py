"""W3C trace context across services on the real broker and PostgreSQL (issue 7): a
traceparent written through the outbox survives relay -> consume -> handler -> outbox -> relay
with the same trace id, and an execution started through the gRPC API continues the caller's
trace (or starts one) in every event it queues."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import grpc

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil.events.v1 import execution_pb2
from vigil_common import envelope, kafka, outbox, tracing
from vigil_orchestrator.adapters import grpc_api
from vigil_orchestrator.adapters.postgres import PostgresStore
from vigil_orchestrator.handlers import Handlers

CALLER = tracing.TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")

PIPELINE = """
name: traced
application: shop
service: web
environment: prod
stages:
  - name: build
    workflow:
      phases:
        - name: main
          steps:
            - {name: compile, type: shell, script: make}
"""


def _started(execution_id: str) -> execution_pb2.StepStarted:
    return execution_pb2.StepStarted(execution_id=execution_id,
                                     step=execution_pb2.StepRef(path="steps[0]"))


def _trace(record) -> tracing.TraceContext:  # noqa: ANN001 - an aiokafka ConsumerRecord
    trace = tracing.parse(envelope.decode(record.headers, record.value).traceparent)
    assert trace is not None, f"no traceparent in {record.headers}"
    return trace


async def test_a_traceparent_survives_relay_consume_handler_and_the_next_outbox_hop(
        pool, producer, kafka_settings, create_topics, read_topic, unique):
    first, second = f"vigil.it.trace.a.{unique}", f"vigil.it.trace.b.{unique}"
    await create_topics([first, second])
    upstream, downstream = f"it-up-{unique}", f"it-down-{unique}"
    seen: list[tracing.TraceContext | None] = []

    async def handler(event: envelope.Envelope) -> None:
        # What a service's handler does: its state change and the events it causes, one tx.
        seen.append(tracing.current())
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, downstream, second, "ex-1", event.message,
                             event_id=f"{event.id}/next")

    with tracing.use(CALLER):
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, upstream, first, "ex-1", _started("ex-1"), event_id="ev-1")
    assert await outbox.publish_pending(pool, producer, upstream) == 1

    ready = asyncio.Event()
    consumer = asyncio.create_task(kafka.consume(
        kafka_settings, f"it-trace-{unique}", [first], handler, producer, ready))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        relayed = (await read_topic(first, 1))[0]
        deadline = asyncio.get_running_loop().time() + 15
        while not await outbox.publish_pending(pool, producer, downstream):
            assert asyncio.get_running_loop().time() < deadline, "the handler queued nothing"
            await asyncio.sleep(0.02)
        final = (await read_topic(second, 1))[0]
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer

    hop1, hop2 = _trace(relayed), _trace(final)
    assert hop1.trace_id == hop2.trace_id == CALLER.trace_id
    assert seen == [hop1]  # the handler ran inside the consumed record's trace
    assert len({CALLER.span_id, hop1.span_id, hop2.span_id}) == 3  # a new span per event
    assert envelope.decode(final.headers, final.value).message == _started("ex-1")


async def _start_execution(pool, account: str, metadata: tuple[tuple[str, str], ...],
                           pipeline: str = PIPELINE) -> str:
    store = PostgresStore(pool)
    auth = (("authorization", f"Bearer {await store.create_api_key(account, 'ci')}"),)
    async with grpc_api.serve(0, Handlers(store, "v1"), store, pool) as port, \
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await api_pb2_grpc.PipelineServiceStub(channel).ApplyPipeline(
            api_pb2.ApplyPipelineRequest(yaml=pipeline), metadata=auth)
        started = await api_pb2_grpc.ExecutionServiceStub(channel).StartExecution(
            api_pb2.StartExecutionRequest(pipeline="traced"), metadata=auth + metadata)
    return started.execution_id


async def _queued_traces(pool, execution_id: str) -> list[tracing.TraceContext | None]:
    rows = await pool.fetch("SELECT header_names, header_values FROM outbox WHERE key = $1 "
                            "ORDER BY id", execution_id.encode())
    return [tracing.parse(dict(zip(r["header_names"], r["header_values"], strict=True))
                          .get(tracing.HEADER)) for r in rows]


async def test_start_execution_continues_the_callers_traceparent_in_every_queued_event(
        pool, unique):
    execution_id = await _start_execution(pool, f"acct-{unique}",
                                          (("traceparent", str(CALLER)),))
    traces = await _queued_traces(pool, execution_id)
    assert len(traces) >= 2  # ExecutionStarted, StepStarted, DispatchTask, ...
    assert {t.trace_id for t in traces} == {CALLER.trace_id}


async def test_start_execution_with_a_malformed_traceparent_starts_one_new_trace_for_its_events(
        pool, unique):
    execution_id = await _start_execution(pool, f"acct-{unique}",
                                          (("traceparent", "not-a-trace"),))
    traces = await _queued_traces(pool, execution_id)
    assert len(traces) >= 2 and all(traces)
    assert len({t.trace_id for t in traces}) == 1
    assert CALLER.trace_id not in {t.trace_id for t in traces}


async def test_a_durable_timer_firing_later_continues_the_executions_trace(pool, unique):
    waiting = PIPELINE.replace("{name: compile, type: shell, script: make}",
                               "{name: soak, type: wait, duration: 1s}")
    execution_id = await _start_execution(pool, f"acct-{unique}",
                                          (("traceparent", str(CALLER)),), waiting)
    before = len(await _queued_traces(pool, execution_id))
    later = datetime.now(UTC) + timedelta(minutes=1)

    with tracing.use(None):  # the sweeper runs outside any trace
        assert await Handlers(PostgresStore(pool), "v1", clock=lambda: later).sweep_timers()

    fired = (await _queued_traces(pool, execution_id))[before:]
    assert fired, "the timer queued no event (StepSucceeded, ExecutionFinished, ...)"
    assert {t.trace_id for t in fired} == {CALLER.trace_id}
