"""Kafka through aiokafka: producer and the consume loop every service uses.

The loop, per record: decode the envelope (undecodable: to the dead-letter topic with the
reason, then on) -> the handler (which skips an already-handled ``ce_id`` inside its own
database transaction) -> commit the offset after the handler returned, so a crash between the
two redelivers rather than loses (aiokafka docs/consumer.rst, "at least once").

The handler runs with the record's W3C trace (``traceparent`` header) as the current one, or a
new trace when the record has none, so the events it queues and the lines it logs join that
trace (issue 7).

Settings follow RUNTIME.md for the embedded broker: no idempotent producer, earliest offsets
with committed positions, a small fetch_max_wait_ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from prometheus_client import Counter

from vigil_common import envelope, logs, topics, tracing
from vigil_common.config import KafkaSettings

log = logs.get(__name__)

CONSUMED = Counter("vigil_events_consumed_total", "Events handled", ["topic", "type"])
DEAD_LETTERED = Counter("vigil_events_dead_lettered_total", "Records sent to a DLQ", ["topic"])
HANDLER_RETRIES = Counter("vigil_handler_retries_total", "Handler failures retried", ["topic"])
BATCH_FALLBACKS = Counter("vigil_batch_fallbacks_total",
                          "Batches that failed and were handled one event at a time",
                          ["topic"])

Handler = Callable[[envelope.Envelope], Awaitable[None]]
# Opt-in (``consume(batch_handler=...)``): applies several events all-or-nothing, in one
# database transaction, and raises when it could not (see ``consume``).
BatchHandler = Callable[[list[envelope.Envelope]], Awaitable[None]]


class RejectedEvent(Exception):
    """A well-formed event the handler can never process; it goes to the dead-letter topic."""


@contextlib.asynccontextmanager
async def producer(settings: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer (acks=all, no idempotence: the embedded broker lacks it)."""
    p = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=False,
        max_batch_size=256 * 1024, linger_ms=0, request_timeout_ms=15000,
    )
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 3,
    *,
    replication_factor: int = 1,
    timeout: float = 15.0,
) -> None:
    """Create the named topics unless they exist, and wait until metadata lists them all.

    Idempotent: tansu answers a duplicate creation without error, real Kafka with
    TOPIC_ALREADY_EXISTS; both count as success. Existing topics keep their partition count.

    Raises:
        KafkaError: the broker refused a topic for any other reason.
        TimeoutError: the topics did not appear in metadata within `timeout` seconds.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        try:
            response = await admin.create_topics(
                [NewTopic(n, partitions, replication_factor) for n in wanted]
            )
        except TopicAlreadyExistsError:
            response = None
        if response is not None:
            for topic_error in response.topic_errors:
                topic, code = topic_error[0], topic_error[1]
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise for_code(code)(f"creating topic {topic!r}")
        await _wait_listed(admin, wanted, time.monotonic() + timeout)
    finally:
        await admin.close()


async def _wait_listed(admin: AIOKafkaAdminClient, wanted: list[str], deadline: float) -> None:
    # Real Kafka creates topics asynchronously; producers racing it get UNKNOWN_TOPIC errors.
    while True:
        missing = set(wanted) - set(await admin.list_topics())
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics not visible in metadata: {sorted(missing)}")
        await asyncio.sleep(0.05)


def _consumer(settings: KafkaSettings, group: str, names: list[str]) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *names,
        bootstrap_servers=settings.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        rebalance_timeout_ms=max(settings.session_timeout_ms, 3000),
        max_poll_records=200,
    )


async def dead_letter(prod: AIOKafkaProducer, record: ConsumerRecord, reason: str) -> None:
    """Send a record unchanged to ``<topic>.dlq`` with why and where it came from."""
    headers = list(record.headers or []) + [
        ("dlq_reason", reason.encode()[:4000]),
        ("dlq_source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
    ]
    await prod.send_and_wait(topics.dead_letter(record.topic), record.value, key=record.key,
                             headers=headers)
    DEAD_LETTERED.labels(record.topic).inc()
    log.warning("dead-lettered record", topic=record.topic, partition=record.partition,
                offset=record.offset, reason=reason)


async def consume(settings: KafkaSettings, group: str, names: list[str], handler: Handler,
                  prod: AIOKafkaProducer, ready: asyncio.Event | None = None, *,
                  concurrent_partitions: bool = False,
                  batch_handler: BatchHandler | None = None) -> None:
    """Consume ``names`` as ``group`` until cancelled; see the module docstring for the rules.

    A handler exception other than RejectedEvent is treated as transient (database down, ...):
    the record is retried with backoff and never skipped, so nothing is lost.

    Records of one partition are always handled one after another, in order. With
    ``concurrent_partitions`` the partitions of one poll are handled side by side (for handlers
    whose transactions touch only the rows of their record's key, like the orchestrator's).

    With ``batch_handler`` (opt-in, e.g. task-dispatch) the decodable records of one poll,
    every partition's in offset order, go to ``batch_handler`` at once; it must apply all of
    them or none (one transaction, inbox claims included). When it raises anything, the batch
    is handled again one record at a time through ``handler`` with the rules above, so a
    rejected event goes to the dead-letter topic alone and a failing one is retried on its own;
    events the failed batch did apply are none (it rolled back), and events handled before are
    dropped by the inbox. A poll with a single record goes straight to ``handler``. Offsets are
    committed once the whole poll is handled.
    """
    if batch_handler is not None and concurrent_partitions:
        raise ValueError("batch_handler and concurrent_partitions do not combine")
    consumer = _consumer(settings, group, names)
    await consumer.start()

    async def partition(tp: object, records: list[ConsumerRecord]) -> None:
        for record in records:
            await _handle(record, handler, prod)
        await consumer.commit({tp: records[-1].offset + 1})

    try:
        if ready is not None:
            await _wait_assigned(consumer)
            ready.set()
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=200)
            if batch_handler is not None:
                if batches:
                    await _handle_poll(batches, batch_handler, handler, prod)
                    await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batches.items()})
            elif concurrent_partitions:
                await asyncio.gather(*(partition(tp, rs) for tp, rs in batches.items()))
            else:
                for tp, records in batches.items():
                    await partition(tp, records)
    finally:
        await consumer.stop()


async def _wait_assigned(consumer: AIOKafkaConsumer) -> None:
    # Joining the group happens on the first fetch; poll without records until assigned.
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=100, max_records=1)
        # A record fetched here is not lost: nothing is committed, so we rewind below.
    for tp in consumer.assignment():
        committed = await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)


async def _handle_poll(batches: dict[object, list[ConsumerRecord]], batch_handler: BatchHandler,
                       handler: Handler, prod: AIOKafkaProducer) -> None:
    """One poll through the batch handler, or one by one when the batch fails."""
    decoded: list[tuple[ConsumerRecord, envelope.Envelope]] = []
    for records in batches.values():
        for record in records:
            try:
                decoded.append((record, envelope.decode(record.headers, record.value)))
            except envelope.UndecodableEvent as exc:
                await dead_letter(prod, record, f"undecodable: {exc}")
    if len(decoded) > 1:
        try:
            await batch_handler([event for _, event in decoded])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            BATCH_FALLBACKS.labels(decoded[0][0].topic).inc()
            log.warning("batch failed; handling its events one by one", events=len(decoded),
                        error=f"{type(exc).__name__}: {exc}")
        else:
            for record, event in decoded:
                CONSUMED.labels(record.topic, event.type).inc()
            return
    for record, event in decoded:
        with tracing.use(event_trace(event)):
            await _handle_decoded(record, event, handler, prod)


def event_trace(event: envelope.Envelope) -> tracing.TraceContext:
    """The trace a handler of ``event`` runs in: the record's own, else a new one. Batch
    handlers enter it (``tracing.use``) around each event's work, as the loop does for
    ``handler``."""
    return tracing.parse(event.traceparent) or tracing.new_trace()


async def _handle(record: ConsumerRecord, handler: Handler, prod: AIOKafkaProducer) -> None:
    try:
        event = envelope.decode(record.headers, record.value)
    except envelope.UndecodableEvent as exc:
        await dead_letter(prod, record, f"undecodable: {exc}")
        return
    with tracing.use(event_trace(event)):
        await _handle_decoded(record, event, handler, prod)


async def _handle_decoded(record: ConsumerRecord, event: envelope.Envelope, handler: Handler,
                          prod: AIOKafkaProducer) -> None:
    delay = 0.1
    while True:
        try:
            await handler(event)
            CONSUMED.labels(record.topic, event.type).inc()
            return
        except RejectedEvent as exc:
            await dead_letter(prod, record, f"rejected {event.type} {event.id}: {exc}")
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            HANDLER_RETRIES.labels(record.topic).inc()
            log.exception("handler failed; retrying", topic=record.topic, offset=record.offset,
                          type=event.type, ce_id=event.id, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
