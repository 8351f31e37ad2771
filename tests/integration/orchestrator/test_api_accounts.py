"""API keys decide the account: no key, an unknown or revoked key, or another account's id in a
request is refused, and one account never sees another's pipelines, executions, audit events
or statistics."""

from __future__ import annotations

import uuid

import grpc
from orchestrator_api import RELEASE, refused, two_stages

from vigil.api.v1 import api_pb2
from vigil_common.apikeys import hash_key

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


async def test_a_call_without_an_api_key_is_unauthenticated(api):
    error = await refused(api.pipelines.ListPipelines(api_pb2.ListPipelinesRequest()),
                          UNAUTHENTICATED)
    assert "authorization" in error.details()


async def test_an_unknown_key_a_revoked_key_and_a_key_without_bearer_are_unauthenticated(
        api, store, pool, account):
    unknown = (("authorization", f"Bearer vak_{uuid.uuid4().hex}"),)
    await refused(api.pipelines.ListPipelines(api_pb2.ListPipelinesRequest(),
                                              metadata=unknown), UNAUTHENTICATED)

    key = await store.create_api_key(account, "ci-bot")
    await refused(api.pipelines.ListPipelines(
        api_pb2.ListPipelinesRequest(), metadata=(("authorization", key),)), UNAUTHENTICATED)
    ok = await api.pipelines.ListPipelines(
        api_pb2.ListPipelinesRequest(), metadata=(("authorization", f"Bearer {key}"),))
    assert list(ok.pipelines) == []

    await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1",
                       hash_key(key))
    await refused(api.executions.ListExecutions(
        api_pb2.ListExecutionsRequest(), metadata=(("authorization", f"Bearer {key}"),)),
        UNAUTHENTICATED)


async def test_naming_another_accounts_id_in_a_request_is_permission_denied(
        api, auth, account, other_account):
    error = await refused(api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(
        account_id=other_account, yaml=RELEASE), metadata=auth),
        grpc.StatusCode.PERMISSION_DENIED)
    assert "account_id" in error.details()
    await refused(api.executions.ListExecutions(api_pb2.ListExecutionsRequest(
        account_id=other_account), metadata=auth), grpc.StatusCode.PERMISSION_DENIED)

    own = await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(
        account_id=account, yaml=RELEASE), metadata=auth)
    assert (own.name, own.revision) == ("release", 1)


async def test_an_account_never_sees_another_accounts_pipelines_executions_audit_or_stats(
        api, pool, handlers, key_for, account, other_account):
    a = await key_for(account, "alice")
    b = await key_for(other_account, "alice")
    ex = api.executions
    # Account A: a pipeline, a running execution with an audit event, a finished execution.
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=RELEASE), metadata=a)
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=two_stages("solo")),
                                      metadata=a)
    running = (await ex.StartExecution(api_pb2.StartExecutionRequest(
        pipeline="release", idempotency_key="same-key"), metadata=a)).execution_id
    await ex.PauseExecution(api_pb2.ExecutionActionRequest(
        execution_id=running, reason="change freeze"), metadata=a)
    finished = (await ex.StartExecution(api_pb2.StartExecutionRequest(pipeline="solo"),
                                        metadata=a)).execution_id
    await ex.AbortExecution(api_pb2.ExecutionActionRequest(
        execution_id=finished, reason="wrong branch"), metadata=a)
    state_before = await pool.fetchval("SELECT state::text FROM executions WHERE id = $1",
                                       running)
    # Account B has a pipeline of the same name and its own execution.
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=RELEASE), metadata=b)
    b_own = (await ex.StartExecution(api_pb2.StartExecutionRequest(
        pipeline="release", idempotency_key="same-key"), metadata=b)).execution_id

    assert b_own != running
    not_found = grpc.StatusCode.NOT_FOUND
    await refused(api.pipelines.GetPipeline(api_pb2.GetPipelineRequest(name="solo"),
                                            metadata=b), not_found)
    assert [p.name for p in (await api.pipelines.ListPipelines(
        api_pb2.ListPipelinesRequest(), metadata=b)).pipelines] == ["release"]
    await refused(ex.StartExecution(api_pb2.StartExecutionRequest(pipeline="solo"),
                                    metadata=b), not_found)
    for execution_id in (running, finished):
        request = api_pb2.GetExecutionRequest(execution_id=execution_id)
        await refused(ex.GetExecution(request, metadata=b), not_found)
        watch = ex.WatchExecution(request, metadata=b)
        await refused(watch.read(), not_found)
        action = api_pb2.ExecutionActionRequest(execution_id=execution_id, reason="mine now")
        await refused(ex.AbortExecution(action, metadata=b), not_found)
        await refused(ex.RollbackExecution(action, metadata=b), not_found)
    await refused(ex.ApproveStep(api_pb2.ApproveStepRequest(
        execution_id=running, approved=True, reason="lgtm"), metadata=b), not_found)
    listed = await ex.ListExecutions(api_pb2.ListExecutionsRequest(), metadata=b)
    assert [e.execution_id for e in listed.executions] == [b_own]
    assert list((await ex.ListAuditEvents(api_pb2.ListAuditEventsRequest(), metadata=b))
                .events) == []
    assert list((await ex.ListAuditEvents(api_pb2.ListAuditEventsRequest(
        execution_id=running), metadata=b)).events) == []
    stats_b = await ex.GetDeploymentStats(api_pb2.GetDeploymentStatsRequest(), metadata=b)
    assert (stats_b.total, list(stats_b.days), list(stats_b.failures_by_stage)) == (0, [], [])

    # A still sees exactly its own, unchanged by B's attempts.
    assert await pool.fetchval("SELECT state::text FROM executions WHERE id = $1",
                               running) == state_before
    assert {e.execution_id for e in (await ex.ListExecutions(
        api_pb2.ListExecutionsRequest(), metadata=a)).executions} == {running, finished}
    assert [(e.actor, e.action, e.execution_id) for e in (await ex.ListAuditEvents(
        api_pb2.ListAuditEventsRequest(), metadata=a)).events] == [
        ("alice", "abort", finished), ("alice", "pause", running)]
    stats_a = await ex.GetDeploymentStats(api_pb2.GetDeploymentStatsRequest(), metadata=a)
    assert (stats_a.total, stats_a.succeeded) == (1, 0)
