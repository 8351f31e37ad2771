"""delegate-gateway use cases: forward assignments and broadcast queries to the delegates
connected here, hand broadcast results to waiting probes, close streams of revoked tokens."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from vigil.delegate.v1 import delegate_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import db, logs
from vigil_common.envelope import Envelope
from vigil_common.kafka import RejectedEvent
from vigil_gateway.adapters.admin import BroadcastWaiters
from vigil_gateway.adapters.connections import Connections
from vigil_gateway.adapters.postgres import REVOKED_CHANNEL, GatewayStore
from vigil_gateway.adapters.tokens import TokenCache

log = logs.get(__name__)


class Handlers:
    def __init__(self, connections: Connections, waiters: BroadcastWaiters | None = None):
        self._connections = connections
        self._waiters = waiters or BroadcastWaiters()

    async def on_assignment(self, env: Envelope) -> None:
        """Every gateway instance sees every assignment; the one holding the delegate sends it.

        The delegate drops an assignment it already has (same task and attempt), so a
        redelivered record, or the re-send after a reconnect, is harmless.
        """
        msg = env.message
        if isinstance(msg, tasks_pb2.TaskAssigned):
            sent = self._connections.send(msg.delegate_id, msg.account_id,
                                          delegate_pb2.GatewayMessage(
                                              assignment=delegate_pb2.TaskAssignment(
                                                  task_id=msg.task_id, attempt=msg.attempt,
                                                  spec=msg.spec,
                                                  timeout_seconds=msg.timeout_seconds,
                                                  execution_id=msg.execution_id,
                                                  traceparent=env.traceparent or "")))
            if sent:
                log.info("task sent to delegate", task_id=msg.task_id, attempt=msg.attempt,
                         delegate_id=msg.delegate_id, session=msg.session)
        elif isinstance(msg, tasks_pb2.BroadcastAssigned):
            query = delegate_pb2.GatewayMessage(broadcast=delegate_pb2.BroadcastQuery(
                broadcast_id=msg.broadcast_id, check=msg.check,
                timeout_seconds=msg.timeout_seconds))
            sent = sum(self._connections.send(d, msg.account_id, query) for d in msg.delegate_ids)
            if sent:
                log.info("broadcast sent to delegates", broadcast_id=msg.broadcast_id, count=sent)
        elif isinstance(msg, tasks_pb2.BroadcastCompleted):
            self._waiters.completed(msg)
        else:
            raise RejectedEvent(f"the gateway does not handle {env.type}")


async def watch_revocations(pool: asyncpg.Pool, store: GatewayStore, connections: Connections,
                            interval: float, tokens: TokenCache | None = None) -> None:
    """Close live streams whose token was revoked: at once on the revocation's NOTIFY, and
    every ``interval`` seconds regardless (a NOTIFY is lost while the listener reconnects).
    The token cache is emptied first, so no new stream is accepted with a revoked token."""
    wake = asyncio.Event()

    def on_notify(*_: object) -> None:
        wake.set()

    async with db.listen(pool, REVOKED_CHANNEL, on_notify):
        while True:
            wake.clear()
            if tokens is not None:
                tokens.forget()
            live = connections.token_keys()
            if live:
                gone = live - await store.active_tokens(live)
                closed = connections.close_tokens(gone, "register.token: revoked")
                if closed:
                    log.warning("closed streams of revoked tokens", streams=closed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval)


async def keep_alive(store: GatewayStore, interval: float, dead_after: float,
                     retention_days: float = 30.0) -> None:
    """This instance's heartbeat, and the sweep that closes the sessions of instances that
    stopped beating (crashed, partitioned away): their delegates show as gone, and
    task-dispatch re-queues their tasks if they do not reconnect elsewhere. Each round also
    deletes a bounded batch of verification inputs older than ``retention_days`` (0: kept
    forever). A failed round is logged and retried at the next one."""
    while True:
        try:
            closed = await store.heartbeat(dead_after)
            for gateway_id, sessions in closed.items():
                log.warning("closed the sessions of a silent gateway instance",
                            gateway_id=gateway_id, sessions=sessions, silent_for_s=dead_after)
            swept = await store.sweep_verification_data(retention_days)
            if swept:
                log.info("old verification data deleted", rows=swept,
                         retention_days=retention_days)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("gateway heartbeat failed; retrying")
        await asyncio.sleep(interval)
