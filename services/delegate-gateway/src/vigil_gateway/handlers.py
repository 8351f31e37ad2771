"""delegate-gateway use cases: forward assignments to the delegates connected here."""

from __future__ import annotations

from vigil.delegate.v1 import delegate_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import logs
from vigil_common.envelope import Envelope
from vigil_common.kafka import RejectedEvent
from vigil_gateway.adapters.grpc_stream import Connections

log = logs.get(__name__)


class Handlers:
    def __init__(self, connections: Connections):
        self._connections = connections

    async def on_assignment(self, env: Envelope) -> None:
        """Every gateway instance sees every assignment; the one holding the delegate sends it.

        The delegate drops an assignment it already has (same task and attempt), so a
        redelivered record is harmless.
        """
        msg = env.message
        if not isinstance(msg, tasks_pb2.TaskAssigned):
            raise RejectedEvent(f"the gateway does not handle {env.type}")
        sent = self._connections.send(msg.delegate_id, msg.account_id, delegate_pb2.GatewayMessage(
            assignment=delegate_pb2.TaskAssignment(
                task_id=msg.task_id, attempt=msg.attempt, spec=msg.spec,
                timeout_seconds=msg.timeout_seconds, execution_id=msg.execution_id)))
        if sent:
            log.info("task sent to delegate", task_id=msg.task_id, attempt=msg.attempt,
                     delegate_id=msg.delegate_id)
