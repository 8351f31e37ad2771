"""task-dispatch's queue and delegate registry (vigil_dispatch PostgresDispatch) on real
PostgreSQL: the right delegate gets each task, and redelivered events change nothing."""

from __future__ import annotations

import pytest

from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import envelope, topics
from vigil_dispatch.adapters.postgres import PRODUCER, PostgresDispatch

VERSION = "v1"


@pytest.fixture
async def store(pool) -> PostgresDispatch:
    return PostgresDispatch(pool, VERSION)


class _Names:
    """Names of this test's accounts, delegates and tasks (the tables are shared)."""

    def __init__(self, unique: str):
        self.unique = unique

    def account(self, name: str) -> str:
        return f"{name}-{self.unique}"

    def delegate(self, name: str) -> str:
        return f"{name}-{self.unique}"

    def task(self, n: int) -> str:
        return f"task-{n}-{self.unique}"


@pytest.fixture
def ids(unique: str) -> _Names:
    return _Names(unique)


async def _connect(store: PostgresDispatch, delegate_id: str, account: str,
                   capabilities: tuple[str, ...] = ("local-process",), session: int = 1) -> int:
    return await store.delegate_connected(
        f"connected/{delegate_id}/{session}",
        tasks_pb2.DelegateConnected(delegate_id=delegate_id, account_id=account, name=delegate_id,
                                    version=VERSION, capabilities=list(capabilities),
                                    gateway_id="gw-1", session=session))


async def _disconnect(store: PostgresDispatch, delegate_id: str, account: str,
                      session: int) -> None:
    await store.delegate_disconnected(
        f"disconnected/{delegate_id}/{session}",
        tasks_pb2.DelegateDisconnected(delegate_id=delegate_id, account_id=account,
                                       gateway_id="gw-1", session=session))


async def _dispatch(store: PostgresDispatch, task_id: str, account: str,
                    capability: str = "local-process") -> str | None:
    return await store.enqueue(f"dispatch/{task_id}/1", tasks_pb2.DispatchTask(
        task_id=task_id, attempt=1, account_id=account, execution_id=f"ex-of-{task_id}",
        capability=capability, timeout_seconds=60,
        spec=spec_pb2.TaskSpec(shell_script=spec_pb2.ShellScript(script="true"))))


async def _task(pool, task_id: str) -> tuple[str, str | None]:
    row = await pool.fetchrow("SELECT status, delegate_id FROM tasks WHERE task_id = $1",
                              task_id)
    return row["status"], row["delegate_id"]


async def _delegate(pool, delegate_id: str) -> tuple[bool, int, int]:
    row = await pool.fetchrow(
        "SELECT connected, session, running_tasks FROM delegates WHERE delegate_id = $1",
        delegate_id)
    return row["connected"], row["session"], row["running_tasks"]


async def _assignments(pool, task_id: str) -> list[tasks_pb2.TaskAssigned]:
    """The TaskAssigned events queued for ``task_id`` (keyed by its execution id)."""
    rows = await pool.fetch(
        "SELECT topic, header_names, header_values, value FROM outbox WHERE producer = $1 "
        "AND key = $2 ORDER BY id", PRODUCER, f"ex-of-{task_id}".encode())
    out = []
    for r in rows:
        assert r["topic"] == topics.gateway_assignments(VERSION)
        headers = [(n, v.encode()) for n, v in zip(r["header_names"], r["header_values"],
                                                    strict=True)]
        out.append(envelope.decode(headers, r["value"]).message)
    return out


async def test_a_task_is_never_assigned_to_a_delegate_of_another_account(pool, store, ids):
    mine, theirs = ids.account("a"), ids.account("b")
    stranger, own = ids.delegate("stranger"), ids.delegate("own")
    assert await _connect(store, stranger, theirs) == 0

    assert await _dispatch(store, ids.task(1), mine) is None
    assert await _task(pool, ids.task(1)) == ("QUEUED", None)
    assert await _assignments(pool, ids.task(1)) == []

    assert await _connect(store, own, mine) == 1
    assert await _task(pool, ids.task(1)) == ("ASSIGNED", own)
    [assigned] = await _assignments(pool, ids.task(1))
    assert (assigned.delegate_id, assigned.account_id, assigned.task_id) == (
        own, mine, ids.task(1))
    assert assigned.spec.shell_script.script == "true"
    assert (await _delegate(pool, own))[2] == 1
    assert (await _delegate(pool, stranger))[2] == 0


async def test_the_least_loaded_delegate_gets_the_task(pool, store, ids):
    account = ids.account("acct")
    busy, idle = ids.delegate("a"), ids.delegate("b")  # "a" would win a tie
    await _connect(store, busy, account)
    assert await _dispatch(store, ids.task(1), account) == busy
    await _connect(store, idle, account)

    assert await _dispatch(store, ids.task(2), account) == idle
    assert await _dispatch(store, ids.task(3), account) == busy  # 1 each: smallest id
    assert [(await _delegate(pool, d))[2] for d in (busy, idle)] == [2, 1]


async def test_a_delegate_without_the_capability_is_skipped(pool, store, ids):
    account = ids.account("acct")
    shell_only, local = ids.delegate("a"), ids.delegate("b")
    await _connect(store, shell_only, account, capabilities=("shell",))
    await _connect(store, local, account, capabilities=("local-process", "shell"))

    assert await _dispatch(store, ids.task(1), account, "local-process") == local
    assert await _dispatch(store, ids.task(2), account, "shell") == shell_only
    assert await _dispatch(store, ids.task(3), account, "kubernetes") is None
    assert await _task(pool, ids.task(3)) == ("QUEUED", None)


async def test_an_older_sessions_disconnect_leaves_the_newer_session_connected(
        pool, store, ids):
    account, delegate = ids.account("acct"), ids.delegate("d")
    await _connect(store, delegate, account, session=1)
    await _connect(store, delegate, account, session=2)
    await _disconnect(store, delegate, account, session=1)  # the old stream closed late
    assert await _connect(store, delegate, account, session=1) == 0  # a stale connect

    assert await _delegate(pool, delegate) == (True, 2, 0)
    assert await _dispatch(store, ids.task(1), account) == delegate

    await _disconnect(store, delegate, account, session=2)
    assert (await _delegate(pool, delegate))[:2] == (False, 2)
    assert await _dispatch(store, ids.task(2), account) is None


async def test_a_task_result_delivered_twice_frees_the_delegate_slot_once(pool, store, ids):
    account, delegate = ids.account("acct"), ids.delegate("d")
    await _connect(store, delegate, account)
    await _dispatch(store, ids.task(1), account)
    await _dispatch(store, ids.task(2), account)
    assert (await _delegate(pool, delegate))[2] == 2

    for _ in range(2):  # the same event, redelivered
        await store.task_finished(f"result/{ids.task(1)}/1", ids.task(1), 1, True)
    # The same result again under another event id, and a late failure of the same attempt.
    await store.task_finished("result-copy", ids.task(1), 1, True)
    await store.task_finished("late-failure", ids.task(1), 1, False)

    assert (await _delegate(pool, delegate))[2] == 1
    assert await _task(pool, ids.task(1)) == ("SUCCEEDED", delegate)
    assert await _task(pool, ids.task(2)) == ("ASSIGNED", delegate)
