"""The orchestrator's use cases (vigil_orchestrator.handlers.Handlers) on the real PostgresStore:
each state change and its events are one transaction, and redelivered events change nothing."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import execution_pb2, tasks_pb2
from vigil_common import envelope, topics
from vigil_common.kafka import RejectedEvent
from vigil_orchestrator import translate
from vigil_orchestrator.adapters.postgres import PRODUCER, PostgresStore
from vigil_orchestrator.domain import PipelineInvalid
from vigil_orchestrator.handlers import Handlers

DEMO = (Path(__file__).resolve().parents[2] / "infra" / "demo" / "pipelines"
        / "demo-canary.yaml").read_text()
VERSION = "v1"
FIRST = "stages[0].workflow.phases[0].steps[0]"  # deploy-primary
SECOND = "stages[1].workflow.phases[0].steps[0]"  # deploy-canary


@pytest.fixture
def account(unique: str) -> str:
    return f"acct-{unique}"


@pytest.fixture
def store(pool) -> PostgresStore:
    return PostgresStore(pool)


@pytest.fixture
def handlers(store: PostgresStore) -> Handlers:
    return Handlers(store, VERSION)


@pytest.fixture
async def execution_id(handlers: Handlers, account: str) -> str:
    await handlers.apply_pipeline(account, DEMO)
    return await handlers.start_execution(account, "demo-canary", {})


async def _outbox(pool, execution_id: str) -> list[dict]:
    """The outbox rows keyed by the execution, oldest first, decoded."""
    rows = await pool.fetch(
        "SELECT producer, topic, header_names, header_values, value, xmin::text AS xid "
        "FROM outbox WHERE key = $1 ORDER BY id", execution_id.encode())
    out = []
    for r in rows:
        headers = [(n, v.encode()) for n, v in zip(r["header_names"], r["header_values"],
                                                    strict=True)]
        env = envelope.decode(headers, r["value"])
        out.append({"producer": r["producer"], "topic": r["topic"], "type": env.type,
                    "id": env.id, "message": env.message, "xid": r["xid"]})
    return out


async def _snapshot(pool, execution_id: str) -> tuple:
    row = await pool.fetchrow(
        "SELECT state::text, status, updated_at, next_deadline FROM executions WHERE id = $1",
        execution_id)
    return tuple(row), [(o["topic"], o["id"]) for o in await _outbox(pool, execution_id)]


async def _steps(store: PostgresStore, account: str, execution_id: str) -> list[str]:
    """Step statuses as GetExecution reports them, e.g. ["RUNNING", "PENDING", "PENDING"]."""
    view = translate.execution_view(await store.get(account, execution_id))
    return [execution_pb2.StepStatus.Name(s.status).removeprefix("STEP_STATUS_")
            for s in view.steps]


async def _dispatched(pool, execution_id: str) -> list[tasks_pb2.DispatchTask]:
    return [e["message"] for e in await _outbox(pool, execution_id)
            if e["type"] == "vigil.events.v1.DispatchTask"]


def _succeeded(task: tasks_pb2.DispatchTask, account: str | None = None,
               event_id: str | None = None) -> envelope.Envelope:
    """The TaskSucceeded the gateway publishes for ``task`` (of ``account`` by default)."""
    msg = tasks_pb2.TaskSucceeded(task_id=task.task_id, attempt=task.attempt,
                                  account_id=account or task.account_id,
                                  execution_id=task.execution_id, delegate_id="delegate-1",
                                  output=spec_pb2.TaskOutput(summary="deployed"))
    headers, value = envelope.encode(
        msg, source="delegate-gateway",
        event_id=event_id or f"result/{task.task_id}/{task.attempt}")
    return envelope.decode(headers, value)


async def test_starting_the_demo_pipeline_writes_the_execution_and_its_first_events_at_once(
        pool, store, handlers, account):
    assert await handlers.apply_pipeline(account, DEMO) == ("demo-canary", 1)
    execution_id = await handlers.start_execution(account, "demo-canary", {},
                                                  idempotency_key="deploy-42")

    row = await pool.fetchrow(
        "SELECT account_id, pipeline, vigil_version, status, idempotency_key, next_deadline, "
        "xmin::text AS xid FROM executions WHERE id = $1", execution_id)
    assert (row["account_id"], row["pipeline"], row["vigil_version"], row["status"],
            row["idempotency_key"]) == (account, "demo-canary", VERSION, "RUNNING", "deploy-42")
    assert row["next_deadline"] is not None
    assert await _steps(store, account, execution_id) == ["RUNNING", "PENDING", "PENDING"]

    events = await _outbox(pool, execution_id)
    assert [(e["topic"], e["type"]) for e in events] == [
        (topics.dispatch_commands(VERSION), "vigil.events.v1.DispatchTask"),
        (topics.EXECUTIONS, "vigil.events.v1.ExecutionStarted"),
        (topics.EXECUTIONS, "vigil.events.v1.StageStarted"),
        (topics.EXECUTIONS, "vigil.events.v1.StepStarted"),
    ]
    assert {e["producer"] for e in events} == {PRODUCER}
    # One transaction: the execution row and its outbox rows carry the same creating xid.
    assert {e["xid"] for e in events} == {row["xid"]}

    dispatch = events[0]["message"]
    assert (dispatch.attempt, dispatch.account_id, dispatch.execution_id, dispatch.capability,
            dispatch.timeout_seconds) == (1, account, execution_id, "local-process", 60.0)
    assert dispatch.task_id and events[0]["id"] == f"dispatch/{dispatch.task_id}/1"
    deploy = dispatch.spec.deploy_local_process
    assert (deploy.service, deploy.version, list(deploy.nodes)) == ("demo", "v1",
                                                                    ["node-1", "node-2"])
    assert list(deploy.command)[:3] == ["python3", "-m", "vigil_demo"]
    assert (events[1]["message"].execution_id, events[1]["message"].vigil_version) == (
        execution_id, VERSION)
    assert events[2]["message"].stage == "deploy-primary"
    assert (events[3]["message"].step.path, events[3]["message"].step.step) == (
        FIRST, "deploy-primary")


async def test_the_same_idempotency_key_returns_the_same_execution_and_writes_nothing_new(
        pool, handlers, account):
    await handlers.apply_pipeline(account, DEMO)
    first = await handlers.start_execution(account, "demo-canary", {}, idempotency_key="k-1")
    again = await handlers.start_execution(account, "demo-canary", {}, idempotency_key="k-1")
    racing = await asyncio.gather(*(
        handlers.start_execution(account, "demo-canary", {}, idempotency_key="k-2")
        for _ in range(4)))

    assert again == first
    assert len(set(racing)) == 1 and racing[0] != first
    assert await pool.fetchval(
        "SELECT count(*) FROM executions WHERE account_id = $1", account) == 2
    assert len(await _outbox(pool, first)) == 4
    assert len(await _outbox(pool, racing[0])) == 4


async def test_a_malformed_pipeline_is_refused_naming_the_path_of_the_bad_field(
        pool, handlers, account):
    bad = DEMO.replace("type: deploy", "type: deploi", 1)
    with pytest.raises(PipelineInvalid) as refused:
        await handlers.apply_pipeline(account, bad)

    path = "stages[0].workflow.phases[0].steps[0].type"
    assert [p for p, _ in refused.value.problems] == [path]
    assert str(refused.value).startswith(f"{path}: must be one of ")
    assert await pool.fetchval(
        "SELECT count(*) FROM pipelines WHERE account_id = $1", account) == 0


async def test_a_redelivered_task_result_changes_nothing_the_second_time(
        pool, store, handlers, account, execution_id):
    [deploy_primary] = await _dispatched(pool, execution_id)
    result = _succeeded(deploy_primary)
    await handlers.on_event(result)
    after_first = await _snapshot(pool, execution_id)
    assert await _steps(store, account, execution_id) == ["SUCCEEDED", "RUNNING", "PENDING"]

    await handlers.on_event(result)

    assert await _snapshot(pool, execution_id) == after_first
    assert await pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE consumer = $1 AND event_id = $2",
        handlers.consumer, result.id) == 1


async def test_the_same_result_under_another_event_id_changes_nothing_either(
        pool, handlers, execution_id):
    [deploy_primary] = await _dispatched(pool, execution_id)
    await handlers.on_event(_succeeded(deploy_primary, event_id="first-copy"))
    after_first = await _snapshot(pool, execution_id)

    await handlers.on_event(_succeeded(deploy_primary, event_id="second-copy"))

    assert await _snapshot(pool, execution_id) == after_first


async def test_a_task_success_for_the_running_step_starts_the_next_step(
        pool, store, handlers, account, execution_id):
    before = await _outbox(pool, execution_id)
    [deploy_primary] = [e["message"] for e in before
                        if e["type"] == "vigil.events.v1.DispatchTask"]

    await handlers.on_event(_succeeded(deploy_primary))

    assert await _steps(store, account, execution_id) == ["SUCCEEDED", "RUNNING", "PENDING"]
    row = await pool.fetchrow(
        "SELECT status, xmin::text AS xid FROM executions WHERE id = $1", execution_id)
    assert row["status"] == "RUNNING"
    new = (await _outbox(pool, execution_id))[len(before):]
    assert [(e["topic"], e["type"]) for e in new] == [
        (topics.dispatch_commands(VERSION), "vigil.events.v1.DispatchTask"),
        (topics.EXECUTIONS, "vigil.events.v1.StepSucceeded"),
        (topics.EXECUTIONS, "vigil.events.v1.StageFinished"),
        (topics.EXECUTIONS, "vigil.events.v1.StageStarted"),
        (topics.EXECUTIONS, "vigil.events.v1.StepStarted"),
    ]
    assert {e["xid"] for e in new} == {row["xid"]}  # state and events: one transaction
    deploy_canary = new[0]["message"]
    assert deploy_canary.task_id not in ("", deploy_primary.task_id)
    assert deploy_canary.attempt == 1
    assert deploy_canary.spec.deploy_local_process.version == "v2"
    assert list(deploy_canary.spec.deploy_local_process.nodes) == ["node-3"]
    assert (new[1]["message"].step.path, new[1]["message"].summary) == (FIRST, "deployed")
    assert (new[2]["message"].stage, new[3]["message"].stage) == ("deploy-primary", "canary")
    assert new[4]["message"].step.path == SECOND


async def test_a_task_result_reported_by_another_accounts_delegate_does_not_advance_it(
        pool, store, handlers, account, execution_id):
    """The gateway stamps a result with the account its delegate authenticated as. Task ids
    are uuid5 of the execution id and step path (namespace in the source), so a delegate of
    another account that learns an execution id can report results for its tasks."""
    [deploy_primary] = await _dispatched(pool, execution_id)
    before = await _snapshot(pool, execution_id)

    with contextlib.suppress(RejectedEvent):
        await handlers.on_event(_succeeded(deploy_primary, account=f"other-{account}"))

    assert await _steps(store, account, execution_id) == ["RUNNING", "PENDING", "PENDING"]
    assert await _snapshot(pool, execution_id) == before
