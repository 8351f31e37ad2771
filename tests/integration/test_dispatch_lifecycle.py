"""task-dispatch's lifecycle on real PostgreSQL: re-send on reconnect, TaskStarted, selectors
and task limits, the sweeper's timeouts (re-queue, expiry with a reason), fairness across
accounts, broadcasts. Each test uses its own Vigil version, so sweeper passes only see its
own tasks."""

from __future__ import annotations

import pytest

from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import envelope, topics
from vigil_dispatch.adapters.broadcasts import PostgresBroadcasts
from vigil_dispatch.adapters.postgres import PRODUCER, PostgresDispatch
from vigil_dispatch.config import Timeouts


@pytest.fixture
def version(unique: str) -> str:
    return f"t{unique}"


@pytest.fixture
def store(pool, version) -> PostgresDispatch:
    return PostgresDispatch(pool, version, Timeouts(validity_seconds=300,
                                                    requeue_after_seconds=0.2,
                                                    result_grace_seconds=0.2))


async def _connect(store, version, delegate, account, session=1, caps=("shell",),
                   selectors=(), max_tasks=0) -> int:
    return await store.delegate_connected(f"c/{delegate}/{session}", tasks_pb2.DelegateConnected(
        delegate_id=delegate, account_id=account, name=delegate, version=version,
        capabilities=list(caps), gateway_id="gw-1", session=session, selectors=list(selectors),
        max_tasks=max_tasks))


async def _dispatch(store, task, account, cap="shell", selectors=(), validity=0.0,
                    timeout=60.0) -> str | None:
    return await store.enqueue(f"d/{task}", tasks_pb2.DispatchTask(
        task_id=task, attempt=1, account_id=account, execution_id=f"ex-{task}", capability=cap,
        timeout_seconds=timeout, selectors=list(selectors), validity_seconds=validity,
        spec=spec_pb2.TaskSpec(noop=spec_pb2.NoOp())))


async def _status(pool, task) -> tuple[str, str | None]:
    row = await pool.fetchrow("SELECT status, delegate_id FROM tasks WHERE task_id = $1", task)
    return row["status"], row["delegate_id"]


async def _events(pool, key: str, topic: str) -> list[envelope.Envelope]:
    rows = await pool.fetch(
        "SELECT header_names, header_values, value FROM outbox WHERE producer = $1 "
        "AND topic = $2 AND key = $3 ORDER BY id", PRODUCER, topic, key.encode())
    return [envelope.decode([(n, v.encode()) for n, v in zip(r["header_names"],
                                                             r["header_values"], strict=True)],
                            r["value"]) for r in rows]


async def test_an_assigned_task_is_sent_again_when_its_delegate_reconnects_until_it_starts(
        pool, store, version, unique):
    acct, d, task = f"a-{unique}", f"d-{unique}", f"t-{unique}"
    await _connect(store, version, d, acct, session=1)
    assert await _dispatch(store, task, acct) == d
    await _connect(store, version, d, acct, session=2)  # moved to another gateway
    sent = await _events(pool, f"ex-{task}", topics.gateway_assignments(version))
    assert [(e.message.task_id, e.message.session) for e in sent] == [(task, 1), (task, 2)]
    assert await store.task_started(f"s/{task}", tasks_pb2.TaskStarted(
        task_id=task, attempt=1, delegate_id=d))
    assert await _status(pool, task) == ("RUNNING", d)
    await _connect(store, version, d, acct, session=3)
    assert len(await _events(pool, f"ex-{task}", topics.gateway_assignments(version))) == 2


async def test_selectors_and_task_limits_decide_which_delegate_gets_a_task(
        pool, store, version, unique):
    acct = f"a-{unique}"
    await _connect(store, version, f"eu-{unique}", acct, selectors=["cluster=eu"], max_tasks=1)
    await _connect(store, version, f"us-{unique}", acct, selectors=["cluster=us"])
    assert await _dispatch(store, f"t1-{unique}", acct, selectors=["cluster=eu"]) == f"eu-{unique}"
    assert await _dispatch(store, f"t2-{unique}", acct, selectors=["cluster=eu"]) is None
    assert await _dispatch(store, f"t3-{unique}", acct, selectors=["cluster=us"]) == f"us-{unique}"
    # The eu delegate's slot frees: the queued eu task takes it.
    await store.task_finished(f"f/t1-{unique}", f"t1-{unique}", 1, True)
    assert await _status(pool, f"t2-{unique}") == ("ASSIGNED", f"eu-{unique}")


async def test_a_task_no_delegate_can_take_expires_with_the_reason_and_a_task_failed_event(
        pool, store, version, unique):
    acct, task = f"a-{unique}", f"t-{unique}"
    await _connect(store, version, f"d-{unique}", acct, caps=("shell",))
    assert await _dispatch(store, task, acct, cap="kubernetes", validity=0.01) is None
    await pool.execute("SELECT pg_sleep(0.05)")
    assert await store.expire_unassigned() == 1
    assert (await _status(pool, task))[0] == "EXPIRED"
    [failed] = await _events(pool, f"ex-{task}", topics.task_results(version))
    assert failed.message.kind == tasks_pb2.TASK_FAILURE_KIND_NOT_ASSIGNED
    assert "needs capability 'kubernetes'" in failed.message.error
    assert "1 connected delegate(s) of the account, none with" in failed.message.error


async def test_the_tasks_of_a_vanished_delegate_go_to_another_delegate_as_the_same_attempt(
        pool, store, version, unique):
    acct, d1, d2, task = f"a-{unique}", f"d1-{unique}", f"d2-{unique}", f"t-{unique}"
    await _connect(store, version, d1, acct)
    assert await _dispatch(store, task, acct) == d1
    await store.delegate_disconnected(f"x/{d1}", tasks_pb2.DelegateDisconnected(
        delegate_id=d1, account_id=acct, session=1))
    assert await store.requeue_vanished() == 0  # not yet: requeue_after is 0.2 s
    await _connect(store, version, d2, acct)
    await pool.execute("SELECT pg_sleep(0.3)")
    assert await store.requeue_vanished() == 1
    assert await _status(pool, task) == ("ASSIGNED", d2)
    sent = await _events(pool, f"ex-{task}", topics.gateway_assignments(version))
    assert [(e.message.delegate_id, e.message.attempt) for e in sent] == [(d1, 1), (d2, 1)]
    assert await pool.fetchval("SELECT requeues FROM tasks WHERE task_id = $1", task) == 1


async def test_a_running_task_without_a_result_expires_after_its_timeout_and_grace(
        pool, store, version, unique):
    acct, d, task = f"a-{unique}", f"d-{unique}", f"t-{unique}"
    await _connect(store, version, d, acct)
    await _dispatch(store, task, acct, timeout=0.1)
    await store.task_started(f"s/{task}", tasks_pb2.TaskStarted(task_id=task, attempt=1,
                                                                delegate_id=d))
    await pool.execute("SELECT pg_sleep(0.4)")
    assert await store.expire_overdue() == 1
    [failed] = await _events(pool, f"ex-{task}", topics.task_results(version))
    assert failed.message.kind == tasks_pb2.TASK_FAILURE_KIND_NO_RESULT
    assert await pool.fetchval("SELECT running_tasks FROM delegates WHERE delegate_id = $1",
                               d) == 0
    # A late result changes nothing.
    await store.task_finished(f"late/{task}", task, 1, True)
    assert (await _status(pool, task))[0] == "EXPIRED"


async def test_queued_tasks_are_assigned_round_robin_across_accounts(
        pool, store, version, unique):
    big, small = f"big-{unique}", f"small-{unique}"
    for n in range(6):
        await _dispatch(store, f"big{n}-{unique}", big)
    await _dispatch(store, f"small0-{unique}", small)
    # Delegates appear without the connect handler's own assignment pass.
    for acct in (big, small):
        await pool.execute(
            "INSERT INTO delegates (delegate_id, account_id, name, version, capabilities, "
            "gateway_id, session, connected) VALUES ($1, $2, $1, $3, '{shell}', 'gw', 1, true)",
            f"d-{acct}", acct, version)
    assert await store.assign_queued(limit=2) == 2
    assert await _status(pool, f"small0-{unique}") == ("ASSIGNED", f"d-{small}")
    assert await _status(pool, f"big1-{unique}") == ("QUEUED", None)


async def test_a_broadcast_asks_every_capable_delegate_and_aggregates_answers_and_absentees(
        pool, version, unique):
    store, broadcasts = PostgresDispatch(pool, version), PostgresBroadcasts(pool, version)
    acct = f"a-{unique}"
    for name, caps in (("d1", ("k8s",)), ("d2", ("k8s",)), ("d3", ("shell",))):
        await _connect(store, version, f"{name}-{unique}", acct, caps=caps)
    bid = f"b-{unique}"
    asked = await broadcasts.request(f"r/{bid}", tasks_pb2.BroadcastRequested(
        broadcast_id=bid, account_id=acct, capability="k8s", timeout_seconds=0.2,
        check=spec_pb2.ProbeCheck(tcp_connect="cluster-x:443")))
    assert asked == 2
    [assigned] = await _events(pool, bid, topics.gateway_assignments(version))
    assert sorted(assigned.message.delegate_ids) == [f"d1-{unique}", f"d2-{unique}"]
    assert not await broadcasts.answer(f"a/{bid}/1", tasks_pb2.BroadcastAnswered(
        broadcast_id=bid, account_id=acct, delegate_id=f"d1-{unique}", ok=True, detail="yes"))
    await pool.execute("SELECT pg_sleep(0.3)")
    assert await broadcasts.complete_due() == 1
    [done] = await _events(pool, bid, topics.broadcast_results(version))
    assert (done.message.ok_count, done.message.missing_count) == (1, 1)
    assert done.message.summary == "1 of 2 delegates ok, 1 did not answer"
    # A late answer changes nothing.
    await broadcasts.answer(f"a/{bid}/2", tasks_pb2.BroadcastAnswered(
        broadcast_id=bid, account_id=acct, delegate_id=f"d2-{unique}", ok=True))
    assert len(await _events(pool, bid, topics.broadcast_results(version))) == 1
