"""Delegate sessions opened and closed in group commits.

Thousands of delegates register at once when a gateway starts or a network comes back. One
transaction per registration caps a gateway at about 70 registrations a second on these
machines (RUNTIME.md: a commit is a WAL flush), and streams waiting behind it time out. Here
every open or close joins the next batch: while one batch is being written, the next one
gathers, and each batch is one transaction — one upsert for the sessions, one for the
closes, and the outbox rows of their DelegateConnected / DelegateDisconnected events. A
caller still learns its own session number, and its event is durable when its call returns.

A stream that goes away while its session is being opened (the caller was cancelled) gets
the session closed right after, so no session is left marked connected without a stream.
"""

from __future__ import annotations

import asyncio
import collections
import json

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.events.v1 import tasks_pb2
from vigil_common import logs, outbox, topics
from vigil_common.groupcommit import GroupCommit

log = logs.get(__name__)

Change = tasks_pb2.DelegateConnected | tasks_pb2.DelegateDisconnected

_OPEN = """
INSERT INTO delegate_sessions (delegate_id, account_id, name, session, gateway_id, connected,
                               version, capabilities, selectors)
SELECT d.delegate_id, d.account_id, d.name, 1, $2, true, d.version, d.capabilities, d.selectors
FROM jsonb_to_recordset($1::jsonb) AS d(delegate_id text, account_id text, name text,
                                         version text, capabilities text[], selectors text[])
ON CONFLICT (delegate_id) DO UPDATE
SET session = delegate_sessions.session + 1, gateway_id = EXCLUDED.gateway_id,
    connected_at = now(), connected = true, version = EXCLUDED.version,
    capabilities = EXCLUDED.capabilities, selectors = EXCLUDED.selectors, disconnected_at = NULL
RETURNING delegate_id, session
"""

_CLOSE = """
UPDATE delegate_sessions s SET connected = false, disconnected_at = now()
FROM unnest($1::text[], $2::bigint[]) AS c(delegate_id, session)
WHERE s.delegate_id = c.delegate_id AND s.session = c.session
"""


class SessionWriter:
    """Group commit of session changes (vigil_common.groupcommit, one set-based transaction
    per batch); ``open`` and ``close`` are safe to call from any number of concurrent
    streams."""

    def __init__(self, pool: asyncpg.Pool, producer: str, version: str, gateway_id: str,
                 max_batch: int = 500):
        self._producer = producer
        self._topic = topics.delegate_events(version)
        self._gateway_id = gateway_id
        self._commits: GroupCommit[Change, int] = GroupCommit(
            pool, apply_batch=self._write, name="gateway-sessions", max_batch=max_batch)
        self._closing: set[asyncio.Task] = set()

    @property
    def batches(self) -> int:
        """Transactions written, for tests and the benchmark."""
        return self._commits.batches

    async def open(self, ev: tasks_pb2.DelegateConnected) -> int:
        """Start the delegate's next session and queue DelegateConnected; returns its number
        (also set on ``ev``)."""
        opening = asyncio.ensure_future(self._commits.submit(ev))
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:  # the stream went away: close the session once opened
            opening.add_done_callback(lambda done: done.cancelled() or done.exception()
                                      or self._orphaned(ev))
            raise

    async def close(self, ev: tasks_pb2.DelegateDisconnected) -> None:
        """End the session (if it is still the delegate's current one) and queue
        DelegateDisconnected."""
        await self._commits.submit(ev)

    def _orphaned(self, ev: tasks_pb2.DelegateConnected) -> None:
        """The stream that opened this session is gone: close the session after it."""
        closing = asyncio.ensure_future(self.close(tasks_pb2.DelegateDisconnected(
            delegate_id=ev.delegate_id, account_id=ev.account_id, gateway_id=ev.gateway_id,
            session=ev.session, disconnected_at=ev.connected_at)))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        closing.add_done_callback(lambda done: done.cancelled() or done.exception() is None
                                  or log.warning("orphaned session not closed",
                                                 delegate_id=ev.delegate_id,
                                                 error=repr(done.exception())))

    async def _write(self, conn: asyncpg.Connection, changes: list[Change]) -> list[int]:
        """The batch's statements; returns each change's session number."""
        closes = [ev for ev in changes if isinstance(ev, tasks_pb2.DelegateDisconnected)]
        opens = [ev for ev in changes if isinstance(ev, tasks_pb2.DelegateConnected)]
        if closes:
            await conn.execute(_CLOSE, [ev.delegate_id for ev in closes],
                               [ev.session for ev in closes])
        # A delegate that reconnected twice within one batch: one upsert per round, as a row
        # can change only once per statement; its sessions stay in call order.
        for round_ in _rounds(opens):
            rows = await conn.fetch(_OPEN, json.dumps([{
                "delegate_id": ev.delegate_id, "account_id": ev.account_id, "name": ev.name,
                "version": ev.version, "capabilities": list(ev.capabilities),
                "selectors": list(ev.selectors)} for ev in round_]), self._gateway_id)
            numbered = {r["delegate_id"]: r["session"] for r in rows}
            for ev in round_:
                ev.session = numbered[ev.delegate_id]
        await outbox.add_many(conn, self._producer, [
            outbox.Item(self._topic, ev.delegate_id, ev, _event_id(ev)) for ev in changes])
        return [ev.session for ev in changes]


async def close_instance_sessions(conn: asyncpg.Connection, producer: str, version: str,
                                  gateway_id: str) -> int:
    """Close every session still marked connected on a gateway instance that is gone (crashed,
    or restarted under the same id), with their DelegateDisconnected events, in the caller's
    transaction; returns how many. The event ids are those a clean close would have used, so
    consumers that already saw one drop the other."""
    rows = await conn.fetch(
        "UPDATE delegate_sessions SET connected = false, disconnected_at = now() "
        "WHERE gateway_id = $1 AND connected RETURNING delegate_id, account_id, session",
        gateway_id)
    now = Timestamp()
    now.GetCurrentTime()
    events = [tasks_pb2.DelegateDisconnected(
        delegate_id=r["delegate_id"], account_id=r["account_id"], gateway_id=gateway_id,
        session=r["session"], disconnected_at=now) for r in rows]
    await outbox.add_many(conn, producer, [
        outbox.Item(topics.delegate_events(version), ev.delegate_id, ev, _event_id(ev))
        for ev in events])
    return len(events)


def _event_id(ev: Change) -> str:
    kind = "connected" if isinstance(ev, tasks_pb2.DelegateConnected) else "disconnected"
    return f"{kind}/{ev.delegate_id}/{ev.session}"


def _rounds(opens: list[tasks_pb2.DelegateConnected]) -> list[list[tasks_pb2.DelegateConnected]]:
    """Split into rounds in which each delegate appears at most once: a delegate's n-th
    change goes to round n, so its sessions are numbered in call order."""
    rounds: list[list[tasks_pb2.DelegateConnected]] = []
    seen: collections.Counter[str] = collections.Counter()
    for ev in opens:
        n = seen[ev.delegate_id]
        seen[ev.delegate_id] += 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(ev)
    return rounds
