"""Gateway state in PostgreSQL: account tokens (hashed), delegate sessions, received reports.

Sessions are one row per delegate (who is connected to which gateway instance, with what
capabilities and selectors), the source of `vigil delegates list`. A revoked token NOTIFYs
``vigil_token_revoked``, which makes every gateway re-check its live streams at once.

A report (task result or health data) is stored by its idempotency key (task, attempt, kind)
in the same transaction as the outbox row that publishes it: a delegate resending after a
reconnect changes nothing, and nothing is published twice. Health data (metrics batches,
logs) is also kept, once per verification and part, in ``verification_data`` for
`vigil verify export`, until the retention sweep deletes it.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

import asyncpg
from google.protobuf import message as pb_message

from vigil.events.v1 import tasks_pb2, verification_pb2
from vigil_common import outbox
from vigil_common.groupcommit import GroupCommit
from vigil_gateway.adapters.sessions import SessionWriter, close_instance_sessions

PRODUCER = "delegate-gateway"
REVOKED_CHANNEL = "vigil_token_revoked"
_DELEGATE_NAMESPACE = uuid.UUID("0b7f3a56-5a0e-4f57-8c3e-5d1f6a2b9c44")


SWEEP_BATCH = 500
"""Most stored verification inputs one retention sweep round deletes."""
VERIFICATION_DATA = (verification_pb2.MetricsCollected, verification_pb2.LogsCollected)


async def _keep_verification_data(conn: asyncpg.Connection, task_id: str, attempt: int,
                                  part: str, message: pb_message.Message) -> None:
    """Keep a health-data report's payload for `vigil verify export` (migration 0014): once
    per verification and part, like the report itself."""
    if not isinstance(message, VERIFICATION_DATA):
        return
    ref = message.ref
    await conn.execute(
        "INSERT INTO verification_data (verification_id, part, account_id, execution_id, "
        "task_id, attempt, message_type, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT DO NOTHING", ref.verification_id, part, ref.account_id, ref.execution_id,
        task_id, attempt, message.DESCRIPTOR.full_name, message.SerializeToString())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def delegate_id_for(account_id: str, name: str) -> str:
    """A delegate's id is stable per account and name, across reconnects and restarts."""
    return str(uuid.uuid5(_DELEGATE_NAMESPACE, f"{account_id}/{name}"))


async def create_token(pool: asyncpg.Pool, account_id: str, description: str = "") -> str:
    """A new account token; only its hash is stored. Returns the token (shown once)."""
    token = f"vgl_{secrets.token_urlsafe(32)}"
    await pool.execute(
        "INSERT INTO delegate_tokens (account_id, token_hash, description) VALUES ($1, $2, $3)",
        account_id, hash_token(token), description)
    return token


async def revoke_token(pool: asyncpg.Pool, account_id: str, token: str) -> bool:
    """Revoke a token; True if it existed and was active.

    New connections with it are refused at once; gateways close live streams opened with it
    when the NOTIFY arrives, or at their next periodic re-check at the latest.
    """
    async with pool.acquire() as conn, conn.transaction():
        revoked = await conn.fetchval(
            "UPDATE delegate_tokens SET revoked_at = now() WHERE account_id = $1 "
            "AND token_hash = $2 AND revoked_at IS NULL RETURNING true",
            account_id, hash_token(token))
        if revoked:
            await conn.execute("SELECT pg_notify($1, $2)", REVOKED_CHANNEL, account_id)
        return bool(revoked)


@dataclass(frozen=True)
class _Report:
    """A delegate report to store once (see ``GatewayStore.report``)."""

    task_id: str
    attempt: int
    kind: str
    topic: str
    key: str
    message: pb_message.Message
    unless_decided: str


class GatewayStore:
    def __init__(self, pool: asyncpg.Pool, version: str, gateway_id: str):
        self._pool = pool
        self._version = version
        self._gateway_id = gateway_id
        self._sessions = SessionWriter(pool, PRODUCER, version, gateway_id)
        self._reports = GroupCommit(pool, self._store_report, name="gateway-reports")

    async def token_valid(self, account_id: str, token: str) -> bool:
        return bool(await self._pool.fetchval(
            "SELECT true FROM delegate_tokens WHERE account_id = $1 AND token_hash = $2 "
            "AND revoked_at IS NULL", account_id, hash_token(token)))

    async def active_tokens(self, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (account, token hash) pairs are still valid."""
        if not keys:
            return set()
        accounts, hashes = zip(*keys, strict=True)
        rows = await self._pool.fetch(
            "SELECT account_id, token_hash FROM delegate_tokens WHERE revoked_at IS NULL AND "
            "(account_id, token_hash) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            list(accounts), list(hashes))
        return {(r["account_id"], r["token_hash"]) for r in rows}

    async def open_session(self, ev: tasks_pb2.DelegateConnected) -> int:
        """Start a new session for the delegate and announce it; returns the session number.
        Group-committed with the other streams' session changes (adapters/sessions.py)."""
        return await self._sessions.open(ev)

    async def close_session(self, ev: tasks_pb2.DelegateDisconnected) -> None:
        await self._sessions.close(ev)

    # --- this instance's liveness (migrations/0012) ---

    async def start_instance(self) -> int:
        """Register this instance as alive and close the sessions its previous life (same
        id) left marked connected: none of them can be live, it just started. Returns how many
        were closed."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO gateway_instances (gateway_id, version) VALUES ($1, $2) "
                "ON CONFLICT (gateway_id) DO UPDATE SET version = EXCLUDED.version, "
                "started_at = now(), heartbeat_at = now()", self._gateway_id, self._version)
            return await close_instance_sessions(conn, PRODUCER, self._version, self._gateway_id)

    async def heartbeat(self, dead_after: float) -> dict[str, int]:
        """Refresh this instance's heartbeat, then close the sessions of every instance of this
        version silent for ``dead_after`` seconds and forget it. Returns {instance: sessions
        closed}. Two live instances sweeping at once skip each other's locked rows."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO gateway_instances (gateway_id, version) VALUES ($1, $2) "
                "ON CONFLICT (gateway_id) DO UPDATE SET heartbeat_at = now()",
                self._gateway_id, self._version)
            dead = await conn.fetch(
                "SELECT gateway_id FROM gateway_instances WHERE version = $1 AND gateway_id <> $2 "
                "AND heartbeat_at < now() - $3 * interval '1 second' FOR UPDATE SKIP LOCKED",
                self._version, self._gateway_id, dead_after)
            closed = {}
            for row in dead:
                closed[row["gateway_id"]] = await close_instance_sessions(
                    conn, PRODUCER, self._version, row["gateway_id"])
                await conn.execute("DELETE FROM gateway_instances WHERE gateway_id = $1",
                                   row["gateway_id"])
            return closed

    async def stop_instance(self) -> None:
        """A clean stop: the streams closed their own sessions; forget the instance."""
        await self._pool.execute("DELETE FROM gateway_instances WHERE gateway_id = $1",
                                 self._gateway_id)

    async def report(self, task_id: str, attempt: int, kind: str, topic: str, key: str,
                     message: pb_message.Message, unless_decided: str = "") -> bool | None:
        """Store a delegate report once and queue its event; False if already received.

        With ``unless_decided`` (a verification id; partial metrics batches): None, storing
        nothing, when that verification already has its metrics verdict (the metric
        analyzer's ``verdicts`` row), so the batch is not needed any more.

        Reports of all streams are group-committed (vigil_common.groupcommit): durable when
        this returns, one transaction per batch.
        """
        return await self._reports.submit(
            _Report(task_id, attempt, kind, topic, key, message, unless_decided))

    @staticmethod
    async def _store_report(conn: asyncpg.Connection, r: _Report) -> bool | None:
        if r.unless_decided and await conn.fetchval(
                "SELECT true FROM verdicts WHERE verification_id = $1 "
                "AND analysis = 'metrics'", r.unless_decided):
            return None
        new = await conn.fetchval(
            "INSERT INTO task_reports (task_id, attempt, kind) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING true", r.task_id, r.attempt, r.kind)
        if new:
            await outbox.add(conn, PRODUCER, r.topic, r.key, r.message,
                             event_id=f"{r.kind}/{r.task_id}/{r.attempt}")
            await _keep_verification_data(conn, r.task_id, r.attempt, r.kind, r.message)
        return bool(new)

    async def sweep_verification_data(self, retention_days: float,
                                      limit: int = SWEEP_BATCH) -> int:
        """Delete at most ``limit`` stored verification inputs older than ``retention_days``
        (``verification_data``, migration 0014); returns how many. A bounded delete, run by
        the keep-alive loop each round, so a backlog drains without a long transaction."""
        if retention_days <= 0:
            return 0
        deleted = await self._pool.fetchval(
            "WITH old AS (SELECT verification_id, part FROM verification_data "
            "WHERE received_at < now() - $1 * interval '1 day' "
            "ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED), "
            "gone AS (DELETE FROM verification_data d USING old "
            "WHERE d.verification_id = old.verification_id AND d.part = old.part RETURNING 1) "
            "SELECT count(*) FROM gone", float(retention_days), limit)
        return int(deleted or 0)

    async def publish(self, topic: str, key: str, message: pb_message.Message,
                      event_id: str) -> None:
        """Queue one event through the outbox (no report row)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, PRODUCER, topic, key, message, event_id=event_id)

    async def list_delegates(self, account_id: str, connected_only: bool) -> list[asyncpg.Record]:
        """The account's delegates as the gateways last saw them, by name."""
        return await self._pool.fetch(
            "SELECT * FROM delegate_sessions WHERE account_id = $1 AND (connected OR NOT $2) "
            "ORDER BY name", account_id, connected_only)
