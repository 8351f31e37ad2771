"""task-dispatch entry point: wiring only."""

from __future__ import annotations

import os

from vigil_common import db, kafka, logs, metrics, outbox, topics
from vigil_common.service import serve_until_sigterm
from vigil_dispatch.adapters.broadcasts import PostgresBroadcasts
from vigil_dispatch.adapters.postgres import PRODUCER, PostgresDispatch
from vigil_dispatch.config import Settings
from vigil_dispatch.handlers import Handlers, Sweeper


async def main() -> None:
    settings = Settings.from_env(os.environ)
    common = settings.common
    logs.configure(service="task-dispatch", level=common.log_level, version=common.version)
    metrics.serve(common.metrics_port)
    await kafka.ensure_topics(common.kafka.bootstrap, topics.all_topics(common.version))
    async with db.pool(common.database_url) as pool, kafka.producer(common.kafka) as producer:
        store = PostgresDispatch(pool, common.version, settings.timeouts)
        broadcasts = PostgresBroadcasts(pool, common.version)
        handlers = Handlers(store, broadcasts)
        await serve_until_sigterm(
            kafka.consume(common.kafka, f"vigil.{common.version}.task-dispatch",
                          [topics.dispatch_commands(common.version),
                           topics.delegate_events(common.version),
                           topics.task_results(common.version)],
                          handlers.on_event, producer, batch_handler=handlers.on_batch),
            Sweeper(store, broadcasts).run(settings.sweep_seconds),
            outbox.relay(pool, producer, PRODUCER),
        )
