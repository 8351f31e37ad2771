"""The delegate stream (vigil.delegate.v1.DelegateService/Connect).

A delegate connects out, sends ``register`` first (account, token, name, capabilities,
selectors, task limit) with its Vigil version in the ``vigil-version`` metadata header. The
gateway refuses a wrong or revoked token (UNAUTHENTICATED) and a delegate of another Vigil
version (FAILED_PRECONDITION: it belongs to that version's gateway), then keeps the stream:
assignments and broadcast queries go down; TaskStarted, progress, results, health data and
broadcast answers come up. Results and health data are stored once and acknowledged after
they are durable. A stream whose token is revoked later is closed with UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.delegate.v1 import delegate_pb2, delegate_pb2_grpc
from vigil.events.v1 import tasks_pb2
from vigil_common import grpc_server, logs, topics, tracing
from vigil_gateway.adapters.connections import Connections, Link
from vigil_gateway.adapters.kafka import DirectPublisher
from vigil_gateway.adapters.postgres import GatewayStore, delegate_id_for, hash_token
from vigil_gateway.adapters.progress import ProgressBatcher
from vigil_gateway.adapters.tokens import TokenCache

__all__ = ["Connections", "DelegateService", "serve"]  # Connections: moved, re-exported

log = logs.get(__name__)
SERVICE = delegate_pb2.DESCRIPTOR.services_by_name["DelegateService"].full_name
ADMIN_SERVICE = delegate_pb2.DESCRIPTOR.services_by_name["DelegateAdmin"].full_name
VERSION_HEADER = "vigil-version"


def _trace_of(msg: delegate_pb2.DelegateMessage, kind: str | None) -> tracing.TraceContext | None:
    """The task span a delegate message carries, if any (malformed values are ignored)."""
    inner = getattr(msg, kind) if kind else None
    return tracing.parse(getattr(inner, "traceparent", "") or None)


def _now() -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC))
    return ts


class DelegateService(delegate_pb2_grpc.DelegateServiceServicer):
    """The Connect stream.

    Without ``publisher``, TaskStarted goes through the outbox instead of straight to Kafka;
    without ``progress``, progress lines are only logged (tests of the stream alone); without
    ``tokens``, every registration asks the database.
    """

    def __init__(self, store: GatewayStore, connections: Connections, version: str,
                 gateway_id: str, publisher: DirectPublisher | None = None,
                 progress: ProgressBatcher | None = None, tokens: TokenCache | None = None):
        self._store = store
        self._token_valid = tokens.valid if tokens is not None else store.token_valid
        self._connections = connections
        self._version = version
        self._gateway_id = gateway_id
        self._publisher = publisher
        self._progress = progress

    async def Connect(self, request_iterator: AsyncIterator[delegate_pb2.DelegateMessage],
                      context: grpc.aio.ServicerContext) -> None:
        reg, version = await self._registration(context)
        delegate_id = delegate_id_for(reg.account_id, reg.name)
        link = self._connections.add(Link(delegate_id, reg.account_id, hash_token(reg.token),
                                          frozenset(reg.capabilities)))
        try:
            session = await self._store.open_session(tasks_pb2.DelegateConnected(
                delegate_id=delegate_id, account_id=reg.account_id, name=reg.name,
                version=version, capabilities=list(reg.capabilities),
                gateway_id=self._gateway_id, connected_at=_now(),
                selectors=list(reg.selectors), max_tasks=reg.max_tasks))
        except BaseException:
            self._connections.remove(link)  # never left registered without a session
            raise
        log.info("delegate connected", delegate_id=delegate_id, name=reg.name,
                 account_id=reg.account_id, session=session)
        await context.write(delegate_pb2.GatewayMessage(registered=delegate_pb2.Registered(
            delegate_id=delegate_id, gateway_id=self._gateway_id, session=session)))
        # Two tasks per stream (plus the call's own): the writer also ends when the link is
        # closed from outside (revoked token, newer stream of the same delegate).
        parts = [asyncio.ensure_future(self._read(context, link)),
                 asyncio.ensure_future(self._write(context, link.queue))]
        try:
            done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
            for part in done:
                part.result()  # a failed read or write ends the stream with its error
        finally:
            for part in parts:
                part.cancel()
            await asyncio.gather(*parts, return_exceptions=True)
            self._connections.remove(link)
            await asyncio.shield(self._close_session(tasks_pb2.DelegateDisconnected(
                delegate_id=delegate_id, account_id=reg.account_id, gateway_id=self._gateway_id,
                disconnected_at=_now(), session=session)))
            log.info("delegate disconnected", delegate_id=delegate_id, session=session,
                     reason=link.close_reason or None)
        if link.closed:
            await context.abort(link.close_code, link.close_reason)

    async def _close_session(self, ev: tasks_pb2.DelegateDisconnected) -> None:
        try:
            await self._store.close_session(ev)
        except Exception:  # e.g. the pool closed at shutdown: dispatch's re-queue timer and
            # the delegate's next session (a higher number) still settle its state
            log.warning("disconnect not recorded", delegate_id=ev.delegate_id,
                        session=ev.session, exc_info=True)

    async def _registration(self, context: grpc.aio.ServicerContext
                            ) -> tuple[delegate_pb2.Register, str]:
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
        if reg.max_tasks < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "register.max_tasks: must be 0 (no limit) or more")
        if not await self._token_valid(reg.account_id, reg.token):
            log.warning("delegate refused: bad token", account_id=reg.account_id, name=reg.name)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "register.token: not a valid token of this account")
        return reg, version

    async def _write(self, context: grpc.aio.ServicerContext, queue: asyncio.Queue) -> None:
        while (msg := await queue.get()) is not None:
            await context.write(msg)

    async def _read(self, context: grpc.aio.ServicerContext, link: Link) -> None:
        while True:
            msg = await context.read()
            if msg is grpc.aio.EOF:
                return
            kind = msg.WhichOneof("kind")
            # The delegate sends the task's span: the events this message causes continue the
            # execution's trace (a message without one starts a new trace, as before).
            with tracing.use(_trace_of(msg, kind)):
                await self._on_message(link, kind, msg)

    async def _on_message(self, link: Link, kind: str | None,
                          msg: delegate_pb2.DelegateMessage) -> None:
        if kind == "heartbeat":
            link.queue.put_nowait(delegate_pb2.GatewayMessage(heartbeat=msg.heartbeat))
        elif kind == "progress":
            if self._progress is not None:
                self._progress.add(link.account_id, link.delegate_id, msg.progress)
            else:
                log.info("task progress", task_id=msg.progress.task_id, line=msg.progress.line)
        elif kind == "started":
            await self._on_started(link, msg.started)
        elif kind == "result":
            await self._on_result(link, msg.result)
            link.queue.put_nowait(delegate_pb2.GatewayMessage(result_ack=delegate_pb2.ResultAck(
                task_id=msg.result.task_id, attempt=msg.result.attempt)))
        elif kind == "health_data":
            await self._on_health_data(link, msg.health_data)
        elif kind == "broadcast_answer":
            await self._on_broadcast_answer(link, msg.broadcast_answer)
        else:
            log.warning("ignored delegate message", kind=kind, delegate_id=link.delegate_id)

    async def _on_started(self, link: Link, s: delegate_pb2.TaskStarted) -> None:
        event = tasks_pb2.TaskStarted(
            task_id=s.task_id, attempt=s.attempt, account_id=link.account_id,
            execution_id=s.execution_id, delegate_id=link.delegate_id, started_at=_now())
        publish = self._publisher.publish if self._publisher else self._store.publish
        await publish(topics.delegate_events(self._version), link.delegate_id, event,
                      event_id=f"started/{s.task_id}/{s.attempt}/{link.delegate_id}")

    async def _on_result(self, link: Link, r: delegate_pb2.TaskResult) -> None:
        common = dict(task_id=r.task_id, attempt=r.attempt, account_id=link.account_id,
                      execution_id=r.execution_id, delegate_id=link.delegate_id,
                      finished_at=_now())
        event = (tasks_pb2.TaskSucceeded(output=r.output, **common) if r.success
                 else tasks_pb2.TaskFailed(error=r.error or "failed on the delegate",
                                           kind=tasks_pb2.TASK_FAILURE_KIND_DELEGATE, **common))
        new = await self._store.report(r.task_id, r.attempt, "result",
                                       topics.task_results(self._version), r.execution_id, event)
        log.info("task result", task_id=r.task_id, attempt=r.attempt, success=r.success,
                 duplicate=not new)

    async def _on_health_data(self, link: Link, h: delegate_pb2.HealthData) -> None:
        """Metrics batches are stored once each (kind ``metrics/<first interval>``; a whole
        window in one batch keeps kind ``metrics``). A partial batch of a verification whose
        metrics verdict already exists (an early FAIL) is not published; the delegate is told
        to stop collecting (it then sends its logs so far and finishes)."""
        kind = h.WhichOneof("data")
        data = getattr(h, kind) if kind else None
        if data is None or data.ref.account_id != link.account_id:
            log.warning("health data refused: missing or of another account", task_id=h.task_id)
            return
        topic = (topics.analysis_metrics(self._version) if kind == "metrics"
                 else topics.analysis_logs(self._version))
        batched = kind == "metrics" and (data.partial or data.first_interval > 0)
        new = await self._store.report(
            h.task_id, h.attempt, f"metrics/{data.first_interval}" if batched else kind, topic,
            data.ref.verification_id, data,
            unless_decided=data.ref.verification_id if batched else "")
        if new is None:
            log.info("metrics batch after the verdict: collection stopped", task_id=h.task_id,
                     verification_id=data.ref.verification_id)
            link.queue.put_nowait(delegate_pb2.GatewayMessage(
                stop_collection=delegate_pb2.StopCollection(
                    task_id=h.task_id, attempt=h.attempt,
                    reason=f"verification {data.ref.verification_id} already has its metrics "
                           "verdict")))

    async def _on_broadcast_answer(self, link: Link, a: delegate_pb2.BroadcastAnswer) -> None:
        await self._store.publish(
            topics.delegate_events(self._version), link.delegate_id, tasks_pb2.BroadcastAnswered(
                broadcast_id=a.broadcast_id, account_id=link.account_id,
                delegate_id=link.delegate_id, ok=a.ok, detail=a.detail[:2000]),
            event_id=f"broadcast-answer/{a.broadcast_id}/{link.delegate_id}")


@contextlib.asynccontextmanager
async def serve(port: int, service: DelegateService,
                admin: delegate_pb2_grpc.DelegateAdminServicer | None = None,
                host: str = "127.0.0.1",
                tls: tuple[bytes, bytes] | None = None) -> AsyncIterator[int]:
    """Run the delegate stream server (and the admin service) while the context is open;
    yields the bound port. ``tls`` is (private key PEM, certificate chain PEM)."""
    server = grpc.aio.server(options=[
        ("grpc.keepalive_time_ms", 20000), ("grpc.keepalive_timeout_ms", 10000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.max_receive_message_length", 32 * 1024 * 1024),
        # Thousands of idle streams per connection are the normal case (RUNTIME.md).
        ("grpc.max_concurrent_streams", 1000),
    ])
    delegate_pb2_grpc.add_DelegateServiceServicer_to_server(service, server)
    names = [SERVICE]
    if admin is not None:
        delegate_pb2_grpc.add_DelegateAdminServicer_to_server(admin, server)
        names.append(ADMIN_SERVICE)
    health = grpc_server.add_health_and_reflection(server, names)
    address = f"{host}:{port}"
    bound = (server.add_secure_port(address, grpc.ssl_server_credentials([tls])) if tls
             else server.add_insecure_port(address))
    await server.start()
    await grpc_server.mark_serving(health, names)
    log.info("delegate gateway listening", address=f"{host}:{bound}", tls=tls is not None)
    try:
        yield bound
    finally:
        await server.stop(grace=2)
