"""Issue 7 benchmark: executions per second of a 3-stage, 10-step pipeline of no-op delegate
steps end to end, and the latency from "task result received" to "next task dispatched",
side by side with the raw broker hop (consume one record, produce one) measured in the same
run on the same broker with the same client settings. The ratio is the figure.

Everything is real: the embedded broker, PostgreSQL, the services and a delegate as separate
processes (vigil_local.Stack, as `make run` starts them).

    python bench/bench_orchestrator.py [--executions 60] [--concurrency 12]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil.events.v1 import execution_pb2, tasks_pb2
from vigil_common import envelope, topics
from vigil_local.database import drop_database
from vigil_local.stack import Stack, StackConfig

PIPELINE = """
name: bench-noop
stages:
""" + "".join(f"""  - name: stage-{s}
    workflow:
      failure_strategy: abort
      phases:
        - name: p
          steps:
""" + "".join(f"            - {{name: step-{s}-{i}, type: noop}}\n" for i in range(n))
    for s, n in ((1, 4), (2, 3), (3, 3)))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def raw_hop(bootstrap: str, samples: int) -> list[float]:
    """Milliseconds from a record's timestamp on topic A to the relayed record on topic B,
    with a consumer that forwards each record as soon as it sees it (no database)."""
    a, b = f"bench.raw.a.{uuid.uuid4().hex[:6]}", f"bench.raw.b.{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=False, linger_ms=0)
    relay = AIOKafkaConsumer(a, bootstrap_servers=bootstrap, group_id=f"g-{a}",
                             auto_offset_reset="earliest", fetch_max_wait_ms=25,
                             session_timeout_ms=3000, heartbeat_interval_ms=300)
    sink = AIOKafkaConsumer(b, bootstrap_servers=bootstrap, group_id=None,
                            auto_offset_reset="earliest", fetch_max_wait_ms=25)
    await producer.start()
    await producer.send_and_wait(a, b"warm-up")
    await producer.send_and_wait(b, b"warm-up")
    await relay.start()
    await sink.start()
    hops: list[float] = []

    async def forward() -> None:
        while True:
            for records in (await relay.getmany(timeout_ms=200)).values():
                for r in records:
                    if r.value != b"warm-up":
                        await producer.send_and_wait(b, r.value)

    forwarder = asyncio.ensure_future(forward())
    try:
        await asyncio.sleep(4)  # the group join
        for i in range(samples):
            sent = await producer.send_and_wait(a, str(i).encode())
            while True:
                got = [r for rs in (await sink.getmany(timeout_ms=1000)).values() for r in rs
                       if r.value == str(i).encode()]
                if got:
                    hops.append(got[0].timestamp - sent.timestamp)
                    break
            await asyncio.sleep(0.02)
    finally:
        forwarder.cancel()
        await asyncio.gather(forwarder, return_exceptions=True)
        await relay.stop()
        await sink.stop()
        await producer.stop()
    return hops


async def hop_latencies(bootstrap: str, execution_ids: set[str]) -> dict[str, list[float]]:
    """Milliseconds between consecutive records of one step's round trip, per hop:
    dispatch (DispatchTask -> TaskAssigned: task-dispatch), delegate (TaskAssigned ->
    TaskSucceeded: gateway, stream, delegate, gateway) and engine (TaskSucceeded -> the next
    DispatchTask: the orchestrator). Record timestamps are taken when each relay produced."""
    names = [topics.task_results("v1"), topics.dispatch_commands("v1"),
             topics.gateway_assignments("v1")]
    consumer = AIOKafkaConsumer(*names, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    kinds = {tasks_pb2.TaskSucceeded: "result", tasks_pb2.DispatchTask: "dispatch",
             tasks_pb2.TaskAssigned: "assigned"}
    events: dict[str, list[tuple[int, int, str]]] = {}
    order = {"dispatch": 0, "assigned": 1, "result": 2}
    idle = 0
    try:
        while idle < 4:
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                for r in records:
                    msg = envelope.decode(r.headers, r.value).message
                    kind = kinds.get(type(msg))
                    if kind and msg.execution_id in execution_ids:
                        events.setdefault(msg.execution_id, []).append(
                            (r.timestamp, order[kind], kind))
    finally:
        await consumer.stop()
    hops: dict[str, list[float]] = {"dispatch": [], "delegate": [], "engine": []}
    pairs = {("dispatch", "assigned"): "dispatch", ("assigned", "result"): "delegate",
             ("result", "dispatch"): "engine"}
    for seq in events.values():
        seq.sort()
        for (t0, _, k0), (t1, _, k1) in zip(seq, seq[1:], strict=False):
            if (k0, k1) in pairs:
                hops[pairs[(k0, k1)]].append(float(t1 - t0))
    return hops


async def main(executions: int, concurrency: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        # One delegate with room for every concurrent execution's task: the engine, not the
        # delegate's slots, is what this measures (the delegate plane has its own benchmark).
        config = StackConfig(state_dir=Path(tmp),
                             database_name=f"vigil_bench_{uuid.uuid4().hex[:6]}",
                             environ={**os.environ, "DELEGATE_MAX_TASKS": "64"})
        async with Stack(config, out=sys.stderr) as stack:
            try:
                return await _run(stack, executions, concurrency)
            finally:
                if config.environ.get("DATABASE_URL") is None:
                    await drop_database(stack.database.url)


async def _run(stack: Stack, executions: int, concurrency: int) -> int:
    auth = (("authorization", f"Bearer {stack.api_key}"),)
    raw = await raw_hop(stack.bootstrap, 200)
    async with grpc.aio.insecure_channel(stack.api_address) as channel:
        await api_pb2_grpc.PipelineServiceStub(channel).ApplyPipeline(
            api_pb2.ApplyPipelineRequest(yaml=PIPELINE), metadata=auth)
        api = api_pb2_grpc.ExecutionServiceStub(channel)
        gate = asyncio.Semaphore(concurrency)
        durations: list[float] = []
        ids: set[str] = set()

        async def one() -> None:
            async with gate:
                t0 = time.monotonic()
                started = await api.StartExecution(api_pb2.StartExecutionRequest(
                    pipeline="bench-noop", idempotency_key=str(uuid.uuid4())), metadata=auth)
                ids.add(started.execution_id)
                async for ex in api.WatchExecution(api_pb2.GetExecutionRequest(
                        execution_id=started.execution_id), metadata=auth):
                    if ex.status != execution_pb2.EXECUTION_STATUS_RUNNING:
                        assert ex.status == execution_pb2.EXECUTION_STATUS_SUCCEEDED, ex.reason
                        break
                durations.append(time.monotonic() - t0)

        await asyncio.gather(*(one() for _ in range(3)))  # warm-up: joins, caches
        durations.clear()
        warm = set(ids)
        t0 = time.monotonic()
        await asyncio.gather(*(one() for _ in range(executions)))
        wall = time.monotonic() - t0
    segments = await hop_latencies(stack.bootstrap, ids - warm)
    hops = segments["engine"]
    rate = executions / wall
    print(f"pipeline: 3 stages, 10 no-op delegate steps; {executions} executions, "
          f"{concurrency} at a time; embedded broker, PostgreSQL, 5 services + 1 delegate")
    print(f"  executions/s end to end        {rate:8.2f}   ({rate * 10:.0f} steps/s)")
    print(f"  execution duration p50 / p99   {pct(durations, .5):8.2f} s / "
          f"{pct(durations, .99):.2f} s")
    print(f"  result -> next dispatch  p50   {pct(hops, .5):8.1f} ms   p99 {pct(hops, .99):.1f} ms"
          f"   (n={len(hops)})")
    print(f"  raw broker hop           p50   {pct(raw, .5):8.1f} ms   p99 {pct(raw, .99):.1f} ms"
          f"   (consume + produce, n={len(raw)})")
    print(f"  ratio (engine / raw hop) p50   {pct(hops, .5) / max(pct(raw, .5), 0.1):8.1f}x   "
          f"p99 {pct(hops, .99) / max(pct(raw, .99), 0.1):.1f}x")
    print("  one step's round trip, p50 / p99 per hop (record timestamps):")
    for name, values in segments.items():
        print(f"    {name:<9} {pct(values, .5):7.1f} ms / {pct(values, .99):7.1f} ms  "
              f"mean {statistics.mean(values):.1f} ms")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=12)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.executions, args.concurrency)))
