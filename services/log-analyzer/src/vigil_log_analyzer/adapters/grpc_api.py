"""The feedback API (vigil.api.v1.LogFeedbackService): validate, store, convert back.

Every call needs ``authorization: Bearer <api key>`` (vigil_common.apikeys); the key decides
the account, and an ``account_id`` naming another account is refused (PERMISSION_DENIED).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.api.v1 import feedback_pb2, feedback_pb2_grpc
from vigil_common import grpc_server, logs
from vigil_common.apikeys import Caller
from vigil_log_analyzer.adapters import postgres
from vigil_log_analyzer.adapters.postgres import ServiceKey, StoredFeedback
from vigil_log_analyzer.domain import Feedback, Risk

log = logs.get(__name__)
SERVICE = feedback_pb2.DESCRIPTOR.services_by_name["LogFeedbackService"].full_name
_RISKS = {
    feedback_pb2.LOG_RISK_HIGH: Risk.HIGH,
    feedback_pb2.LOG_RISK_MEDIUM: Risk.MEDIUM,
    feedback_pb2.LOG_RISK_NO_RISK: Risk.NO_RISK,
    feedback_pb2.LOG_RISK_IGNORE: Risk.IGNORE,
}
_PROTO_RISKS = {risk: value for value, risk in _RISKS.items()}
_MAX_REASON = 2000


async def _require(context: grpc.aio.ServicerContext, **fields: str) -> None:
    missing = [name for name, value in fields.items() if not value.strip()]
    if missing:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            "; ".join(f"{m}: is required" for m in missing))


def _to_proto(key: ServiceKey, stored: StoredFeedback) -> feedback_pb2.LogFeedback:
    at = Timestamp()
    at.FromDatetime(stored.updated_at)
    f = stored.feedback
    return feedback_pb2.LogFeedback(
        account_id=key.account_id, service=key.service, cluster_id=f.cluster_id,
        risk=_PROTO_RISKS[f.risk], reason=f.reason, template=f.template, updated_at=at)


class LogFeedbackService(feedback_pb2_grpc.LogFeedbackServiceServicer):
    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool
        self._caller = Caller.of(pool)

    async def SetLogFeedback(self, request: feedback_pb2.SetLogFeedbackRequest,
                             context: grpc.aio.ServicerContext
                             ) -> feedback_pb2.SetLogFeedbackResponse:
        f = request.feedback
        f.account_id, _ = await self._caller(context, f.account_id, "feedback.account_id")
        await _require(context, **{"feedback.service": f.service,
                                   "feedback.cluster_id": f.cluster_id})
        if f.risk not in _RISKS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "feedback.risk: must be LOG_RISK_HIGH, LOG_RISK_MEDIUM, "
                                "LOG_RISK_NO_RISK or LOG_RISK_IGNORE")
        if len(f.reason) > _MAX_REASON:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"feedback.reason: at most {_MAX_REASON} characters")
        key = ServiceKey(f.account_id, f.service)
        stored = await postgres.set_feedback(
            self._pool, key, Feedback(f.cluster_id, _RISKS[f.risk], f.reason))
        log.info("log feedback set", account_id=key.account_id, service=key.service,
                 cluster_id=f.cluster_id, risk=stored.feedback.risk.value)
        return feedback_pb2.SetLogFeedbackResponse(feedback=_to_proto(key, stored))

    async def ListLogFeedback(self, request: feedback_pb2.ListLogFeedbackRequest,
                              context: grpc.aio.ServicerContext
                              ) -> feedback_pb2.ListLogFeedbackResponse:
        account, _ = await self._caller(context, request.account_id)
        await _require(context, service=request.service)
        key = ServiceKey(account, request.service)
        stored = await postgres.load_feedback(self._pool, key)
        return feedback_pb2.ListLogFeedbackResponse(
            feedback=[_to_proto(key, s) for s in stored])

    async def DeleteLogFeedback(self, request: feedback_pb2.DeleteLogFeedbackRequest,
                                context: grpc.aio.ServicerContext
                                ) -> feedback_pb2.DeleteLogFeedbackResponse:
        account, _ = await self._caller(context, request.account_id)
        await _require(context, service=request.service, cluster_id=request.cluster_id)
        deleted = await postgres.delete_feedback(
            self._pool, ServiceKey(account, request.service), request.cluster_id)
        return feedback_pb2.DeleteLogFeedbackResponse(deleted=deleted)


@contextlib.asynccontextmanager
async def serve(port: int, pool: asyncpg.Pool, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Run the feedback API while the context is open; yields the bound port."""
    server = grpc.aio.server()
    feedback_pb2_grpc.add_LogFeedbackServiceServicer_to_server(LogFeedbackService(pool), server)
    health = grpc_server.add_health_and_reflection(server, [SERVICE])
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await grpc_server.mark_serving(health, [SERVICE])
    log.info("feedback api listening", address=f"{host}:{bound}")
    try:
        yield bound
    finally:
        await server.stop(grace=2)
