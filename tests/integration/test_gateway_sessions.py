"""Delegate sessions group-committed by the gateway (vigil_gateway.adapters.sessions) on real
PostgreSQL: every caller gets its own session number, events are in the outbox with the rows,
a delegate's sessions stay in order, and no session is left connected without its stream."""

from __future__ import annotations

import asyncio

from vigil.events.v1 import tasks_pb2
from vigil_gateway.adapters.postgres import PRODUCER, GatewayStore, delegate_id_for
from vigil_gateway.adapters.sessions import SessionWriter

VERSION = "v1"


def _connected(account: str, name: str) -> tasks_pb2.DelegateConnected:
    return tasks_pb2.DelegateConnected(
        delegate_id=delegate_id_for(account, name), account_id=account, name=name,
        version=VERSION, capabilities=["noop", "shell"], gateway_id="gw-a",
        selectors=[f"name={name}"])


def _disconnected(ev: tasks_pb2.DelegateConnected) -> tasks_pb2.DelegateDisconnected:
    return tasks_pb2.DelegateDisconnected(delegate_id=ev.delegate_id, account_id=ev.account_id,
                                          gateway_id="gw-a", session=ev.session)


async def _events(pool, delegate_ids: list[str]) -> list[str]:
    """Outbox event ids of these delegates, in outbox order."""
    rows = await pool.fetch(
        "SELECT header_names, header_values FROM outbox WHERE producer = $1 "
        "AND key = ANY($2::bytea[]) ORDER BY id", PRODUCER, [d.encode() for d in delegate_ids])
    return [dict(zip(r["header_names"], r["header_values"], strict=True))["ce_id"] for r in rows]


async def test_hundreds_of_concurrent_opens_are_written_in_a_few_transactions(pool, unique):
    account = f"acct-{unique}"
    writer = SessionWriter(pool, PRODUCER, VERSION, "gw-a")
    changes = [_connected(account, f"d-{n}") for n in range(300)]

    sessions = await asyncio.gather(*(writer.open(ev) for ev in changes))

    assert sessions == [1] * 300
    assert writer.batches < 30  # group commit, not one transaction per registration
    rows = await pool.fetch(
        "SELECT name, session, connected, gateway_id, capabilities, selectors "
        "FROM delegate_sessions WHERE account_id = $1", account)
    assert sorted((r["name"], r["session"], r["connected"], r["gateway_id"],
                   list(r["capabilities"]), list(r["selectors"])) for r in rows) == sorted(
        (f"d-{n}", 1, True, "gw-a", ["noop", "shell"], [f"name=d-{n}"]) for n in range(300))
    ids = [ev.delegate_id for ev in changes]
    assert sorted(await _events(pool, ids)) == sorted(f"connected/{d}/1" for d in ids)


async def test_one_delegate_reconnecting_within_a_batch_gets_its_sessions_in_call_order(
        pool, unique):
    account = f"acct-{unique}"
    writer = SessionWriter(pool, PRODUCER, VERSION, "gw-a")
    opens = [_connected(account, "flappy") for _ in range(3)]

    sessions = await asyncio.gather(*(writer.open(ev) for ev in opens))

    assert sessions == [1, 2, 3]
    delegate_id = opens[0].delegate_id
    assert await pool.fetchval("SELECT session FROM delegate_sessions WHERE delegate_id = $1",
                               delegate_id) == 3
    assert await _events(pool, [delegate_id]) == [f"connected/{delegate_id}/{n}"
                                                  for n in (1, 2, 3)]


async def test_closing_an_old_session_leaves_the_newer_one_connected(pool, unique):
    account = f"acct-{unique}"
    writer = SessionWriter(pool, PRODUCER, VERSION, "gw-a")
    first, second = _connected(account, "d"), _connected(account, "d")
    await writer.open(first)
    await writer.open(second)  # the delegate reconnected (elsewhere) before the old stream ended

    await writer.close(_disconnected(first))

    row = await pool.fetchrow("SELECT session, connected FROM delegate_sessions "
                              "WHERE delegate_id = $1", first.delegate_id)
    assert (row["session"], row["connected"]) == (2, True)
    await writer.close(_disconnected(second))
    assert not await pool.fetchval("SELECT connected FROM delegate_sessions "
                                   "WHERE delegate_id = $1", first.delegate_id)
    d = first.delegate_id
    assert await _events(pool, [d]) == [f"connected/{d}/1", f"connected/{d}/2",
                                        f"disconnected/{d}/1", f"disconnected/{d}/2"]


async def test_a_stream_gone_while_its_session_was_opening_gets_the_session_closed(
        pool, unique, eventually):
    account = f"acct-{unique}"
    writer = SessionWriter(pool, PRODUCER, VERSION, "gw-a")
    busy = [asyncio.ensure_future(writer.open(_connected(account, f"d-{n}"))) for n in range(50)]
    gone = _connected(account, "gone")
    opening = asyncio.ensure_future(writer.open(gone))
    await asyncio.sleep(0)
    opening.cancel()  # the client hung up while the batch was being written
    await asyncio.gather(*busy)

    async def closed() -> bool:
        return await pool.fetchval("SELECT NOT connected FROM delegate_sessions "
                                   "WHERE delegate_id = $1", gone.delegate_id)

    assert await eventually(closed, "the orphaned session closed")
    d = gone.delegate_id
    assert await _events(pool, [d]) == [f"connected/{d}/1", f"disconnected/{d}/1"]


async def _open_on(pool, gateway_id: str, account: str, names: list[str]) -> list[str]:
    writer = SessionWriter(pool, PRODUCER, VERSION, gateway_id)
    changes = [_connected(account, name) for name in names]
    await asyncio.gather(*(writer.open(ev) for ev in changes))
    return [ev.delegate_id for ev in changes]


async def _connected_ids(pool, account: str) -> set[str]:
    return {r["delegate_id"] for r in await pool.fetch(
        "SELECT delegate_id FROM delegate_sessions WHERE account_id = $1 AND connected", account)}


async def test_a_silent_gateway_instances_sessions_are_closed_by_a_live_one(pool, unique):
    account = f"acct-{unique}"
    crashed, live = f"gw-crashed-{unique}", f"gw-live-{unique}"
    lost = await _open_on(pool, crashed, account, ["a", "b"])
    kept = await _open_on(pool, live, account, ["c"])
    await pool.execute(
        "INSERT INTO gateway_instances (gateway_id, version, heartbeat_at) "
        "VALUES ($1, $2, now() - interval '1 minute')", crashed, VERSION)

    swept = await GatewayStore(pool, VERSION, live).heartbeat(dead_after=30)

    assert swept.get(crashed) == 2  # (instances left by other tests may be swept too)
    assert await _connected_ids(pool, account) == set(kept)
    assert sorted(await _events(pool, lost)) == sorted(
        [f"connected/{d}/1" for d in lost] + [f"disconnected/{d}/1" for d in lost])
    assert not await pool.fetchval(
        "SELECT count(*) FROM gateway_instances WHERE gateway_id = $1", crashed)
    # an instance still beating within the limit is left alone
    await GatewayStore(pool, VERSION, crashed).heartbeat(dead_after=30)
    assert crashed not in await GatewayStore(pool, VERSION, live).heartbeat(dead_after=30)


async def test_an_instance_restarted_under_its_id_closes_its_previous_lifes_sessions(
        pool, unique):
    account = f"acct-{unique}"
    gateway_id = f"gw-{unique}"
    left = await _open_on(pool, gateway_id, account, ["a", "b", "c"])
    other = await _open_on(pool, f"gw-other-{unique}", account, ["d"])

    closed = await GatewayStore(pool, VERSION, gateway_id).start_instance()

    assert closed == 3
    assert await _connected_ids(pool, account) == set(other)
    assert sorted(e for e in await _events(pool, left) if e.startswith("disconnected/")) == \
        sorted(f"disconnected/{d}/1" for d in left)
    await GatewayStore(pool, VERSION, gateway_id).stop_instance()
    assert not await pool.fetchval(
        "SELECT count(*) FROM gateway_instances WHERE gateway_id = $1", gateway_id)
