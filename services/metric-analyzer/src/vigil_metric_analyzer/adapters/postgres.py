"""Partial metric batches in PostgreSQL (``metric_batches``, migration 0007) and the services'
load-test baselines (``metric_baselines``, migration 0013)."""

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


async def baseline(conn: asyncpg.Connection, account_id: str, service: str
                   ) -> verification_pb2.MetricsCollected | None:
    """The service's load-test baseline (its series in the control group), or None."""
    payload = await conn.fetchval(
        "SELECT payload FROM metric_baselines WHERE account_id = $1 AND service = $2",
        account_id, service)
    return verification_pb2.MetricsCollected.FromString(payload) if payload else None


async def keep_baseline(conn: asyncpg.Connection, msg: verification_pb2.MetricsCollected,
                        window: dict[int, dict[str, dict[str, list[float | None]]]]) -> None:
    """Makes a load test's test series (the merged ``window``) its service's baseline."""
    run = verification_pb2.MetricsCollected(ref=msg.ref, interval_seconds=msg.interval_seconds,
                                            mode=msg.mode)
    for metric, by_host in window.get(verification_pb2.HOST_GROUP_TEST, {}).items():
        for host, values in by_host.items():
            run.series.add(metric=metric, host=host, group=verification_pb2.HOST_GROUP_CONTROL,
                           points=[verification_pb2.Point(value=v or 0.0, present=v is not None)
                                   for v in values])
    await conn.execute(
        "INSERT INTO metric_baselines (account_id, service, verification_id, payload) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, service) DO UPDATE SET "
        "verification_id = EXCLUDED.verification_id, payload = EXCLUDED.payload, "
        "created_at = now()",
        msg.ref.account_id, msg.ref.service, msg.ref.verification_id, run.SerializeToString())
