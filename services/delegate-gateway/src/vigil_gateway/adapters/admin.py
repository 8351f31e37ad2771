"""vigil.delegate.v1.DelegateAdmin: who is connected where, and broadcast probes.

A probe becomes a BroadcastRequested command (through the outbox) for task-dispatch, which
asks every matching connected delegate (through whichever gateway holds it) and publishes
one BroadcastCompleted; every gateway reads those, and the one that took the call answers it.

Every call needs ``authorization: Bearer <api key>`` (vigil_common.apikeys): the key decides
the account, so nobody lists or probes another account's delegates (PERMISSION_DENIED when
``account_id`` names another account; empty means the key's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime

import grpc

from vigil.delegate.v1 import delegate_pb2, delegate_pb2_grpc
from vigil.events.v1 import tasks_pb2
from vigil_common import logs, topics
from vigil_common.apikeys import Caller
from vigil_gateway.adapters.postgres import GatewayStore

log = logs.get(__name__)
DEFAULT_PROBE_SECONDS = 10.0
_MARGIN_SECONDS = 10.0  # for dispatch's sweeper to complete a broadcast at its deadline


def _rfc3339(t: datetime | None) -> str:
    return t.isoformat().replace("+00:00", "Z") if t else ""


class BroadcastWaiters:
    """Probe calls waiting for their BroadcastCompleted."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[tasks_pb2.BroadcastCompleted]] = {}

    @contextlib.contextmanager
    def waiting(self, broadcast_id: str):  # noqa: ANN201 - yields a future
        fut: asyncio.Future[tasks_pb2.BroadcastCompleted] = (
            asyncio.get_running_loop().create_future())
        self._waiting[broadcast_id] = fut
        try:
            yield fut
        finally:
            self._waiting.pop(broadcast_id, None)

    def completed(self, done: tasks_pb2.BroadcastCompleted) -> bool:
        """Hand a result to its waiting call; False when no call here waits for it."""
        fut = self._waiting.get(done.broadcast_id)
        if fut is None or fut.done():
            return False
        fut.set_result(done)
        return True


class DelegateAdmin(delegate_pb2_grpc.DelegateAdminServicer):
    def __init__(self, store: GatewayStore, waiters: BroadcastWaiters, version: str,
                 caller: Caller):
        self._store = store
        self._caller = caller
        self._waiters = waiters
        self._version = version

    async def ListDelegates(self, request: delegate_pb2.ListDelegatesRequest,
                            context: grpc.aio.ServicerContext
                            ) -> delegate_pb2.ListDelegatesResponse:
        account, _ = await self._caller(context, request.account_id)
        rows = await self._store.list_delegates(account, request.connected_only)
        return delegate_pb2.ListDelegatesResponse(delegates=[delegate_pb2.DelegateInfo(
            delegate_id=r["delegate_id"], name=r["name"], gateway_id=r["gateway_id"],
            connected=r["connected"], version=r["version"], capabilities=r["capabilities"],
            selectors=r["selectors"], session=r["session"],
            since=_rfc3339(r["connected_at"] if r["connected"] else r["disconnected_at"]))
            for r in rows])

    async def Probe(self, request: delegate_pb2.ProbeRequest,
                    context: grpc.aio.ServicerContext) -> tasks_pb2.BroadcastCompleted:
        account, _ = await self._caller(context, request.account_id)
        if not request.capability:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "capability: required")
        if not request.check.WhichOneof("kind"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "check: set tcp_connect or has_selector")
        if request.timeout_seconds < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "timeout_seconds: must be 0 (default) or more")
        timeout = request.timeout_seconds or DEFAULT_PROBE_SECONDS
        broadcast_id = str(uuid.uuid4())
        req = tasks_pb2.BroadcastRequested(
            broadcast_id=broadcast_id, account_id=account,
            capability=request.capability, selectors=list(request.selectors),
            check=request.check, timeout_seconds=timeout)
        req.requested_at.GetCurrentTime()
        with self._waiters.waiting(broadcast_id) as result:
            await self._store.publish(topics.dispatch_commands(self._version), broadcast_id, req,
                                      event_id=f"broadcast/{broadcast_id}")
            log.info("probe requested", broadcast_id=broadcast_id,
                     account_id=account, capability=request.capability)
            try:
                return await asyncio.wait_for(result, timeout + _MARGIN_SECONDS)
            except TimeoutError:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                    f"broadcast {broadcast_id}: no aggregated result within "
                                    f"{timeout + _MARGIN_SECONDS:g}s; is task-dispatch running?")
                raise
