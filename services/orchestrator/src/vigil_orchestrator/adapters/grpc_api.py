"""The public gRPC API (vigil.api.v1): authenticate, validate, call a handler, convert back.

Every call needs ``authorization: Bearer <api key>``; the key decides the account and names
the actor in the audit log. Errors: INVALID_ARGUMENT with google.rpc.BadRequest field
violations, NOT_FOUND / FAILED_PRECONDITION / PERMISSION_DENIED / UNAUTHENTICATED with a
message naming what is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC as _UTC

import asyncpg
import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil_common import db, grpc_server, logs, tracing
from vigil_common.apikeys import Caller
from vigil_orchestrator import export, translate
from vigil_orchestrator.adapters.postgres import WATCH_CHANNEL, ExecutionFilter, PostgresStore
from vigil_orchestrator.domain import (
    Abort,
    Action,
    Approve,
    ExecutionStatus,
    IllegalAction,
    Intervene,
    Pause,
    PipelineInvalid,
    Resume,
)
from vigil_orchestrator.handlers import Handlers, NotFound

log = logs.get(__name__)
SERVICES = [api_pb2.DESCRIPTOR.services_by_name[n].full_name
            for n in ("PipelineService", "ExecutionService")]
_INTERVENTIONS = {
    api_pb2.INTERVENTION_ACTION_RETRY: Action.RETRY,
    api_pb2.INTERVENTION_ACTION_ABORT: Action.ABORT,
    api_pb2.INTERVENTION_ACTION_ROLLBACK: Action.ROLLBACK,
    api_pb2.INTERVENTION_ACTION_IGNORE: Action.IGNORE,
}


async def invalid(context: grpc.aio.ServicerContext, problems: list[tuple[str, str]]) -> None:
    """Abort with INVALID_ARGUMENT carrying a BadRequest with one violation per field."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
        for f, d in problems]))
    status = rpc_status.to_status(status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, details=[detail],
        message="; ".join(f"{f}: {d}" if f else d for f, d in problems)))
    await context.abort(status.code, status.details, status.trailing_metadata)


async def _check_uuid(context: grpc.aio.ServicerContext, value: str, field: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        await invalid(context, [(field, "must be a UUID")])


async def _reason(context: grpc.aio.ServicerContext, reason: str) -> None:
    if not reason.strip():
        await invalid(context, [("reason", "is required: say why, it goes to the audit log")])


class PipelineService(api_pb2_grpc.PipelineServiceServicer):
    def __init__(self, handlers: Handlers, store: PostgresStore):
        self._handlers, self._store, self._caller = handlers, store, Caller(store.authenticate)

    async def ApplyPipeline(self, request, context):  # noqa: ANN001, ANN201, N802
        account, _ = await self._caller(context, request.account_id)
        if not request.yaml:
            await invalid(context, [("yaml", "is required")])
        try:
            name, revision = await self._handlers.apply_pipeline(account, request.yaml)
        except PipelineInvalid as exc:
            await invalid(context, exc.problems)
        return api_pb2.ApplyPipelineResponse(name=name, revision=revision)

    async def GetPipeline(self, request, context):  # noqa: ANN001, ANN201, N802
        account, _ = await self._caller(context, request.account_id)
        row = await self._store.get_pipeline(account, request.name)
        if row is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"name: no pipeline {request.name!r}")
        return _pipeline(row)

    async def ListPipelines(self, request, context):  # noqa: ANN001, ANN201, N802
        account, _ = await self._caller(context, request.account_id)
        return api_pb2.ListPipelinesResponse(
            pipelines=[_pipeline(r) for r in await self._store.list_pipelines(account)])


def _pipeline(row: asyncpg.Record) -> api_pb2.Pipeline:
    return api_pb2.Pipeline(name=row["name"], revision=row["revision"], yaml=row["yaml"],
                            application=row["application"], service=row["service"],
                            environment=row["environment"],
                            updated_at=translate.timestamp(row["updated_at"]))


class ExecutionService(api_pb2_grpc.ExecutionServiceServicer):
    def __init__(self, handlers: Handlers, store: PostgresStore, watchers: Watchers,
                 pool: asyncpg.Pool):
        self._handlers, self._store, self._caller = handlers, store, Caller(store.authenticate)
        self._watchers = watchers
        self._pool = pool  # for ExportVerification's reads of verification_data

    async def StartExecution(self, request, context):  # noqa: ANN001, ANN201, N802
        account, _ = await self._caller(context, request.account_id)
        if not request.pipeline:
            await invalid(context, [("pipeline", "is required")])
        # The execution's events join the caller's W3C trace when it sent one (issue 7).
        caller_trace = tracing.parse(
            dict(context.invocation_metadata() or ()).get(tracing.HEADER))
        try:
            with tracing.use(caller_trace or tracing.new_trace()):
                execution_id = await self._handlers.start_execution(
                    account, request.pipeline, dict(request.inputs), request.idempotency_key,
                    dict(request.artifact))
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except PipelineInvalid as exc:
            await invalid(context, exc.problems)
        return api_pb2.StartExecutionResponse(execution_id=execution_id)

    async def GetExecution(self, request, context):  # noqa: ANN001, ANN201, N802
        account, _ = await self._caller(context, request.account_id)
        await _check_uuid(context, request.execution_id, "execution_id")
        try:
            ex = await self._handlers.get_execution(account, request.execution_id)
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return translate.execution_view(ex)

    async def ListExecutions(self, request, context):  # noqa: ANN001, ANN201, N802
        account, _ = await self._caller(context, request.account_id)
        size = request.page_size or 50
        if not 1 <= size <= 500:
            await invalid(context, [("page_size", "must be from 1 to 500")])
        status = ""
        if request.status:
            status = translate.execution_status_name(request.status)
        f = ExecutionFilter(request.application, request.service, request.environment,
                            request.pipeline, status,
                            request.created_after.ToDatetime(tzinfo=_UTC)
                            if request.HasField("created_after") else None,
                            request.created_before.ToDatetime(tzinfo=_UTC)
                            if request.HasField("created_before") else None)
        try:
            executions, token = await self._handlers.list_executions(
                account, f, size, request.page_token)
        except ValueError as exc:
            await invalid(context, [("page_token", str(exc).partition(": ")[2])])
        return api_pb2.ListExecutionsResponse(
            executions=[translate.execution_view(e, with_steps=False) for e in executions],
            next_page_token=token)

    async def WatchExecution(self, request, context):  # noqa: ANN001, ANN201, N802
        account, _ = await self._caller(context, request.account_id)
        await _check_uuid(context, request.execution_id, "execution_id")
        async with self._watchers.watch(request.execution_id) as changed:
            last = None
            while True:
                ex = await self._store.get(account, request.execution_id)
                if ex is None:
                    await context.abort(grpc.StatusCode.NOT_FOUND,
                                        f"execution_id: no execution {request.execution_id}")
                view = translate.execution_view(ex)
                if view != last:
                    yield view
                    last = view
                if ex.status is not ExecutionStatus.RUNNING:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 30.0)
                changed.clear()

    async def _act(self, request, context, make):  # noqa: ANN001, ANN202
        account, actor = await self._caller(context, request.account_id)
        await _check_uuid(context, request.execution_id, "execution_id")
        await _reason(context, request.reason)
        try:
            ex = await self._handlers.act(account, request.execution_id, actor, make(actor))
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except IllegalAction as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return translate.execution_view(ex)

    async def AbortExecution(self, request, context):  # noqa: ANN001, ANN201, N802
        return await self._act(request, context, lambda who: Abort(who, request.reason))

    async def PauseExecution(self, request, context):  # noqa: ANN001, ANN201, N802
        return await self._act(request, context, lambda who: Pause(who, request.reason))

    async def ResumeExecution(self, request, context):  # noqa: ANN001, ANN201, N802
        return await self._act(request, context, lambda who: Resume(who, request.reason))

    async def ApproveStep(self, request, context):  # noqa: ANN001, ANN201, N802
        return await self._act(request, context, lambda who: Approve(
            request.step, request.approved, who, request.reason))

    async def ChooseIntervention(self, request, context):  # noqa: ANN001, ANN201, N802
        action = _INTERVENTIONS.get(request.action)
        if action is None:
            await invalid(context, [("action", "must be RETRY, ABORT, ROLLBACK or IGNORE")])
        return await self._act(request, context, lambda who: Intervene(
            request.step, action, who, request.reason))

    async def RollbackExecution(self, request, context):  # noqa: ANN001, ANN201, N802
        account, actor = await self._caller(context, request.account_id)
        await _check_uuid(context, request.execution_id, "execution_id")
        await _reason(context, request.reason)
        try:
            new_id = await self._handlers.rollback_execution(
                account, request.execution_id, actor, request.reason)
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except IllegalAction as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return api_pb2.StartExecutionResponse(execution_id=new_id)

    async def ListAuditEvents(self, request, context):  # noqa: ANN001, ANN201, N802
        account, _ = await self._caller(context, request.account_id)
        size = request.page_size or 100
        if not 1 <= size <= 500:
            await invalid(context, [("page_size", "must be from 1 to 500")])
        before = None
        if request.page_token:
            try:
                before = int(request.page_token)
            except ValueError:
                await invalid(context, [("page_token", "not a token from a previous response")])
        rows = await self._store.audit_events(account, request.execution_id, size, before)
        token = str(rows[size - 1]["id"]) if len(rows) > size else ""
        return api_pb2.ListAuditEventsResponse(next_page_token=token, events=[
            api_pb2.AuditEvent(actor=r["actor"], action=r["action"],
                               execution_id=r["execution_id"], step=r["step"],
                               reason=r["reason"], at=translate.timestamp(r["at"]))
            for r in rows[:size]])

    async def GetDeploymentStats(self, request, context):  # noqa: ANN001, ANN201, N802
        account, _ = await self._caller(context, request.account_id)
        stats = await self._handlers.stats(
            account, request.__getattribute__("from").ToDatetime(tzinfo=_UTC)
            if request.HasField("from") else None,
            request.to.ToDatetime(tzinfo=_UTC) if request.HasField("to") else None)
        return api_pb2.DeploymentStats(
            total=stats.total, succeeded=stats.succeeded, success_rate=stats.success_rate,
            days=[api_pb2.DeploymentDay(
                day=d.day, environment=d.environment, service=d.service, succeeded=d.succeeded,
                failed=d.failed, aborted=d.aborted,
                mean_duration_seconds=d.mean_duration_seconds) for d in stats.days],
            failures_by_stage=[api_pb2.StageFailures(stage=s, failures=n)
                               for s, n in stats.failures_by_stage])

    async def ExportVerification(self, request, context):  # noqa: ANN001, ANN201, N802
        account, _ = await self._caller(context, request.account_id)
        await _check_uuid(context, request.execution_id, "execution_id")
        if request.verification_id:
            await _check_uuid(context, request.verification_id, "verification_id")
        try:
            out = await export.export_verification(
                self._store, self._pool, account, request.execution_id, request.step.strip(),
                request.verification_id)
        except NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except export.InvalidRequest as exc:
            await invalid(context, exc.problems)
        return api_pb2.ExportVerificationResponse(
            verification_id=out.verification_id, step=out.step, attempt=out.attempt,
            document_json=out.document_json, present=out.present, missing=out.missing)


class Watchers:
    """Wakes the watch streams of changed executions; ``notify`` is the process's one LISTEN
    callback on the executions channel (see ``serve``)."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = {}

    def notify(self, _conn: object, _pid: int, _channel: str, execution_id: str) -> None:
        for event in self._events.get(execution_id, ()):
            event.set()

    @contextlib.asynccontextmanager
    async def watch(self, execution_id: str) -> AsyncIterator[asyncio.Event]:
        event = asyncio.Event()
        self._events.setdefault(execution_id, set()).add(event)
        try:
            yield event
        finally:
            self._events[execution_id].discard(event)
            if not self._events[execution_id]:
                del self._events[execution_id]


@contextlib.asynccontextmanager
async def serve(port: int, handlers: Handlers, store: PostgresStore, pool: asyncpg.Pool,
                host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Run the API server while the context is open; yields the bound port."""
    server = grpc.aio.server()
    watchers = Watchers()
    api_pb2_grpc.add_PipelineServiceServicer_to_server(PipelineService(handlers, store), server)
    api_pb2_grpc.add_ExecutionServiceServicer_to_server(
        ExecutionService(handlers, store, watchers, pool), server)
    health = grpc_server.add_health_and_reflection(server, SERVICES)
    bound = server.add_insecure_port(f"{host}:{port}")
    async with db.listen(pool, WATCH_CHANNEL, watchers.notify):
        await server.start()
        await grpc_server.mark_serving(health, SERVICES)
        log.info("api listening", address=f"{host}:{bound}")
        try:
            yield bound
        finally:
            await server.stop(grace=2)
