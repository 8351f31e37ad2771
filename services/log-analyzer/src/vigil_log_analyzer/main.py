"""log-analyzer entry point: wiring only."""

from __future__ import annotations

import os

from vigil_common import db, kafka, logs, metrics, outbox, topics
from vigil_common.service import serve_until_sigterm
from vigil_log_analyzer.adapters import grpc_api
from vigil_log_analyzer.config import Settings
from vigil_log_analyzer.handlers import PRODUCER, Handlers


async def main() -> None:
    settings = Settings.from_env(os.environ)
    common = settings.common
    logs.configure(service="log-analyzer", level=common.log_level, version=common.version)
    metrics.serve(common.metrics_port)
    await kafka.ensure_topics(common.kafka.bootstrap, topics.all_topics(common.version))
    async with db.pool(common.database_url) as pool, kafka.producer(common.kafka) as producer:
        handlers = Handlers(pool, common.version, settings.max_signatures)
        async with grpc_api.serve(settings.api_port, pool):
            await serve_until_sigterm(
                kafka.consume(common.kafka, f"vigil.{common.version}.log-analyzer",
                              [topics.analysis_logs(common.version)], handlers.on_event,
                              producer),
                outbox.relay(pool, producer, PRODUCER),
            )
