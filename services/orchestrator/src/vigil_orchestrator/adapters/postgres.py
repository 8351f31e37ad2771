"""PostgreSQL store for pipelines and executions.

Every change of an execution is one transaction: lock the row, record the event as handled,
save the new state and queue its outgoing events in the outbox. Commands go to the execution's
own Vigil version's topic; lifecycle events to the public topic, keyed by execution id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

import asyncpg

from vigil_common import inbox, outbox, topics
from vigil_orchestrator import codec, translate
from vigil_orchestrator.domain import Decision, Execution

PRODUCER = "orchestrator"


class PostgresStore:
    """Pipelines and executions in PostgreSQL, with the outbox in the same transactions."""

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    async def put_pipeline(self, account_id: str, name: str, yaml_text: str) -> int:
        """Create or replace a definition; returns its new revision."""
        return await self._pool.fetchval(
            "INSERT INTO pipelines (account_id, name, revision, yaml) VALUES ($1, $2, 1, $3) "
            "ON CONFLICT (account_id, name) DO UPDATE SET yaml = EXCLUDED.yaml, "
            "revision = pipelines.revision + 1, updated_at = now() RETURNING revision",
            account_id, name, yaml_text)

    async def get_pipeline(self, account_id: str, name: str) -> str | None:
        return await self._pool.fetchval(
            "SELECT yaml FROM pipelines WHERE account_id = $1 AND name = $2", account_id, name)

    async def find_by_key(self, account_id: str, key: str) -> str | None:
        row = await self._pool.fetchval(
            "SELECT id FROM executions WHERE account_id = $1 AND idempotency_key = $2",
            account_id, key)
        return str(row) if row else None

    async def create(self, decision: Decision, idempotency_key: str | None,
                     now: datetime) -> str:
        """Insert a new execution with its first events; on an idempotency-key race the
        existing execution's id is returned and nothing is written."""
        ex = decision.execution
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO executions (id, account_id, pipeline, vigil_version, status, "
                "idempotency_key, state, next_deadline) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (account_id, idempotency_key) DO NOTHING RETURNING id",
                ex.id, ex.account_id, ex.pipeline, ex.version, ex.status.value,
                idempotency_key, json.dumps(codec.dump(ex)), ex.next_deadline)
            if inserted is None:
                return str(await conn.fetchval(
                    "SELECT id FROM executions WHERE account_id = $1 AND idempotency_key = $2",
                    ex.account_id, idempotency_key))
            await _emit(conn, decision, now)
        return ex.id

    async def apply(self, execution_id: str, consumer: str, event_id: str,
                    decide: Callable[[Execution], Decision], now: datetime) -> Decision | None:
        """Advance one execution by one event, exactly once per (consumer, event_id).

        Returns None when the execution is unknown or the event was already handled.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT state FROM executions WHERE id = $1 FOR UPDATE", execution_id)
            if row is None or not await inbox.claim(conn, consumer, event_id):
                return None
            before = codec.load(json.loads(row["state"]))
            decision = decide(before)
            if decision.execution != before:
                ex = decision.execution
                await conn.execute(
                    "UPDATE executions SET state = $2, status = $3, next_deadline = $4, "
                    "updated_at = now(), finished_at = $5 WHERE id = $1",
                    execution_id, json.dumps(codec.dump(ex)), ex.status.value,
                    ex.next_deadline, ex.finished_at)
                await _emit(conn, decision, now)
            return decision

    async def due(self, version: str, now: datetime, limit: int = 100) -> list[str]:
        """Running executions of ``version`` with a step deadline at or before ``now``."""
        rows = await self._pool.fetch(
            "SELECT id FROM executions WHERE vigil_version = $1 AND status = 'RUNNING' "
            "AND next_deadline <= $2 ORDER BY next_deadline LIMIT $3", version, now, limit)
        return [str(r["id"]) for r in rows]

    async def get(self, account_id: str, execution_id: str) -> Execution | None:
        state = await self._pool.fetchval(
            "SELECT state FROM executions WHERE id = $1 AND account_id = $2",
            execution_id, account_id)
        return codec.load(json.loads(state)) if state else None


async def _emit(conn: asyncpg.Connection, decision: Decision, now: datetime) -> None:
    ex = decision.execution
    for cmd in decision.commands:
        await outbox.add(conn, PRODUCER, topics.dispatch_commands(ex.version), ex.id,
                         translate.dispatch_command(ex, cmd, now),
                         event_id=f"dispatch/{cmd.task_id}/{cmd.attempt}", time=now)
    for ev in decision.events:
        await outbox.add(conn, PRODUCER, topics.EXECUTIONS, ex.id,
                         translate.lifecycle_event(ex, ev, now), event_id=ev.event_id, time=now)
