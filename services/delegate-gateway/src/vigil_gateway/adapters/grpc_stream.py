"""The delegate stream (vigil.delegate.v1.DelegateService/Connect).

A delegate connects out, sends ``register`` first (account, token, name, capabilities) with its
Vigil version in the ``vigil-version`` metadata header. The gateway refuses a wrong token
(UNAUTHENTICATED) and a delegate of another Vigil version (FAILED_PRECONDITION: it belongs to
that version's gateway), then keeps the stream: assignments go down, progress, results and
health data come up. Every report is stored once and acknowledged after it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Gauge

from vigil.delegate.v1 import delegate_pb2, delegate_pb2_grpc
from vigil.events.v1 import tasks_pb2
from vigil_common import grpc_server, logs, topics
from vigil_gateway.adapters.postgres import GatewayStore, delegate_id_for

log = logs.get(__name__)
SERVICE = delegate_pb2.DESCRIPTOR.services_by_name["DelegateService"].full_name
VERSION_HEADER = "vigil-version"
CONNECTED = Gauge("vigil_gateway_connected_delegates", "Delegate streams held by this gateway")


def _now() -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC))
    return ts


class Connections:
    """The delegates connected to this gateway instance and their outgoing queues."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[delegate_pb2.GatewayMessage]] = {}
        self._accounts: dict[str, str] = {}

    def add(self, delegate_id: str, account_id: str) -> asyncio.Queue:
        queue: asyncio.Queue[delegate_pb2.GatewayMessage] = asyncio.Queue()
        self._queues[delegate_id] = queue
        self._accounts[delegate_id] = account_id
        CONNECTED.set(len(self._queues))
        return queue

    def remove(self, delegate_id: str, queue: asyncio.Queue) -> None:
        if self._queues.get(delegate_id) is queue:
            del self._queues[delegate_id]
            del self._accounts[delegate_id]
        CONNECTED.set(len(self._queues))

    def send(self, delegate_id: str, account_id: str, msg: delegate_pb2.GatewayMessage) -> bool:
        """Queue a message for a delegate connected here (and of that account)."""
        queue = self._queues.get(delegate_id)
        if queue is None or self._accounts.get(delegate_id) != account_id:
            return False
        queue.put_nowait(msg)
        return True


class DelegateService(delegate_pb2_grpc.DelegateServiceServicer):
    def __init__(self, store: GatewayStore, connections: Connections, version: str,
                 gateway_id: str):
        self._store = store
        self._connections = connections
        self._version = version
        self._gateway_id = gateway_id

    async def Connect(self, request_iterator: AsyncIterator[delegate_pb2.DelegateMessage],
                      context: grpc.aio.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata() or ())
        first = await context.read()
        if first is grpc.aio.EOF or first.WhichOneof("kind") != "register":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first message of a stream must be register")
        reg = first.register
        version = metadata.get(VERSION_HEADER, "")
        if version != self._version:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"{VERSION_HEADER}: {version or '(missing)'} is not served here; "
                                f"this gateway serves {self._version}")
        if not reg.account_id or not reg.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "register.account_id and register.name are required")
        if not await self._store.token_valid(reg.account_id, reg.token):
            log.warning("delegate refused: bad token", account_id=reg.account_id, name=reg.name)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "register.token: not a valid token of this account")
        delegate_id = delegate_id_for(reg.account_id, reg.name)
        queue = self._connections.add(delegate_id, reg.account_id)
        session = await self._store.open_session(tasks_pb2.DelegateConnected(
            delegate_id=delegate_id, account_id=reg.account_id, name=reg.name, version=version,
            capabilities=list(reg.capabilities), gateway_id=self._gateway_id,
            connected_at=_now()))
        log.info("delegate connected", delegate_id=delegate_id, name=reg.name,
                 account_id=reg.account_id, session=session)
        await context.write(delegate_pb2.GatewayMessage(registered=delegate_pb2.Registered(
            delegate_id=delegate_id, gateway_id=self._gateway_id, session=session)))
        writer = asyncio.ensure_future(self._write(context, queue))
        try:
            await self._read(context, reg.account_id, delegate_id, queue)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._connections.remove(delegate_id, queue)
            await asyncio.shield(self._store.close_session(tasks_pb2.DelegateDisconnected(
                delegate_id=delegate_id, account_id=reg.account_id, gateway_id=self._gateway_id,
                disconnected_at=_now(), session=session)))
            log.info("delegate disconnected", delegate_id=delegate_id, session=session)

    async def _write(self, context: grpc.aio.ServicerContext, queue: asyncio.Queue) -> None:
        while True:
            await context.write(await queue.get())

    async def _read(self, context: grpc.aio.ServicerContext, account_id: str, delegate_id: str,
                    queue: asyncio.Queue) -> None:
        while True:
            msg = await context.read()
            if msg is grpc.aio.EOF:
                return
            kind = msg.WhichOneof("kind")
            if kind == "heartbeat":
                queue.put_nowait(delegate_pb2.GatewayMessage(heartbeat=msg.heartbeat))
            elif kind == "progress":
                log.info("task progress", task_id=msg.progress.task_id, line=msg.progress.line)
            elif kind == "result":
                await self._on_result(account_id, delegate_id, msg.result)
                queue.put_nowait(delegate_pb2.GatewayMessage(result_ack=delegate_pb2.ResultAck(
                    task_id=msg.result.task_id, attempt=msg.result.attempt)))
            elif kind == "health_data":
                await self._on_health_data(account_id, msg.health_data)
            else:
                log.warning("ignored delegate message", kind=kind, delegate_id=delegate_id)

    async def _on_result(self, account_id: str, delegate_id: str,
                         r: delegate_pb2.TaskResult) -> None:
        common = dict(task_id=r.task_id, attempt=r.attempt, account_id=account_id,
                      execution_id=r.execution_id, delegate_id=delegate_id, finished_at=_now())
        event = (tasks_pb2.TaskSucceeded(output=r.output, **common) if r.success
                 else tasks_pb2.TaskFailed(error=r.error or "failed on the delegate", **common))
        new = await self._store.report(r.task_id, r.attempt, "result",
                                       topics.task_results(self._version), r.execution_id, event)
        log.info("task result", task_id=r.task_id, attempt=r.attempt, success=r.success,
                 duplicate=not new)

    async def _on_health_data(self, account_id: str, h: delegate_pb2.HealthData) -> None:
        kind = h.WhichOneof("data")
        data = getattr(h, kind) if kind else None
        if data is None or data.ref.account_id != account_id:
            log.warning("health data refused: missing or of another account", task_id=h.task_id)
            return
        topic = (topics.analysis_metrics(self._version) if kind == "metrics"
                 else topics.analysis_logs(self._version))
        await self._store.report(h.task_id, h.attempt, kind, topic, data.ref.verification_id,
                                 data)


@contextlib.asynccontextmanager
async def serve(port: int, service: DelegateService,
                host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Run the delegate stream server while the context is open; yields the bound port."""
    server = grpc.aio.server(options=[
        ("grpc.keepalive_time_ms", 20000), ("grpc.keepalive_timeout_ms", 10000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ])
    delegate_pb2_grpc.add_DelegateServiceServicer_to_server(service, server)
    health = grpc_server.add_health_and_reflection(server, [SERVICE])
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await grpc_server.mark_serving(health, [SERVICE])
    log.info("delegate gateway listening", address=f"{host}:{bound}")
    try:
        yield bound
    finally:
        await server.stop(grace=2)
