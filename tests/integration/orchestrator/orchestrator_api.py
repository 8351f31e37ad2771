"""Helpers for the orchestrator API tests: pipeline definitions, task results, outbox reads,
and the rich error details of a refused call."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from vigil.api.v1 import api_pb2
from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import execution_pb2, tasks_pb2
from vigil_common import envelope
from vigil_orchestrator.domain import task_id_for

DISPATCH = "vigil.events.v1.DispatchTask"


def step_path(stage: int, phase: int, step: int) -> str:
    return f"stages[{stage}].workflow.phases[{phase}].steps[{step}]"


# An approval only alice may give, a deploy whose failure waits for a person, a shell step.
RELEASE = """
name: release
application: shop
service: web
environment: prod
inputs:
  version: v1
stages:
  - name: ship
    workflow:
      phases:
        - name: main
          steps:
            - name: approve-release
              type: approval
              message: ship it?
              approvers: [alice]
            - name: deploy-web
              type: deploy
              service: web
              version: ${inputs.version}
              nodes: [node-1, node-2]
              command: [python3, -m, web, --port, "{port}"]
              failure_strategy:
                action: manual
            - name: smoke-test
              type: shell
              script: "true"
"""
APPROVE, DEPLOY, SMOKE = step_path(0, 0, 0), step_path(0, 0, 1), step_path(0, 0, 2)

# Two stages of one shell step each; a failure aborts, so the failing stage is the FAILED one.
TWO_STAGES = """
name: {name}
application: shop
service: {service}
environment: {environment}
stages:
  - name: build
    workflow:
      failure_strategy: abort
      phases:
        - name: main
          steps:
            - {{name: compile, type: shell, script: make}}
  - name: deploy
    workflow:
      failure_strategy: abort
      phases:
        - name: main
          steps:
            - {{name: ship, type: shell, script: ./ship}}
"""
BUILD, SHIP = step_path(0, 0, 0), step_path(1, 0, 0)


def two_stages(name: str, service: str = "web", environment: str = "prod") -> str:
    return TWO_STAGES.format(name=name, service=service, environment=environment)


def status_name(value: int) -> str:
    return execution_pb2.ExecutionStatus.Name(value).removeprefix("EXECUTION_STATUS_")


def step_statuses(view: api_pb2.Execution) -> dict[str, str]:
    """Step name -> status, e.g. {"approve-release": "WAITING", ...}."""
    return {s.ref.step: execution_pb2.StepStatus.Name(s.status).removeprefix("STEP_STATUS_")
            for s in view.steps}


def task_result(execution_id: str, account: str, path: str, attempt: int = 1, *,
                ok: bool = True, error: str = "exit status 1",
                event_id: str | None = None) -> envelope.Envelope:
    """The TaskSucceeded/TaskFailed the gateway would publish for a step attempt, decoded from
    its wire form exactly as the orchestrator's consumer receives it."""
    task_id = task_id_for(execution_id, path, attempt)
    common = {"task_id": task_id, "attempt": attempt, "account_id": account,
              "execution_id": execution_id, "delegate_id": "delegate-1"}
    msg = (tasks_pb2.TaskSucceeded(**common, output=spec_pb2.TaskOutput(summary="done"))
           if ok else tasks_pb2.TaskFailed(**common, error=error))
    headers, value = envelope.encode(msg, source="delegate-gateway",
                                     event_id=event_id or str(uuid.uuid4()))
    return envelope.decode(headers, value)


async def outbox(pool, execution_id: str) -> list[tuple[str, envelope.Envelope]]:
    """(topic, envelope) of every outbox row keyed by the execution, oldest first."""
    rows = await pool.fetch(
        "SELECT topic, header_names, header_values, value FROM outbox WHERE key = $1 "
        "ORDER BY id", execution_id.encode())
    return [(r["topic"], envelope.decode(
        [(n, v.encode()) for n, v in zip(r["header_names"], r["header_values"], strict=True)],
        r["value"])) for r in rows]


async def dispatched(pool, execution_id: str) -> list[tasks_pb2.DispatchTask]:
    """The DispatchTask commands queued for the execution, oldest first."""
    return [env.message for _, env in await outbox(pool, execution_id) if env.type == DISPATCH]


async def refused(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Await a call that must fail with ``code``; returns the error."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, (info.value.code(), info.value.details())
    return info.value


def violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """(field, description) of the google.rpc.BadRequest in a refused call's status."""
    status = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status in the trailers: {error.details()}"
    out = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.extend((v.field, v.description) for v in bad.field_violations)
    return out


def result_for(task: tasks_pb2.DispatchTask, ok: bool = True) -> envelope.Envelope:
    """The result a delegate would report for a dispatched task."""
    common = {"task_id": task.task_id, "attempt": task.attempt, "account_id": task.account_id,
              "execution_id": task.execution_id, "delegate_id": "delegate-1"}
    msg = (tasks_pb2.TaskSucceeded(**common, output=spec_pb2.TaskOutput(summary="done"))
           if ok else tasks_pb2.TaskFailed(**common, error="exit status 1"))
    headers, value = envelope.encode(msg, source="delegate-gateway", event_id=str(uuid.uuid4()))
    return envelope.decode(headers, value)
