"""The public gRPC API (vigil.api.v1.PipelineService): validate, call a handler, convert."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import grpc

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil_common import grpc_server, logs
from vigil_orchestrator import translate
from vigil_orchestrator.adapters.postgres import PostgresStore
from vigil_orchestrator.domain import PipelineInvalid
from vigil_orchestrator.handlers import Handlers, UnknownPipeline

log = logs.get(__name__)
SERVICE = api_pb2.DESCRIPTOR.services_by_name["PipelineService"].full_name


async def _require(context: grpc.aio.ServicerContext, **fields: str) -> None:
    missing = [name for name, value in fields.items() if not value]
    if missing:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            "; ".join(f"{m}: is required" for m in missing))


class PipelineService(api_pb2_grpc.PipelineServiceServicer):
    def __init__(self, handlers: Handlers, store: PostgresStore):
        self._handlers = handlers
        self._store = store

    async def ApplyPipeline(self, request: api_pb2.ApplyPipelineRequest,
                            context: grpc.aio.ServicerContext) -> api_pb2.ApplyPipelineResponse:
        await _require(context, account_id=request.account_id, yaml=request.yaml)
        try:
            name, revision = await self._handlers.apply_pipeline(request.account_id, request.yaml)
        except PipelineInvalid as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return api_pb2.ApplyPipelineResponse(name=name, revision=revision)

    async def StartExecution(self, request: api_pb2.StartExecutionRequest,
                             context: grpc.aio.ServicerContext
                             ) -> api_pb2.StartExecutionResponse:
        await _require(context, account_id=request.account_id, pipeline=request.pipeline)
        try:
            execution_id = await self._handlers.start_execution(
                request.account_id, request.pipeline, dict(request.inputs),
                request.idempotency_key)
        except UnknownPipeline:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"pipeline: no pipeline {request.pipeline!r} in this account")
        except PipelineInvalid as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return api_pb2.StartExecutionResponse(execution_id=execution_id)

    async def GetExecution(self, request: api_pb2.GetExecutionRequest,
                           context: grpc.aio.ServicerContext) -> api_pb2.Execution:
        await _require(context, account_id=request.account_id,
                       execution_id=request.execution_id)
        try:
            uuid.UUID(request.execution_id)
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "execution_id: must be a UUID")
        ex = await self._store.get(request.account_id, request.execution_id)
        if ex is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"execution_id: no execution {request.execution_id}")
        return translate.execution_view(ex)


@contextlib.asynccontextmanager
async def serve(port: int, handlers: Handlers, store: PostgresStore,
                host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Run the API server while the context is open; yields the bound port."""
    server = grpc.aio.server()
    api_pb2_grpc.add_PipelineServiceServicer_to_server(PipelineService(handlers, store), server)
    health = grpc_server.add_health_and_reflection(server, [SERVICE])
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await grpc_server.mark_serving(health, [SERVICE])
    log.info("api listening", address=f"{host}:{bound}")
    try:
        yield bound
    finally:
        await server.stop(grace=2)
