"""The transactional outbox (vigil_common.outbox) between real PostgreSQL and the real broker:
only committed events are published, with their CloudEvents headers and key, once, in order."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from vigil.events.v1 import execution_pb2
from vigil_common import envelope, outbox, tracing


class _Rollback(Exception):
    pass


def _started(execution_id: str, n: int) -> execution_pb2.StepStarted:
    return execution_pb2.StepStarted(execution_id=execution_id,
                                     step=execution_pb2.StepRef(path=f"steps[{n}]"))


async def _add(pool, producer_name: str, topic: str, key: str, message, event_id: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, producer_name, topic, key, message, event_id=event_id)


async def _pending(pool, producer_name: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM outbox WHERE producer = $1", producer_name)


@pytest.fixture
async def topic(unique: str, create_topics) -> str:
    name = f"vigil.it.outbox.{unique}"
    await create_topics([name], partitions=3)
    return name


async def test_an_event_added_in_a_rolled_back_transaction_is_never_published(
        pool, producer, topic, unique, read_topic):
    name = f"it-{unique}"
    with pytest.raises(_Rollback):
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, name, topic, "ex-1", _started("ex-1", 0), event_id="lost")
            raise _Rollback
    assert await _pending(pool, name) == 0
    await _add(pool, name, topic, "ex-1", _started("ex-1", 1), "kept")

    assert await outbox.publish_pending(pool, producer, name) == 1
    assert await outbox.publish_pending(pool, producer, name) == 0
    records = await read_topic(topic, 1)
    assert [envelope.decode(r.headers, r.value).id for r in records] == ["kept"]


async def test_the_relay_publishes_committed_events_with_headers_and_key_then_deletes_them(
        pool, producer, topic, unique, read_topic, eventually):
    name = f"it-{unique}"
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    # A long poll interval: once the relay idles, only the NOTIFY sent at commit wakes it.
    relay = asyncio.create_task(outbox.relay(pool, producer, name, poll_interval=60))
    try:
        for n in (1, 2):
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, name, topic, f"ex-{n}", _started(f"ex-{n}", n),
                                 event_id=f"ev-{n}", time=at)
            records = await read_topic(topic, n)
        await eventually(lambda: _none_pending(pool, name), "the published rows are deleted")
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay

    assert sorted((r.key, envelope.decode(r.headers, r.value).id) for r in records) == [
        (b"ex-1", "ev-1"), (b"ex-2", "ev-2")]
    record = next(r for r in records if r.key == b"ex-2")
    headers = dict(record.headers)
    assert tracing.parse(headers.pop("traceparent").decode()) is not None
    assert headers == {
        "ce_id": b"ev-2",
        "ce_type": b"vigil.events.v1.StepStarted",
        "ce_source": name.encode(),
        "ce_time": b"2026-01-02T03:04:05Z",
        "ce_specversion": b"1.0",
        "content-type": b"application/protobuf",
    }
    assert envelope.decode(record.headers, record.value).message == _started("ex-2", 2)


async def _none_pending(pool, name: str) -> bool:
    return await _pending(pool, name) == 0


async def test_events_of_one_key_are_published_in_the_order_they_were_committed(
        pool, producer, topic, unique, read_topic):
    name = f"it-{unique}"
    for n in range(30):
        key = ("ex-a", "ex-b", "ex-c")[n % 3]
        await _add(pool, name, topic, key, _started(key, n), f"{key}/{n}")
    # Small batches: order must hold across batches too.
    while await outbox.publish_pending(pool, producer, name, batch=7):
        pass

    records = await read_topic(topic, 30)
    for key in ("ex-a", "ex-b", "ex-c"):
        ids = [envelope.decode(r.headers, r.value).id for r in records if r.key == key.encode()]
        assert ids == [f"{key}/{n}" for n in range(30) if ("ex-a", "ex-b", "ex-c")[n % 3] == key]
    assert await _pending(pool, name) == 0


async def test_a_second_relay_of_the_same_producer_does_not_overtake_the_first_within_a_key(
        database_url, pool, producer, kafka_bootstrap, topic, unique, read_topic, eventually):
    """Every instance of a service runs a relay for the same producer name (the gateway is
    meant to run as several instances, each with its own producer). While one relay has a
    batch in flight (selected and locked, sent, not yet acknowledged), another must not publish
    later events of the same key first, or consumers see them out of order."""
    name = f"it-{unique}"
    await _add(pool, name, topic, "ex-1", _started("ex-1", 0), "first")
    await _add(pool, name, topic, "ex-1", _started("ex-1", 1), "second")

    # The first instance: its own connection and a producer that lingers a second before
    # sending, as a busy or distant producer does.
    first_app = f"relay-a-{unique}"
    first_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1,
                                           server_settings={"application_name": first_app})
    try:
        first_producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                          enable_idempotence=False, linger_ms=1000)
        await first_producer.start()
        try:
            first = asyncio.create_task(
                outbox.publish_pending(first_pool, first_producer, name, batch=1))
            await eventually(lambda: _waiting_on_kafka(pool, first_app),
                             "the first relay selected its batch and is sending it")
            await outbox.publish_pending(pool, producer, name)  # the second instance's turn
            assert await asyncio.wait_for(first, 10) == 1
        finally:
            await first_producer.stop()
    finally:
        await first_pool.close()
    while await outbox.publish_pending(pool, producer, name):
        pass

    records = await read_topic(topic, 2)
    assert [envelope.decode(r.headers, r.value).id for r in records] == ["first", "second"]


async def _waiting_on_kafka(pool, application_name: str) -> bool:
    # Between its SELECT and its DELETE the relay's transaction is open and idle.
    return bool(await pool.fetchval(
        "SELECT true FROM pg_stat_activity WHERE application_name = $1 "
        "AND state = 'idle in transaction' AND query ILIKE 'SELECT%FROM outbox%'",
        application_name))
