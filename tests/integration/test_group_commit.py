"""vigil_common.groupcommit on real PostgreSQL: concurrent writes share transactions, each
caller gets its own result or error, and each item runs in its caller's trace."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from vigil_common import tracing
from vigil_common.groupcommit import GroupCommit


@pytest.fixture
async def table(pool, unique) -> str:
    name = f"gc_{unique.replace('-', '_')}"
    await pool.execute(f"CREATE TABLE {name} (k text PRIMARY KEY, trace text NOT NULL)")
    yield name
    await pool.execute(f"DROP TABLE {name}")


def _writer(pool, table: str) -> GroupCommit[str, bool]:
    async def apply(conn: asyncpg.Connection, key: str) -> bool:
        if key == "poison":
            raise ValueError("poison: refused")
        return bool(await conn.fetchval(
            f"INSERT INTO {table} VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
            key, str(tracing.current() or "")))
    return GroupCommit(pool, apply, name="test")


async def test_concurrent_writes_share_transactions_and_each_gets_its_result(pool, table):
    writer = _writer(pool, table)
    keys = [f"k{n}" for n in range(200)] + ["k0", "k1"]  # two repeats: stored once

    results = await asyncio.gather(*(writer.submit(k) for k in keys))

    assert results == [True] * 200 + [False, False]
    assert writer.batches < 20
    assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 200


async def test_an_item_that_fails_fails_only_its_own_caller(pool, table):
    writer = _writer(pool, table)

    results = await asyncio.gather(*(writer.submit(k) for k in ["a", "poison", "b", "c"]),
                                   return_exceptions=True)

    assert results[0] is True and results[2:] == [True, True]
    assert isinstance(results[1], ValueError) and "poison" in str(results[1])
    assert {r["k"] for r in await pool.fetch(f"SELECT k FROM {table}")} == {"a", "b", "c"}


async def test_each_item_runs_in_the_trace_of_its_caller(pool, table):
    writer = _writer(pool, table)
    traces = {f"t{n}": tracing.new_trace() for n in range(20)}

    async def submit(key: str) -> bool:
        with tracing.use(traces[key]):
            return await writer.submit(key)

    await asyncio.gather(*(submit(k) for k in traces))

    stored = {r["k"]: r["trace"] for r in await pool.fetch(f"SELECT k, trace FROM {table}")}
    assert stored == {k: str(t) for k, t in traces.items()}
