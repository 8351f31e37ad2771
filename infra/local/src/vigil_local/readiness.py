"""Waiting for started processes to be ready: gRPC health, with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def wait_serving(address: str, name: str, check_alive: Callable[[], None],
                       log_path: Path, timeout: float = 60.0, poll: float = 0.1) -> None:
    """Return once ``address`` answers the standard health check with SERVING.

    ``check_alive`` raises when the process died meanwhile (no point waiting); a timeout
    raises TimeoutError naming the process and its log file.
    """
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            check_alive()
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not serving on {address} after {timeout:g}s; "
                                   f"see {log_path}")
            await asyncio.sleep(poll)
