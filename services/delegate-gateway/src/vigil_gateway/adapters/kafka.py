"""Events the gateway publishes straight to Kafka, without the outbox: best-effort ones that
are cheap to lose or that heal themselves (TaskStarted is sent again by the delegate when
its assignment is re-sent; progress lines are informational)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from google.protobuf import message as pb_message
from prometheus_client import Counter

from vigil_common import envelope, logs, tracing
from vigil_gateway.adapters.postgres import PRODUCER

log = logs.get(__name__)
DIRECT_FAILED = Counter("vigil_gateway_direct_publish_failed_total",
                        "Best-effort events the broker did not take", ["type"])


class DirectPublisher:
    """Fire-and-forget publishing; a failure is logged and counted, never raised."""

    def __init__(self, producer: AIOKafkaProducer):
        self._producer = producer

    async def publish(self, topic: str, key: str, message: pb_message.Message,
                      event_id: str | None = None) -> None:
        current = tracing.current()  # a child span of the work in progress, as the outbox does
        headers, value = envelope.encode(message, source=PRODUCER, event_id=event_id,
                                         traceparent=current.child() if current else None)
        try:
            fut = await self._producer.send(topic, value, key=key.encode(), headers=headers)
        except Exception as exc:  # the producer's buffer is full or it is closing
            self._failed(message, exc)
            return
        fut.add_done_callback(lambda f: f.cancelled() or f.exception() is None
                              or self._failed(message, f.exception()))

    @staticmethod
    def _failed(message: pb_message.Message, exc: BaseException | None) -> None:
        DIRECT_FAILED.labels(message.DESCRIPTOR.name).inc()
        log.warning("best-effort event not published", type=message.DESCRIPTOR.full_name,
                    error=repr(exc))

