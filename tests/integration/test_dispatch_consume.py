"""task-dispatch's handlers behind the real consume loop's batch path (real broker, real
PostgreSQL), wired as vigil_dispatch.main wires them: a poll with a bad command dead-letters that
command alone and applies the rest; the whole poll delivered again (a new consumer group reads
the topics from the start, as after a crash before the offset commit) changes nothing."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import envelope, kafka, topics
from vigil_dispatch.adapters.broadcasts import PostgresBroadcasts
from vigil_dispatch.adapters.postgres import PRODUCER, PostgresDispatch
from vigil_dispatch.handlers import Handlers


async def _publish(producer, topic: str, key: str, message, event_id: str) -> None:
    headers, value = envelope.encode(message, source="test", event_id=event_id)
    await producer.send(topic, value, key=key.encode(), headers=headers)


async def _state(pool, version: str, account: str) -> tuple:
    tasks = await pool.fetch("SELECT task_id, status, delegate_id FROM tasks "
                             "WHERE vigil_version = $1 ORDER BY task_id", version)
    delegates = await pool.fetch("SELECT delegate_id, running_tasks, session FROM delegates "
                                 "WHERE account_id = $1 ORDER BY delegate_id", account)
    outbox_rows = await pool.fetchval("SELECT count(*) FROM outbox WHERE producer = $1 "
                                      "AND topic = $2", PRODUCER,
                                      topics.gateway_assignments(version))
    return [tuple(r) for r in tasks], [tuple(r) for r in delegates], outbox_rows


async def test_a_poll_is_applied_in_one_go_a_bad_command_is_dead_lettered_alone_and_a_redelivered_poll_changes_nothing(  # noqa: E501
        kafka_settings, producer, pool, create_topics, read_topic, eventually, unique):
    version, acct = f"k{unique}", f"a-{unique}"
    commands, events = topics.dispatch_commands(version), topics.delegate_events(version)
    results = topics.task_results(version)
    await create_topics([commands, events, results, topics.dead_letter(commands)],
                        partitions=2)
    delegate = f"d-{unique}"
    await _publish(producer, events, delegate, tasks_pb2.DelegateConnected(
        delegate_id=delegate, account_id=acct, name="d", version=version, capabilities=["noop"],
        gateway_id="gw", session=1, max_tasks=3), f"c/{delegate}/1")
    tasks = [f"t{n}-{unique}" for n in range(5)]
    for n, task in enumerate(tasks):
        await _publish(producer, commands, f"ex-{n}", tasks_pb2.DispatchTask(
            task_id=task, attempt=1, account_id=acct, execution_id=f"ex-{n}", capability="noop",
            timeout_seconds=60, spec=spec_pb2.TaskSpec(noop=spec_pb2.NoOp())), f"d/{task}")
        if n == 2:  # no capability: RejectedEvent
            await _publish(producer, commands, f"ex-{n}", tasks_pb2.DispatchTask(
                task_id=f"bad-{unique}", attempt=1, account_id=acct), f"bad/{unique}")
    await producer.flush()

    store = PostgresDispatch(pool, version)
    handlers = Handlers(store, PostgresBroadcasts(pool, version))
    batches: list[int] = []

    async def on_batch(envs: list[envelope.Envelope]) -> None:
        batches.append(len(envs))
        await handlers.on_batch(envs)

    async def run(group: str):
        return asyncio.create_task(kafka.consume(
            kafka_settings, group, [commands, events, results], handlers.on_event, producer,
            batch_handler=on_batch))

    async def all_committed(group: str) -> bool:
        """The group committed every record of the topics (the whole poll handled)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap)
        await admin.start()
        try:
            got = await admin.list_consumer_group_offsets(group, partitions=list(ends))
        finally:
            await admin.close()
        return all(got.get(tp) is not None and got[tp].offset == end for tp, end in ends.items())

    ends: dict[TopicPartition, int] = {}
    for topic in (commands, events):
        for r in await read_topic(topic, 6 if topic == commands else 1):
            ends[TopicPartition(topic, r.partition)] = r.offset + 1

    # The connect may come in the same poll as the commands or before them: either way,
    # three tasks fill the delegate's slots and two wait, the bad one is not stored.
    consumer = await run(f"g1-{unique}")
    try:
        await eventually(lambda: pool.fetchval(
            "SELECT count(*) = 5 FROM tasks WHERE vigil_version = $1", version),
            "the five good commands are stored")
        await eventually(lambda: all_committed(f"g1-{unique}"), "every record handled")
        [dead] = await read_topic(topics.dead_letter(commands), 1)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    assert envelope.decode(dead.headers, dead.value).id == f"bad/{unique}"
    assert batches, "the batch path was used"
    first = await _state(pool, version, acct)
    assert sorted(s for _, s, _ in first[0]) == ["ASSIGNED"] * 3 + ["QUEUED"] * 2
    assert first[1] == [(delegate, 3, 1)]
    assert first[2] == 3

    # Everything again, from the beginning, through a new group: nothing changes.
    batches.clear()
    consumer = await run(f"g2-{unique}")
    try:
        await eventually(lambda: all_committed(f"g2-{unique}"), "every record handled again")
        # The bad command is dead-lettered again: it was never claimed.
        assert len(await read_topic(topics.dead_letter(commands), 2)) == 2
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    assert batches, "the redelivered records went through the batch path"
    assert await _state(pool, version, acct) == first
