"""task-dispatch under concurrency, on real PostgreSQL: several dispatchers (each its own pool,
as separate processes would have) and the sweeper racing for the same delegates never exceed a
delegate's max_tasks, never assign a task twice, never deadlock; the SQL pick agrees with the
domain's ``pick``; a batch of events (one transaction) applies all or nothing and a redelivered
batch changes nothing. Each test uses its own Vigil version, so sweeper passes see only its own
tasks."""

from __future__ import annotations

import asyncio
import random

import pytest

from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import db, envelope, kafka, topics
from vigil_dispatch.adapters.broadcasts import PostgresBroadcasts
from vigil_dispatch.adapters.postgres import PRODUCER, PostgresDispatch, candidate
from vigil_dispatch.domain import pick
from vigil_dispatch.handlers import Handlers, Sweeper


@pytest.fixture
def version(unique: str) -> str:
    return f"c{unique}"


def _env(message, event_id: str) -> envelope.Envelope:
    headers, value = envelope.encode(message, source="test", event_id=event_id)
    return envelope.decode(headers, value)


def _connected(version: str, delegate: str, account: str, *, max_tasks: int = 0,
               caps=("shell",), selectors=(), session: int = 1) -> envelope.Envelope:
    return _env(tasks_pb2.DelegateConnected(
        delegate_id=delegate, account_id=account, name=delegate, version=version,
        capabilities=list(caps), gateway_id="gw-1", session=session, selectors=list(selectors),
        max_tasks=max_tasks), f"c/{delegate}/{session}")


def _dispatch(task: str, account: str, cap: str = "shell", selectors=()) -> envelope.Envelope:
    return _env(tasks_pb2.DispatchTask(
        task_id=task, attempt=1, account_id=account, execution_id=f"ex-{task}", capability=cap,
        timeout_seconds=60, selectors=list(selectors),
        spec=spec_pb2.TaskSpec(noop=spec_pb2.NoOp())), f"d/{task}")


def _succeeded(task: str, account: str) -> envelope.Envelope:
    return _env(tasks_pb2.TaskSucceeded(task_id=task, attempt=1, account_id=account,
                                        execution_id=f"ex-{task}"), f"r/{task}")


def _started(task: str, delegate: str) -> envelope.Envelope:
    return _env(tasks_pb2.TaskStarted(task_id=task, attempt=1, delegate_id=delegate),
                f"s/{task}/{delegate}")


async def _announced(pool, version: str) -> dict[str, set[str]]:
    """The delegates each task was announced to (TaskAssigned events in the outbox; a delegate
    reconnecting gets its assigned tasks again, under its new session)."""
    rows = await pool.fetch(
        "SELECT header_names, header_values, value FROM outbox WHERE producer = $1 "
        "AND topic = $2", PRODUCER, topics.gateway_assignments(version))
    out: dict[str, set[str]] = {}
    for r in rows:
        msg = envelope.decode([(n, v.encode()) for n, v in zip(r["header_names"],
                                                               r["header_values"], strict=True)],
                              r["value"]).message
        out.setdefault(msg.task_id, set()).add(msg.delegate_id)
    return out


async def _check_invariants(pool, version: str, account: str) -> dict[str, int]:
    """Every delegate's counter equals its tasks in flight and stays within max_tasks; every
    task went to one delegate only (no task here is ever re-queued), the one that holds it.
    Returns the in-flight count per delegate."""
    delegates = await pool.fetch(
        "SELECT d.delegate_id, d.running_tasks, d.max_tasks, (SELECT count(*) FROM tasks t "
        "WHERE t.delegate_id = d.delegate_id AND t.status IN ('ASSIGNED', 'RUNNING')) AS held "
        "FROM delegates d WHERE d.account_id = $1", account)
    for d in delegates:
        assert d["running_tasks"] == d["held"], dict(d)
        assert d["max_tasks"] == 0 or d["held"] <= d["max_tasks"], dict(d)
    announced = await _announced(pool, version)
    assert all(len(to) == 1 for to in announced.values()), "a task went to two delegates"
    for task, delegate in await pool.fetch(
            "SELECT task_id, delegate_id FROM tasks WHERE vigil_version = $1 "
            "AND delegate_id IS NOT NULL", version):
        assert announced.get(task) == {delegate}, (task, delegate)
    return {d["delegate_id"]: d["held"] for d in delegates}


async def test_racing_dispatchers_and_sweepers_never_overbook_a_delegate_or_assign_twice(
        database_url, pool, version, unique):
    acct = f"a-{unique}"
    delegates = [f"d{i}-{unique}" for i in range(4)]
    async with db.pool(database_url, min_size=4, max_size=8) as p1, \
            db.pool(database_url, min_size=4, max_size=8) as p2:
        stores = [PostgresDispatch(p, version) for p in (p1, p2)]
        handlers = [Handlers(s) for s in stores]
        sweep = Sweeper(stores[1], PostgresBroadcasts(p2, version))
        for d in delegates:
            await handlers[0].on_event(_connected(version, d, acct, max_tasks=3))
        tasks = [f"t{n}-{unique}" for n in range(60)]
        envs = [_dispatch(t, acct) for t in tasks]

        async def dispatcher(n: int) -> None:
            # Each dispatcher applies its share in small batches, as polls would come.
            mine = envs[n::4]
            for i in range(0, len(mine), 3):
                await handlers[n % 2].on_batch(mine[i:i + 3])

        async def sweeper() -> None:
            for _ in range(10):
                await sweep.sweep()
                await asyncio.sleep(0)

        await asyncio.gather(*(dispatcher(n) for n in range(4)), sweeper())
        await sweep.sweep()  # a slot whose every queued task another transaction held
        held = await _check_invariants(pool, version, acct)
        assert held == {d: 3 for d in delegates}  # 12 slots, all taken, none more

        # Results free slots while new tasks arrive and sweepers assign: still consistent.
        running = [r["task_id"] for r in await pool.fetch(
            "SELECT task_id FROM tasks WHERE vigil_version = $1 AND status = 'ASSIGNED'",
            version)]
        more = [_dispatch(f"u{n}-{unique}", acct) for n in range(20)]
        results = [_succeeded(t, acct) for t in running]
        await asyncio.gather(
            *(handlers[n % 2].on_batch(results[n::3]) for n in range(3)),
            *(handlers[n % 2].on_batch(more[n::2]) for n in range(2)),
            sweeper())
        await sweep.sweep()
        held = await _check_invariants(pool, version, acct)
        assert held == {d: 3 for d in delegates}  # the queue refilled every freed slot
        queued = await pool.fetchval("SELECT count(*) FROM tasks WHERE vigil_version = $1 "
                                     "AND status = 'QUEUED'", version)
        assert queued == 80 - 12 - 12


async def test_concurrent_batches_touching_the_same_delegates_and_tasks_do_not_deadlock(
        database_url, pool, version, unique):
    """Starts, results, reconnects and dispatches for shared delegates in random orders,
    applied by three dispatchers at once: the up-front lock order leaves no cycle (a deadlock
    would surface here as asyncpg.DeadlockDetectedError)."""
    acct = f"a-{unique}"
    rng = random.Random(7)
    delegates = [f"d{i}-{unique}" for i in range(3)]
    async with db.pool(database_url, min_size=3, max_size=6) as p1, \
            db.pool(database_url, min_size=3, max_size=6) as p2, \
            db.pool(database_url, min_size=3, max_size=6) as p3:
        handlers = [Handlers(PostgresDispatch(p, version)) for p in (p1, p2, p3)]
        for d in delegates:
            await handlers[0].on_event(_connected(version, d, acct))
        for rnd in range(8):
            tasks = [f"t{rnd}-{n}-{unique}" for n in range(12)]
            await handlers[0].on_batch([_dispatch(t, acct) for t in tasks])
            where = dict(await pool.fetch("SELECT task_id, delegate_id FROM tasks "
                                          "WHERE task_id = ANY($1::text[])", tasks))
            events = ([_started(t, where[t]) for t in tasks]
                      + [_succeeded(t, acct) for t in tasks]
                      + [_connected(version, d, acct, session=rnd + 2) for d in delegates]
                      + [_dispatch(f"x{rnd}-{n}-{unique}", acct) for n in range(6)])
            rng.shuffle(events)
            await asyncio.gather(*(h.on_batch(events[n::3]) for n, h in enumerate(handlers)))
        await _check_invariants(pool, version, acct)


async def test_the_sql_pick_takes_the_delegate_the_domain_pick_would(pool, version, unique):
    """Random registries (accounts, versions, capabilities, selectors, limits, loads): the
    one-statement pick in PostgreSQL chooses exactly what vigil_dispatch.domain.pick chooses."""
    rng = random.Random(11)
    store = PostgresDispatch(pool, version)
    accounts = [f"a{i}-{unique}" for i in range(2)]
    for n in range(40):
        caps = rng.sample(["shell", "k8s", "http"], rng.randint(1, 2))
        sels = rng.sample(["cluster=eu", "cluster=us", "gpu"], rng.randint(0, 2))
        max_tasks = rng.choice([0, 1, 2])
        running = rng.randint(0, 3) if max_tasks == 0 else rng.randint(0, max_tasks)
        await pool.execute(
            "INSERT INTO delegates (delegate_id, account_id, name, version, capabilities, "
            "gateway_id, session, connected, selectors, max_tasks, running_tasks) "
            "VALUES ($1, $2, $1, $3, $4, 'gw', 1, $5, $6, $7, $8)",
            f"d{n:02d}-{unique}", rng.choice(accounts), rng.choice([version, "other"]), caps,
            rng.random() < 0.8, sels, max_tasks, running)
    for n in range(60):
        account = rng.choice(accounts)
        cap = rng.choice(["shell", "k8s", "http", "none"])
        selectors = rng.sample(["cluster=eu", "cluster=us", "gpu"], rng.randint(0, 1))
        rows = await pool.fetch("SELECT * FROM delegates WHERE connected AND account_id = ANY($1)",
                                accounts)
        expected = pick([candidate(r) for r in rows], account, version, cap, selectors)
        got = await store.enqueue(f"e/{n}/{unique}", _dispatch(
            f"t{n}-{unique}", account, cap, selectors).message)
        assert got == (expected.delegate_id if expected else None), (account, cap, selectors)


async def test_a_batch_applies_all_or_nothing_and_redelivered_changes_nothing(
        pool, version, unique, monkeypatch):
    acct = f"a-{unique}"
    store = PostgresDispatch(pool, version)
    handlers = Handlers(store, PostgresBroadcasts(pool, version))
    d = f"d-{unique}"
    batch = ([_connected(version, d, acct, max_tasks=2)]
             + [_dispatch(f"t{n}-{unique}", acct) for n in range(3)]
             + [_started(f"t0-{unique}", d), _succeeded(f"t0-{unique}", acct)])

    async def snapshot():
        tasks = await pool.fetch("SELECT task_id, status, delegate_id FROM tasks "
                                 "WHERE vigil_version = $1 ORDER BY task_id", version)
        dels = await pool.fetch("SELECT delegate_id, running_tasks, session FROM delegates "
                                "WHERE account_id = $1", acct)
        outbox_rows = await pool.fetchval("SELECT count(*) FROM outbox WHERE producer = $1 "
                                          "AND header_values::text LIKE '%' || $2 || '%'",
                                          PRODUCER, unique)
        claims = await pool.fetchval("SELECT count(*) FROM processed_events WHERE consumer = $1",
                                     store.consumer)
        return [tuple(r) for r in tasks], [tuple(r) for r in dels], outbox_rows, claims

    # A failure at the last event rolls back the whole batch, inbox claims included.
    real = store.apply_task_finished

    async def broken(*args, **kwargs):
        raise ConnectionError("database went away")

    monkeypatch.setattr(store, "apply_task_finished", broken)
    with pytest.raises(ConnectionError):
        await handlers.on_batch(batch)
    assert await snapshot() == ([], [], 0, 0)
    monkeypatch.setattr(store, "apply_task_finished", real)

    # Applied whole: t0 ran and finished, t1 and t2 hold both slots.
    await handlers.on_batch(batch + batch[1:3])  # ids repeated inside a batch: applied once
    after = await snapshot()
    assert after[0] == [(f"t0-{unique}", "SUCCEEDED", d), (f"t1-{unique}", "ASSIGNED", d),
                        (f"t2-{unique}", "ASSIGNED", d)]
    assert after[1] == [(d, 2, 1)]
    assert after[2] == 3 and after[3] == len(batch)

    # The same poll redelivered (a crash before the offset commit), whole and in pieces.
    await handlers.on_batch(batch)
    for env in reversed(batch):
        await handlers.on_event(env)
    assert await snapshot() == after


async def test_a_batch_with_an_event_dispatch_cannot_handle_is_rejected_before_any_work(
        pool, version, unique):
    acct = f"a-{unique}"
    handlers = Handlers(PostgresDispatch(pool, version))  # no broadcasts: those are rejected
    good = _dispatch(f"t-{unique}", acct)
    bad = _env(tasks_pb2.DispatchTask(task_id=f"u-{unique}", attempt=0, account_id=acct,
                                      capability="shell"), f"bad/{unique}")
    probe = _env(tasks_pb2.BroadcastRequested(broadcast_id=f"b-{unique}", account_id=acct,
                                              capability="shell"), f"b/{unique}")
    for rejected in (bad, probe):
        with pytest.raises(kafka.RejectedEvent):
            await handlers.on_batch([good, rejected])
    assert await pool.fetchval("SELECT count(*) FROM tasks WHERE vigil_version = $1",
                               version) == 0


async def test_within_a_batch_a_freed_slot_goes_to_the_oldest_waiting_task(pool, version, unique):
    """A batch remembers that no delegate had room for a kind of task (so it does not read the
    registry again for each such task), and forgets it as soon as it frees a slot."""
    acct, d = f"a-{unique}", f"d-{unique}"
    handlers = Handlers(PostgresDispatch(pool, version))
    t = [f"t{n}-{unique}" for n in range(4)]
    await handlers.on_batch([
        _connected(version, d, acct, max_tasks=1),
        _dispatch(t[0], acct), _dispatch(t[1], acct), _dispatch(t[2], acct),
        _succeeded(t[0], acct),  # frees the only slot: t1 takes it
        _dispatch(t[3], acct),   # no room again
        _connected(version, f"e-{unique}", acct, max_tasks=1),  # a new slot: t2 takes it
    ])
    status = dict(await pool.fetch("SELECT task_id, status FROM tasks WHERE vigil_version = $1",
                                   version))
    assert [status[x] for x in t] == ["SUCCEEDED", "ASSIGNED", "ASSIGNED", "QUEUED"]
    await _check_invariants(pool, version, acct)
