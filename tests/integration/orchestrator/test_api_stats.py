"""GetDeploymentStats matches the raw executions exactly: a known mix of finished executions
across two environments, services and days, driven to their ends through the handlers."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from orchestrator_api import BUILD, SHIP, task_result, two_stages

from vigil.api.v1 import api_pb2

DAY0, DAY1, DAY2 = (datetime(2024, 3, d, tzinfo=UTC) for d in (3, 4, 5))

# (pipeline, created at, outcome, seconds to finish). Outcomes: succeed, fail-build (the build
# stage fails), fail-ship (the deploy stage fails), abort, running (never finishes).
SCENARIO = [
    ("web-prod", DAY0 + timedelta(hours=23), "succeed", 60),  # before the range asked for
    ("web-prod", DAY1 + timedelta(hours=10), "succeed", 30),
    ("web-prod", DAY1 + timedelta(hours=11), "fail-build", 10),
    ("web-prod", DAY1 + timedelta(hours=12), "succeed", 50),
    ("web-prod", DAY2 + timedelta(hours=9), "fail-ship", 20),
    ("api-staging", DAY1 + timedelta(hours=13), "abort", 5),
    ("api-staging", DAY2 + timedelta(hours=10), "succeed", 40),
    ("api-staging", DAY2 + timedelta(hours=11), "running", 0),
    ("api-staging", DAY2 + timedelta(hours=23, minutes=59, seconds=50), "fail-ship", 15),
]
STATUS = {"succeed": "SUCCEEDED", "fail-build": "FAILED", "fail-ship": "FAILED",
          "abort": "ABORTED"}
FAILED_STAGE = {"fail-build": "build", "fail-ship": "deploy"}
LABELS = {"web-prod": ("prod", "web"), "api-staging": ("staging", "api")}


def summarize(finished: list[tuple[str, str, str, datetime, datetime, str]]) -> dict:
    """The statistics of (status, environment, service, created, finished, failed stage)
    records, computed here, independently of the product."""
    groups = defaultdict(list)
    for status, env, svc, created, done, _ in finished:
        groups[(created.astimezone(UTC).date().isoformat(), env, svc)].append(
            (status, (done - created).total_seconds()))
    days = [(day, env, svc, sum(s == "SUCCEEDED" for s, _ in g), sum(s == "FAILED" for s, _ in g),
             sum(s == "ABORTED" for s, _ in g), sum(d for _, d in g) / len(g))
            for (day, env, svc), g in sorted(groups.items())]
    succeeded = sum(r[0] == "SUCCEEDED" for r in finished)
    stages = Counter(r[5] for r in finished if r[5])
    return {"days": days, "total": len(finished), "succeeded": succeeded,
            "success_rate": succeeded / len(finished) if finished else 0.0,
            "failures_by_stage": sorted(stages.items(), key=lambda kv: (-kv[1], kv[0]))}


def from_api(stats: api_pb2.DeploymentStats) -> dict:
    return {"days": [(d.day, d.environment, d.service, d.succeeded, d.failed, d.aborted,
                      d.mean_duration_seconds) for d in stats.days],
            "total": stats.total, "succeeded": stats.succeeded,
            "success_rate": stats.success_rate,
            "failures_by_stage": [(f.stage, f.failures) for f in stats.failures_by_stage]}


def ts(when: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


async def from_table(pool, account: str, start: datetime | None, end: datetime | None):
    rows = await pool.fetch(
        "SELECT status, environment, service, created_at, finished_at, state FROM executions "
        "WHERE account_id = $1 AND finished_at IS NOT NULL "
        "AND ($2::timestamptz IS NULL OR created_at >= $2) "
        "AND ($3::timestamptz IS NULL OR created_at < $3)", account, start, end)
    out = []
    for r in rows:
        state = json.loads(r["state"])
        failed = [s["name"] for s, st in zip(state["stages"], state["stage_states"], strict=True)
                  if st["status"] == "FAILED"]
        out.append((r["status"], r["environment"], r["service"], r["created_at"],
                    r["finished_at"], failed[0] if failed else ""))
    return out


async def run_scenario(api, handlers, clock, auth, account) -> None:
    for name, (environment, service) in LABELS.items():
        await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(
            yaml=two_stages(name, service, environment)), metadata=auth)
    for pipeline, created, outcome, seconds in SCENARIO:
        clock.now = created
        eid = (await api.executions.StartExecution(api_pb2.StartExecutionRequest(
            pipeline=pipeline), metadata=auth)).execution_id
        if outcome == "running":
            continue
        clock.now = created + timedelta(seconds=seconds / 2)
        if outcome in ("succeed", "fail-ship"):
            await handlers.on_event(task_result(eid, account, BUILD))
        clock.now = created + timedelta(seconds=seconds)
        if outcome == "succeed":
            await handlers.on_event(task_result(eid, account, SHIP))
        elif outcome == "fail-build":
            await handlers.on_event(task_result(eid, account, BUILD, ok=False))
        elif outcome == "fail-ship":
            await handlers.on_event(task_result(eid, account, SHIP, ok=False))
        else:
            await api.executions.AbortExecution(api_pb2.ExecutionActionRequest(
                execution_id=eid, reason="wrong artifact"), metadata=auth)
    clock.now = None


def scenario_records(start: datetime | None, end: datetime | None):
    return [(STATUS[outcome], *LABELS[pipeline], created,
             created + timedelta(seconds=seconds), FAILED_STAGE.get(outcome, ""))
            for pipeline, created, outcome, seconds in SCENARIO
            if outcome != "running" and (start is None or created >= start)
            and (end is None or created < end)]


async def test_an_executions_row_is_created_at_the_time_the_orchestrator_started_it(
        api, pool, clock, auth):
    await api.pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=two_stages("dated")),
                                      metadata=auth)
    clock.now = DAY1 + timedelta(hours=8)
    eid = (await api.executions.StartExecution(api_pb2.StartExecutionRequest(
        pipeline="dated"), metadata=auth)).execution_id

    view = await api.executions.GetExecution(api_pb2.GetExecutionRequest(execution_id=eid),
                                             metadata=auth)
    assert view.created_at.ToDatetime(tzinfo=UTC) == clock.now
    # Filters, paging and statistics read the column: it must say the same as the execution.
    assert await pool.fetchval("SELECT created_at FROM executions WHERE id = $1",
                               eid) == clock.now


async def test_deployment_stats_match_the_raw_executions_exactly(
        api, pool, handlers, clock, auth, account):
    await run_scenario(api, handlers, clock, auth, account)

    for start, end in ((DAY1, DAY2 + timedelta(days=1)), (None, None)):
        request = api_pb2.GetDeploymentStatsRequest()
        if start is not None:
            request.__getattribute__("from").CopyFrom(ts(start))
            request.to.CopyFrom(ts(end))
        stats = from_api(await api.executions.GetDeploymentStats(request, metadata=auth))

        table = summarize(await from_table(pool, account, start, end))
        assert stats == table
        assert table == summarize(scenario_records(start, end))

    in_range = summarize(scenario_records(DAY1, DAY2 + timedelta(days=1)))
    assert (in_range["total"], in_range["succeeded"]) == (7, 3)  # the scenario is what we meant
    assert in_range["failures_by_stage"] == [("deploy", 2), ("build", 1)]
