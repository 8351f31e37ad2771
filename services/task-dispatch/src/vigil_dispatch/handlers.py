"""task-dispatch use cases: route each event to the queue, the registry or the broadcasts
(the events of one poll in one transaction), and the sweeper that drives the lifecycle's
timeouts."""

from __future__ import annotations

import asyncio

from vigil.events.v1 import tasks_pb2
from vigil_common import inbox, kafka, logs, tracing
from vigil_common.envelope import Envelope
from vigil_common.kafka import RejectedEvent
from vigil_dispatch.adapters.broadcasts import PostgresBroadcasts
from vigil_dispatch.adapters.postgres import PostgresDispatch, Work

log = logs.get(__name__)


class Handlers:
    """``on_batch`` applies the events of one poll in one transaction (the consume loop's
    opt-in batch path); ``on_event`` is the same for one event, used alone and when a batch
    failed (the loop then goes one by one, so a bad event is dead-lettered alone)."""

    def __init__(self, store: PostgresDispatch, broadcasts: PostgresBroadcasts | None = None):
        self._store = store
        self._broadcasts = broadcasts

    async def on_event(self, env: Envelope) -> None:
        await self.on_batch([env])

    async def on_batch(self, envs: list[Envelope]) -> None:
        for env in envs:
            self._check(env)  # before any work: a rejected event fails the batch at once
        async with self._store.work() as work:
            claimed = await inbox.claim_many(work.conn, self._store.consumer,
                                             [env.id for env in envs])
            todo = []
            for env in envs:  # first occurrence of each id, in order
                if env.id in claimed:
                    claimed.discard(env.id)
                    todo.append(env)
            messages = [env.message for env in todo]
            if self._broadcasts:
                await self._broadcasts.lock_for(work.conn, messages)
            await self._store.lock_for(work, messages)
            for env in todo:
                with tracing.use(kafka.event_trace(env)):
                    await self._apply(work, env)

    def _check(self, env: Envelope) -> None:
        msg = env.message
        if isinstance(msg, tasks_pb2.DispatchTask):
            if not (msg.task_id and msg.account_id and msg.capability and msg.attempt > 0):
                raise RejectedEvent("DispatchTask needs task_id, attempt, account_id, capability")
        elif isinstance(msg, tasks_pb2.BroadcastRequested) and self._broadcasts:
            if not (msg.broadcast_id and msg.account_id and msg.capability
                    and msg.check.WhichOneof("kind")):
                raise RejectedEvent("BroadcastRequested needs broadcast_id, account_id, "
                                    "capability and a check")
        elif not (isinstance(msg, _HANDLED)
                  or (isinstance(msg, _BROADCASTS) and self._broadcasts)):
            raise RejectedEvent(f"task-dispatch does not handle {env.type}")

    async def _apply(self, work: Work, env: Envelope) -> None:
        msg = env.message
        store = self._store
        if isinstance(msg, tasks_pb2.DispatchTask):
            delegate = await store.apply_enqueue(work, msg)
            log.info("task queued", task_id=msg.task_id, attempt=msg.attempt,
                     capability=msg.capability, assigned_to=delegate)
        elif isinstance(msg, tasks_pb2.DelegateConnected):
            assigned = await store.apply_delegate_connected(work, msg)
            log.info("delegate connected", delegate_id=msg.delegate_id, account_id=msg.account_id,
                     gateway_id=msg.gateway_id, session=msg.session,
                     capabilities=list(msg.capabilities), queued_tasks_assigned=assigned)
        elif isinstance(msg, tasks_pb2.DelegateDisconnected):
            await store.apply_delegate_disconnected(work, msg)
            log.info("delegate disconnected", delegate_id=msg.delegate_id, session=msg.session)
        elif isinstance(msg, tasks_pb2.TaskStarted):
            await store.apply_task_started(work, msg)
        elif isinstance(msg, tasks_pb2.TaskSucceeded | tasks_pb2.TaskFailed):
            await store.apply_task_finished(work, msg.task_id, msg.attempt,
                                            isinstance(msg, tasks_pb2.TaskSucceeded))
        elif isinstance(msg, tasks_pb2.BroadcastRequested):
            asked = await self._broadcasts.apply_request(work.conn, msg)
            log.info("broadcast sent", broadcast_id=msg.broadcast_id, delegates=asked)
        elif (isinstance(msg, tasks_pb2.BroadcastAnswered)
              and await self._broadcasts.apply_answer(work.conn, msg)):
            log.info("broadcast completed", broadcast_id=msg.broadcast_id)


_HANDLED = (tasks_pb2.DispatchTask, tasks_pb2.DelegateConnected, tasks_pb2.DelegateDisconnected,
            tasks_pb2.TaskStarted, tasks_pb2.TaskSucceeded, tasks_pb2.TaskFailed)
_BROADCASTS = (tasks_pb2.BroadcastRequested, tasks_pb2.BroadcastAnswered)


class Sweeper:
    """Drives the timeouts from PostgreSQL timestamps, so nothing is lost across restarts:
    re-queues tasks of vanished delegates, expires tasks nobody took or that never reported,
    assigns queued tasks fairly, completes broadcasts at their deadline."""

    def __init__(self, store: PostgresDispatch, broadcasts: PostgresBroadcasts):
        self._store = store
        self._broadcasts = broadcasts

    async def sweep(self) -> dict[str, int]:
        """One pass; returns how many items each step changed."""
        return {
            "requeued": await self._store.requeue_vanished(),
            "expired_unassigned": await self._store.expire_unassigned(),
            "expired_no_result": await self._store.expire_overdue(),
            "assigned": await self._store.assign_queued(),
            "broadcasts_completed": await self._broadcasts.complete_due(),
        }

    async def run(self, interval: float) -> None:
        """Sweep every ``interval`` seconds until cancelled; a failed pass is logged and the
        next one retries (e.g. the database was briefly away or a deadlock aborted it)."""
        while True:
            try:
                changed = {k: v for k, v in (await self.sweep()).items() if v}
                if changed:
                    log.info("sweep", **changed)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed; retrying next round")
            await asyncio.sleep(interval)
