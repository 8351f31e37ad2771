"""Crash safety at the store: concurrent changes of one execution serialize on its row lock
and all take effect; an event handled once is never handled again, even when it races."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from orchestrator_api import outbox, step_path

from vigil_orchestrator.domain import Pause, TaskFinished, decide, task_id_for

PARALLEL = """
name: parallel
stages:
  - name: left
    depends_on: []
    workflow:
      phases:
        - name: main
          steps:
            - {name: left-step, type: shell, script: "true"}
  - name: right
    depends_on: []
    workflow:
      phases:
        - name: main
          steps:
            - {name: right-step, type: shell, script: "true"}
"""
LEFT, RIGHT = step_path(0, 0, 0), step_path(1, 0, 0)


@pytest.fixture
async def execution_id(handlers, account) -> str:
    await handlers.apply_pipeline(account, PARALLEL)
    return await handlers.start_execution(account, "parallel", {})


async def racing(pool, eventually, execution_id: str, *applies):
    """Start ``applies`` while the test holds the execution's row lock, wait until each is
    blocked behind it, then release it so they all read the row at the same moment."""
    async with pool.acquire() as holder:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM executions WHERE id = $1 FOR UPDATE", execution_id)
        tasks = [asyncio.create_task(apply) for apply in applies]
        await eventually(lambda: pool.fetchval(
            "SELECT count(*) >= $1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE '%executions%'", len(tasks)),
            "every apply is waiting for the execution's row lock", timeout=5)
        await transaction.commit()
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_two_concurrent_events_on_one_execution_serialize_and_both_take_effect(
        pool, store, handlers, eventually, account, execution_id):
    before = await store.get(account, execution_id)
    assert [s.status.value for s in before.step_states] == ["RUNNING", "RUNNING"]
    now = datetime.now(UTC)

    def result_of(path: str):
        event = TaskFinished(task_id_for(execution_id, path, 1), 1, True, summary="ok")
        return lambda ex: decide(ex, event, now)

    outcomes = await racing(pool, eventually, execution_id, *(
        store.apply(execution_id, result_of(p), now, consumer=handlers.consumer,
                    event_id=f"{execution_id}/{p}")
        for p in (LEFT, RIGHT)))

    assert all(o is not None and not isinstance(o, BaseException) for o in outcomes), outcomes
    after = await store.get(account, execution_id)
    assert [s.status.value for s in after.step_states] == ["SUCCEEDED", "SUCCEEDED"]
    assert after.status.value == "SUCCEEDED"
    assert await pool.fetchval("SELECT status FROM executions WHERE id = $1",
                               execution_id) == "SUCCEEDED"
    public = [env.type.rsplit(".", 1)[1] for _, env in await outbox(pool, execution_id)]
    assert public.count("StepSucceeded") == 2 and public.count("ExecutionFinished") == 1


async def test_the_same_event_id_applied_twice_at_once_takes_effect_once(
        pool, store, handlers, eventually, account, execution_id):
    now = datetime.now(UTC)

    def pause(ex):
        return decide(ex, Pause("ops", "freeze"), now)

    outcomes = await racing(pool, eventually, execution_id, *(
        store.apply(execution_id, pause, now, consumer=handlers.consumer,
                    event_id=f"{execution_id}/pause-1") for _ in range(2)))
    again = await store.apply(execution_id, pause, now, consumer=handlers.consumer,
                              event_id=f"{execution_id}/pause-1")

    assert not any(isinstance(o, BaseException) for o in outcomes), outcomes
    assert sorted(o is None for o in outcomes) == [False, True] and again is None
    after = await store.get(account, execution_id)
    assert (after.paused, after.controls) == (True, 1)
    public = [env.type.rsplit(".", 1)[1] for _, env in await outbox(pool, execution_id)]
    assert public.count("ExecutionPaused") == 1
    assert await pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE consumer = $1 AND event_id = $2",
        handlers.consumer, f"{execution_id}/pause-1") == 1
