"""Reading what the system published, for end-to-end tests: every record of a topic (with a
key), decoded, from the beginning until the topic stays quiet."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from vigil_common import envelope


async def read_records(bootstrap: str, topic: str,
                       key: str | None = None) -> list[envelope.Envelope]:
    """Every record of ``topic`` (only those keyed ``key`` when given), decoded, read from
    the beginning until three polls in a row bring nothing."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    found, idle = [], 0
    try:
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                found += [envelope.decode(r.headers, r.value) for r in records
                          if key is None or r.key == key.encode()]
    finally:
        await consumer.stop()
    return found
