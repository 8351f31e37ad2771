"""PostgreSQL: connection pools (asyncpg) and schema migrations (yoyo, SQL files in migrations/)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parents[4] / "migrations"


@contextlib.asynccontextmanager
async def pool(url: str, *, min_size: int = 1, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool for ``url``, closed on exit."""
    p = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
    try:
        yield p
    finally:
        await p.close()


@contextlib.asynccontextmanager
async def listen(pool: asyncpg.Pool, channel: str,
                 callback: Callable[..., None]) -> AsyncIterator[asyncpg.Connection]:
    """LISTEN on ``channel`` with one pooled connection while the block runs.

    The connection goes back to the pool however the block ends, even when cancelled while
    LISTEN is still being sent; a connection kept out makes ``Pool.close()`` wait forever.
    """
    async with pool.acquire() as conn:
        try:
            await conn.add_listener(channel, callback)
            yield conn
        finally:
            with contextlib.suppress(Exception):
                await conn.remove_listener(channel, callback)


def _yoyo_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("postgresql+psycopg", *parts[1:]))


def migrate(url: str, migrations_dir: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; safe to run from several processes (yoyo takes a lock).

    Returns the ids of the migrations applied by this call.
    """
    from yoyo import get_backend, read_migrations

    backend = get_backend(_yoyo_url(url))
    try:
        migrations = read_migrations(str(migrations_dir))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()
