"""Integration fixtures: the real broker and the real PostgreSQL, nothing mocked.

``KAFKA_BOOTSTRAP`` and ``DATABASE_URL`` win when set. Otherwise the session starts one embedded
broker (tansu, ``vigil_local.EmbeddedBroker``) and creates a uniquely named database on the local
server at 127.0.0.1:5432 (trust auth, user postgres), migrates it and drops it at the end. Nothing
is ever skipped: a broker or database that cannot be had fails the tests that need it, saying why.

Each test gets its own suffix for topics, groups, accounts and ids (faust's
tests/integration/broker/conftest.py), so tests share the broker and the database but never
each other's data. The session fixtures are synchronous (pytest-asyncio runs one loop per
test); their async setup runs on a fresh loop in a helper thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from vigil_common import db, kafka
from vigil_common.config import KafkaSettings
from vigil_local import BrokerStartError, EmbeddedBroker, ensure_topics
from vigil_local.database import create_database_if_missing, drop_database

T = TypeVar("T")

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432"
DEADLINE_S = 15.0  # the longest any wait in these tests may take before it fails


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a new loop in a helper thread (safe inside any loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``KAFKA_BOOTSTRAP``, else one embedded broker for the whole session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP", "").strip()
    if configured:
        yield configured
        return
    try:
        broker = EmbeddedBroker().start()
    except (BrokerStartError, FileNotFoundError) as exc:
        pytest.fail(f"the embedded broker did not start and KAFKA_BOOTSTRAP is not set: {exc}",
                    pytrace=False)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Consumer settings for fast group joins on the embedded broker (RUNTIME.md)."""
    return KafkaSettings(bootstrap=kafka_bootstrap, fetch_max_wait_ms=10,
                         session_timeout_ms=3000, heartbeat_interval_ms=300)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """``DATABASE_URL`` (migrated, kept), else a fresh database on 127.0.0.1:5432 (dropped)."""
    configured = os.environ.get("DATABASE_URL", "").strip()
    url = configured or f"{LOCAL_SERVER}/vigil_it_{uuid.uuid4().hex[:12]}"
    if not configured:
        try:
            _run(create_database_if_missing(url, timeout=10))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            pytest.fail(f"no PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres) and "
                        f"DATABASE_URL is not set: {exc!r}", pytrace=False)
    try:
        try:
            db.migrate(url)
        except Exception as exc:  # psycopg, yoyo or SQL errors: say which database
            pytest.fail(f"migrating {url} failed: {exc!r}", pytrace=False)
        yield url
    finally:
        if not configured:
            _run(drop_database(url))


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on the session's database, closed after the test."""
    async with db.pool(database_url, min_size=1, max_size=5) as p:
        yield p


@pytest.fixture
def unique() -> str:
    """A suffix of this test only, for topic, group, account and id names."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    """The services' own producer (``vigil_common.kafka.producer``), stopped after the test."""
    async with kafka.producer(kafka_settings) as p:
        yield p


@pytest.fixture
def create_topics(kafka_bootstrap: str) -> Callable[..., Awaitable[None]]:
    """``await create_topics(names, partitions=1)``: create and wait until listed."""
    async def create(names: list[str], partitions: int = 1) -> None:
        await ensure_topics(kafka_bootstrap, names, partitions)
    return create


@pytest.fixture
def read_topic(kafka_bootstrap: str) -> Callable[..., Awaitable[list[ConsumerRecord]]]:
    """``await read_topic(topic, count)``: every record of ``topic`` once ``count`` are there.

    Reads all partitions from the beginning without a group (no join delay) and returns only
    when at least ``count`` records arrived and every partition is read up to its high
    watermark, so a caller asserting ``len(...) == count`` also sees unexpected extra records.
    Fails after DEADLINE_S. Records come partition by partition, each in offset order.
    """
    async def read(topic: str, count: int, timeout: float = DEADLINE_S) -> list[ConsumerRecord]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None,
                                    enable_auto_commit=False, fetch_max_wait_ms=10)
        await consumer.start()
        try:
            partitions = await _partitions(consumer, topic, timeout)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            records: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in tps}
            deadline = time.monotonic() + timeout
            while True:
                for tp, batch in (await consumer.getmany(timeout_ms=50)).items():
                    records[tp].extend(batch)
                got = sum(len(r) for r in records.values())
                if got >= count and await _caught_up(consumer, tps):
                    return [r for tp in tps for r in records[tp]]
                if time.monotonic() > deadline:
                    raise AssertionError(f"{topic}: {got} records within {timeout:g} s, "
                                         f"expected {count}")
        finally:
            await consumer.stop()
    return read


async def _caught_up(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    # The high watermark of Fetch responses is right on tansu; ListOffsets(LATEST) is not.
    for tp in tps:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while not (partitions := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            raise AssertionError(f"topic {topic} does not exist")
        await consumer._client.force_metadata_update()  # aiokafka has no public refresh
        await asyncio.sleep(0.05)
    return partitions


@pytest.fixture
def eventually() -> Callable[..., Awaitable[Any]]:
    """``await eventually(probe, what)``: poll ``probe`` (sync or async) until it returns a
    truthy value, which is returned; fail naming ``what`` after ``timeout`` seconds."""
    async def wait(probe: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout:g} s: {what}")
            await asyncio.sleep(0.02)
    return wait


@pytest.fixture
async def delegate_gateway(pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The delegate-gateway's stream server (Vigil version v1, instance ``gw-test``) on a free
    port, on the test database; yields its address."""
    from vigil_gateway.adapters.grpc_stream import Connections, DelegateService, serve
    from vigil_gateway.adapters.postgres import GatewayStore

    service = DelegateService(GatewayStore(pool, "v1", "gw-test"), Connections(), "v1",
                              "gw-test")
    async with serve(0, service) as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture
def registered_delegate() -> Callable[..., Any]:
    """``async with registered_delegate(address, account, token) as call``: a delegate's
    Connect stream (version v1, name delegate-1), past its registration; cancelled after."""
    import grpc

    from vigil.delegate.v1 import delegate_pb2, delegate_pb2_grpc

    @contextlib.asynccontextmanager
    async def connect(address: str, account: str, token: str,
                      capabilities: tuple[str, ...] = ("local-process", "shell")
                      ) -> AsyncIterator[grpc.aio.StreamStreamCall]:
        async with grpc.aio.insecure_channel(address) as channel:
            call = delegate_pb2_grpc.DelegateServiceStub(channel).Connect(
                metadata=(("vigil-version", "v1"),), timeout=DEADLINE_S)
            await call.write(delegate_pb2.DelegateMessage(register=delegate_pb2.Register(
                account_id=account, token=token, name="delegate-1", version="0.1.0",
                capabilities=list(capabilities))))
            assert (await call.read()).WhichOneof("kind") == "registered"
            try:
                yield call
            finally:
                call.cancel()
    return connect
