"""delegate-gateway entry point: wiring only."""

from __future__ import annotations

import os

from vigil_common import db, kafka, logs, metrics, outbox, topics
from vigil_common.apikeys import Caller
from vigil_common.service import serve_until_sigterm
from vigil_gateway.adapters import grpc_stream
from vigil_gateway.adapters.admin import BroadcastWaiters, DelegateAdmin
from vigil_gateway.adapters.connections import Connections
from vigil_gateway.adapters.kafka import DirectPublisher
from vigil_gateway.adapters.postgres import PRODUCER, GatewayStore
from vigil_gateway.adapters.progress import ProgressBatcher
from vigil_gateway.adapters.tokens import TokenCache
from vigil_gateway.config import Settings
from vigil_gateway.handlers import Handlers, keep_alive, watch_revocations

log = logs.get(__name__)


async def main() -> None:
    settings = Settings.from_env(os.environ)
    common = settings.common
    logs.configure(service="delegate-gateway", level=common.log_level, version=common.version)
    tls = settings.tls.credentials() if settings.tls else None
    metrics.serve(common.metrics_port)
    await kafka.ensure_topics(common.kafka.bootstrap, topics.all_topics(common.version))
    async with db.pool(common.database_url) as pool, kafka.producer(common.kafka) as producer:
        store = GatewayStore(pool, common.version, common.instance_id)
        connections, waiters = Connections(), BroadcastWaiters()
        publisher = DirectPublisher(producer)
        progress = ProgressBatcher(publisher, common.version, settings.progress_max_lines)
        tokens = TokenCache(store.token_valid, settings.token_recheck_seconds)
        service = grpc_stream.DelegateService(store, connections, common.version,
                                              common.instance_id, publisher, progress, tokens)
        admin = DelegateAdmin(store, waiters, common.version, Caller.of(pool))
        handlers = Handlers(connections, waiters)
        if stale := await store.start_instance():
            log.warning("closed sessions left open by this instance's previous run",
                        sessions=stale)
        async with grpc_stream.serve(settings.grpc_port, service, admin, host=settings.host,
                                     tls=tls):
            await serve_until_sigterm(
                # One group per instance: every gateway sees every assignment (broadcast).
                kafka.consume(common.kafka, f"vigil.{common.version}.gateway.{common.instance_id}",
                              [topics.gateway_assignments(common.version),
                               topics.broadcast_results(common.version)],
                              handlers.on_assignment, producer),
                outbox.relay(pool, producer, PRODUCER),
                progress.run(settings.progress_flush_seconds),
                watch_revocations(pool, store, connections, settings.token_recheck_seconds,
                                  tokens),
                keep_alive(store, settings.heartbeat_seconds, settings.dead_after_seconds,
                           settings.verification_data_retention_days),
            )
        await store.stop_instance()  # the streams have closed their sessions
