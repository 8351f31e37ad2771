"""Transactional outbox: events are written in the same transaction as the state they report,
then a relay publishes them to Kafka and deletes them.

``add`` inserts into ``outbox`` and NOTIFYs ``vigil_outbox`` (delivered at commit), which wakes
the relay at once; the relay also polls, so a missed notification only delays, never loses.
Rows of one producer are published in id order by one relay at a time (an advisory lock), so
events of one key keep their order however many instances run.
Delivery is at least once: a crash after publishing but before the delete re-publishes the
same ``ce_id``, which consumers drop.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaProducer
from google.protobuf import message as pb_message
from prometheus_client import Counter

from vigil_common import db, envelope, logs, tracing

log = logs.get(__name__)
CHANNEL = "vigil_outbox"
PUBLISHED = Counter("vigil_outbox_published_total", "Outbox rows published", ["producer"])


@dataclass(frozen=True)
class Item:
    """One event to queue: where it goes, its key, the message and a stable id if any."""

    topic: str
    key: str
    message: pb_message.Message
    event_id: str | None = None


async def add(conn: asyncpg.Connection, producer: str, topic: str, key: str,
              message: pb_message.Message, *, event_id: str | None = None,
              time: datetime | None = None) -> None:
    """Queue ``message`` for ``topic`` inside the caller's transaction (see ``add_many``)."""
    await add_many(conn, producer, [Item(topic, key, message, event_id)], time=time)


async def add_many(conn: asyncpg.Connection, producer: str, items: list[Item], *,
                   time: datetime | None = None) -> None:
    """Queue several events in the caller's transaction, in order, with one round trip for
    the rows and one NOTIFY.

    Each event carries a ``traceparent``: a new span of the current trace (the consumed event's
    or the API call's, see ``vigil_common.tracing``), or of a new trace when there is none.
    """
    if not items:
        return
    current = tracing.current()
    rows = []
    for item in items:
        trace = current.child() if current is not None else tracing.new_trace()
        headers, value = envelope.encode(item.message, source=producer, event_id=item.event_id,
                                         time=time, traceparent=trace)
        rows.append((producer, item.topic, item.key.encode(), [h for h, _ in headers],
                     [v.decode() for _, v in headers], value))
    await conn.executemany(
        "INSERT INTO outbox (producer, topic, key, header_names, header_values, value) "
        "VALUES ($1, $2, $3, $4, $5, $6)", rows)
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, producer)


async def relay(pool: asyncpg.Pool, prod: AIOKafkaProducer, producer: str,
                poll_interval: float = 1.0, batch: int = 500) -> None:
    """Publish ``producer``'s outbox rows until cancelled."""
    wake = asyncio.Event()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == producer:
            wake.set()

    async with db.listen(pool, CHANNEL, on_notify):
        while True:
            wake.clear()
            sent = await publish_pending(pool, prod, producer, batch)
            if sent < batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), poll_interval)


async def publish_pending(pool: asyncpg.Pool, prod: AIOKafkaProducer, producer: str,
                          batch: int = 500) -> int:
    """Publish one batch of pending rows; returns how many were published."""
    async with pool.acquire() as conn, conn.transaction():
        # One publisher per producer at a time, so rows of a key stay in order even with
        # several instances of a service running (the others find the lock taken and wait).
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))",
                                   f"outbox:{producer}"):
            return 0
        rows = await conn.fetch(
            "SELECT id, topic, key, header_names, header_values, value FROM outbox "
            "WHERE producer = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED", producer, batch)
        if not rows:
            return 0
        futures = [
            await prod.send(r["topic"], r["value"], key=r["key"],
                            headers=[(n, v.encode()) for n, v in zip(r["header_names"],
                                                                      r["header_values"],
                                                                      strict=True)])
            for r in rows
        ]
        await asyncio.gather(*futures)
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])",
                           [r["id"] for r in rows])
    PUBLISHED.labels(producer).inc(len(rows))
    return len(rows)
