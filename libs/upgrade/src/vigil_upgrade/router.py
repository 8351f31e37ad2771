"""The local "primary Service": a gRPC front that forwards users' API calls to the primary.

``python -m vigil_upgrade.router`` (ROUTER_PORT, DATABASE_URL) listens on one address and
forwards every unary and server-streaming call of the public API (vigil.api.v1), bytes in and
bytes out with its metadata, to the orchestrator API of the primary version. It follows the
primary record (migrations/0010.versions.sql) by LISTEN ``vigil_primary`` plus a poll, so a
switch takes effect within milliseconds.

Draining: a call picks its backend when it starts and keeps it, so calls (and watch streams)
started before a switch finish on the old version while new ones go to the new one. Nothing is
retried or moved mid-call, so no call fails because of a switch. On Kubernetes the primary
Service's selector plays this role (adapters/k8s.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from vigil.api.v1 import api_pb2
from vigil_common import db, logs, outbox
from vigil_upgrade.adapters.postgres import CHANNEL, PRODUCER

log = logs.get(__name__)

UNARY_DEADLINE = 60.0  # seconds, for unary calls that come without a deadline

# Not forwarded: set by the transport for the hop to us, not meant for the backend.
_HOP_HEADERS = {"user-agent", "te", "content-type", "grpc-accept-encoding", "grpc-encoding",
                "grpc-timeout", "accept-encoding"}


def api_methods() -> dict[str, bool]:
    """Full method path -> server-streaming, for every method of the public API."""
    methods = {}
    for module in (api_pb2,):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert not method.client_streaming, "client streaming is not forwarded"
                methods[f"/{service.full_name}/{method.name}"] = method.server_streaming
    return methods


@dataclass
class _Backend:
    version: str
    address: str
    channel: grpc.aio.Channel
    in_flight: int = 0
    calls: int = 0


@dataclass
class Routes:
    """The current primary backend and the ones still draining."""

    primary: _Backend | None = None
    draining: list[_Backend] = field(default_factory=list)
    switched_at: float = 0.0

    def point_to(self, version: str, address: str) -> bool:
        """Send new calls to ``address``; returns True if that changed anything."""
        if self.primary and (self.primary.version, self.primary.address) == (version, address):
            return False
        reuse = next((b for b in self.draining if (b.version, b.address) == (version, address)),
                     None)
        if reuse:
            self.draining.remove(reuse)
        if self.primary is not None:
            self.draining.append(self.primary)
        self.primary = reuse or _Backend(version, address, grpc.aio.insecure_channel(address))
        self.switched_at = time.monotonic()
        return True

    async def close_idle(self) -> None:
        """Close draining backends with no call in flight."""
        for backend in [b for b in self.draining if b.in_flight == 0]:
            self.draining.remove(backend)
            await backend.channel.close()

    async def close(self) -> None:
        for backend in [*self.draining, *([self.primary] if self.primary else [])]:
            await backend.channel.close()


class Forwarder(grpc.GenericRpcHandler):
    """Forwards every public API method to ``routes.primary`` as raw bytes."""

    def __init__(self, routes: Routes):
        self._routes = routes
        self._methods = api_methods()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        streaming = self._methods.get(details.method)
        if streaming is None:
            return None
        method = details.method
        # grpc.aio tells coroutine and async-generator handlers apart by their function type,
        # so each handler is a real `async def` (a lambda would not be awaited).
        if streaming:
            async def stream(request: bytes,
                             context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
                async for reply in self._stream(method, request, context):
                    yield reply
            return grpc.unary_stream_rpc_method_handler(stream)

        async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self._unary(method, request, context)
        return grpc.unary_unary_rpc_method_handler(unary)

    def _pick(self) -> _Backend:
        backend = self._routes.primary
        if backend is None:
            raise _NoPrimary
        backend.in_flight += 1
        backend.calls += 1
        return backend

    async def _unary(self, method: str, request: bytes,
                     context: grpc.aio.ServicerContext) -> bytes:
        try:
            backend = self._pick()
        except _NoPrimary:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no primary version recorded")
        try:
            # wait_for_ready: a channel to a just-switched-to backend may still be connecting.
            # A client without a deadline gets UNARY_DEADLINE rather than a call that hangs
            # while the primary's orchestrator is down.
            timeout = context.time_remaining()
            call = backend.channel.unary_unary(method)(
                request, metadata=_metadata(context), wait_for_ready=True,
                timeout=UNARY_DEADLINE if timeout is None else timeout)
            try:
                reply = await call
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "",
                                    _trailers(exc))
            context.set_trailing_metadata(await call.trailing_metadata() or ())
            return reply
        finally:
            backend.in_flight -= 1

    async def _stream(self, method: str, request: bytes,
                      context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        try:
            backend = self._pick()
        except _NoPrimary:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no primary version recorded")
        call = backend.channel.unary_stream(method)(
            request, metadata=_metadata(context), timeout=context.time_remaining(),
            wait_for_ready=True)
        try:
            try:
                async for reply in call:
                    yield reply
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "",
                                    _trailers(exc))
        finally:
            call.cancel()
            backend.in_flight -= 1


class _NoPrimary(Exception):
    pass


def _trailers(exc: grpc.aio.AioRpcError) -> tuple[tuple[str, str | bytes], ...]:
    """The backend's trailers, rich error details (grpc-status-details-bin) included."""
    return tuple((k, v) for k, v in exc.trailing_metadata() or ()
                 if k not in ("grpc-status", "grpc-message"))


def _metadata(context: grpc.aio.ServicerContext) -> tuple[tuple[str, str | bytes], ...]:
    return tuple((k, v) for k, v in context.invocation_metadata() or ()
                 if not k.startswith(":") and k not in _HOP_HEADERS)


async def follow_primary(pool: asyncpg.Pool, routes: Routes, poll: float = 1.0,
                         on_switch: asyncio.Event | None = None) -> None:
    """Keep ``routes.primary`` on the primary version's API address, until cancelled.

    Woken by NOTIFY ``vigil_primary``; polls every ``poll`` seconds too, so a lost
    notification (reconnect) costs at most that long. Sets ``on_switch`` after each change of
    backend.
    """
    wake = asyncio.Event()

    def on_notify(*_: object) -> None:
        wake.set()

    async with db.listen(pool, CHANNEL, on_notify):
        while True:
            wake.clear()
            if await refresh(pool, routes) and on_switch is not None:
                on_switch.set()
            await routes.close_idle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll)


async def refresh(pool: asyncpg.Pool, routes: Routes) -> bool:
    """Point ``routes`` at the primary's API address now; True if that changed it."""
    row = await pool.fetchrow("SELECT p.version, v.api_address FROM vigil_primary p "
                              "LEFT JOIN vigil_versions v ON v.version = p.version")
    if row and row["api_address"] and routes.point_to(row["version"], row["api_address"]):
        log.info("primary version", version=row["version"], api=row["api_address"])
        return True
    return False


@contextlib.asynccontextmanager
async def serve(port: int, pool: asyncpg.Pool, bootstrap: str = "",
                host: str = "127.0.0.1") -> AsyncIterator[tuple[int, Routes]]:
    """Run the router on ``host:port`` (0: a free port) until the block ends; yields the
    bound port and the routes. With ``bootstrap``, also relays the ``upgrade`` outbox."""
    routes = Routes()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([Forwarder(routes)])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await refresh(pool, routes)  # route from the first call on, when a primary is recorded
    tasks = [asyncio.create_task(follow_primary(pool, routes), name="router-follow")]
    producer_cm = None
    if bootstrap:
        from vigil_common import kafka
        from vigil_common.config import KafkaSettings
        producer_cm = kafka.producer(KafkaSettings.from_env({"KAFKA_BOOTSTRAP": bootstrap}))
        producer = await producer_cm.__aenter__()
        tasks.append(asyncio.create_task(outbox.relay(pool, producer, PRODUCER),
                                         name="router-relay"))
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        yield bound, routes
    finally:
        await health_servicer.enter_graceful_shutdown()
        await server.stop(grace=5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if producer_cm is not None:
            await producer_cm.__aexit__(None, None, None)
        await routes.close()


async def main() -> None:
    from vigil_common import db
    from vigil_common.service import serve_until_sigterm

    logs.configure(service="router", level=os.environ.get("LOG_LEVEL", "INFO"),
                   version="any")
    port = int(os.environ.get("ROUTER_PORT", "50050"))
    async with db.pool(os.environ.get("DATABASE_URL",
                                      "postgresql://postgres@127.0.0.1:5432/vigil")) as pool, \
            serve(port, pool, os.environ.get("KAFKA_BOOTSTRAP", ""),
                  os.environ.get("ROUTER_HOST", "127.0.0.1")) as (bound, _routes):
        log.info("router serving", port=bound)
        await serve_until_sigterm(asyncio.Event().wait())


if __name__ == "__main__":
    asyncio.run(main())
