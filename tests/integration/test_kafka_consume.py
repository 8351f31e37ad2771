"""The consume loop every service runs (vigil_common.kafka.consume) on the real broker:
undecodable and rejected records go to ``<topic>.dlq`` with the reason, failing handlers are
retried, and the loop always goes on with the next record."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from vigil.events.v1 import tasks_pb2
from vigil_common import envelope, kafka, topics
from vigil_common.config import KafkaSettings


def _result(task_id: str) -> tasks_pb2.TaskSucceeded:
    return tasks_pb2.TaskSucceeded(task_id=task_id, attempt=1, account_id="acme",
                                   execution_id="00000000-0000-0000-0000-000000000001")


def _header(headers: list[tuple[str, bytes]], name: str) -> str:
    values = [v for k, v in headers if k == name]
    assert len(values) == 1, f"header {name} appears {len(values)} times in {headers}"
    return values[0].decode()


@contextlib.asynccontextmanager
async def _consuming(settings: KafkaSettings, group: str, topic: str, handler: kafka.Handler,
                     prod: AIOKafkaProducer) -> AsyncIterator[asyncio.Task[None]]:
    """Run the consume loop as a task; cancel it on exit, surfacing a crash of the loop."""
    task = asyncio.create_task(kafka.consume(settings, group, [topic], handler, prod))
    try:
        yield task
    finally:
        if task.done():
            task.result()  # the loop must never end by itself: raise what ended it
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def topic(unique: str, create_topics) -> str:
    name = f"vigil.it.consume.{unique}"
    await create_topics([name, topics.dead_letter(name)], partitions=1)
    return name


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    found = offsets.get(tp)
    return found.offset if found is not None and found.offset >= 0 else None


async def test_undecodable_records_are_dead_lettered_with_the_reason_and_the_next_is_handled(
        kafka_settings, producer, topic, unique, read_topic, eventually):
    headers, value = envelope.encode(_result("t-1"), source="test", event_id="good")
    unknown = [(k, b"vigil.events.v1.NoSuchEvent" if k == "ce_type" else v) for k, v in headers]
    bad = [
        ([], b"plain bytes, no CloudEvents headers", "missing CloudEvents header(s): ce_id, "
                                                     "ce_type, ce_source, ce_time, ce_specversion"),
        (unknown, value, "unknown ce_type 'vigil.events.v1.NoSuchEvent'"),
        # Field 1, length-delimited, claims 255 bytes: a truncated message.
        (headers, b"\x0a\xff", "payload is not a valid vigil.events.v1.TaskSucceeded"),
    ]
    for record_headers, record_value, _ in bad:
        await producer.send_and_wait(topic, record_value, key=b"k", headers=record_headers)
    await producer.send_and_wait(topic, value, key=b"k", headers=headers)

    handled: list[envelope.Envelope] = []

    async def handler(env: envelope.Envelope) -> None:
        handled.append(env)

    async with _consuming(kafka_settings, f"it-{unique}", topic, handler, producer):
        await eventually(lambda: handled, "the valid record after the bad ones is handled")
        dead = await read_topic(topics.dead_letter(topic), 3)

    assert [e.id for e in handled] == ["good"]
    assert handled[0].message == _result("t-1")
    assert len(dead) == 3
    for offset, (record, (record_headers, record_value, reason)) in enumerate(
            zip(dead, bad, strict=True)):
        assert _header(record.headers, "dlq_reason").startswith(f"undecodable: {reason}")
        assert _header(record.headers, "dlq_source") == f"{topic}/0/{offset}"
        assert (record.key, record.value) == (b"k", record_value)
        assert list(record.headers)[:len(record_headers)] == record_headers


async def test_a_handler_rejecting_an_event_dead_letters_it_and_the_next_is_handled(
        kafka_settings, producer, topic, unique, read_topic, eventually):
    for event_id in ("rejected", "accepted"):
        headers, value = envelope.encode(_result(event_id), source="test", event_id=event_id)
        await producer.send_and_wait(topic, value, key=event_id.encode(), headers=headers)
    handled: list[str] = []

    async def handler(env: envelope.Envelope) -> None:
        if env.id == "rejected":
            raise kafka.RejectedEvent("no such execution")
        handled.append(env.id)

    async with _consuming(kafka_settings, f"it-{unique}", topic, handler, producer):
        await eventually(lambda: handled, "the event after the rejected one is handled")
        dead = await read_topic(topics.dead_letter(topic), 1)

    assert handled == ["accepted"]
    assert len(dead) == 1
    assert _header(dead[0].headers, "dlq_reason") == (
        "rejected vigil.events.v1.TaskSucceeded rejected: no such execution")
    assert _header(dead[0].headers, "ce_id") == "rejected"
    assert envelope.decode(dead[0].headers, dead[0].value).message == _result("rejected")


async def test_a_handler_failing_once_is_retried_and_the_record_is_handled_exactly_once(
        kafka_settings, producer, topic, unique, read_topic, eventually):
    for event_id in ("flaky", "next"):
        headers, value = envelope.encode(_result(event_id), source="test", event_id=event_id)
        await producer.send_and_wait(topic, value, key=b"k", headers=headers)
    attempts: dict[str, int] = {}
    handled: list[str] = []

    async def handler(env: envelope.Envelope) -> None:
        attempts[env.id] = attempts.get(env.id, 0) + 1
        if env.id == "flaky" and attempts[env.id] == 1:
            raise ConnectionError("database down")
        handled.append(env.id)

    group = f"it-{unique}"
    tp = TopicPartition(topic, 0)
    async with _consuming(kafka_settings, group, topic, handler, producer):
        await eventually(lambda: _committed_is(kafka_settings.bootstrap, group, tp, 2),
                         "the offset after both records is committed")
        assert handled == ["flaky", "next"]
        assert attempts == {"flaky": 2, "next": 1}
    assert await read_topic(topics.dead_letter(topic), 0) == []


async def _committed_is(bootstrap: str, group: str, tp: TopicPartition, offset: int) -> bool:
    return await _committed(bootstrap, group, tp) == offset


# --- the opt-in batch path (consume(batch_handler=...), used by task-dispatch) ---

@contextlib.asynccontextmanager
async def _consuming_batches(settings: KafkaSettings, group: str, topic: str,
                             handler: kafka.Handler, batch_handler: kafka.BatchHandler,
                             prod: AIOKafkaProducer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(kafka.consume(settings, group, [topic], handler, prod,
                                             batch_handler=batch_handler))
    try:
        yield task
    finally:
        if task.done():
            task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _send_results(producer: AIOKafkaProducer, topic: str, ids: list[str]) -> None:
    for event_id in ids:
        headers, value = envelope.encode(_result(event_id), source="test", event_id=event_id)
        await producer.send(topic, value, key=b"k", headers=headers)
    await producer.flush()


async def test_a_poll_goes_to_the_batch_handler_whole_and_is_committed_once(
        kafka_settings, producer, topic, unique, read_topic, eventually):
    ids = [f"e{n}" for n in range(5)]
    await _send_results(producer, topic, ids)
    batches: list[list[str]] = []
    one_by_one: list[str] = []

    async def batch_handler(envs: list[envelope.Envelope]) -> None:
        batches.append([e.id for e in envs])

    async def handler(env: envelope.Envelope) -> None:
        one_by_one.append(env.id)

    group, tp = f"it-{unique}", TopicPartition(topic, 0)
    async with _consuming_batches(kafka_settings, group, topic, handler, batch_handler,
                                  producer):
        await eventually(lambda: _committed_is(kafka_settings.bootstrap, group, tp, 5),
                         "the offset after the batch is committed")
    assert batches == [ids]  # produced before the consumer started: one poll
    assert one_by_one == []
    assert await read_topic(topics.dead_letter(topic), 0) == []


async def test_a_batch_with_a_rejected_and_an_undecodable_record_dead_letters_just_those(
        kafka_settings, producer, topic, unique, read_topic, eventually):
    """The batch fails (the handler rejects one event, applying nothing); the loop handles the
    poll one by one: the rejected event goes to the DLQ alone, every other is handled once."""
    await _send_results(producer, topic, ["e0", "e1"])
    await producer.send_and_wait(topic, b"not an event", key=b"k", headers=[])
    await _send_results(producer, topic, ["bad", "e3", "e4"])
    batches: list[list[str]] = []
    handled: list[str] = []

    async def batch_handler(envs: list[envelope.Envelope]) -> None:
        batches.append([e.id for e in envs])
        if any(e.id == "bad" for e in envs):
            raise kafka.RejectedEvent("no such execution")
        handled.extend(e.id for e in envs)

    async def handler(env: envelope.Envelope) -> None:
        if env.id == "bad":
            raise kafka.RejectedEvent("no such execution")
        handled.append(env.id)

    group, tp = f"it-{unique}", TopicPartition(topic, 0)
    async with _consuming_batches(kafka_settings, group, topic, handler, batch_handler,
                                  producer):
        await eventually(lambda: _committed_is(kafka_settings.bootstrap, group, tp, 6),
                         "the offset after the poll is committed")
        dead = await read_topic(topics.dead_letter(topic), 2)
    assert batches == [["e0", "e1", "bad", "e3", "e4"]]
    assert handled == ["e0", "e1", "e3", "e4"]
    reasons = sorted(_header(d.headers, "dlq_reason") for d in dead)
    assert reasons[0] == "rejected vigil.events.v1.TaskSucceeded bad: no such execution"
    assert reasons[1].startswith("undecodable: missing CloudEvents header(s)")
    assert [_header(d.headers, "dlq_source") for d in dead] == [f"{topic}/0/2", f"{topic}/0/3"]


async def test_a_batch_failing_for_a_transient_reason_is_retried_one_by_one_never_skipped(
        kafka_settings, producer, topic, unique, read_topic, eventually):
    await _send_results(producer, topic, ["e0", "flaky", "e2"])
    attempts: dict[str, int] = {}
    handled: list[str] = []

    async def batch_handler(envs: list[envelope.Envelope]) -> None:
        raise ConnectionError("database down")

    async def handler(env: envelope.Envelope) -> None:
        attempts[env.id] = attempts.get(env.id, 0) + 1
        if env.id == "flaky" and attempts[env.id] == 1:
            raise ConnectionError("database down")
        handled.append(env.id)

    group, tp = f"it-{unique}", TopicPartition(topic, 0)
    async with _consuming_batches(kafka_settings, group, topic, handler, batch_handler,
                                  producer):
        await eventually(lambda: _committed_is(kafka_settings.bootstrap, group, tp, 3),
                         "the offset after the poll is committed")
    assert handled == ["e0", "flaky", "e2"]
    assert attempts == {"e0": 1, "flaky": 2, "e2": 1}
    assert await read_topic(topics.dead_letter(topic), 0) == []


async def test_batches_and_concurrent_partitions_do_not_combine(kafka_settings, producer):
    async def handler(env: envelope.Envelope) -> None: ...

    async def batch_handler(envs: list[envelope.Envelope]) -> None: ...

    with pytest.raises(ValueError, match="do not combine"):
        await kafka.consume(kafka_settings, "g", ["t"], handler, producer,
                            concurrent_partitions=True, batch_handler=batch_handler)
