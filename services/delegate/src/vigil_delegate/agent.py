"""The delegate agent: one outbound stream to a gateway, tasks down, reports up.

Reconnects with jittered exponential backoff after any failure, and resends every report
still pending on disk. A refused token or version is a configuration error: the agent exits
with the gateway's message instead of hammering it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import grpc

from vigil.delegate.v1 import delegate_pb2, delegate_pb2_grpc
from vigil_common import logs
from vigil_delegate.config import Settings
from vigil_delegate.pending import PendingReports
from vigil_delegate.runner import Runner

log = logs.get(__name__)
FATAL = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.FAILED_PRECONDITION,
         grpc.StatusCode.INVALID_ARGUMENT)


class RegistrationRefused(Exception):
    """The gateway refused this delegate (token, version); retrying will not help."""


class Agent:
    def __init__(self, settings: Settings, runner: Runner | None = None):
        self.settings = settings
        self.runner = runner or Runner(settings.workdir)
        self.pending = PendingReports(settings.workdir / "pending")
        self._slots = asyncio.Semaphore(settings.max_tasks)
        self._started: set[tuple[str, int]] = set()
        self._outgoing: asyncio.Queue[delegate_pb2.DelegateMessage] | None = None
        self._tasks: set[asyncio.Task] = set()

    async def run_forever(self) -> None:
        """Stay connected until cancelled; raises RegistrationRefused on a fatal refusal."""
        delay = 0.5
        while True:
            try:
                await self._session()
                delay = 0.5
            except grpc.aio.AioRpcError as exc:
                if exc.code() in FATAL:
                    raise RegistrationRefused(f"{exc.code().name}: {exc.details()}") from exc
                log.warning("gateway stream lost", code=exc.code().name, details=exc.details())
            self._outgoing = None
            sleep = delay * random.uniform(0.5, 1.5)
            log.info("reconnecting", in_seconds=round(sleep, 2))
            await asyncio.sleep(sleep)
            delay = min(delay * 2, 30.0)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _session(self) -> None:
        s = self.settings
        async with grpc.aio.insecure_channel(s.gateway) as channel:
            call = delegate_pb2_grpc.DelegateServiceStub(channel).Connect(
                metadata=(("vigil-version", s.version),))
            await call.write(delegate_pb2.DelegateMessage(register=delegate_pb2.Register(
                account_id=s.account_id, token=s.token, name=s.name, version=s.version,
                capabilities=list(s.capabilities))))
            first = await call.read()
            if first is grpc.aio.EOF:
                await call.wait_for_connection()
                return
            reg = first.registered
            log.info("registered", delegate_id=reg.delegate_id, gateway=reg.gateway_id,
                     session=reg.session)
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
                        return
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
            a = msg.assignment
            key = (a.task_id, a.attempt)
            if key in self._started or self.pending.has(*key):
                log.info("duplicate assignment ignored", task_id=a.task_id, attempt=a.attempt)
                return
            self._started.add(key)
            task = asyncio.ensure_future(self._run(a))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "result_ack":
            self.pending.ack(msg.result_ack.task_id, msg.result_ack.attempt)

    def _send(self, msg: delegate_pb2.DelegateMessage) -> None:
        if self._outgoing is not None:
            self._outgoing.put_nowait(msg)

    async def _run(self, a: delegate_pb2.TaskAssignment) -> None:
        async with self._slots:
            kind = a.spec.WhichOneof("kind")
            log.info("task started", task_id=a.task_id, attempt=a.attempt, kind=kind)

            def progress(line: str) -> None:
                log.info("task progress", task_id=a.task_id, line=line)
                self._send(delegate_pb2.DelegateMessage(progress=delegate_pb2.TaskProgress(
                    task_id=a.task_id, attempt=a.attempt, line=line)))

            try:
                reports = await self.runner.run(a, progress)
            except Exception as exc:  # a bug in an executor must not kill the agent
                log.exception("task crashed", task_id=a.task_id)
                reports = [delegate_pb2.DelegateMessage(result=delegate_pb2.TaskResult(
                    task_id=a.task_id, attempt=a.attempt, success=False,
                    execution_id=a.execution_id, error=f"delegate error: {exc!r}"))]
            self.pending.put(a.task_id, a.attempt, reports)
            for r in reports:
                self._send(r)
            result = reports[-1].result
            log.info("task finished", task_id=a.task_id, success=result.success,
                     summary=result.output.summary or None, error=result.error or None)
