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
