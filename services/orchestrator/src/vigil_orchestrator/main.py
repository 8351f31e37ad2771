"""Orchestrator entry point: wiring only."""

from __future__ import annotations

import asyncio
import os

from vigil_common import db, kafka, logs, metrics, outbox, topics
from vigil_common.service import serve_until_sigterm
from vigil_orchestrator.adapters import grpc_api
from vigil_orchestrator.adapters.postgres import PRODUCER, PostgresStore
from vigil_orchestrator.config import Settings
from vigil_orchestrator.handlers import Handlers

log = logs.get(__name__)


async def _sweep(handlers: Handlers, period: float) -> None:
    """The durable timer: deadlines, waits and retry back-offs live in PostgreSQL."""
    while True:
        try:
            await handlers.sweep_timers()
        except Exception:
            log.exception("timer sweep failed; retrying")
        await asyncio.sleep(period)


async def main() -> None:
    settings = Settings.from_env(os.environ)
    common = settings.common
    logs.configure(service="orchestrator", level=common.log_level, version=common.version)
    metrics.serve(common.metrics_port)
    await kafka.ensure_topics(common.kafka.bootstrap, topics.all_topics(common.version))
    async with db.pool(common.database_url) as pool, kafka.producer(common.kafka) as producer:
        store = PostgresStore(pool)
        handlers = Handlers(store, common.version)
        async with grpc_api.serve(settings.api_port, handlers, store, pool):
            await serve_until_sigterm(
                kafka.consume(common.kafka, f"vigil.{common.version}.orchestrator",
                              [topics.task_results(common.version),
                               topics.verification_verdicts(common.version),
                               topics.ARTIFACTS],
                              handlers.on_event, producer, concurrent_partitions=True),
                outbox.relay(pool, producer, PRODUCER),
                _sweep(handlers, settings.deadline_sweep_seconds),
            )
