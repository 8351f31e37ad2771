"""RollbackExecution: a finished execution that deployed gets a new execution undoing its
succeeded local-process deployments, newest first; a running one is refused."""

from __future__ import annotations

import grpc
from orchestrator_api import dispatched, refused, result_for, status_name, task_result

from vigil.api.v1 import api_pb2

COMMAND = '[python3, -m, web, --port, "{port}"]'
ROLLOUT = f"""
name: rollout
application: shop
service: web
environment: prod
stages:
  - name: primary
    workflow:
      phases:
        - name: first
          steps:
            - {{name: deploy-primary, type: deploy, service: web, version: v2,
                nodes: [node-1, node-2], command: {COMMAND}}}
  - name: canary
    workflow:
      phases:
        - name: one
          steps:
            - {{name: deploy-canary, type: deploy, service: web, version: v2, nodes: [node-3],
                command: {COMMAND}}}
            - {{name: check, type: shell, script: "true"}}
        - name: two
          steps:
            - {{name: deploy-extra, type: deploy, service: web, version: v2, nodes: [node-4],
                command: {COMMAND}}}
"""
FIRST_DEPLOY = "stages[0].workflow.phases[0].steps[0]"


async def run_to_success(pool, handlers, execution_id: str) -> None:
    """Report success for every task dispatched until none is left."""
    done: set[str] = set()
    while pending := [t for t in await dispatched(pool, execution_id)
                      if t.task_id not in done]:
        for task in pending:
            await handlers.on_event(result_for(task))
            done.add(task.task_id)


async def test_rolling_back_a_finished_deployment_undoes_its_deploys_newest_first(
        api, pool, handlers, key_for, account):
    alice = await key_for(account, "alice")
    ex = api.executions
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=ROLLOUT), metadata=alice)
    original = (await ex.StartExecution(api_pb2.StartExecutionRequest(pipeline="rollout"),
                                        metadata=alice)).execution_id
    await run_to_success(pool, handlers, original)
    finished = await ex.GetExecution(api_pb2.GetExecutionRequest(execution_id=original),
                                     metadata=alice)
    assert status_name(finished.status) == "SUCCEEDED"

    rollback = (await ex.RollbackExecution(api_pb2.ExecutionActionRequest(
        execution_id=original, reason="v2 leaks memory"), metadata=alice)).execution_id

    assert rollback != original
    [first] = await dispatched(pool, rollback)
    assert first.spec.WhichOneof("kind") == "rollback_local_process"
    assert (first.spec.rollback_local_process.service,
            list(first.spec.rollback_local_process.nodes)) == ("web", ["node-4"])
    await run_to_success(pool, handlers, rollback)
    undone = [list(t.spec.rollback_local_process.nodes)
              for t in await dispatched(pool, rollback)]
    assert undone == [["node-4"], ["node-3"], ["node-1", "node-2"]]
    view = await ex.GetExecution(api_pb2.GetExecutionRequest(execution_id=rollback),
                                 metadata=alice)
    assert (status_name(view.status), view.pipeline, dict(view.inputs)) == (
        "SUCCEEDED", "rollout", {"rollback_of": original})
    assert [s.ref.step for s in view.steps] == [
        "rollback-deploy-extra", "rollback-deploy-canary", "rollback-deploy-primary"]
    audit = (await ex.ListAuditEvents(api_pb2.ListAuditEventsRequest(
        execution_id=original), metadata=alice)).events
    assert [(e.actor, e.action, e.reason) for e in audit] == [
        ("alice", "rollback", "v2 leaks memory")]
    unchanged = await ex.GetExecution(api_pb2.GetExecutionRequest(execution_id=original),
                                      metadata=alice)
    assert unchanged == finished


async def test_rolling_back_a_running_execution_or_one_that_deployed_nothing_is_refused(
        api, pool, handlers, auth, account):
    ex = api.executions
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=ROLLOUT), metadata=auth)
    running = (await ex.StartExecution(api_pb2.StartExecutionRequest(pipeline="rollout"),
                                       metadata=auth)).execution_id

    error = await refused(ex.RollbackExecution(api_pb2.ExecutionActionRequest(
        execution_id=running, reason="undo"), metadata=auth), grpc.StatusCode.FAILED_PRECONDITION)
    assert "still running" in error.details()

    await handlers.on_event(task_result(running, account, FIRST_DEPLOY, ok=False))
    failed = await ex.GetExecution(api_pb2.GetExecutionRequest(execution_id=running),
                                   metadata=auth)
    assert status_name(failed.status) == "FAILED"
    error = await refused(ex.RollbackExecution(api_pb2.ExecutionActionRequest(
        execution_id=running, reason="undo"), metadata=auth), grpc.StatusCode.FAILED_PRECONDITION)
    assert "deployed nothing" in error.details()
    assert await pool.fetchval("SELECT count(*) FROM executions WHERE account_id = $1",
                               account) == 1
    assert list((await ex.ListAuditEvents(api_pb2.ListAuditEventsRequest(), metadata=auth))
                .events) == []
