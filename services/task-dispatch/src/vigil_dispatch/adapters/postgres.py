"""The task queue and the delegate registry in PostgreSQL.

Events are applied in a ``Work``: one transaction holding the inbox claims, the state changes
and the outbox rows of one event (the public methods) or of a whole poll (the consume loop's
batch path, see ``vigil_dispatch.handlers``).

Locking, so that nothing is overbooked and nothing deadlocks however many dispatchers and
sweepers run:
- Picking a delegate locks only the chosen row: one statement takes the least loaded
  qualifying delegate that has room ``FOR UPDATE SKIP LOCKED``, increments its counter under
  the same conditions and assigns the task. ``max_tasks`` is re-checked on the locked row, so it
  is never exceeded; a row another transaction holds is skipped, never waited for. When every
  delegate with room is held by others, the task stays queued and is retried right after the
  commit (waiting for the row then, holding nothing else), else by the sweeper.
- Rows that must be waited for are locked up front, each kind in key order: broadcasts, then
  tasks, then delegates (``lock_for``; the sweeper takes task rows SKIP LOCKED and its delegate
  rows in id order). After that a transaction only takes rows SKIP LOCKED, so no lock cycle
  can form. A deadlock would still only abort one transaction, which is retried (the consume
  loop retries events, the sweeper its next round).
Timeouts are computed from the stored timestamps, so a restarted dispatcher picks up where
the previous one stopped (the sweep is durable).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable

import asyncpg
from google.protobuf import message as pb_message
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import inbox, outbox, topics
from vigil_dispatch.config import Timeouts
from vigil_dispatch.domain import Candidate, TaskStatus, round_robin, why_unassigned

PRODUCER = "task-dispatch"
_IN_FLIGHT = ["ASSIGNED", "RUNNING"]
_OPEN = ["QUEUED", "ASSIGNED", "RUNNING"]

# The qualifying delegates with room, as vigil_dispatch.domain.pick sees them (same account,
# version, capability, every selector, below max_tasks), least loaded first, ties by the
# smaller id in code point order as in Python (COLLATE "C"; index delegates_least_loaded).
_QUALIFY = ("connected AND account_id = $1 AND version = $2 AND $3 = ANY(capabilities) "
            "AND selectors @> $4::text[] AND (max_tasks = 0 OR running_tasks < max_tasks)")
# Pick, lock and take one slot of the chosen delegate and assign task ($5, $6) to it, in one
# statement. The UPDATE re-checks the limit on the locked row (belt and braces: FOR UPDATE
# already re-evaluates the conditions on the newest row version).
_PICK_AND_ASSIGN = (
    "WITH chosen AS (SELECT delegate_id FROM delegates WHERE " + _QUALIFY +
    ' ORDER BY running_tasks, delegate_id COLLATE "C" LIMIT 1 FOR UPDATE {lock}), '
    "taken AS (UPDATE delegates d SET running_tasks = d.running_tasks + 1 FROM chosen "
    "WHERE d.delegate_id = chosen.delegate_id AND d.connected "
    "AND (d.max_tasks = 0 OR d.running_tasks < d.max_tasks) "
    "RETURNING d.delegate_id, d.session) "
    "UPDATE tasks t SET status = 'ASSIGNED', delegate_id = taken.delegate_id, "
    "assigned_at = now() FROM taken WHERE t.task_id = $5 AND t.attempt = $6 "
    "RETURNING taken.delegate_id, taken.session")
_PICK_SKIP_LOCKED = _PICK_AND_ASSIGN.format(lock="SKIP LOCKED")
_PICK_WAITING = _PICK_AND_ASSIGN.format(lock="")
_ANY_WITH_ROOM = "SELECT EXISTS (SELECT 1 FROM delegates WHERE " + _QUALIFY + ")"


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def candidate(r: asyncpg.Record) -> Candidate:
    """A `delegates` row as the selection sees it."""
    return Candidate(r["delegate_id"], r["account_id"], r["version"], frozenset(r["capabilities"]),
                     r["running_tasks"], frozenset(r["selectors"]), r["max_tasks"])


def _needs(task: asyncpg.Record) -> tuple:
    """What a task asks of a delegate: tasks asking the same compete for the same slots."""
    return (task["account_id"], task["vigil_version"], task["capability"],
            tuple(sorted(task["selectors"])))


class Work:
    """One open transaction: its connection, the events it queues for the outbox (written
    per event by ``flush``, under that event's trace), the tasks to retry after commit, and
    the needs no delegate had room for (so the next queued task with the same needs is not
    tried again until this transaction frees a slot or a delegate connects: with thousands of
    delegates a failing pick reads many of them)."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn
        self.items: list[outbox.Item] = []
        self.retry: list[tuple[str, int]] = []
        self.no_room: set[tuple] = set()

    async def flush(self) -> None:
        items, self.items = self.items, []
        await outbox.add_many(self.conn, PRODUCER, items)


class PostgresDispatch:
    def __init__(self, pool: asyncpg.Pool, version: str, timeouts: Timeouts | None = None):
        self._pool = pool
        self._version = version
        self._t = timeouts or Timeouts()
        self.consumer = f"{version}.task-dispatch"

    # --- transactions ---

    @contextlib.asynccontextmanager
    async def work(self) -> AsyncIterator[Work]:
        """A transaction; tasks it left queued only because every delegate with room was
        locked by another transaction are retried once after it committed."""
        async with self._pool.acquire() as conn:
            work = Work(conn)
            async with conn.transaction():
                yield work
        if work.retry:
            await self.assign_now(work.retry)

    async def lock_for(self, work: Work, messages: Iterable[pb_message.Message]) -> None:
        """Lock, in the global order (tasks, then delegates, each by key), the rows these
        events will change and would otherwise have to wait for one at a time."""
        tasks = sorted({(m.task_id, m.attempt) for m in messages
                        if isinstance(m, tasks_pb2.TaskStarted | tasks_pb2.TaskSucceeded
                                      | tasks_pb2.TaskFailed)})
        delegates = {m.delegate_id for m in messages
                     if isinstance(m, tasks_pb2.DelegateConnected | tasks_pb2.DelegateDisconnected
                                   | tasks_pb2.TaskStarted)}
        if tasks:
            rows = await work.conn.fetch(
                "SELECT t.delegate_id FROM tasks t JOIN unnest($1::text[], $2::int[]) "
                "AS k(task_id, attempt) USING (task_id, attempt) "
                "ORDER BY t.task_id, t.attempt FOR UPDATE OF t",
                [t for t, _ in tasks], [a for _, a in tasks])
            delegates.update(r["delegate_id"] for r in rows if r["delegate_id"])
        await self._lock_delegates(work.conn, delegates)

    @staticmethod
    async def _lock_delegates(conn: asyncpg.Connection, delegate_ids: Iterable[str]) -> None:
        ids = sorted(set(delegate_ids))
        if ids:
            await conn.execute("SELECT 1 FROM delegates WHERE delegate_id = ANY($1::text[]) "
                               "ORDER BY delegate_id FOR UPDATE", ids)

    # --- one event in its own transaction (claim, lock, apply) ---

    async def enqueue(self, event_id: str, cmd: tasks_pb2.DispatchTask) -> str | None:
        """Queue a task and try to assign it; returns the delegate id if assigned now."""
        async with self.work() as w:
            if await inbox.claim(w.conn, self.consumer, event_id):
                return await self.apply_enqueue(w, cmd)
        return None

    async def delegate_connected(self, event_id: str, ev: tasks_pb2.DelegateConnected) -> int:
        """See ``apply_delegate_connected``."""
        async with self.work() as w:
            if await inbox.claim(w.conn, self.consumer, event_id):
                await self.lock_for(w, [ev])
                return await self.apply_delegate_connected(w, ev)
        return 0

    async def delegate_disconnected(self, event_id: str,
                                    ev: tasks_pb2.DelegateDisconnected) -> None:
        """Mark the session gone; its tasks are re-queued by the sweeper if it stays away."""
        async with self.work() as w:
            if await inbox.claim(w.conn, self.consumer, event_id):
                await self.apply_delegate_disconnected(w, ev)

    async def task_started(self, event_id: str, ev: tasks_pb2.TaskStarted) -> bool:
        """See ``apply_task_started``."""
        async with self.work() as w:
            if await inbox.claim(w.conn, self.consumer, event_id):
                await self.lock_for(w, [ev])
                return await self.apply_task_started(w, ev)
        return False

    async def task_finished(self, event_id: str, task_id: str, attempt: int,
                            success: bool) -> None:
        """See ``apply_task_finished``."""
        async with self.work() as w:
            if await inbox.claim(w.conn, self.consumer, event_id):
                await self.lock_for(w, [tasks_pb2.TaskSucceeded(task_id=task_id,
                                                                attempt=attempt)])
                await self.apply_task_finished(w, task_id, attempt, success)

    # --- applying one event inside a Work (claimed and locked by the caller) ---

    async def apply_enqueue(self, w: Work, cmd: tasks_pb2.DispatchTask) -> str | None:
        validity = cmd.validity_seconds or self._t.validity_seconds
        task = await w.conn.fetchrow(
            "INSERT INTO tasks (task_id, attempt, account_id, execution_id, capability, "
            "vigil_version, spec, timeout_seconds, status, selectors, validity_seconds, "
            "valid_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'QUEUED', $9, $10, "
            "now() + $10 * interval '1 second') ON CONFLICT DO NOTHING RETURNING *",
            cmd.task_id, cmd.attempt, cmd.account_id, cmd.execution_id, cmd.capability,
            self._version, cmd.spec.SerializeToString(), cmd.timeout_seconds,
            sorted(set(cmd.selectors)), validity)
        if task is None:
            return None
        delegate = await self._assign_row(w, task)  # the new row is ours (locked) already
        await w.flush()
        return delegate

    async def apply_delegate_connected(self, w: Work, ev: tasks_pb2.DelegateConnected) -> int:
        """Record a connection (newer sessions only), re-send the tasks assigned to the
        delegate but not started, assign queued tasks; returns how many were newly assigned.

        The re-send closes a gap: an assignment broadcast while the delegate moved between
        gateway instances reached no gateway that held it. The delegate drops a task it has.
        """
        conn = w.conn
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
        w.no_room.clear()
        # The counter may be stale after re-queues of a vanished session: recount.
        await conn.execute(
            "UPDATE delegates SET running_tasks = (SELECT count(*) FROM tasks WHERE "
            "delegate_id = $1 AND status = ANY($2::text[])) WHERE delegate_id = $1",
            ev.delegate_id, _IN_FLIGHT)
        for task in await conn.fetch(
                "SELECT * FROM tasks WHERE delegate_id = $1 AND status = 'ASSIGNED' "
                "ORDER BY assigned_at", ev.delegate_id):
            self._announce(w, task, ev.delegate_id, ev.session)
        queued = await conn.fetch(
            "SELECT task_id, attempt, account_id, vigil_version, capability, selectors "
            "FROM tasks WHERE status = 'QUEUED' AND account_id = $1 "
            "AND vigil_version = $2 AND capability = ANY($3::text[]) ORDER BY created_at "
            "LIMIT 1000", ev.account_id, self._version, list(ev.capabilities))
        assigned = 0
        for row in queued:
            if await self._assign(w, row):
                assigned += 1
        await w.flush()
        return assigned

    async def apply_delegate_disconnected(self, w: Work,
                                          ev: tasks_pb2.DelegateDisconnected) -> None:
        await w.conn.execute(
            "UPDATE delegates SET connected = false, disconnected_at = now(), "
            "updated_at = now() WHERE delegate_id = $1 AND session = $2",
            ev.delegate_id, ev.session)

    async def apply_task_started(self, w: Work, ev: tasks_pb2.TaskStarted) -> bool:
        """assigned -> running. A re-queued task that its old delegate turns out to be running
        is given back to it. Returns whether the task changed."""
        conn = w.conn
        task = await conn.fetchrow(
            "SELECT status, delegate_id, account_id FROM tasks WHERE task_id = $1 "
            "AND attempt = $2 FOR UPDATE", ev.task_id, ev.attempt)
        if task is None:
            return False
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

    async def apply_task_finished(self, w: Work, task_id: str, attempt: int,
                                  success: bool) -> None:
        """Close a task (once), free its delegate's slot and give the slot to the next queued
        task of the account."""
        conn = w.conn
        task = await conn.fetchrow(
            "UPDATE tasks t SET status = $3, finished_at = now() FROM (SELECT status AS before "
            "FROM tasks WHERE task_id = $1 AND attempt = $2 AND status = ANY($4::text[]) "
            "FOR UPDATE) b WHERE t.task_id = $1 AND t.attempt = $2 "
            "RETURNING b.before, t.delegate_id, t.account_id",
            task_id, attempt, "SUCCEEDED" if success else "FAILED", _OPEN)
        if task is None:
            return
        if TaskStatus(task["before"]).in_flight and task["delegate_id"]:
            await conn.execute(
                "UPDATE delegates SET running_tasks = greatest(running_tasks - 1, 0) "
                "WHERE delegate_id = $1", task["delegate_id"])
            w.no_room.clear()
            for row in await conn.fetch(
                    "SELECT task_id, attempt, account_id, vigil_version, capability, selectors "
                    "FROM tasks WHERE status = 'QUEUED' AND account_id = $1 "
                    "AND vigil_version = $2 ORDER BY created_at LIMIT 3",
                    task["account_id"], self._version):
                if await self._assign(w, row):
                    break
            await w.flush()

    # --- assignment ---

    async def _assign(self, w: Work, queued: asyncpg.Record) -> str | None:
        """Assign a task read as queued (``_needs``' columns, task_id, attempt), unless no
        delegate had room for such a task earlier in this transaction."""
        if _needs(queued) in w.no_room:
            return None
        # SKIP LOCKED: a task another transaction is assigning (the sweeper, another
        # dispatcher) is theirs.
        task = await w.conn.fetchrow(
            "SELECT * FROM tasks WHERE task_id = $1 AND attempt = $2 AND status = 'QUEUED' "
            "FOR UPDATE SKIP LOCKED", queued["task_id"], queued["attempt"])
        if task is None:
            return None
        return await self._assign_row(w, task)

    async def _assign_row(self, w: Work, task: asyncpg.Record, *,
                          wait: bool = False) -> str | None:
        """Assign a QUEUED task whose row this transaction holds; queue its TaskAssigned in
        ``w.items``. Returns the delegate, or None (then the task stays queued)."""
        if _needs(task) in w.no_room:
            return None
        args = (task["account_id"], task["vigil_version"], task["capability"],
                task["selectors"], task["task_id"], task["attempt"])
        chosen = await w.conn.fetchrow(_PICK_WAITING if wait else _PICK_SKIP_LOCKED, *args)
        if chosen is None:
            if not wait and await w.conn.fetchval(_ANY_WITH_ROOM, *args[:4]):
                w.retry.append((task["task_id"], task["attempt"]))  # held by others
            else:
                w.no_room.add(_needs(task))
            return None
        self._announce(w, task, chosen["delegate_id"], chosen["session"])
        return chosen["delegate_id"]

    async def assign_now(self, tasks: list[tuple[str, int]]) -> int:
        """Assign these queued tasks, each in a short transaction that waits for a delegate
        row held by another. It holds only the task row meanwhile, and whoever waits for task
        rows holds no delegate row yet (``lock_for``), so no cycle. Returns how many were
        assigned."""
        assigned = 0
        for task_id, attempt in tasks:
            async with self._pool.acquire() as conn, conn.transaction():
                w = Work(conn)
                task = await conn.fetchrow(
                    "SELECT * FROM tasks WHERE task_id = $1 AND attempt = $2 "
                    "AND status = 'QUEUED' FOR UPDATE SKIP LOCKED", task_id, attempt)
                if task is not None and await self._assign_row(w, task, wait=True):
                    assigned += 1
                    await w.flush()
        return assigned

    def _announce(self, w: Work, task: asyncpg.Record, delegate_id: str, session: int) -> None:
        w.items.append(outbox.Item(
            topics.gateway_assignments(self._version), task["execution_id"],
            tasks_pb2.TaskAssigned(
                task_id=task["task_id"], attempt=task["attempt"], account_id=task["account_id"],
                execution_id=task["execution_id"], delegate_id=delegate_id,
                spec=spec_pb2.TaskSpec.FromString(task["spec"]),
                timeout_seconds=task["timeout_seconds"], session=session),
            f"assigned/{task['task_id']}/{task['attempt']}/{session}"))

    # --- the sweeper's passes (each returns how many tasks it changed) ---

    async def assign_queued(self, per_account: int = 20, limit: int = 500) -> int:
        """Try to assign queued tasks, round-robin across accounts (fairness), oldest first
        within an account; one short transaction per task."""
        rows = await self._pool.fetch(
            "SELECT task_id, attempt, account_id, vigil_version, capability, selectors FROM "
            "(SELECT *, row_number() OVER (PARTITION BY account_id ORDER BY created_at) AS rn "
            "FROM tasks WHERE status = 'QUEUED' AND vigil_version = $1) q WHERE rn <= $2 "
            "ORDER BY account_id, rn", self._version, per_account)
        assigned = 0
        no_room: set[tuple] = set()  # for this pass; the next pass tries again
        for row in round_robin(rows, key=lambda r: r["account_id"])[:limit]:
            if _needs(row) in no_room:
                continue
            async with self._pool.acquire() as conn, conn.transaction():
                w = Work(conn)
                if await self._assign(w, row):
                    assigned += 1
                    await w.flush()
                no_room |= w.no_room
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
            await self._lock_delegates(conn, (t["delegate_id"] for t in tasks))
            for t in tasks:
                reason = (f"no result from delegate {t['delegate_id']} within the task's "
                          f"timeout of {t['timeout_seconds']:g}s plus "
                          f"{self._t.result_grace_seconds:g}s grace (task was {t['status']})")
                await self._expire(conn, t, reason, tasks_pb2.TASK_FAILURE_KIND_NO_RESULT)
                await conn.execute(
                    "UPDATE delegates SET running_tasks = greatest(running_tasks - 1, 0) "
                    "WHERE delegate_id = $1", t["delegate_id"])
            return len(tasks)

    async def requeue_vanished(self, limit: int = 500) -> int:
        """Put the tasks of delegates disconnected longer than requeue_after back in the queue
        (same attempt, new validity period), then try to assign them elsewhere."""
        async with self._pool.acquire() as conn, conn.transaction():
            w = Work(conn)
            tasks = await conn.fetch(
                "SELECT t.task_id, t.attempt, t.delegate_id, t.account_id, t.vigil_version, "
                "t.capability, t.selectors FROM tasks t "
                "JOIN delegates d "
                "ON d.delegate_id = t.delegate_id WHERE t.status = ANY($1::text[]) "
                "AND t.vigil_version = $2 AND NOT d.connected AND d.disconnected_at < now() - "
                "$3 * interval '1 second' LIMIT $4 FOR UPDATE OF t SKIP LOCKED",
                _IN_FLIGHT, self._version, self._t.requeue_after_seconds, limit)
            await self._lock_delegates(conn, (t["delegate_id"] for t in tasks))
            for t in tasks:
                await conn.execute(
                    "UPDATE tasks SET status = 'QUEUED', delegate_id = NULL, assigned_at = NULL, "
                    "started_at = NULL, requeues = requeues + 1, "
                    "valid_until = now() + validity_seconds * interval '1 second' "
                    "WHERE task_id = $1 AND attempt = $2", t["task_id"], t["attempt"])
                await conn.execute(
                    "UPDATE delegates SET running_tasks = greatest(running_tasks - 1, 0) "
                    "WHERE delegate_id = $1", t["delegate_id"])
            for t in tasks:
                await self._assign(w, t)
            await w.flush()
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
