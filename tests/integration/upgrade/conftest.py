"""Upgrade tests each get a database of their own: the primary-version record is a singleton,
and running executions of other tests' "v1" would (rightly) block tearing v1 down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from vigil_common import db
from vigil_local.database import create_database_if_missing, drop_database


@pytest_asyncio.fixture
async def own_database(database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, str]]:
    """A freshly created and migrated database, dropped after the test: (pool, url)."""
    url = f"{database_url.rsplit('/', 1)[0]}/vigil_upgrade_{uuid.uuid4().hex[:10]}"
    await create_database_if_missing(url)
    try:
        await asyncio.to_thread(db.migrate, url)
        async with db.pool(url, max_size=4) as pool:
            yield pool, url
    finally:
        await drop_database(url)
