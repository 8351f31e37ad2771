"""ListExecutions: filters by service, environment, status, pipeline, application and creation
time, newest first, and pages that neither repeat nor skip an execution."""

from __future__ import annotations

import asyncio

from orchestrator_api import BUILD, SHIP, status_name, task_result, two_stages

from vigil.api.v1 import api_pb2
from vigil.events.v1 import execution_pb2


async def start(api, auth, pipeline: str) -> api_pb2.Execution:
    execution_id = (await api.executions.StartExecution(
        api_pb2.StartExecutionRequest(pipeline=pipeline), metadata=auth)).execution_id
    await asyncio.sleep(0.005)  # distinct creation times, whatever the clock's resolution
    return await api.executions.GetExecution(
        api_pb2.GetExecutionRequest(execution_id=execution_id), metadata=auth)


async def listed(api, auth, **filters) -> list[str]:
    response = await api.executions.ListExecutions(api_pb2.ListExecutionsRequest(**filters),
                                                   metadata=auth)
    assert response.next_page_token == ""
    assert all(not e.steps and e.stages for e in response.executions)
    return [e.execution_id for e in response.executions]


async def test_list_executions_filters_by_each_field_newest_first(api, handlers, auth, account):
    for name, service, environment in (("web-prod", "web", "prod"),
                                       ("web-staging", "web", "staging"),
                                       ("api-prod", "api", "prod")):
        await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(
            yaml=two_stages(name, service, environment)), metadata=auth)
    views = [await start(api, auth, p) for p in
             ("web-prod", "web-staging", "api-prod", "web-prod", "api-prod")]
    e1, e2, e3, e4, e5 = (v.execution_id for v in views)
    await handlers.on_event(task_result(e1, account, BUILD))
    await handlers.on_event(task_result(e1, account, SHIP))
    await handlers.on_event(task_result(e3, account, BUILD, ok=False))
    await api.executions.AbortExecution(api_pb2.ExecutionActionRequest(
        execution_id=e4, reason="superseded"), metadata=auth)
    statuses = {e.execution_id: status_name(e.status) for e in (await api.executions.
                ListExecutions(api_pb2.ListExecutionsRequest(), metadata=auth)).executions}
    assert statuses == {e1: "SUCCEEDED", e2: "RUNNING", e3: "FAILED", e4: "ABORTED",
                        e5: "RUNNING"}

    assert await listed(api, auth) == [e5, e4, e3, e2, e1]
    assert await listed(api, auth, service="web") == [e4, e2, e1]
    assert await listed(api, auth, environment="prod") == [e5, e4, e3, e1]
    assert await listed(api, auth, service="web", environment="staging") == [e2]
    assert await listed(api, auth, pipeline="web-prod") == [e4, e1]
    assert await listed(api, auth, application="shop") == [e5, e4, e3, e2, e1]
    assert await listed(api, auth, application="other") == []
    assert await listed(api, auth, status=execution_pb2.EXECUTION_STATUS_RUNNING) == [e5, e2]
    assert await listed(api, auth, status=execution_pb2.EXECUTION_STATUS_FAILED) == [e3]
    assert await listed(api, auth, service="api",
                        status=execution_pb2.EXECUTION_STATUS_RUNNING) == [e5]
    # [created_after, created_before): from e2's creation up to, not including, e4's.
    assert await listed(api, auth, created_after=views[1].created_at,
                        created_before=views[3].created_at) == [e3, e2]
    assert await listed(api, auth, created_after=views[3].created_at) == [e5, e4]


async def test_pages_of_two_over_five_executions_are_three_pages_newest_first(api, auth):
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=two_stages("paged")),
                                      metadata=auth)
    created = [(await start(api, auth, "paged")).execution_id for _ in range(5)]

    pages, token = [], ""
    for _ in range(5):
        page = await api.executions.ListExecutions(api_pb2.ListExecutionsRequest(
            page_size=2, page_token=token), metadata=auth)
        pages.append([e.execution_id for e in page.executions])
        token = page.next_page_token
        if not token:
            break
        if len(pages) == 1:  # an execution started while paging does not shift the pages
            newer = (await start(api, auth, "paged")).execution_id

    newest_first = created[::-1]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]
    assert len({i for p in pages for i in p}) == 5
    first = await api.executions.ListExecutions(api_pb2.ListExecutionsRequest(page_size=2),
                                                metadata=auth)
    assert [e.execution_id for e in first.executions] == [newer, newest_first[0]]
