"""The delegate agent: one outbound stream to a gateway, tasks down, reports up.

Connects to any of its gateway addresses (starting at a random one, moving to the next after
a failure) with jittered exponential backoff, and resends every report still pending on disk
after each (re)connect, including the first one after a restart. An assignment it already has
(same task and attempt) is dropped; for a task still running it answers with TaskStarted
again, so task-dispatch learns the task runs even if the first TaskStarted was lost. A refused
or revoked token, or a wrong version, is a configuration error: the agent exits with the
gateway's message instead of hammering it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict

import grpc

from vigil.delegate.v1 import delegate_pb2, delegate_pb2_grpc
from vigil_common import logs, tracing
from vigil_delegate import probes
from vigil_delegate.config import Settings
from vigil_delegate.pending import PendingReports
from vigil_delegate.runner import Runner, Stop

log = logs.get(__name__)
FATAL = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.FAILED_PRECONDITION,
         grpc.StatusCode.INVALID_ARGUMENT)
_REMEMBERED = 10_000  # finished task attempts remembered to drop re-sent assignments
_CHANNEL_OPTIONS = [("grpc.keepalive_time_ms", 20000), ("grpc.keepalive_timeout_ms", 10000),
                    ("grpc.max_receive_message_length", 32 * 1024 * 1024)]


class RegistrationRefused(Exception):
    """The gateway refused this delegate (token, version); retrying will not help."""


class Agent:
    def __init__(self, settings: Settings, runner: Runner | None = None):
        self.settings = settings
        self.runner = runner or Runner(
            settings.workdir, kubeconfig=settings.kubeconfig,
            metrics_batch_intervals=settings.metrics_batch_intervals)
        self.pending = PendingReports(settings.workdir / "pending")
        self.gateway_id = ""  # of the current session, for logs and tests
        self._slots = asyncio.Semaphore(settings.max_tasks)
        self._running: dict[tuple[str, int], delegate_pb2.TaskAssignment] = {}
        self._stops: dict[tuple[str, int], Stop] = {}
        self._finished: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._outgoing: asyncio.Queue[delegate_pb2.DelegateMessage] | None = None
        self._tasks: set[asyncio.Task] = set()
        self._credentials = (grpc.ssl_channel_credentials(settings.tls_ca.read_bytes())
                             if settings.tls_ca else None)

    async def run_forever(self) -> None:
        """Stay connected until cancelled; raises RegistrationRefused on a fatal refusal."""
        gateways = self.settings.gateways
        index = random.randrange(len(gateways))
        delay = 0.5
        while True:
            address = gateways[index % len(gateways)]
            registered = False
            try:
                registered = await self._session(address)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in FATAL:
                    raise RegistrationRefused(f"{exc.code().name}: {exc.details()}") from exc
                registered = self._outgoing is not None
                log.warning("gateway stream lost", gateway=address, code=exc.code().name,
                            details=exc.details())
            self._outgoing = None
            if registered:
                delay = 0.5  # it worked until now: come back quickly
            index += 1  # the next attempt goes to the next instance
            sleep = delay * random.uniform(0.5, 1.5)
            log.info("reconnecting", gateway=gateways[index % len(gateways)],
                     in_seconds=round(sleep, 2))
            await asyncio.sleep(sleep)
            delay = min(delay * 2, 30.0)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _channel(self, address: str) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
        options = list(_CHANNEL_OPTIONS)
        if self.settings.tls_server_name:
            options.append(("grpc.ssl_target_name_override", self.settings.tls_server_name))
        return grpc.aio.secure_channel(address, self._credentials, options=options)

    async def _session(self, address: str) -> bool:
        """One stream; returns True if it got registered (then ended without an error)."""
        s = self.settings
        async with self._channel(address) as channel:
            call = delegate_pb2_grpc.DelegateServiceStub(channel).Connect(
                metadata=(("vigil-version", s.version),))
            await call.write(delegate_pb2.DelegateMessage(register=delegate_pb2.Register(
                account_id=s.account_id, token=s.token, name=s.name, version=s.version,
                capabilities=list(s.capabilities), selectors=list(s.selectors),
                max_tasks=s.max_tasks)))
            first = await call.read()
            if first is grpc.aio.EOF:
                await call.wait_for_connection()
                await call  # raises the refusal's status
                return False
            reg = first.registered
            self.gateway_id = reg.gateway_id
            log.info("registered", delegate_id=reg.delegate_id, gateway=reg.gateway_id,
                     address=address, session=reg.session)
            outgoing: asyncio.Queue[delegate_pb2.DelegateMessage] = asyncio.Queue()
            for reports in self.pending.all():
                for r in reports:
                    outgoing.put_nowait(r)
            self._outgoing = outgoing
            writer = asyncio.ensure_future(self._write(call, outgoing))
            beat = asyncio.ensure_future(self._heartbeat(outgoing))
            try:
                while True:
                    msg = await call.read()
                    if msg is grpc.aio.EOF:
                        await call  # raises the stream's status if it ended in error
                        return True
                    self._on_message(msg)
            finally:
                for t in (writer, beat):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                        await t

    async def _write(self, call: grpc.aio.StreamStreamCall,
                     outgoing: asyncio.Queue[delegate_pb2.DelegateMessage]) -> None:
        while True:
            await call.write(await outgoing.get())

    async def _heartbeat(self, outgoing: asyncio.Queue) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            outgoing.put_nowait(delegate_pb2.DelegateMessage(
                heartbeat=delegate_pb2.Heartbeat(sent_at_unix_ms=int(time.time() * 1000))))

    def _on_message(self, msg: delegate_pb2.GatewayMessage) -> None:
        kind = msg.WhichOneof("kind")
        if kind == "assignment":
            self._on_assignment(msg.assignment)
        elif kind == "result_ack":
            self.pending.ack(msg.result_ack.task_id, msg.result_ack.attempt)
        elif kind == "broadcast":
            self._spawn(self._answer(msg.broadcast))
        elif kind == "stop_collection":
            s = msg.stop_collection
            stop = self._stops.get((s.task_id, s.attempt))
            if stop is not None and not stop.is_set():
                log.info("collection stopped", task_id=s.task_id, attempt=s.attempt,
                         reason=s.reason)
                stop.stop(s.reason)

    def _on_assignment(self, a: delegate_pb2.TaskAssignment) -> None:
        key = (a.task_id, a.attempt)
        if key in self._running:
            log.info("assignment re-sent for a running task", task_id=a.task_id,
                     attempt=a.attempt)
            self._send(self._started(self._running[key]))
            return
        if key in self._finished or self.pending.has(*key):
            log.info("duplicate assignment ignored", task_id=a.task_id, attempt=a.attempt)
            return
        # The task runs as a child span of the assignment's; every message about it carries it.
        parent = tracing.parse(a.traceparent or None)
        a.traceparent = str(parent.child()) if parent else ""
        self._running[key] = a
        if a.spec.WhichOneof("kind") == "collect_health_data":
            self._stops[key] = Stop()
        self._spawn(self._run(a))

    def _spawn(self, coro) -> None:  # noqa: ANN001 - a coroutine
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, msg: delegate_pb2.DelegateMessage) -> None:
        if self._outgoing is not None:
            self._outgoing.put_nowait(msg)

    @staticmethod
    def _started(a: delegate_pb2.TaskAssignment) -> delegate_pb2.DelegateMessage:
        return delegate_pb2.DelegateMessage(started=delegate_pb2.TaskStarted(
            task_id=a.task_id, attempt=a.attempt, execution_id=a.execution_id,
            traceparent=a.traceparent))

    async def _answer(self, query: delegate_pb2.BroadcastQuery) -> None:
        ans = await probes.answer(query, self.settings.selectors)
        log.info("broadcast answered", broadcast_id=query.broadcast_id, ok=ans.ok,
                 detail=ans.detail)
        self._send(delegate_pb2.DelegateMessage(broadcast_answer=ans))

    async def _run(self, a: delegate_pb2.TaskAssignment) -> None:
        key = (a.task_id, a.attempt)
        try:
            async with self._slots:
                with tracing.use(tracing.parse(a.traceparent or None)):  # trace ids in logs
                    reports = [_stamped(r, a.traceparent) for r in await self._execute(a)]
            try:
                self.pending.put(a.task_id, a.attempt, reports)
            except OSError:  # still send it; only a restart before the ack would lose it
                log.exception("could not keep the result on disk", task_id=a.task_id)
        finally:
            self._running.pop(key, None)
            self._stops.pop(key, None)
            self._finished[key] = None
            while len(self._finished) > _REMEMBERED:
                self._finished.popitem(last=False)
        for r in reports:
            self._send(r)
        result = reports[-1].result
        log.info("task finished", task_id=a.task_id, success=result.success,
                 summary=result.output.summary or None, error=result.error or None)

    async def _execute(self, a: delegate_pb2.TaskAssignment) -> list[delegate_pb2.DelegateMessage]:
        kind = a.spec.WhichOneof("kind")
        log.info("task started", task_id=a.task_id, attempt=a.attempt, kind=kind)
        self._send(self._started(a))
        if kind == "noop":
            return [delegate_pb2.DelegateMessage(result=delegate_pb2.TaskResult(
                task_id=a.task_id, attempt=a.attempt, success=True, execution_id=a.execution_id,
                output={"summary": a.spec.noop.echo or "noop"}))]

        def progress(line: str) -> None:
            log.info("task progress", task_id=a.task_id, line=line)
            self._send(delegate_pb2.DelegateMessage(progress=delegate_pb2.TaskProgress(
                task_id=a.task_id, attempt=a.attempt, line=line, execution_id=a.execution_id,
                traceparent=a.traceparent)))

        def emit(report: delegate_pb2.DelegateMessage) -> None:
            _stamped(report, a.traceparent)
            try:  # kept until the task's result is acknowledged, resent after a reconnect
                self.pending.add(a.task_id, a.attempt, report)
            except OSError:
                log.exception("could not keep a report on disk", task_id=a.task_id)
            self._send(report)

        try:
            return await self.runner.run(a, progress, emit=emit,
                                         stop=self._stops.get((a.task_id, a.attempt)))
        except Exception as exc:  # a bug in an executor must not kill the agent
            log.exception("task crashed", task_id=a.task_id)
            return [delegate_pb2.DelegateMessage(result=delegate_pb2.TaskResult(
                task_id=a.task_id, attempt=a.attempt, success=False,
                execution_id=a.execution_id, error=f"delegate error: {exc!r}"))]


def _stamped(msg: delegate_pb2.DelegateMessage, traceparent: str) -> delegate_pb2.DelegateMessage:
    """``msg`` with the task's span in its ``traceparent`` (results and health data)."""
    inner = getattr(msg, msg.WhichOneof("kind") or "", None)
    if traceparent and inner is not None and "traceparent" in inner.DESCRIPTOR.fields_by_name:
        inner.traceparent = traceparent
    return msg
