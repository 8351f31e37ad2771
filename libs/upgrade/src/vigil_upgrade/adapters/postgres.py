"""The primary record and the version registry in PostgreSQL (migrations/0010.versions.sql).

A change of the primary updates ``vigil_primary``, queues ``PrimaryVersionChanged`` for
``vigil.public.versions`` in the outbox (producer ``upgrade``) and NOTIFYs ``vigil_primary``,
all in one transaction: the router (and anyone listening) learns of it at commit, and the event
is published by whoever relays the ``upgrade`` outbox rows (the procedure itself right after
the commit, and the router continuously).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import asyncpg
from google.protobuf import timestamp_pb2

from vigil.events.v1 import versions_pb2
from vigil_common import outbox, topics
from vigil_upgrade.domain import Primary, PrimaryChangeKind, UpgradeError, responsible_version

PRODUCER = "upgrade"
CHANNEL = "vigil_primary"  # NOTIFY payload: the new primary version


@dataclasses.dataclass(frozen=True)
class RegisteredVersion:
    """A row of ``vigil_versions``: where a version's endpoints are."""

    version: str
    state: str
    api_address: str
    gateway_address: str


class VersionStore:
    """Reads and changes the primary record and the version registry."""

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    async def primary(self) -> Primary | None:
        """The primary record, or None before the first ``initialize``."""
        row = await self._pool.fetchrow("SELECT * FROM vigil_primary")
        return _primary(row) if row else None

    async def initialize(self, version: str, by: str) -> Primary:
        """Make ``version`` the first primary if there is none yet; returns the record.

        Idempotent: with a primary already recorded, that record is returned unchanged.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE vigil_primary IN EXCLUSIVE MODE")
            row = await conn.fetchrow("SELECT * FROM vigil_primary")
            if row:
                return _primary(row)
            row = await conn.fetchrow(
                "INSERT INTO vigil_primary (version, generation, changed_by, reason) "
                "VALUES ($1, 1, $2, 'first primary') RETURNING *", version, by)
            record = _primary(row)
            await _announce(conn, record, PrimaryChangeKind.INITIAL)
            return record

    async def switch(self, version: str, kind: PrimaryChangeKind, *, expected: str, by: str,
                     reason: str) -> Primary:
        """Make ``version`` the primary, if the primary is still ``expected``.

        The check-and-set runs under a row lock, so two operators switching at once cannot
        both win. Raises UpgradeError when the primary changed meanwhile.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM vigil_primary FOR UPDATE")
            if row is None:
                raise UpgradeError("no primary version recorded yet")
            current = _primary(row)
            if current.version != expected:
                raise UpgradeError(f"the primary changed meanwhile: it is {current.version}, "
                                   f"not {expected}")
            now = await conn.fetchval("SELECT now()")
            new = current.switched_to(version, kind, by=by, reason=reason, now=now)
            await conn.execute(
                "UPDATE vigil_primary SET version = $1, previous_version = $2, generation = $3,"
                " changed_by = $4, reason = $5, changed_at = $6",
                new.version, new.previous_version, new.generation, by, reason, now)
            await _announce(conn, new, kind)
            return new

    async def register(self, version: str, state: str, api_address: str = "",
                       gateway_address: str = "") -> None:
        """Record (or update) a version's state and endpoints."""
        await self._pool.execute(
            "INSERT INTO vigil_versions (version, state, api_address, gateway_address) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO UPDATE SET state = $2, "
            "api_address = $3, gateway_address = $4, updated_at = now()",
            version, state, api_address, gateway_address)
        await self._pool.execute("SELECT pg_notify($1, $2)", CHANNEL, version)

    async def versions(self) -> dict[str, RegisteredVersion]:
        rows = await self._pool.fetch("SELECT version, state, api_address, gateway_address "
                                      "FROM vigil_versions ORDER BY version")
        return {r["version"]: RegisteredVersion(**dict(r)) for r in rows}

    async def executions_running(self) -> dict[str, int]:
        """Unfinished executions per Vigil version."""
        rows = await self._pool.fetch("SELECT vigil_version, count(*) AS n FROM executions "
                                      "WHERE status = 'RUNNING' GROUP BY vigil_version")
        return {r["vigil_version"]: r["n"] for r in rows}

    async def delegates_connected(self) -> dict[str, int]:
        """Connected delegates per Vigil version (as task-dispatch records them)."""
        rows = await self._pool.fetch("SELECT version, count(*) AS n FROM delegates "
                                      "WHERE connected GROUP BY version")
        return {r["version"]: r["n"] for r in rows}


async def responsible_version_at(pool: asyncpg.Pool, at: datetime) -> str | None:
    """``domain.responsible_version`` from the stored record and the stopped versions."""
    row = await pool.fetchrow("SELECT * FROM vigil_primary")
    stopped = await pool.fetch("SELECT version FROM vigil_versions WHERE state = 'STOPPED'")
    return responsible_version(_primary(row) if row else None, at,
                               frozenset(r["version"] for r in stopped))


async def publish_pending(pool: asyncpg.Pool, bootstrap: str) -> int:
    """Publish the queued PrimaryVersionChanged events now; returns how many."""
    from vigil_common import kafka
    from vigil_common.config import KafkaSettings

    settings = KafkaSettings.from_env({"KAFKA_BOOTSTRAP": bootstrap})
    async with kafka.producer(settings) as producer:
        return await outbox.publish_pending(pool, producer, PRODUCER)


async def _announce(conn: asyncpg.Connection, record: Primary, kind: PrimaryChangeKind) -> None:
    changed_at = timestamp_pb2.Timestamp()
    changed_at.FromDatetime(record.changed_at or datetime.now())
    event = versions_pb2.PrimaryVersionChanged(
        version=record.version, previous_version=record.previous_version,
        kind=versions_pb2.PrimaryChangeKind.Value(f"PRIMARY_CHANGE_KIND_{kind.value}"),
        generation=record.generation, changed_by=record.changed_by, reason=record.reason,
        changed_at=changed_at)
    await outbox.add(conn, PRODUCER, topics.VERSIONS, "primary", event,
                     event_id=f"primary-{record.generation}")
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, record.version)


def _primary(row: asyncpg.Record) -> Primary:
    return Primary(row["version"], row["previous_version"], row["generation"],
                   row["changed_by"], row["reason"], row["changed_at"])
