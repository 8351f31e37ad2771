"""delegate-gateway entry point: wiring only."""

from __future__ import annotations

import os

from vigil_common import db, kafka, logs, metrics, outbox, topics
from vigil_common.service import serve_until_sigterm
from vigil_gateway.adapters import grpc_stream
from vigil_gateway.adapters.postgres import PRODUCER, GatewayStore
from vigil_gateway.config import Settings
from vigil_gateway.handlers import Handlers


async def main() -> None:
    settings = Settings.from_env(os.environ)
    common = settings.common
    logs.configure(service="delegate-gateway", level=common.log_level, version=common.version)
    metrics.serve(common.metrics_port)
    await kafka.ensure_topics(common.kafka.bootstrap, topics.all_topics(common.version))
    async with db.pool(common.database_url) as pool, kafka.producer(common.kafka) as producer:
        connections = grpc_stream.Connections()
        service = grpc_stream.DelegateService(GatewayStore(pool, common.version,
                                                           common.instance_id),
                                              connections, common.version, common.instance_id)
        handlers = Handlers(connections)
        async with grpc_stream.serve(settings.grpc_port, service):
            await serve_until_sigterm(
                # One group per instance: every gateway sees every assignment (broadcast).
                kafka.consume(common.kafka, f"vigil.{common.version}.gateway.{common.instance_id}",
                              [topics.gateway_assignments(common.version)],
                              handlers.on_assignment, producer),
                outbox.relay(pool, producer, PRODUCER),
            )
