"""Reading the stored input data of verifications (``verification_data``, migration 0014).

The delegate-gateway writes it (one row per verification and part, as it stores each
health-data report) and sweeps it after ``VERIFICATION_DATA_RETENTION_DAYS``; the orchestrator
only reads it, always within the caller's account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from google.protobuf import message as pb_message

from vigil.events.v1 import verification_pb2

_TYPES: dict[str, type[pb_message.Message]] = {
    verification_pb2.MetricsCollected.DESCRIPTOR.full_name: verification_pb2.MetricsCollected,
    verification_pb2.LogsCollected.DESCRIPTOR.full_name: verification_pb2.LogsCollected,
}


@dataclass(frozen=True)
class StoredPart:
    verification_id: str
    part: str  # metrics | metrics/<first interval> | logs
    message: pb_message.Message


async def load(pool: asyncpg.Pool, account_id: str, execution_id: str,
               verification_ids: Sequence[str]) -> list[StoredPart]:
    """The stored parts of these verifications of the account's execution, by id and part."""
    rows = await pool.fetch(
        "SELECT verification_id, part, message_type, payload FROM verification_data "
        "WHERE account_id = $1 AND execution_id = $2 AND verification_id = ANY($3::text[]) "
        "ORDER BY verification_id, part", account_id, execution_id, list(verification_ids))
    parts = []
    for r in rows:
        kind = _TYPES.get(r["message_type"])
        if kind is None:  # written by a newer gateway: not ours to read
            continue
        parts.append(StoredPart(r["verification_id"], r["part"],
                                kind.FromString(r["payload"])))
    return parts
