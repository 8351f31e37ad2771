"""Idempotent consumers: remember which events a consumer has handled.

Call ``claim`` inside the transaction that applies the event; it returns False for an event
this consumer already handled, and the caller then does nothing. Because the claim commits
with the state change, a redelivered event changes nothing.
"""

from __future__ import annotations

import asyncpg


async def claim(conn: asyncpg.Connection, consumer: str, event_id: str) -> bool:
    """True the first time ``consumer`` sees ``event_id`` (in this transaction's view)."""
    row = await conn.fetchval(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) "
        "ON CONFLICT DO NOTHING RETURNING 1", consumer, event_id)
    return row is not None


async def claim_many(conn: asyncpg.Connection, consumer: str, event_ids: list[str]) -> set[str]:
    """``claim`` for several events in one round trip: the ids seen for the first time.

    Rows are inserted in id order, so two transactions claiming overlapping sets (e.g. two
    consumers around a rebalance) wait for each other in one order and never deadlock. An id
    listed twice is claimed once; the caller handles only its first occurrence.
    """
    if not event_ids:
        return set()
    rows = await conn.fetch(
        "INSERT INTO processed_events (consumer, event_id) "
        "SELECT $1, e FROM unnest($2::text[]) AS e ORDER BY e "
        "ON CONFLICT DO NOTHING RETURNING event_id", consumer, sorted(set(event_ids)))
    return {r["event_id"] for r in rows}
