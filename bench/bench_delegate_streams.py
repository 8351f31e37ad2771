"""Idle delegate streams one delegate-gateway process holds, on one core, with memory and CPU
per stream; side by side with a bare grpc.aio bidi server holding the same streams.

The gateway is the real one (`python -m vigil_gateway`, token check and session row per
stream in PostgreSQL, DelegateConnected through the outbox to the broker), pinned to core 0
with taskset. Client processes on the other core open BENCH_STREAMS streams (default 10,000),
BENCH_PER_CONNECTION (100) per TCP connection (RUNTIME.md: local subchannel pools), one every
~1 ms, each registering like a delegate and then sending a heartbeat every 10 s, as an idle
delegate does. Figures: streams held, RSS growth / stream, CPU of the server while idle.
Reference (RUNTIME.md): ~26 KB per stream at 100 streams per connection.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc

from vigil.delegate.v1 import delegate_pb2, delegate_pb2_grpc

STREAMS = int(os.environ.get("BENCH_STREAMS", "10000"))
PER_CONNECTION = int(os.environ.get("BENCH_PER_CONNECTION", "100"))
CLIENTS = 2
IDLE_SECONDS = 20.0
HEARTBEAT_SECONDS = 10.0
TICKS = os.sysconf("SC_CLK_TCK")


# --- the client (a process of its own): many idle delegate streams ---

async def _client(address: str, count: int, offset: int, account: str, token: str) -> None:
    opened = 0
    failed = 0
    channels = []
    streams = []

    async def one(channel: grpc.aio.Channel, n: int) -> None:
        nonlocal opened, failed
        try:
            call = delegate_pb2_grpc.DelegateServiceStub(channel).Connect(
                metadata=(("vigil-version", "v1"),))
            await call.write(delegate_pb2.DelegateMessage(register=delegate_pb2.Register(
                account_id=account, token=token, name=f"bench-{offset + n}",
                capabilities=["noop"])))
            first = await call.read()
            if first is grpc.aio.EOF:
                raise RuntimeError("stream closed at registration")
            opened += 1
            streams.append(call)
            while True:
                await asyncio.sleep(HEARTBEAT_SECONDS)
                await call.write(delegate_pb2.DelegateMessage(heartbeat=delegate_pb2.Heartbeat(
                    sent_at_unix_ms=int(time.time() * 1000))))
                await call.read()
        except (grpc.aio.AioRpcError, RuntimeError) as exc:
            failed += 1
            if failed <= 3:
                print(f"stream failed: {exc}", file=sys.stderr, flush=True)

    tasks = []
    for n in range(count):
        if n % PER_CONNECTION == 0:
            channels.append(grpc.aio.insecure_channel(
                address, options=[("grpc.use_local_subchannel_pool", 1)]))
        tasks.append(asyncio.ensure_future(one(channels[-1], n)))
        await asyncio.sleep(0.001 * CLIENTS)  # all clients together: ~1 ms apart
    while opened + failed < count:
        await asyncio.sleep(0.2)
    print(f"READY {opened} {failed}", flush=True)
    await asyncio.Event().wait()  # hold them until killed


# --- the reference server: bare grpc.aio, same stream shape, nothing else ---

class _Bare(delegate_pb2_grpc.DelegateServiceServicer):
    async def Connect(self, request_iterator, context):  # noqa: ANN001, ANN201
        first = await context.read()
        await context.write(delegate_pb2.GatewayMessage(registered=delegate_pb2.Registered(
            delegate_id=first.register.name)))
        while (msg := await context.read()) is not grpc.aio.EOF:
            await context.write(delegate_pb2.GatewayMessage(heartbeat=msg.heartbeat))


async def _bare_server(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 1000)])
    delegate_pb2_grpc.add_DelegateServiceServicer_to_server(_Bare(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("SERVING", flush=True)
    await server.wait_for_termination()


# --- the driver ---

def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def _measure(server_pid: int, address: str, account: str, token: str) -> dict:
    """Open the streams against one server; returns its figures."""
    await asyncio.sleep(1.0)
    rss0 = _rss_kb(server_pid)
    started = time.monotonic()
    per = STREAMS // CLIENTS
    clients = [await asyncio.create_subprocess_exec(
        "taskset", "-c", "1", sys.executable, __file__, "--client", address, str(per),
        str(i * per), account, token, stdout=asyncio.subprocess.PIPE) for i in range(CLIENTS)]
    opened = failed = 0
    try:
        for c in clients:
            line = (await asyncio.wait_for(c.stdout.readline(), 300)).decode().split()
            if line[:1] != ["READY"]:
                raise RuntimeError(f"a client process ended early (exit {await c.wait()})")
            opened, failed = opened + int(line[1]), failed + int(line[2])
        ramp = time.monotonic() - started
        await asyncio.sleep(2.0)  # let the registrations' side effects settle
        cpu0, t0 = _cpu_seconds(server_pid), time.monotonic()
        await asyncio.sleep(IDLE_SECONDS)
        cpu = (_cpu_seconds(server_pid) - cpu0) / (time.monotonic() - t0)
        rss1 = _rss_kb(server_pid)
    finally:
        for c in clients:
            c.kill()
            await c.wait()
    return {"opened": opened, "failed": failed, "ramp_s": ramp, "rss_mb": rss1 / 1024,
            "kb_per_stream": (rss1 - rss0) / max(opened, 1), "cpu": cpu}


async def _main() -> int:
    from vigil_local.plane import DelegatePlane
    from vigil_local.ports import free_port

    with tempfile.TemporaryDirectory(prefix="vigil-bench-streams-") as tmp:
        state = Path(os.environ.get("BENCH_STATE_DIR") or tmp)  # set it to keep the logs
        async with DelegatePlane(state) as plane:
            token = await plane.token("bench")
            address = await plane.start_gateway("gateway", argv_prefix=("taskset", "-c", "0"),
                                                LOG_LEVEL="WARNING")
            pid = plane.supervisor.get("gateway").pid
            vigil = await _measure(pid, address, "bench", token)
            sessions = await _count_sessions(plane.database_url)
        port = free_port()
        bare = await asyncio.create_subprocess_exec(
            "taskset", "-c", "0", sys.executable, __file__, "--bare", str(port),
            stdout=asyncio.subprocess.PIPE)
        try:
            await bare.stdout.readline()
            ref = await _measure(bare.pid, f"127.0.0.1:{port}", "bench", "x")
        finally:
            bare.kill()
            await bare.wait()
    print(f"streams asked {STREAMS}, {PER_CONNECTION} per connection, {CLIENTS} client processes, "
          f"server pinned to one core")
    print(f"{'':22}{'held':>8}{'failed':>8}{'ramp s':>8}{'RSS MB':>8}{'KB/stream':>11}"
          f"{'idle CPU':>10}")
    for name, r in (("vigil delegate-gateway", vigil), ("bare grpc.aio bidi", ref)):
        print(f"{name:22}{r['opened']:>8}{r['failed']:>8}{r['ramp_s']:>8.1f}{r['rss_mb']:>8.0f}"
              f"{r['kb_per_stream']:>11.1f}{r['cpu'] * 100:>9.1f}%")
    print(f"ratio vigil/bare: memory per stream "
          f"x{vigil['kb_per_stream'] / ref['kb_per_stream']:.2f}, idle CPU "
          f"x{vigil['cpu'] / max(ref['cpu'], 1e-3):.2f}; sessions recorded: {sessions}")
    print(f"registrations/s while ramping: vigil {vigil['opened'] / vigil['ramp_s']:.0f}, bare "
          f"{ref['opened'] / ref['ramp_s']:.0f} (x{vigil['ramp_s'] / ref['ramp_s']:.2f} ramp time)")
    print("reference (RUNTIME.md): ~26 KB per stream at 100 streams per connection")
    met = vigil["opened"] >= STREAMS * 0.99 and sessions >= vigil["opened"]
    print(f"goal (issue 3): {STREAMS:,} idle streams held by one gateway process on one core: "
          f"{'met' if met else 'NOT met'}")
    return 0 if met else 1


async def _count_sessions(url: str) -> int:
    import asyncpg
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM delegate_sessions WHERE connected")
    finally:
        await conn.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        addr, n, off, acct, tok = sys.argv[2:7]
        asyncio.run(_client(addr, int(n), int(off), acct, tok))
    elif sys.argv[1:2] == ["--bare"]:
        asyncio.run(_bare_server(int(sys.argv[2])))
    else:
        sys.exit(asyncio.run(_main()))
