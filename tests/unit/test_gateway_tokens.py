"""The gateway's token cache (vigil_gateway.adapters.tokens): bounded staleness, one query
per token however many delegates register at once, refusals never cached."""

from __future__ import annotations

import asyncio

from vigil_gateway.adapters.postgres import hash_token
from vigil_gateway.adapters.tokens import TokenCache


class _Database:
    """The source of truth: which (account, token) pairs are valid; counts queries."""

    def __init__(self, valid: set[tuple[str, str]]):
        self.valid = valid
        self.queries = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def lookup(self, account: str, token: str) -> bool:
        self.queries += 1
        await self.gate.wait()
        return (account, token) in self.valid


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_many_concurrent_checks_of_one_token_send_one_query():
    db = _Database({("acct", "tok")})
    db.gate.clear()
    cache = TokenCache(db.lookup, ttl=5)
    checks = [asyncio.ensure_future(cache.valid("acct", "tok")) for _ in range(1000)]
    await asyncio.sleep(0)
    db.gate.set()
    assert await asyncio.gather(*checks) == [True] * 1000
    assert db.queries == 1


async def test_a_valid_token_is_trusted_for_the_ttl_then_asked_again():
    db, clock = _Database({("acct", "tok")}), _Clock()
    cache = TokenCache(db.lookup, ttl=5, clock=clock)
    assert await cache.valid("acct", "tok")
    db.valid.clear()  # revoked, and the NOTIFY was lost
    clock.now += 4.9
    assert await cache.valid("acct", "tok")  # within the staleness bound
    clock.now += 0.2
    assert not await cache.valid("acct", "tok")
    assert db.queries == 2


async def test_refusals_are_not_cached_so_a_new_token_works_at_once():
    db = _Database(set())
    cache = TokenCache(db.lookup, ttl=5)
    assert not await cache.valid("acct", "tok")
    db.valid.add(("acct", "tok"))
    assert await cache.valid("acct", "tok")
    assert db.queries == 2


async def test_forget_makes_the_next_check_ask_even_within_the_ttl():
    db = _Database({("acct", "tok"), ("acct", "other")})
    cache = TokenCache(db.lookup, ttl=60)
    assert await cache.valid("acct", "tok") and await cache.valid("acct", "other")
    db.valid.discard(("acct", "tok"))
    cache.forget([("acct", hash_token("tok"))])
    assert not await cache.valid("acct", "tok")
    assert await cache.valid("acct", "other")  # still cached: no query
    assert db.queries == 3
    cache.forget()
    assert await cache.valid("acct", "other")
    assert db.queries == 4


async def test_an_answer_in_flight_when_forgotten_is_returned_but_not_cached():
    db = _Database({("acct", "tok")})
    db.gate.clear()
    cache = TokenCache(db.lookup, ttl=60)
    check = asyncio.ensure_future(cache.valid("acct", "tok"))
    await asyncio.sleep(0)
    cache.forget()  # a revocation arrived while the query was running
    db.gate.set()
    assert await check
    db.valid.clear()
    assert not await cache.valid("acct", "tok")


async def test_a_cancelled_caller_does_not_cancel_the_shared_query():
    db = _Database({("acct", "tok")})
    db.gate.clear()
    cache = TokenCache(db.lookup, ttl=60)
    first = asyncio.ensure_future(cache.valid("acct", "tok"))
    second = asyncio.ensure_future(cache.valid("acct", "tok"))
    await asyncio.sleep(0)
    first.cancel()
    db.gate.set()
    assert await second
    assert db.queries == 1
