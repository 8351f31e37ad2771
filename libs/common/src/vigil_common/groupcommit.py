"""Group commit: many small writes from concurrent callers, one transaction per batch.

A commit is a WAL flush; one per event caps a service at about a thousand writes a second per
connection (RUNTIME.md) and makes PostgreSQL the busiest process of the delegate plane. Here
each caller's write joins the next batch: while one batch is being written, the next one
gathers, and each batch is one transaction that applies its items in order. A caller still
gets its own result, and its write is durable when its call returns.

When a batch fails, its items are applied again one per transaction, so an item that cannot
be written fails only its own caller. Each item runs inside the trace its caller was in
(``vigil_common.tracing``), so the events it queues continue the right trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg
from prometheus_client import Counter

from vigil_common import logs, tracing

log = logs.get(__name__)
BATCHES = Counter("vigil_group_commits_total", "Transactions that wrote a batch", ["writer"])
ITEMS = Counter("vigil_group_commit_items_total", "Items written in group commits", ["writer"])
FALLBACKS = Counter("vigil_group_commit_fallbacks_total",
                    "Batches that failed and were written one item per transaction", ["writer"])

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """``await writer.submit(item)`` writes ``item`` inside a shared transaction and returns
    its result. The batch writer runs only while items are pending.

    Give ``apply(conn, item)`` to write the items one after another (each inside its caller's
    trace), or ``apply_batch(conn, items)`` returning one result per item to write a batch with
    set-based statements (it runs outside the callers' traces)."""

    def __init__(self, pool: asyncpg.Pool,
                 apply: Callable[[asyncpg.Connection, T], Awaitable[R]] | None = None, *,
                 apply_batch: Callable[[asyncpg.Connection, list[T]], Awaitable[list[R]]]
                 | None = None, name: str, max_batch: int = 200):
        if (apply is None) == (apply_batch is None):
            raise TypeError("GroupCommit needs exactly one of apply and apply_batch")
        self._pool = pool
        self._apply = apply
        self._apply_batch = apply_batch
        self._name = name
        self._max_batch = max_batch
        self._pending: list[tuple[T, tracing.TraceContext | None, asyncio.Future[R]]] = []
        self._writer: asyncio.Task | None = None
        self.batches = 0  # transactions written, for tests

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, tracing.current(), future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        return await future

    async def _write_pending(self) -> None:
        batch: list = []
        try:
            while self._pending:
                batch = self._pending[:self._max_batch]
                del self._pending[:self._max_batch]
                try:
                    results = await self._write(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if len(batch) == 1:
                        _settle(batch[0][2], error=exc)
                        continue
                    FALLBACKS.labels(self._name).inc()
                    log.warning("group commit failed; writing its items one by one",
                                writer=self._name, items=len(batch), exc_info=True)
                    for item in batch:
                        try:
                            [result] = await self._write([item])
                        except asyncio.CancelledError:
                            raise
                        except Exception as one:
                            _settle(item[2], error=one)
                        else:
                            _settle(item[2], result)
                    continue
                for (_, _, future), result in zip(batch, results, strict=True):
                    _settle(future, result)
        finally:  # cancelled (shutdown): nobody may wait forever
            for _, _, future in [*batch, *self._pending]:
                if not future.done():
                    future.cancel()

    async def _write(self, batch: list) -> list[R]:
        async with self._pool.acquire() as conn, conn.transaction():
            if self._apply_batch is not None:
                results = list(await self._apply_batch(conn, [item for item, _, _ in batch]))
            else:
                results = []
                for item, trace, _ in batch:
                    with tracing.use(trace):
                        results.append(await self._apply(conn, item))
        self.batches += 1
        BATCHES.labels(self._name).inc()
        ITEMS.labels(self._name).inc(len(batch))
        return results


def _settle(future: asyncio.Future, result: object = None, *,
            error: BaseException | None = None) -> None:
    if future.done():  # the caller went away; its item is written all the same
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
