"""People's actions through the API on a pipeline with an approval only alice may give and a
deploy whose failure waits for a person: who may act, what each action does, the audit log,
and WatchExecution following it all."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from orchestrator_api import (
    APPROVE,
    DEPLOY,
    RELEASE,
    SMOKE,
    dispatched,
    outbox,
    refused,
    status_name,
    step_statuses,
    task_result,
    violations,
)

from vigil.api.v1 import api_pb2
from vigil_orchestrator.domain import task_id_for

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture
async def alice(key_for, account):
    return await key_for(account, "alice")


@pytest.fixture
async def release(api, alice) -> str:
    """A running execution of RELEASE, waiting for approval."""
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=RELEASE), metadata=alice)
    return (await api.executions.StartExecution(api_pb2.StartExecutionRequest(
        pipeline="release", inputs={"version": "v9"}), metadata=alice)).execution_id


def action(execution_id: str, reason: str) -> api_pb2.ExecutionActionRequest:
    return api_pb2.ExecutionActionRequest(execution_id=execution_id, reason=reason)


def approve(execution_id: str, reason: str, step: str = "approve-release",
            approved: bool = True) -> api_pb2.ApproveStepRequest:
    return api_pb2.ApproveStepRequest(execution_id=execution_id, step=step, approved=approved,
                                      reason=reason)


async def audit(api, metadata, execution_id: str) -> list[tuple[str, str, str, str]]:
    """(actor, action, step, reason) of the execution's audit events, newest first."""
    events = (await api.executions.ListAuditEvents(api_pb2.ListAuditEventsRequest(
        execution_id=execution_id), metadata=metadata)).events
    assert all(e.execution_id == execution_id and e.HasField("at") for e in events)
    return [(e.actor, e.action, e.step, e.reason) for e in events]


async def test_only_a_named_approver_may_approve_and_the_approval_dispatches_the_deploy(
        api, pool, handlers, key_for, account, alice, release):
    mallory = await key_for(account, "mallory")
    before = await pool.fetchval("SELECT state::text FROM executions WHERE id = $1", release)

    error = await refused(api.executions.ApproveStep(approve(release, "looks fine"),
                                                     metadata=mallory), FAILED_PRECONDITION)

    assert "mallory may not approve approve-release" in error.details()
    assert "alice" in error.details()
    assert await pool.fetchval("SELECT state::text FROM executions WHERE id = $1",
                               release) == before
    assert await dispatched(pool, release) == []
    assert await audit(api, alice, release) == []

    view = await api.executions.ApproveStep(approve(release, "change CHG-1 approved"),
                                            metadata=alice)

    assert step_statuses(view) == {"approve-release": "SUCCEEDED", "deploy-web": "RUNNING",
                                   "smoke-test": "PENDING"}
    assert "approved by alice: change CHG-1 approved" in view.steps[0].message
    [task] = await dispatched(pool, release)
    assert (task.task_id, task.attempt, task.account_id, task.execution_id) == (
        task_id_for(release, DEPLOY, 1), 1, account, release)
    deploy = task.spec.deploy_local_process
    assert (deploy.service, deploy.version, list(deploy.nodes)) == ("web", "v9",
                                                                    ["node-1", "node-2"])
    assert await audit(api, alice, release) == [
        ("alice", "approve", "approve-release", "change CHG-1 approved")]


async def test_an_approval_naming_no_step_is_audited_with_the_step_it_approved(
        api, alice, release):
    view = await api.executions.ApproveStep(approve(release, "ship it", step=""),
                                            metadata=alice)
    assert step_statuses(view)["approve-release"] == "SUCCEEDED"

    [(actor, what, step, reason)] = await audit(api, alice, release)
    assert (actor, what, reason) == ("alice", "approve", "ship it")
    assert step in ("approve-release", APPROVE), "the audit log does not say which step"


async def test_pause_resume_and_abort_are_audited_and_a_paused_execution_starts_no_step(
        api, pool, handlers, account, alice, release):
    ex = api.executions
    await ex.ApproveStep(approve(release, "go"), metadata=alice)

    paused = await ex.PauseExecution(action(release, "change freeze"), metadata=alice)
    assert paused.paused
    await refused(ex.PauseExecution(action(release, "again"), metadata=alice),
                  FAILED_PRECONDITION)
    await handlers.on_event(task_result(release, account, DEPLOY))
    view = await ex.GetExecution(api_pb2.GetExecutionRequest(execution_id=release),
                                 metadata=alice)
    assert step_statuses(view) == {"approve-release": "SUCCEEDED", "deploy-web": "SUCCEEDED",
                                   "smoke-test": "PENDING"}
    assert [t.task_id for t in await dispatched(pool, release)] == [
        task_id_for(release, DEPLOY, 1)]

    resumed = await ex.ResumeExecution(action(release, "freeze lifted"), metadata=alice)
    assert not resumed.paused and step_statuses(resumed)["smoke-test"] == "RUNNING"
    assert [t.task_id for t in await dispatched(pool, release)] == [
        task_id_for(release, DEPLOY, 1), task_id_for(release, SMOKE, 1)]

    aborted = await ex.AbortExecution(action(release, "customer incident"), metadata=alice)
    assert status_name(aborted.status) == "ABORTED"
    assert aborted.reason == "aborted by alice: customer incident"
    assert step_statuses(aborted)["smoke-test"] == "ABORTED"

    expected = [("alice", "abort", "", "customer incident"),
                ("alice", "resume", "", "freeze lifted"),
                ("alice", "pause", "", "change freeze"),
                ("alice", "approve", "approve-release", "go")]
    assert await audit(api, alice, release) == expected
    public = [env.type.rsplit(".", 1)[1] for _, env in await outbox(pool, release)]
    assert [t for t in public if t.startswith("Execution")] == [
        "ExecutionStarted", "ExecutionPaused", "ExecutionResumed", "ExecutionFinished"]

    # A finished execution refuses every further action and records none of them.
    for call in (ex.PauseExecution(action(release, "late"), metadata=alice),
                 ex.ResumeExecution(action(release, "late"), metadata=alice),
                 ex.AbortExecution(action(release, "late"), metadata=alice),
                 ex.ApproveStep(approve(release, "late"), metadata=alice),
                 ex.ChooseIntervention(api_pb2.ChooseInterventionRequest(
                     execution_id=release, step="deploy-web", reason="late",
                     action=api_pb2.INTERVENTION_ACTION_RETRY), metadata=alice)):
        error = await refused(call, FAILED_PRECONDITION)
        assert "already finished (ABORTED)" in error.details()
    assert await audit(api, alice, release) == expected


async def test_a_failed_deploy_waits_for_a_persons_choice_which_is_audited(
        api, pool, handlers, key_for, account, alice, release):
    ops = await key_for(account, "ops-oncall")
    ex = api.executions
    await ex.ApproveStep(approve(release, "go"), metadata=alice)

    await handlers.on_event(task_result(release, account, DEPLOY, ok=False,
                                        error="node-2 did not become ready"))
    waiting = await ex.GetExecution(api_pb2.GetExecutionRequest(execution_id=release),
                                    metadata=ops)
    deploy = next(s for s in waiting.steps if s.ref.step == "deploy-web")
    assert (step_statuses(waiting)["deploy-web"], deploy.waiting_for) == ("WAITING",
                                                                          "intervention")
    assert "node-2 did not become ready" in deploy.message
    error = await refused(ex.ChooseIntervention(api_pb2.ChooseInterventionRequest(
        execution_id=release, step="deploy-web", reason="hm"), metadata=ops),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert [f for f, _ in violations(error)] == ["action"]

    retried = await ex.ChooseIntervention(api_pb2.ChooseInterventionRequest(
        execution_id=release, step="deploy-web", reason="node-2 rebooted",
        action=api_pb2.INTERVENTION_ACTION_RETRY), metadata=ops)
    assert step_statuses(retried)["deploy-web"] == "RUNNING"
    assert [(t.task_id, t.attempt) for t in await dispatched(pool, release)] == [
        (task_id_for(release, DEPLOY, 1), 1), (task_id_for(release, DEPLOY, 2), 2)]

    await handlers.on_event(task_result(release, account, DEPLOY, 2, ok=False))
    ignored = await ex.ChooseIntervention(api_pb2.ChooseInterventionRequest(
        execution_id=release, step="deploy-web", reason="known flaky node",
        action=api_pb2.INTERVENTION_ACTION_IGNORE), metadata=ops)
    assert step_statuses(ignored) == {"approve-release": "SUCCEEDED", "deploy-web": "FAILED",
                                      "smoke-test": "RUNNING"}
    await handlers.on_event(task_result(release, account, SMOKE))

    done = await ex.GetExecution(api_pb2.GetExecutionRequest(execution_id=release),
                                 metadata=ops)
    assert status_name(done.status) == "SUCCEEDED"
    assert await audit(api, ops, release) == [
        ("ops-oncall", "intervene:ignore", "deploy-web", "known flaky node"),
        ("ops-oncall", "intervene:retry", "deploy-web", "node-2 rebooted"),
        ("alice", "approve", "approve-release", "go")]


async def next_view(stream, timeout: float = 5.0) -> api_pb2.Execution:
    view = await asyncio.wait_for(stream.read(), timeout)
    assert view is not grpc.aio.EOF, "the watch ended early"
    return view


async def test_watch_streams_the_state_then_each_change_and_ends_when_the_execution_ends(
        api, alice, release):
    ex = api.executions
    stream = ex.WatchExecution(api_pb2.GetExecutionRequest(execution_id=release),
                               metadata=alice)
    try:
        first = await next_view(stream)
        assert (first.execution_id, status_name(first.status)) == (release, "RUNNING")
        assert step_statuses(first)["approve-release"] == "WAITING"

        await ex.ApproveStep(approve(release, "go"), metadata=alice)
        second = await next_view(stream)
        assert step_statuses(second) == {"approve-release": "SUCCEEDED",
                                         "deploy-web": "RUNNING", "smoke-test": "PENDING"}

        await ex.AbortExecution(action(release, "stop"), metadata=alice)
        last = await next_view(stream)
        assert status_name(last.status) == "ABORTED"
        assert await asyncio.wait_for(stream.read(), 5.0) is grpc.aio.EOF
        assert await stream.code() == grpc.StatusCode.OK
    finally:
        stream.cancel()

    # Watching a finished execution: its state once, then the end.
    again = ex.WatchExecution(api_pb2.GetExecutionRequest(execution_id=release),
                              metadata=alice)
    try:
        assert status_name((await next_view(again)).status) == "ABORTED"
        assert await asyncio.wait_for(again.read(), 5.0) is grpc.aio.EOF
    finally:
        again.cancel()


async def test_audit_events_page_newest_first_and_a_negative_page_size_is_refused(
        api, alice, release):
    ex = api.executions
    reasons = [f"drill {i}" for i in range(5)]
    for i, reason in enumerate(reasons):
        call = ex.PauseExecution if i % 2 == 0 else ex.ResumeExecution
        await call(action(release, reason), metadata=alice)

    pages, token = [], ""
    for _ in range(5):
        page = await ex.ListAuditEvents(api_pb2.ListAuditEventsRequest(
            execution_id=release, page_size=2, page_token=token), metadata=alice)
        pages.append([e.reason for e in page.events])
        token = page.next_page_token
        if not token:
            break

    newest_first = reasons[::-1]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]
    error = await refused(ex.ListAuditEvents(api_pb2.ListAuditEventsRequest(
        page_size=-1), metadata=alice), grpc.StatusCode.INVALID_ARGUMENT)
    assert [f for f, _ in violations(error)] == ["page_size"]
