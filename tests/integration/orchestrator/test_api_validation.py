"""Bad requests are refused with INVALID_ARGUMENT and google.rpc.BadRequest field violations
naming each bad field; unknown things are NOT_FOUND; StartExecution is idempotent."""

from __future__ import annotations

import asyncio
import base64
import uuid

import grpc
from orchestrator_api import RELEASE, dispatched, refused, status_name, violations

from vigil.api.v1 import api_pb2

INVALID = grpc.StatusCode.INVALID_ARGUMENT

MALFORMED = """
name: broken
stages:
  - name: build
    workflow:
      phases:
        - name: main
          steps:
            - {name: compile, type: deploi}
  - name: test
    depends_on: [nope]
    workflow:
      failure_strategy: {action: explode}
      phases:
        - name: main
          steps:
            - {name: unit, type: shell, script: make test}
  - name: left
    depends_on: [right]
    workflow:
      phases:
        - name: main
          steps:
            - {name: left-step, type: shell, script: "true"}
  - name: right
    depends_on: [left]
    workflow:
      phases:
        - name: main
          steps:
            - {name: right-step, type: shell, script: "true"}
"""


async def test_a_malformed_pipeline_is_refused_with_a_violation_naming_each_bad_path(
        api, pool, auth, account):
    error = await refused(api.pipelines.ApplyPipeline(
        api_pb2.ApplyPipelineRequest(yaml=MALFORMED), metadata=auth), INVALID)

    found = violations(error)
    fields = [f for f, _ in found]
    assert "stages[0].workflow.phases[0].steps[0].type" in fields
    assert "stages[1].workflow.failure_strategy.action" in fields
    described = {(f, d) for f, d in found}
    assert any(f == "stages[1].depends_on" and "unknown stage 'nope'" in d
               for f, d in described), found
    assert any(f in ("stages[2].depends_on", "stages[3].depends_on") and "cycle" in d
               for f, d in described), found
    assert "stages[0].workflow.phases[0].steps[0].type: must be one of" in error.details()
    assert await pool.fetchval("SELECT count(*) FROM pipelines WHERE account_id = $1",
                               account) == 0


async def test_a_pipeline_that_is_not_yaml_is_refused_saying_where(api, auth):
    error = await refused(api.pipelines.ApplyPipeline(
        api_pb2.ApplyPipelineRequest(yaml="name: x\nstages: [\n"), metadata=auth), INVALID)
    [(field, description)] = violations(error)
    assert field == "" and "not valid YAML: line" in description


async def test_an_action_without_a_reason_is_refused_naming_reason(api, auth):
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=RELEASE), metadata=auth)
    execution_id = (await api.executions.StartExecution(
        api_pb2.StartExecutionRequest(pipeline="release"), metadata=auth)).execution_id

    for reason in ("", "   "):
        error = await refused(api.executions.AbortExecution(api_pb2.ExecutionActionRequest(
            execution_id=execution_id, reason=reason), metadata=auth), INVALID)
        assert [f for f, _ in violations(error)] == ["reason"]
    error = await refused(api.executions.ApproveStep(api_pb2.ApproveStepRequest(
        execution_id=execution_id, approved=True), metadata=auth), INVALID)
    assert [f for f, _ in violations(error)] == ["reason"]

    view = await api.executions.GetExecution(
        api_pb2.GetExecutionRequest(execution_id=execution_id), metadata=auth)
    assert status_name(view.status) == "RUNNING"


async def test_an_execution_id_that_is_not_a_uuid_is_refused_naming_execution_id(api, auth):
    for call in (
        api.executions.GetExecution(api_pb2.GetExecutionRequest(execution_id="42"),
                                    metadata=auth),
        api.executions.AbortExecution(api_pb2.ExecutionActionRequest(
            execution_id="not-a-uuid", reason="r"), metadata=auth),
        api.executions.RollbackExecution(api_pb2.ExecutionActionRequest(
            execution_id="", reason="r"), metadata=auth),
        api.executions.WatchExecution(api_pb2.GetExecutionRequest(execution_id="x"),
                                      metadata=auth).read(),
    ):
        error = await refused(call, INVALID)
        assert [f for f, _ in violations(error)] == ["execution_id"]


async def test_unknown_pipelines_and_executions_are_not_found(api, auth):
    error = await refused(api.executions.StartExecution(
        api_pb2.StartExecutionRequest(pipeline="no-such-pipeline"), metadata=auth),
        grpc.StatusCode.NOT_FOUND)
    assert "no-such-pipeline" in error.details()
    await refused(api.pipelines.GetPipeline(api_pb2.GetPipelineRequest(name="no-such"),
                                            metadata=auth), grpc.StatusCode.NOT_FOUND)
    missing = str(uuid.uuid4())
    await refused(api.executions.GetExecution(api_pb2.GetExecutionRequest(
        execution_id=missing), metadata=auth), grpc.StatusCode.NOT_FOUND)
    await refused(api.executions.AbortExecution(api_pb2.ExecutionActionRequest(
        execution_id=missing, reason="r"), metadata=auth), grpc.StatusCode.NOT_FOUND)


async def test_the_same_idempotency_key_starts_one_execution_even_when_retried_at_once(
        api, pool, auth, account):
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=RELEASE), metadata=auth)
    request = api_pb2.StartExecutionRequest(pipeline="release", idempotency_key="deploy-7",
                                            inputs={"version": "v7"})

    first = (await api.executions.StartExecution(request, metadata=auth)).execution_id
    again = await asyncio.gather(*(api.executions.StartExecution(request, metadata=auth)
                                   for _ in range(4)))
    other_key = (await api.executions.StartExecution(api_pb2.StartExecutionRequest(
        pipeline="release", idempotency_key="deploy-8"), metadata=auth)).execution_id

    assert {r.execution_id for r in again} == {first}
    assert other_key != first
    rows = await pool.fetch("SELECT id, idempotency_key FROM executions WHERE account_id = $1 "
                            "ORDER BY idempotency_key", account)
    assert [(str(r["id"]), r["idempotency_key"]) for r in rows] == [
        (first, "deploy-7"), (other_key, "deploy-8")]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE key = $1",
                               first.encode()) == await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE key = $1", other_key.encode())
    assert await dispatched(pool, first) == []  # the approval comes first: nothing dispatched


async def test_an_input_the_pipeline_does_not_declare_is_refused_naming_it(
        api, pool, auth, account):
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=RELEASE), metadata=auth)

    error = await refused(api.executions.StartExecution(api_pb2.StartExecutionRequest(
        pipeline="release", inputs={"version": "v2", "colour": "blue", "zone": "eu"}),
        metadata=auth), INVALID)

    assert [f for f, _ in violations(error)] == ["inputs.colour", "inputs.zone"]
    assert await pool.fetchval("SELECT count(*) FROM executions WHERE account_id = $1",
                               account) == 0


async def test_a_garbage_or_forged_page_token_is_invalid_argument(api, auth):
    forged = base64.urlsafe_b64encode(b"2024-01-01T00:00:00+00:00|not-a-uuid").decode()
    for token in ("garbage", "%%%", forged):
        error = await refused(api.executions.ListExecutions(api_pb2.ListExecutionsRequest(
            page_size=2, page_token=token), metadata=auth), INVALID)
        assert [f for f, _ in violations(error)] == ["page_token"]
    for size in (-1, 501):
        error = await refused(api.executions.ListExecutions(
            api_pb2.ListExecutionsRequest(page_size=size), metadata=auth), INVALID)
        assert [f for f, _ in violations(error)] == ["page_size"]
