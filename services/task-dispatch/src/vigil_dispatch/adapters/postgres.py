"""The task queue and the delegate registry in PostgreSQL.

Each handler runs in one transaction with its inbox claim and outbox rows. Rows are locked in
one order, task first, then the account's delegates (FOR UPDATE), so two dispatchers never
overbook a delegate; a task row locked by another transaction is skipped, not waited for
(a handler holding delegate rows would otherwise deadlock with the sweeper). A deadlock that
still happens aborts one transaction, which is retried (the consume loop retries handlers,
the sweeper its next round).
Timeouts are computed from the stored timestamps, so a restarted dispatcher picks up where
the previous one stopped (the sweep is durable).
"""

from __future__ import annotations

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import inbox, outbox, topics
from vigil_dispatch.config import Timeouts
from vigil_dispatch.domain import Candidate, TaskStatus, pick, round_robin, why_unassigned

PRODUCER = "task-dispatch"
_IN_FLIGHT = ["ASSIGNED", "RUNNING"]
_OPEN = ["QUEUED", "ASSIGNED", "RUNNING"]


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def candidate(r: asyncpg.Record) -> Candidate:
    """A `delegates` row as the selection sees it."""
    return Candidate(r["delegate_id"], r["account_id"], r["version"], frozenset(r["capabilities"]),
                     r["running_tasks"], frozenset(r["selectors"]), r["max_tasks"])


class PostgresDispatch:
    def __init__(self, pool: asyncpg.Pool, version: str, timeouts: Timeouts | None = None):
        self._pool = pool
        self._version = version
        self._t = timeouts or Timeouts()
        self.consumer = f"{version}.task-dispatch"

    async def enqueue(self, event_id: str, cmd: tasks_pb2.DispatchTask) -> str | None:
        """Queue a task and try to assign it; returns the delegate id if assigned now."""
        validity = cmd.validity_seconds or self._t.validity_seconds
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, event_id):
                return None
            inserted = await conn.fetchval(
                "INSERT INTO tasks (task_id, attempt, account_id, execution_id, capability, "
                "vigil_version, spec, timeout_seconds, status, selectors, validity_seconds, "
                "valid_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'QUEUED', $9, $10, "
                "now() + $10 * interval '1 second') ON CONFLICT DO NOTHING RETURNING 1",
                cmd.task_id, cmd.attempt, cmd.account_id, cmd.execution_id, cmd.capability,
                self._version, cmd.spec.SerializeToString(), cmd.timeout_seconds,
                sorted(set(cmd.selectors)), validity)
            if inserted is None:
                return None
            return await self._assign(conn, cmd.task_id, cmd.attempt)

    async def delegate_connected(self, event_id: str, ev: tasks_pb2.DelegateConnected) -> int:
        """Record a connection (newer sessions only), re-send the tasks assigned to the
        delegate but not started, assign queued tasks; returns how many were newly assigned.

        The re-send closes a gap: an assignment broadcast while the delegate moved between
        gateway instances reached no gateway that held it. The delegate drops a task it has.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, event_id):
                return 0
            await self._lock_delegates(conn, ev.account_id)
            updated = await conn.fetchval(
                "INSERT INTO delegates (delegate_id, account_id, name, version, capabilities, "
                "gateway_id, session, connected, selectors, max_tasks) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, true, $8, $9) "
                "ON CONFLICT (delegate_id) DO UPDATE SET name = EXCLUDED.name, "
                "version = EXCLUDED.version, capabilities = EXCLUDED.capabilities, "
                "gateway_id = EXCLUDED.gateway_id, session = EXCLUDED.session, connected = true, "
                "selectors = EXCLUDED.selectors, max_tasks = EXCLUDED.max_tasks, "
                "disconnected_at = NULL, updated_at = now() "
                "WHERE delegates.session < EXCLUDED.session RETURNING 1",
                ev.delegate_id, ev.account_id, ev.name, ev.version, list(ev.capabilities),
                ev.gateway_id, ev.session, list(ev.selectors), ev.max_tasks)
            if updated is None:
                return 0
            # The counter may be stale after re-queues of a vanished session: recount.
            await conn.execute(
                "UPDATE delegates SET running_tasks = (SELECT count(*) FROM tasks WHERE "
                "delegate_id = $1 AND status = ANY($2::text[])) WHERE delegate_id = $1",
                ev.delegate_id, _IN_FLIGHT)
            for task in await conn.fetch(
                    "SELECT * FROM tasks WHERE delegate_id = $1 AND status = 'ASSIGNED' "
                    "ORDER BY assigned_at", ev.delegate_id):
                await self._announce(conn, task, ev.delegate_id, ev.session)
            queued = await conn.fetch(
                "SELECT task_id, attempt FROM tasks WHERE status = 'QUEUED' AND account_id = $1 "
                "AND vigil_version = $2 AND capability = ANY($3::text[]) ORDER BY created_at "
                "LIMIT 1000", ev.account_id, self._version, list(ev.capabilities))
            assigned = 0
            for row in queued:
                if await self._assign(conn, row["task_id"], row["attempt"]):
                    assigned += 1
            return assigned

    async def delegate_disconnected(self, event_id: str,
                                    ev: tasks_pb2.DelegateDisconnected) -> None:
        """Mark the session gone; its tasks are re-queued by the sweeper if it stays away."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, event_id):
                return
            await conn.execute(
                "UPDATE delegates SET connected = false, disconnected_at = now(), "
                "updated_at = now() WHERE delegate_id = $1 AND session = $2",
                ev.delegate_id, ev.session)

    async def task_started(self, event_id: str, ev: tasks_pb2.TaskStarted) -> bool:
        """assigned -> running. A re-queued task that its old delegate turns out to be running
        is given back to it. Returns whether the task changed."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, event_id):
                return False
            task = await conn.fetchrow(
                "SELECT status, delegate_id, account_id FROM tasks WHERE task_id = $1 "
                "AND attempt = $2 FOR UPDATE", ev.task_id, ev.attempt)
            if task is None:
                return False
            await self._lock_delegates(conn, task["account_id"])
            status = TaskStatus(task["status"])
            if status is TaskStatus.ASSIGNED and task["delegate_id"] == ev.delegate_id:
                await conn.execute(
                    "UPDATE tasks SET status = 'RUNNING', started_at = now() "
                    "WHERE task_id = $1 AND attempt = $2", ev.task_id, ev.attempt)
                return True
            if status is TaskStatus.QUEUED:
                await conn.execute(
                    "UPDATE tasks SET status = 'RUNNING', started_at = now(), assigned_at = now(), "
                    "delegate_id = $3 WHERE task_id = $1 AND attempt = $2",
                    ev.task_id, ev.attempt, ev.delegate_id)
                await conn.execute("UPDATE delegates SET running_tasks = running_tasks + 1 "
                                   "WHERE delegate_id = $1", ev.delegate_id)
                return True
            return False

    async def task_finished(self, event_id: str, task_id: str, attempt: int,
                            success: bool) -> None:
        """Close a task (once), free its delegate's slot and give the slot to the next queued
        task of the account."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, event_id):
                return
            task = await conn.fetchrow(
                "SELECT status, delegate_id, account_id FROM tasks WHERE task_id = $1 "
                "AND attempt = $2 AND status = ANY($3::text[]) FOR UPDATE",
                task_id, attempt, _OPEN)
            if task is None:
                return
            await self._lock_delegates(conn, task["account_id"])
            await conn.execute(
                "UPDATE tasks SET status = $3, finished_at = now() WHERE task_id = $1 "
                "AND attempt = $2", task_id, attempt, "SUCCEEDED" if success else "FAILED")
            if TaskStatus(task["status"]).in_flight and task["delegate_id"]:
                await conn.execute(
                    "UPDATE delegates SET running_tasks = greatest(running_tasks - 1, 0) "
                    "WHERE delegate_id = $1", task["delegate_id"])
                for row in await conn.fetch(
                        "SELECT task_id, attempt FROM tasks WHERE status = 'QUEUED' "
                        "AND account_id = $1 AND vigil_version = $2 ORDER BY created_at LIMIT 3",
                        task["account_id"], self._version):
                    if await self._assign(conn, row["task_id"], row["attempt"]):
                        break

    @staticmethod
    async def _lock_delegates(conn: asyncpg.Connection, account_id: str) -> None:
        """Lock the account's delegate rows in id order, the order _assign uses, before
        changing any one of them: one order everywhere, so no lock cycle between handlers
        and the sweeper."""
        await conn.execute("SELECT 1 FROM delegates WHERE account_id = $1 ORDER BY delegate_id "
                           "FOR UPDATE", account_id)

    async def _assign(self, conn: asyncpg.Connection, task_id: str, attempt: int) -> str | None:
        # SKIP LOCKED: a task another transaction is assigning (the sweeper, another
        # dispatcher) is theirs; waiting for it while holding delegate rows would deadlock.
        task = await conn.fetchrow(
            "SELECT * FROM tasks WHERE task_id = $1 AND attempt = $2 AND status = 'QUEUED' "
            "FOR UPDATE SKIP LOCKED", task_id, attempt)
        if task is None:
            return None
        rows = await conn.fetch(
            "SELECT * FROM delegates WHERE connected AND account_id = $1 AND version = $2 "
            "AND $3 = ANY(capabilities) ORDER BY delegate_id FOR UPDATE",
            task["account_id"], task["vigil_version"], task["capability"])
        chosen = pick((candidate(r) for r in rows), task["account_id"], task["vigil_version"],
                      task["capability"], task["selectors"])
        if chosen is None:
            return None
        await conn.execute(
            "UPDATE tasks SET status = 'ASSIGNED', delegate_id = $3, assigned_at = now() "
            "WHERE task_id = $1 AND attempt = $2", task_id, attempt, chosen.delegate_id)
        await conn.execute(
            "UPDATE delegates SET running_tasks = running_tasks + 1 WHERE delegate_id = $1",
            chosen.delegate_id)
        session = next(r["session"] for r in rows if r["delegate_id"] == chosen.delegate_id)
        await self._announce(conn, task, chosen.delegate_id, session)
        return chosen.delegate_id

    async def _announce(self, conn: asyncpg.Connection, task: asyncpg.Record, delegate_id: str,
                        session: int) -> None:
        await outbox.add(conn, PRODUCER, topics.gateway_assignments(self._version),
                         task["execution_id"], tasks_pb2.TaskAssigned(
                             task_id=task["task_id"], attempt=task["attempt"],
                             account_id=task["account_id"], execution_id=task["execution_id"],
                             delegate_id=delegate_id,
                             spec=spec_pb2.TaskSpec.FromString(task["spec"]),
                             timeout_seconds=task["timeout_seconds"], session=session),
                         event_id=f"assigned/{task['task_id']}/{task['attempt']}/{session}")

    # --- the sweeper's passes (each returns how many tasks it changed) ---

    async def assign_queued(self, per_account: int = 20, limit: int = 500) -> int:
        """Try to assign queued tasks, round-robin across accounts (fairness), oldest first
        within an account; one short transaction per task."""
        rows = await self._pool.fetch(
            "SELECT task_id, attempt, account_id FROM (SELECT task_id, attempt, account_id, "
            "created_at, row_number() OVER (PARTITION BY account_id ORDER BY created_at) AS rn "
            "FROM tasks WHERE status = 'QUEUED' AND vigil_version = $1) q WHERE rn <= $2 "
            "ORDER BY account_id, rn", self._version, per_account)
        assigned = 0
        for row in round_robin(rows, key=lambda r: r["account_id"])[:limit]:
            async with self._pool.acquire() as conn, conn.transaction():
                if await self._assign(conn, row["task_id"], row["attempt"]):
                    assigned += 1
        return assigned

    async def expire_unassigned(self, limit: int = 500) -> int:
        """Fail queued tasks past their validity (EXPIRED, TaskFailed NOT_ASSIGNED)."""
        async with self._pool.acquire() as conn, conn.transaction():
            tasks = await conn.fetch(
                "SELECT * FROM tasks WHERE status = 'QUEUED' AND vigil_version = $1 "
                "AND valid_until < now() ORDER BY valid_until LIMIT $2 FOR UPDATE SKIP LOCKED",
                self._version, limit)
            for t in tasks:
                delegates = await conn.fetch(
                    "SELECT * FROM delegates WHERE connected AND account_id = $1",
                    t["account_id"])
                reason = why_unassigned([candidate(r) for r in delegates], t["account_id"],
                                        t["vigil_version"], t["capability"], t["selectors"],
                                        t["validity_seconds"])
                await self._expire(conn, t, reason, tasks_pb2.TASK_FAILURE_KIND_NOT_ASSIGNED)
            return len(tasks)

    async def expire_overdue(self, limit: int = 500) -> int:
        """Fail assigned/running tasks with no result after timeout + grace (EXPIRED,
        TaskFailed NO_RESULT) and free their slots."""
        async with self._pool.acquire() as conn, conn.transaction():
            tasks = await conn.fetch(
                "SELECT * FROM tasks WHERE status = ANY($1::text[]) AND vigil_version = $2 "
                "AND timeout_seconds > 0 AND coalesce(started_at, assigned_at) + "
                "(timeout_seconds + $3) * interval '1 second' < now() LIMIT $4 "
                "FOR UPDATE SKIP LOCKED", _IN_FLIGHT, self._version,
                self._t.result_grace_seconds, limit)
            for t in tasks:
                reason = (f"no result from delegate {t['delegate_id']} within the task's "
                          f"timeout of {t['timeout_seconds']:g}s plus "
                          f"{self._t.result_grace_seconds:g}s grace (task was {t['status']})")
                await self._expire(conn, t, reason, tasks_pb2.TASK_FAILURE_KIND_NO_RESULT)
                await self._lock_delegates(conn, t["account_id"])
                await conn.execute(
                    "UPDATE delegates SET running_tasks = greatest(running_tasks - 1, 0) "
                    "WHERE delegate_id = $1", t["delegate_id"])
            return len(tasks)

    async def requeue_vanished(self, limit: int = 500) -> int:
        """Put the tasks of delegates disconnected longer than requeue_after back in the queue
        (same attempt, new validity period), then try to assign them elsewhere."""
        async with self._pool.acquire() as conn, conn.transaction():
            tasks = await conn.fetch(
                "SELECT t.task_id, t.attempt, t.delegate_id, t.account_id FROM tasks t "
                "JOIN delegates d "
                "ON d.delegate_id = t.delegate_id WHERE t.status = ANY($1::text[]) "
                "AND t.vigil_version = $2 AND NOT d.connected AND d.disconnected_at < now() - "
                "$3 * interval '1 second' LIMIT $4 FOR UPDATE OF t SKIP LOCKED",
                _IN_FLIGHT, self._version, self._t.requeue_after_seconds, limit)
            for t in tasks:
                await self._lock_delegates(conn, t["account_id"])
                await conn.execute(
                    "UPDATE tasks SET status = 'QUEUED', delegate_id = NULL, assigned_at = NULL, "
                    "started_at = NULL, requeues = requeues + 1, "
                    "valid_until = now() + validity_seconds * interval '1 second' "
                    "WHERE task_id = $1 AND attempt = $2", t["task_id"], t["attempt"])
                await conn.execute(
                    "UPDATE delegates SET running_tasks = greatest(running_tasks - 1, 0) "
                    "WHERE delegate_id = $1", t["delegate_id"])
            for t in tasks:
                await self._assign(conn, t["task_id"], t["attempt"])
            return len(tasks)

    async def _expire(self, conn: asyncpg.Connection, t: asyncpg.Record, reason: str,
                      kind: int) -> None:
        await conn.execute(
            "UPDATE tasks SET status = 'EXPIRED', failure = $3, finished_at = now() "
            "WHERE task_id = $1 AND attempt = $2", t["task_id"], t["attempt"], reason)
        await outbox.add(conn, PRODUCER, topics.task_results(self._version), t["execution_id"],
                         tasks_pb2.TaskFailed(task_id=t["task_id"], attempt=t["attempt"],
                                              account_id=t["account_id"],
                                              execution_id=t["execution_id"],
                                              delegate_id=t["delegate_id"] or "", error=reason,
                                              kind=kind, finished_at=_now()),
                         event_id=f"expired/{t['task_id']}/{t['attempt']}")
