"""Delegate token checks with bounded staleness.

Every delegate of an account usually registers with the same account token, and thousands
register at once after a gateway restart. Asking PostgreSQL once per registration made the
token check half of a registration's cost; here a token found valid is trusted for ``ttl``
seconds, and concurrent checks of the same token share one query.

Revocation stays prompt: the revocation NOTIFY (and the periodic re-check of live streams,
see ``vigil_gateway.handlers.watch_revocations``) calls ``forget`` before it closes the live
streams, so after a revocation is seen no new stream is accepted with the token; if the
NOTIFY is lost, a revoked token is accepted for at most ``ttl`` seconds and its streams are
closed by the next re-check. Invalid tokens are never cached: each refusal asks the database,
so a token created a moment ago works at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import Counter

from vigil_gateway.adapters.postgres import hash_token

Key = tuple[str, str]  # (account, token hash)
LOOKUPS = Counter("vigil_gateway_token_lookups_total",
                  "Token checks that asked the database (the rest were answered by the cache)",
                  ["result"])


class TokenCache:
    def __init__(self, lookup: Callable[[str, str], Awaitable[bool]], ttl: float,
                 clock: Callable[[], float] = time.monotonic):
        """``lookup(account_id, token)`` asks the source of truth (GatewayStore.token_valid)."""
        self._lookup = lookup
        self._ttl = ttl
        self._clock = clock
        self._valid_since: dict[Key, float] = {}
        self._asking: dict[Key, asyncio.Future[bool]] = {}
        self.lookups = 0  # queries sent, for tests and the benchmark

    async def valid(self, account_id: str, token: str) -> bool:
        key = (account_id, hash_token(token))
        checked = self._valid_since.get(key)
        if checked is not None and self._clock() - checked < self._ttl:
            return True
        asking = self._asking.get(key)
        if asking is None:
            asking = asyncio.ensure_future(self._ask(key, account_id, token))
            self._asking[key] = asking
            asking.add_done_callback(lambda done: self._asking.get(key) is done
                                     and self._asking.pop(key))
        # shielded: one caller going away must not cancel the others' answer
        return await asyncio.shield(asking)

    async def _ask(self, key: Key, account_id: str, token: str) -> bool:
        self.lookups += 1
        started = self._clock()
        ok = await self._lookup(account_id, token)
        LOOKUPS.labels("valid" if ok else "invalid").inc()
        if ok and self._asking.get(key) is asyncio.current_task():  # not forgotten meanwhile
            self._valid_since[key] = started
        return ok

    def forget(self, keys: Iterable[Key] | None = None) -> None:
        """Drop cached answers (all of them by default): the next check asks again.
        Checks in flight are detached, so their answer is not cached either."""
        if keys is None:
            self._valid_since.clear()
            self._asking.clear()
        else:
            for key in keys:
                self._valid_since.pop(key, None)
                self._asking.pop(key, None)
