"""task-dispatch use cases: route each event to the queue/registry."""

from __future__ import annotations

from vigil.events.v1 import tasks_pb2
from vigil_common import logs
from vigil_common.envelope import Envelope
from vigil_common.kafka import RejectedEvent
from vigil_dispatch.adapters.postgres import PostgresDispatch

log = logs.get(__name__)


class Handlers:
    def __init__(self, store: PostgresDispatch):
        self._store = store

    async def on_event(self, env: Envelope) -> None:
        msg = env.message
        if isinstance(msg, tasks_pb2.DispatchTask):
            if not (msg.task_id and msg.account_id and msg.capability and msg.attempt > 0):
                raise RejectedEvent("DispatchTask needs task_id, attempt, account_id, capability")
            delegate = await self._store.enqueue(env.id, msg)
            log.info("task queued", task_id=msg.task_id, attempt=msg.attempt,
                     capability=msg.capability, assigned_to=delegate)
        elif isinstance(msg, tasks_pb2.DelegateConnected):
            assigned = await self._store.delegate_connected(env.id, msg)
            log.info("delegate connected", delegate_id=msg.delegate_id, account_id=msg.account_id,
                     capabilities=list(msg.capabilities), queued_tasks_assigned=assigned)
        elif isinstance(msg, tasks_pb2.DelegateDisconnected):
            await self._store.delegate_disconnected(env.id, msg)
            log.info("delegate disconnected", delegate_id=msg.delegate_id)
        elif isinstance(msg, tasks_pb2.TaskSucceeded | tasks_pb2.TaskFailed):
            await self._store.task_finished(env.id, msg.task_id, msg.attempt,
                                            isinstance(msg, tasks_pb2.TaskSucceeded))
        else:
            raise RejectedEvent(f"task-dispatch does not handle {env.type}")
