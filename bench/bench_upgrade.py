"""Issue 4 benchmark: what API clients see while Vigil upgrades itself, side by side with an
in-place restart of the orchestrator (the upgrade without versions side by side).

Everything is real (vigil_local.Stack as `make run` starts it, the router, a second version's
processes started through the goal file). Clients call the public API through the router
without pause while:

1. `vigil upgrade run v2` runs (v2 started beside v1, verified, primary switched);
2. the primary is switched back and forth (rollback / switch) ``--cycles`` times;
3. reference: clients call v1's orchestrator directly while it is restarted in place on the
   same port (stop, start a new process), as a plain rolling upgrade of one instance would.

Figures: failed calls (goal: zero), time to switch and to roll back (from the command's start,
which observes and verifies both versions and commits the primary record, until the router
sends new calls to the other version), the whole procedure's time,
and the reference's failed calls and unavailable window.

    python bench/bench_upgrade.py [--cycles 5] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil_common import logs
from vigil_local.database import drop_database
from vigil_local.ports import free_port
from vigil_local.stack import Stack, StackConfig
from vigil_upgrade.control import beside_stack


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Clients:
    """``n`` clients calling ListExecutions / GetExecution back to back; counts outcomes."""

    def __init__(self, address: str, auth, n: int):
        self.address, self.auth, self.n = address, auth, n
        self.ok = 0
        self.failed: list[tuple[float, str]] = []
        self.latencies: list[float] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(i)) for i in range(self.n)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _run(self, i: int) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            api = api_pb2_grpc.ExecutionServiceStub(channel)
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    await api.ListExecutions(api_pb2.ListExecutionsRequest(page_size=5),
                                             metadata=self.auth, timeout=10)
                    self.ok += 1
                    self.latencies.append(time.monotonic() - started)
                except grpc.aio.AioRpcError as exc:
                    self.failed.append((time.monotonic(), exc.code().name))
                await asyncio.sleep(0.002)


async def _followed(control, version: str, since: float, timeout: float = 10.0) -> float:
    """Seconds from ``since`` until the router sends new calls to ``version``."""
    while control.routes.primary is None or control.routes.primary.version != version:
        if time.monotonic() - since > timeout:
            raise TimeoutError(f"router did not follow to {version}")
        await asyncio.sleep(0.0005)
    return time.monotonic() - since


async def run(cycles: int, n_clients: int) -> int:
    environ = dict(os.environ)
    state = Path(tempfile.mkdtemp(prefix="bench-upgrade-"))
    config = StackConfig(state_dir=state, environ=environ,
                         database_name=f"vigil_bench_upgrade_{uuid.uuid4().hex[:8]}")
    stack = Stack(config, out=io.StringIO())
    try:
        async with stack, beside_stack(stack) as control:
            auth = (("authorization", f"Bearer {stack.api_key}"),)
            procedure = control.procedure(say=lambda _: None)
            clients = Clients(control.router_address, auth, n_clients)
            clients.start()
            await asyncio.sleep(1)

            started = time.monotonic()
            await procedure.run("v2", timeout=120, poll=0.1)
            upgrade_s = time.monotonic() - started
            timings: dict[str, list[tuple[float, float]]] = {"v1": [], "v2": []}
            for _ in range(cycles):
                for target in ("v1", "v2"):
                    await asyncio.sleep(0.3)
                    t0 = time.monotonic()
                    if target == "v1":
                        await procedure.rollback("bench")
                    else:
                        await procedure.switch("v2", "bench")
                    command = time.monotonic() - t0
                    timings[target].append((command, await _followed(control, target, t0)))
            rollback_s, switch_s = timings["v1"], timings["v2"]
            await asyncio.sleep(0.5)
            await clients.stop()
            ours = clients

            # Reference: restart v1's orchestrator in place while clients call it directly.
            ref = Clients(stack.api_address, auth, n_clients)
            ref.start()
            await asyncio.sleep(1)
            port = stack.api_address.rsplit(":", 1)[1]
            restart_at = time.monotonic()
            await stack.supervisor.stop("orchestrator")
            env = {**stack._service_env(), "INSTANCE_ID": "orchestrator-1",
                   "METRICS_PORT": str(free_port()), "API_PORT": port}
            await stack.supervisor.start("orchestrator", [sys.executable, "-m",
                                                          "vigil_orchestrator"], env)
            await stack._wait_serving(stack.api_address, "orchestrator")
            await asyncio.sleep(1)
            await ref.stop()
            window = (max(t for t, _ in ref.failed) - restart_at) if ref.failed else 0.0

            primary = await control.store.primary()
            assert primary is not None and primary.version == "v2"
            assert primary.generation == 2 + 2 * cycles
    finally:
        if "DATABASE_URL" not in environ and stack.database is not None:
            await drop_database(stack.database.url)

    calls = ours.ok + len(ours.failed)
    print(f"{n_clients} API clients back to back through the router; v1 -> v2 upgrade, then "
          f"{cycles} rollback/switch cycles ({calls} calls)")
    print(f"  failed calls (goal 0)              {len(ours.failed):8d}   "
          f"{sorted({c for _, c in ours.failed}) or ''}")
    print(f"  call latency p50 / p99             {1000 * pct(ours.latencies, .5):8.1f} ms / "
          f"{1000 * pct(ours.latencies, .99):.1f} ms")
    print(f"  upgrade run v2 (start, verify, switch) {upgrade_s:6.1f} s")
    for label, values in (("switch", switch_s), ("roll back", rollback_s)):
        total = [t for _, t in values]
        command = [c for c, _ in values]
        print(f"  time to {label:<9} p50 / max        {1000 * pct(total, .5):8.1f} ms / "
              f"{1000 * max(total):.1f} ms   (command start -> router sends new calls there; "
              f"of which the command: p50 {1000 * pct(command, .5):.1f} ms)")
    print("reference: the same clients on v1's orchestrator, restarted in place "
          f"({ref.ok + len(ref.failed)} calls)")
    print(f"  failed calls                       {len(ref.failed):8d}   "
          f"{sorted({c for _, c in ref.failed}) or ''}")
    print(f"  unavailable window                 {window:8.2f} s")
    return 1 if ours.failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    logs.configure(service="bench-upgrade", level="WARNING")
    return asyncio.run(run(args.cycles, args.clients))


if __name__ == "__main__":
    sys.exit(main())
