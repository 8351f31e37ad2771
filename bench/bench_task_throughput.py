"""Tasks through the real path, dispatch -> gateway -> delegate -> result event, with no-op
tasks; side by side with a bare gRPC round trip measured in the same run.

Processes (each `python -m ...` like `make run`): the embedded broker, task-dispatch, one
delegate-gateway, BENCH_DELEGATES delegates (default 4, 64 tasks at once each). This process
publishes DispatchTask commands on vigil.v1.dispatch.commands and reads TaskSucceeded from
vigil.v1.task.results; a task's latency is from its command's send to its result's arrival.

  latency:    BENCH_PACED (200) tasks at 20/s, so queueing does not count
  throughput: BENCH_BURST (500) tasks sent at once, tasks/s from first send to last result
  reference:  gRPC health Check on the same gateway process: p50/p99 one at a time, and
              calls/s with 32 in flight (the bare round trip Vigil's path is made of)
  where the time goes: CPU seconds of each process during the burst, as % of one core (a
              process near 100 % is the bottleneck; so is the machine when the sum nears
              100 % x its cores)

BENCH_IDLE_DELEGATES (default 0), e.g. 1000: that many more delegates registered in the same
account, simulated cheaply as rows of task-dispatch's registry (connected, capability "shell",
so they never get the no-op tasks) - the many-delegates case where dispatch must not lock or
read every delegate of the account for each event.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import grpc
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import envelope, topics
from vigil_local.plane import DelegatePlane

DELEGATES = int(os.environ.get("BENCH_DELEGATES", "4"))
PACED = int(os.environ.get("BENCH_PACED", "200"))
BURST = int(os.environ.get("BENCH_BURST", "500"))
IDLE = int(os.environ.get("BENCH_IDLE_DELEGATES", "0"))
ACCOUNT = "bench"


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Results:
    """Reads task results from the beginning of the topic; resolves waiting sends."""

    def __init__(self, bootstrap: str):
        self._consumer = AIOKafkaConsumer(
            topics.task_results("v1"), bootstrap_servers=bootstrap, group_id=None,
            auto_offset_reset="earliest", fetch_max_wait_ms=5)
        self.arrived: dict[str, float] = {}
        self.failed = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _run(self) -> None:
        while True:
            for records in (await self._consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for r in records:
                    msg = envelope.decode(r.headers, r.value).message
                    self.arrived.setdefault(msg.task_id, now)
                    self.failed += isinstance(msg, tasks_pb2.TaskFailed)

    async def wait(self, ids: list[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while any(i not in self.arrived for i in ids):
            if time.monotonic() > deadline:
                missing = sum(i not in self.arrived for i in ids)
                raise TimeoutError(f"{missing} of {len(ids)} results missing after {timeout}s")
            await asyncio.sleep(0.01)


async def _send(producer: AIOKafkaProducer, task_id: str, execution: str) -> float:
    headers, value = envelope.encode(tasks_pb2.DispatchTask(
        task_id=task_id, attempt=1, account_id=ACCOUNT, execution_id=execution,
        capability="noop", timeout_seconds=60, spec=spec_pb2.TaskSpec(noop=spec_pb2.NoOp())),
        source="bench")
    sent = time.perf_counter()
    await producer.send(topics.dispatch_commands("v1"), value, key=execution.encode(),
                        headers=headers)
    return sent


async def _paced(producer, results: Results, n: int, rate: float) -> list[float]:
    sent: dict[str, float] = {}
    for _ in range(n):
        task_id = f"paced-{uuid.uuid4()}"
        sent[task_id] = await _send(producer, task_id, str(uuid.uuid4()))
        await asyncio.sleep(1 / rate)
    await results.wait(list(sent))
    return [(results.arrived[t] - s) * 1000 for t, s in sent.items()]


async def _burst(producer, results: Results, n: int) -> tuple[float, list[float]]:
    sent: dict[str, float] = {}
    execution = [str(uuid.uuid4()) for _ in range(50)]
    for i in range(n):
        task_id = f"burst-{uuid.uuid4()}"
        sent[task_id] = await _send(producer, task_id, execution[i % 50])
    await producer.flush()
    await results.wait(list(sent), timeout=300)
    first, last = min(sent.values()), max(results.arrived[t] for t in sent)
    return n / (last - first), [(results.arrived[t] - s) * 1000 for t, s in sent.items()]


class CpuMeter:
    """CPU seconds each named process group (and PostgreSQL's server processes) used between
    ``start`` and ``stop``."""

    def __init__(self, groups: dict[str, list[int]]):
        self._groups = {name: [psutil.Process(p) for p in pids] for name, pids in groups.items()}
        self._groups["postgres (all)"] = [p for p in psutil.process_iter(["name"])
                                          if p.info["name"] in ("postgres", "postmaster")]
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.wall = 0.0

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, procs in self._groups.items():
            total = 0.0
            for proc in procs:
                try:
                    # The benchmark's children are the plane's processes: not its own.
                    kids = [] if proc.pid == os.getpid() else proc.children(recursive=True)
                    for p in [proc, *kids]:
                        t = p.cpu_times()
                        total += t.user + t.system
                except psutil.Error:
                    pass
            out[name] = total
        return out

    def start(self) -> None:
        self._start, self._t0 = self._cpu(), time.perf_counter()

    def stop(self) -> None:
        end, self.wall = self._cpu(), time.perf_counter() - self._t0
        self.used = {name: end[name] - self._start[name] for name in end}


async def _register_idle(database_url: str, n: int) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.copy_records_to_table("delegates", columns=[
            "delegate_id", "account_id", "name", "version", "capabilities", "gateway_id",
            "session", "connected", "max_tasks"], records=[
            (f"idle-{i:05d}", ACCOUNT, f"idle-{i}", "v1", ["shell"], "gateway", 1, True, 64)
            for i in range(n)])
    finally:
        await conn.close()


async def _bare(address: str) -> tuple[list[float], float]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        req = health_pb2.HealthCheckRequest()
        for _ in range(100):
            await stub.Check(req)
        lat = []
        for _ in range(2000):
            t = time.perf_counter()
            await stub.Check(req)
            lat.append((time.perf_counter() - t) * 1000)
        calls = 4000
        t = time.perf_counter()

        async def worker() -> None:
            for _ in range(calls // 32):
                await stub.Check(req)

        await asyncio.gather(*(worker() for _ in range(32)))
        return lat, calls / (time.perf_counter() - t)


async def main() -> int:
    quiet = {"LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory(prefix="vigil-bench-tasks-") as tmp:
        state = Path(os.environ.get("BENCH_STATE_DIR") or tmp)  # set it to keep the logs
        async with DelegatePlane(state) as plane:
            await plane.start_dispatch(**quiet)
            gateway = await plane.start_gateway("gateway", **quiet)
            token = await plane.token(ACCOUNT)
            for i in range(DELEGATES):
                await plane.start_delegate(f"d{i}", ACCOUNT, token, [gateway],
                                           DELEGATE_CAPABILITIES="noop",
                                           DELEGATE_MAX_TASKS="64", **quiet)
            for i in range(DELEGATES):
                await plane.wait_connected(ACCOUNT, f"d{i}")
            if IDLE:
                await _register_idle(plane.database_url, IDLE)
            sup = plane.supervisor
            meter = CpuMeter({
                "task-dispatch": [sup.get("task-dispatch").pid],
                "delegate-gateway": [sup.get("gateway").pid],
                f"{DELEGATES} delegates": [sup.get(f"d{i}").pid for i in range(DELEGATES)],
                "broker (tansu)": [plane._broker.pid] if plane._broker else [],
                "this benchmark": [os.getpid()]})
            producer = AIOKafkaProducer(bootstrap_servers=plane.bootstrap, linger_ms=0,
                                        max_batch_size=256 * 1024)
            await producer.start()
            results = Results(plane.bootstrap)
            await results.start()
            try:
                await _paced(producer, results, 30, 20)  # warm-up: joins, caches, JIT-free
                paced = await _paced(producer, results, PACED, 20)
                meter.start()
                rate, burst = await _burst(producer, results, BURST)
                meter.stop()
                bare_lat, bare_rate = await _bare(gateway)
            finally:
                await results.stop()
                await producer.stop()
    p50, p99 = statistics.median(paced), _pct(paced, 99)
    b50, b99 = statistics.median(bare_lat), _pct(bare_lat, 99)
    idle = f" (+{IDLE} idle delegates registered in the account)" if IDLE else ""
    print(f"{DELEGATES} delegates x 64 slots{idle}, one dispatch, one gateway; no-op tasks")
    print(f"{'':34}{'p50 ms':>9}{'p99 ms':>9}{'per s':>9}")
    print(f"{'vigil task, paced 20/s':34}{p50:>9.1f}{p99:>9.1f}{'':>9}")
    print(f"{f'vigil task, burst of {BURST}':34}{statistics.median(burst):>9.1f}"
          f"{_pct(burst, 99):>9.1f}{rate:>9.0f}")
    print(f"{'bare gRPC unary round trip':34}{b50:>9.2f}{b99:>9.2f}{bare_rate:>9.0f}")
    print(f"ratio: task latency p50 = {p50 / b50:.0f} x a bare round trip; "
          f"throughput = 1/{bare_rate / rate:.1f} of bare calls/s (32 in flight); "
          f"failed results: {results.failed}")
    print(f"CPU during the burst ({meter.wall:.1f} s), % of one core ({os.cpu_count()} cores): "
          + ", ".join(f"{name} {100 * used / meter.wall:.0f}%"
                      for name, used in meter.used.items())
          + f"; total {100 * sum(meter.used.values()) / meter.wall:.0f}%")
    print("CPU ms per task in the burst: " + ", ".join(
        f"{name} {1000 * used / BURST:.1f}" for name, used in meter.used.items()))
    return 0 if results.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
