"""PostgreSQL store for pipelines, executions, API keys and the audit log.

Every change of an execution is one transaction: lock the row, record the event as handled
(Kafka events) or the person's action (audit log), save the new state, queue its outgoing
events in the outbox, and NOTIFY watchers. Commands go to the execution's own Vigil version's
topic; lifecycle events to the public topic, keyed by execution id.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from vigil_common import apikeys, inbox, outbox, topics, tracing
from vigil_orchestrator import codec, translate
from vigil_orchestrator.domain import Decision, Execution, PipelineSpec
from vigil_upgrade.adapters import postgres as upgrade_records

PRODUCER = "orchestrator"
WATCH_CHANNEL = "vigil_execution"


@dataclass(frozen=True)
class Audit:
    """A person's action, recorded with the state change it caused."""

    actor: str
    action: str
    reason: str
    step: str = ""


@dataclass(frozen=True)
class ExecutionFilter:
    application: str = ""
    service: str = ""
    environment: str = ""
    pipeline: str = ""
    status: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None


def _cursor(created_at: datetime, execution_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{execution_id}".encode()).decode()


def parse_cursor(token: str) -> tuple[datetime, str]:
    """(created_at, id) from a page token; ValueError when it is not one of ours."""
    try:
        created, _, eid = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        when = datetime.fromisoformat(created)
        uuid.UUID(eid)
        if when.tzinfo is None:
            raise ValueError("no time zone")
        return when, eid
    except Exception as exc:  # malformed base64, text, time or id: one error to the caller
        raise ValueError("page_token: not a token from a previous response") from exc


class PostgresStore:
    """Pipelines and executions in PostgreSQL, with the outbox in the same transactions."""

    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    # ---- API keys -------------------------------------------------------------------------

    async def create_api_key(self, account_id: str, name: str) -> str:
        """A new API key for the account (vigil_common.apikeys); returns the key."""
        return await apikeys.create(self._pool, account_id, name)

    async def authenticate(self, key: str) -> tuple[str, str] | None:
        """(account_id, key name) of an active key, else None."""
        return await apikeys.authenticate(self._pool, key)

    # ---- pipelines ------------------------------------------------------------------------

    async def put_pipeline(self, account_id: str, spec: PipelineSpec, yaml_text: str) -> int:
        """Create or replace a definition; returns its new revision."""
        return await self._pool.fetchval(
            "INSERT INTO pipelines (account_id, name, revision, yaml, application, service, "
            "environment, trigger_services) VALUES ($1, $2, 1, $3, $4, $5, $6, $7) "
            "ON CONFLICT (account_id, name) DO UPDATE SET yaml = EXCLUDED.yaml, "
            "application = EXCLUDED.application, service = EXCLUDED.service, "
            "environment = EXCLUDED.environment, trigger_services = EXCLUDED.trigger_services, "
            "revision = pipelines.revision + 1, updated_at = now() RETURNING revision",
            account_id, spec.name, yaml_text, spec.application, spec.service, spec.environment,
            sorted({t.service for t in spec.triggers}))

    async def get_pipeline(self, account_id: str, name: str) -> asyncpg.Record | None:
        return await self._pool.fetchrow(
            "SELECT * FROM pipelines WHERE account_id = $1 AND name = $2", account_id, name)

    async def list_pipelines(self, account_id: str) -> list[asyncpg.Record]:
        return await self._pool.fetch(
            "SELECT * FROM pipelines WHERE account_id = $1 ORDER BY name", account_id)

    async def pipelines_triggered_by(self, account_id: str, service: str) -> list[asyncpg.Record]:
        return await self._pool.fetch(
            "SELECT * FROM pipelines WHERE account_id = $1 AND $2 = ANY(trigger_services) "
            "ORDER BY name", account_id, service)

    async def version_acting_at(self, at: datetime) -> str | None:
        """The Vigil version that acts on a public input of time ``at`` (issue 4: with
        several versions running, only the primary of that moment starts executions); None
        when no primary is recorded (one version: it acts)."""
        return await upgrade_records.responsible_version_at(self._pool, at)

    # ---- executions -----------------------------------------------------------------------

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
                "idempotency_key, state, next_deadline, application, service, environment, "
                "created_at, traceparent) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
                "ON CONFLICT (account_id, idempotency_key) DO NOTHING RETURNING id",
                ex.id, ex.account_id, ex.pipeline, ex.version, ex.status.value,
                idempotency_key, json.dumps(codec.dump(ex)), ex.next_wake, ex.application,
                ex.service, ex.environment, ex.created_at, str(tracing.current() or ""))
            if inserted is None:
                return str(await conn.fetchval(
                    "SELECT id FROM executions WHERE account_id = $1 AND idempotency_key = $2",
                    ex.account_id, idempotency_key))
            await _emit(conn, decision, now)
        return ex.id

    async def apply(self, execution_id: str, decide: Callable[[Execution], Decision],
                    now: datetime, *, consumer: str = "", event_id: str = "",
                    account_id: str = "",
                    audit: Audit | Callable[[Execution], Audit] | None = None,
                    ) -> Decision | None:
        """Advance one execution by one event or action, in one transaction.

        With ``event_id`` the change happens at most once per (consumer, event_id). With
        ``account_id`` an execution of another account is treated as unknown. ``audit`` (or a
        function of the execution before the change giving it) is recorded in the same
        transaction. Returns None when
        the execution is unknown or the event was already handled; exceptions from ``decide``
        (e.g. IllegalAction) roll everything back.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT account_id, state FROM executions WHERE id = $1 FOR UPDATE",
                execution_id)
            if row is None or (account_id and row["account_id"] != account_id):
                return None
            if event_id and not await inbox.claim(conn, consumer, event_id):
                return None
            before = codec.load(json.loads(row["state"]))
            decision = decide(before)
            if callable(audit):
                audit = audit(before)
            if audit is not None:
                await conn.execute(
                    "INSERT INTO audit_log (account_id, actor, action, execution_id, step, "
                    "reason, at) VALUES ($1, $2, $3, $4, $5, $6, $7)", row["account_id"],
                    audit.actor, audit.action, execution_id, audit.step, audit.reason, now)
            if decision.execution != before:
                ex = decision.execution
                await conn.execute(
                    "UPDATE executions SET state = $2, status = $3, next_deadline = $4, "
                    "updated_at = now(), finished_at = $5 WHERE id = $1",
                    execution_id, json.dumps(codec.dump(ex)), ex.status.value, ex.next_wake,
                    ex.finished_at)
                await _emit(conn, decision, now)
            return decision

    async def due(self, version: str, now: datetime,
                  limit: int = 100) -> list[tuple[str, tracing.TraceContext | None]]:
        """Running executions of ``version`` whose durable timer is due at ``now``, each with
        the trace it was started in (None when it has none)."""
        rows = await self._pool.fetch(
            "SELECT id, traceparent FROM executions WHERE vigil_version = $1 "
            "AND status = 'RUNNING' AND next_deadline <= $2 ORDER BY next_deadline LIMIT $3",
            version, now, limit)
        return [(str(r["id"]), tracing.parse(r["traceparent"] or None)) for r in rows]

    async def get(self, account_id: str, execution_id: str) -> Execution | None:
        state = await self._pool.fetchval(
            "SELECT state FROM executions WHERE id = $1 AND account_id = $2",
            execution_id, account_id)
        return codec.load(json.loads(state)) if state else None

    async def list(self, account_id: str, f: ExecutionFilter, page_size: int,
                   page_token: str = "") -> tuple[list[Execution], str]:
        """Newest first; returns (executions, next page token or "")."""
        where, args = ["account_id = $1"], [account_id]
        for column in ("application", "service", "environment", "pipeline", "status"):
            value = getattr(f, column)
            if value:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        if f.created_after:
            args.append(f.created_after)
            where.append(f"created_at >= ${len(args)}")
        if f.created_before:
            args.append(f.created_before)
            where.append(f"created_at < ${len(args)}")
        if page_token:
            created, eid = parse_cursor(page_token)
            args += [created, eid]
            where.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)}::uuid)")
        args.append(page_size + 1)
        rows = await self._pool.fetch(
            f"SELECT id, created_at, state FROM executions WHERE {' AND '.join(where)} "
            f"ORDER BY created_at DESC, id DESC LIMIT ${len(args)}", *args)
        token = ""
        if len(rows) > page_size:
            rows = rows[:page_size]
            token = _cursor(rows[-1]["created_at"], str(rows[-1]["id"]))
        return [codec.load(json.loads(r["state"])) for r in rows], token

    # ---- audit and statistics -------------------------------------------------------------

    async def audit_events(self, account_id: str, execution_id: str, page_size: int,
                           before_id: int | None) -> list[asyncpg.Record]:
        args: list = [account_id]
        where = ["account_id = $1"]
        if execution_id:
            args.append(execution_id)
            where.append(f"execution_id = ${len(args)}")
        if before_id is not None:
            args.append(before_id)
            where.append(f"id < ${len(args)}")
        args.append(page_size + 1)
        return await self._pool.fetch(
            f"SELECT * FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC "
            f"LIMIT ${len(args)}", *args)

    async def finished_between(self, account_id: str, start: datetime | None,
                               end: datetime | None) -> list[asyncpg.Record]:
        """Finished executions created in [start, end), with what statistics need."""
        return await self._pool.fetch(
            "SELECT id, status, environment, service, created_at, finished_at, state "
            "FROM executions WHERE account_id = $1 AND status <> 'RUNNING' "
            "AND ($2::timestamptz IS NULL OR created_at >= $2) "
            "AND ($3::timestamptz IS NULL OR created_at < $3) ORDER BY created_at",
            account_id, start, end)


async def _emit(conn: asyncpg.Connection, decision: Decision, now: datetime) -> None:
    ex = decision.execution
    items = [outbox.Item(topics.dispatch_commands(ex.version), ex.id,
                         translate.dispatch_command(ex, cmd, now),
                         f"dispatch/{cmd.task_id}/{cmd.attempt}") for cmd in decision.commands]
    items += [outbox.Item(topics.EXECUTIONS, ex.id, translate.lifecycle_event(ex, ev, now),
                          ev.event_id) for ev in decision.events]
    await outbox.add_many(conn, PRODUCER, items, time=now)
    await conn.execute("SELECT pg_notify($1, $2)", WATCH_CHANNEL, ex.id)
