"""Broadcast tasks in PostgreSQL: ask every matching connected delegate, aggregate the answers.

A request records the delegates asked (one ``broadcast_answers`` row each) and publishes one
BroadcastAssigned, which every gateway forwards to the delegates it holds. Each answer fills
its row; the last one, or the sweeper at the deadline, completes the broadcast exactly once
(``completed_at`` set under a row lock) with one BroadcastCompleted event.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
from google.protobuf import message as pb_message
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.events.v1 import tasks_pb2
from vigil_common import inbox, outbox, topics
from vigil_dispatch.adapters.postgres import PRODUCER, candidate
from vigil_dispatch.domain import qualifies


class PostgresBroadcasts:
    def __init__(self, pool: asyncpg.Pool, version: str):
        self._pool = pool
        self._version = version
        self.consumer = f"{version}.task-dispatch"

    async def request(self, event_id: str, req: tasks_pb2.BroadcastRequested) -> int:
        """Fan a broadcast out; returns how many delegates were asked (0: completed at once)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, event_id):
                return 0
            return await self.apply_request(conn, req)

    async def answer(self, event_id: str, ans: tasks_pb2.BroadcastAnswered) -> bool:
        """Record one delegate's answer; completes the broadcast when it was the last.
        Returns True when this answer completed it."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, event_id):
                return False
            return await self.apply_answer(conn, ans)

    @staticmethod
    async def lock_for(conn: asyncpg.Connection, messages: Iterable[pb_message.Message]) -> None:
        """Lock the broadcasts these events answer, in id order: broadcasts come first in
        task-dispatch's lock order (then tasks, then delegates; see adapters.postgres)."""
        ids = sorted({m.broadcast_id for m in messages
                      if isinstance(m, tasks_pb2.BroadcastAnswered)})
        if ids:
            await conn.execute("SELECT 1 FROM broadcasts WHERE broadcast_id = ANY($1::text[]) "
                               "ORDER BY broadcast_id FOR UPDATE", ids)

    async def apply_request(self, conn: asyncpg.Connection,
                            req: tasks_pb2.BroadcastRequested) -> int:
        """``request`` inside the caller's transaction (event already claimed)."""
        timeout = req.timeout_seconds or 10.0
        inserted = await conn.fetchval(
            "INSERT INTO broadcasts (broadcast_id, account_id, vigil_version, capability, "
            "selectors, deadline) VALUES ($1, $2, $3, $4, $5, "
            "now() + $6 * interval '1 second') ON CONFLICT DO NOTHING RETURNING 1",
            req.broadcast_id, req.account_id, self._version, req.capability,
            sorted(set(req.selectors)), timeout)
        if inserted is None:
            return 0
        rows = await conn.fetch(
            "SELECT * FROM delegates WHERE connected AND account_id = $1 AND version = $2 "
            "ORDER BY name", req.account_id, self._version)
        asked = [r for r in rows if qualifies(candidate(r), req.account_id, self._version,
                                              req.capability, req.selectors)]
        await conn.executemany(
            "INSERT INTO broadcast_answers (broadcast_id, delegate_id, name) "
            "VALUES ($1, $2, $3)", [(req.broadcast_id, r["delegate_id"], r["name"])
                                    for r in asked])
        if not asked:
            await self._complete(conn, req.broadcast_id)
            return 0
        await outbox.add(conn, PRODUCER, topics.gateway_assignments(self._version),
                         req.broadcast_id, tasks_pb2.BroadcastAssigned(
                             broadcast_id=req.broadcast_id, account_id=req.account_id,
                             delegate_ids=[r["delegate_id"] for r in asked],
                             check=req.check, timeout_seconds=timeout),
                         event_id=f"broadcast-assigned/{req.broadcast_id}")
        return len(asked)

    async def apply_answer(self, conn: asyncpg.Connection,
                           ans: tasks_pb2.BroadcastAnswered) -> bool:
        """``answer`` inside the caller's transaction (event already claimed)."""
        open_ = await conn.fetchval(
            "SELECT 1 FROM broadcasts WHERE broadcast_id = $1 AND account_id = $2 "
            "AND completed_at IS NULL FOR UPDATE", ans.broadcast_id, ans.account_id)
        if open_ is None:
            return False  # unknown, another account's, or too late
        await conn.execute(
            "UPDATE broadcast_answers SET answered_at = now(), ok = $3, detail = $4 "
            "WHERE broadcast_id = $1 AND delegate_id = $2 AND answered_at IS NULL",
            ans.broadcast_id, ans.delegate_id, ans.ok, ans.detail[:2000])
        waiting = await conn.fetchval(
            "SELECT count(*) FROM broadcast_answers WHERE broadcast_id = $1 "
            "AND answered_at IS NULL", ans.broadcast_id)
        if waiting:
            return False
        return await self._complete(conn, ans.broadcast_id)

    async def complete_due(self, limit: int = 100) -> int:
        """Complete broadcasts past their deadline, reporting the missing answers."""
        async with self._pool.acquire() as conn, conn.transaction():
            due = await conn.fetch(
                "SELECT broadcast_id FROM broadcasts WHERE completed_at IS NULL "
                "AND vigil_version = $1 AND deadline < now() LIMIT $2 FOR UPDATE SKIP LOCKED",
                self._version, limit)
            for row in due:
                await self._complete(conn, row["broadcast_id"])
            return len(due)

    async def _complete(self, conn: asyncpg.Connection, broadcast_id: str) -> bool:
        b = await conn.fetchrow(
            "UPDATE broadcasts SET completed_at = now() WHERE broadcast_id = $1 "
            "AND completed_at IS NULL RETURNING *", broadcast_id)
        if b is None:
            return False
        answers = await conn.fetch(
            "SELECT * FROM broadcast_answers WHERE broadcast_id = $1 ORDER BY name", broadcast_id)
        done = tasks_pb2.BroadcastCompleted(
            broadcast_id=broadcast_id, account_id=b["account_id"], capability=b["capability"],
            answers=[tasks_pb2.BroadcastAnswerSummary(
                delegate_id=a["delegate_id"], name=a["name"],
                answered=a["answered_at"] is not None, ok=bool(a["ok"]),
                detail=a["detail"] if a["answered_at"] else "no answer before the deadline")
                for a in answers])
        done.ok_count = sum(a.answered and a.ok for a in done.answers)
        done.failed_count = sum(a.answered and not a.ok for a in done.answers)
        done.missing_count = sum(not a.answered for a in done.answers)
        done.summary = summarize(done, b["selectors"])
        done.completed_at.CopyFrom(_now())
        await outbox.add(conn, PRODUCER, topics.broadcast_results(self._version), broadcast_id,
                         done, event_id=f"broadcast-completed/{broadcast_id}")
        return True


def summarize(done: tasks_pb2.BroadcastCompleted, selectors: list[str]) -> str:
    """One line for people: "2 of 3 delegates ok, 1 failed" or why nobody was asked."""
    total = len(done.answers)
    if total == 0:
        sel = f" and selectors {', '.join(selectors)}" if selectors else ""
        return (f"no connected delegate of account {done.account_id!r} has capability "
                f"{done.capability!r}{sel}")
    parts = [f"{done.ok_count} of {total} delegates ok"]
    if done.failed_count:
        parts.append(f"{done.failed_count} failed")
    if done.missing_count:
        parts.append(f"{done.missing_count} did not answer")
    return ", ".join(parts)


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts
