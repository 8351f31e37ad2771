"""The task queue and the delegate registry in PostgreSQL.

Each handler runs in one transaction with its inbox claim and outbox rows. Delegate rows of
an account are locked (FOR UPDATE) while choosing, so two dispatchers never overbook one.
"""

from __future__ import annotations

import asyncpg

from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import inbox, outbox, topics
from vigil_dispatch.domain import Candidate, pick

PRODUCER = "task-dispatch"


class PostgresDispatch:
    def __init__(self, pool: asyncpg.Pool, version: str):
        self._pool = pool
        self._version = version
        self.consumer = f"{version}.task-dispatch"

    async def enqueue(self, event_id: str, cmd: tasks_pb2.DispatchTask) -> str | None:
        """Queue a task and try to assign it; returns the delegate id if assigned now."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, event_id):
                return None
            inserted = await conn.fetchval(
                "INSERT INTO tasks (task_id, attempt, account_id, execution_id, capability, "
                "vigil_version, spec, timeout_seconds, status) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'QUEUED') "
                "ON CONFLICT DO NOTHING RETURNING 1",
                cmd.task_id, cmd.attempt, cmd.account_id, cmd.execution_id, cmd.capability,
                self._version, cmd.spec.SerializeToString(), cmd.timeout_seconds)
            if inserted is None:
                return None
            return await self._assign(conn, cmd.task_id, cmd.attempt)

    async def delegate_connected(self, event_id: str, ev: tasks_pb2.DelegateConnected) -> int:
        """Record a connection (newer sessions only); assign queued tasks; returns how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, event_id):
                return 0
            updated = await conn.fetchval(
                "INSERT INTO delegates (delegate_id, account_id, name, version, capabilities, "
                "gateway_id, session, connected) VALUES ($1, $2, $3, $4, $5, $6, $7, true) "
                "ON CONFLICT (delegate_id) DO UPDATE SET name = EXCLUDED.name, "
                "version = EXCLUDED.version, capabilities = EXCLUDED.capabilities, "
                "gateway_id = EXCLUDED.gateway_id, session = EXCLUDED.session, connected = true, "
                "updated_at = now() WHERE delegates.session < EXCLUDED.session RETURNING 1",
                ev.delegate_id, ev.account_id, ev.name, ev.version, list(ev.capabilities),
                ev.gateway_id, ev.session)
            if updated is None:
                return 0
            queued = await conn.fetch(
                "SELECT task_id, attempt FROM tasks WHERE status = 'QUEUED' AND account_id = $1 "
                "AND vigil_version = $2 ORDER BY created_at", ev.account_id, self._version)
            assigned = 0
            for row in queued:
                if await self._assign(conn, row["task_id"], row["attempt"]):
                    assigned += 1
            return assigned

    async def delegate_disconnected(self, event_id: str,
                                    ev: tasks_pb2.DelegateDisconnected) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, event_id):
                return
            await conn.execute(
                "UPDATE delegates SET connected = false, updated_at = now() "
                "WHERE delegate_id = $1 AND session = $2", ev.delegate_id, ev.session)

    async def task_finished(self, event_id: str, task_id: str, attempt: int,
                            success: bool) -> None:
        """Close a task and free its delegate's slot (once)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, event_id):
                return
            delegate_id = await conn.fetchval(
                "UPDATE tasks SET status = $3, finished_at = now() WHERE task_id = $1 "
                "AND attempt = $2 AND status IN ('QUEUED', 'ASSIGNED') RETURNING delegate_id",
                task_id, attempt, "SUCCEEDED" if success else "FAILED")
            if delegate_id:
                await conn.execute(
                    "UPDATE delegates SET running_tasks = greatest(running_tasks - 1, 0) "
                    "WHERE delegate_id = $1", delegate_id)

    async def _assign(self, conn: asyncpg.Connection, task_id: str, attempt: int) -> str | None:
        task = await conn.fetchrow(
            "SELECT * FROM tasks WHERE task_id = $1 AND attempt = $2 AND status = 'QUEUED' "
            "FOR UPDATE", task_id, attempt)
        if task is None:
            return None
        rows = await conn.fetch(
            "SELECT delegate_id, account_id, version, capabilities, running_tasks FROM delegates "
            "WHERE connected AND account_id = $1 AND version = $2 FOR UPDATE",
            task["account_id"], task["vigil_version"])
        chosen = pick((Candidate(r["delegate_id"], r["account_id"], r["version"],
                                 frozenset(r["capabilities"]), r["running_tasks"]) for r in rows),
                      task["account_id"], task["vigil_version"], task["capability"])
        if chosen is None:
            return None
        await conn.execute(
            "UPDATE tasks SET status = 'ASSIGNED', delegate_id = $3, assigned_at = now() "
            "WHERE task_id = $1 AND attempt = $2", task_id, attempt, chosen.delegate_id)
        await conn.execute(
            "UPDATE delegates SET running_tasks = running_tasks + 1 WHERE delegate_id = $1",
            chosen.delegate_id)
        spec = spec_pb2.TaskSpec.FromString(task["spec"])
        await outbox.add(conn, PRODUCER, topics.gateway_assignments(self._version),
                         task["execution_id"], tasks_pb2.TaskAssigned(
                             task_id=task_id, attempt=attempt, account_id=task["account_id"],
                             execution_id=task["execution_id"], delegate_id=chosen.delegate_id,
                             spec=spec, timeout_seconds=task["timeout_seconds"]),
                         event_id=f"assigned/{task_id}/{attempt}")
        return chosen.delegate_id
