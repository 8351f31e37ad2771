"""Partial metric batches in PostgreSQL (``metric_batches``, migration 0007)."""

from __future__ import annotations

import asyncpg

from vigil.events.v1 import verification_pb2


async def add_batch(conn: asyncpg.Connection, msg: verification_pb2.MetricsCollected
                    ) -> list[verification_pb2.MetricsCollected]:
    """Stores ``msg`` (once per first interval) and returns every batch of its verification,
    ordered by first interval, ``msg`` included."""
    intervals = max((len(s.points) for s in msg.series), default=0)
    await conn.execute(
        "INSERT INTO metric_batches (verification_id, first_interval, intervals, payload) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        msg.ref.verification_id, msg.first_interval, intervals, msg.SerializeToString())
    rows = await conn.fetch(
        "SELECT payload FROM metric_batches WHERE verification_id = $1 ORDER BY first_interval",
        msg.ref.verification_id)
    return [verification_pb2.MetricsCollected.FromString(row["payload"]) for row in rows]


async def forget(conn: asyncpg.Connection, verification_id: str) -> None:
    """Drops a decided verification's batches."""
    await conn.execute("DELETE FROM metric_batches WHERE verification_id = $1", verification_id)


async def decided(conn: asyncpg.Connection, verification_id: str) -> bool:
    """Whether the verification already has its metrics verdict (e.g. an early FAIL)."""
    return bool(await conn.fetchval(
        "SELECT true FROM verdicts WHERE verification_id = $1 AND analysis = 'metrics'",
        verification_id))
