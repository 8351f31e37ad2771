"""Account API keys, shared by every public gRPC service (the orchestrator's API, the
gateway's DelegateAdmin, the log analyzer's feedback service).

A call carries ``authorization: Bearer <api key>``. The key decides the account; a request
naming another account is refused (PERMISSION_DENIED), a missing, unknown or revoked key is
UNAUTHENTICATED. Only the key's SHA-256 is stored (table ``api_keys``); a key is created by
``vigil apikey create`` and shown once.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Awaitable, Callable

import asyncpg
import grpc


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create(pool: asyncpg.Pool, account_id: str, name: str) -> str:
    """A new API key for the account; only its hash is stored. Returns the key."""
    key = f"vak_{secrets.token_urlsafe(32)}"
    await pool.execute("INSERT INTO api_keys (key_hash, account_id, name) VALUES ($1, $2, $3)",
                       hash_key(key), account_id, name)
    return key


async def authenticate(pool: asyncpg.Pool, key: str) -> tuple[str, str] | None:
    """(account_id, key name) of an active key, else None."""
    row = await pool.fetchrow(
        "SELECT account_id, name FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        hash_key(key))
    return (row["account_id"], row["name"]) if row else None


class Caller:
    """Authenticates a call: ``await caller(context, request.account_id)`` returns the key's
    (account, key name), or ends the call with UNAUTHENTICATED / PERMISSION_DENIED."""

    def __init__(self, lookup: Callable[[str], Awaitable[tuple[str, str] | None]]):
        """``lookup(key)``: (account, name) of an active key, else None (``authenticate``)."""
        self._lookup = lookup

    @classmethod
    def of(cls, pool: asyncpg.Pool) -> Caller:
        return cls(functools.partial(authenticate, pool))

    async def __call__(self, context: grpc.aio.ServicerContext, requested_account: str,
                       account_field: str = "account_id") -> tuple[str, str]:
        metadata = dict(context.invocation_metadata() or ())
        scheme, _, key = metadata.get("authorization", "").partition(" ")
        found = await self._lookup(key) if scheme.lower() == "bearer" else None
        if found is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "authorization: expected 'Bearer <api key>' with an active key")
        account, name = found
        if requested_account and requested_account != account:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{account_field}: the API key belongs to another account")
        return account, name
