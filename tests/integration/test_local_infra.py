"""The local stand-ins for real: tansu, PostgreSQL (local and embedded), the supervisor."""

from __future__ import annotations

import asyncio
import io
import socket
import sys
import uuid
from pathlib import Path

import asyncpg
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from vigil_common import kafka
from vigil_local import broker as local_broker
from vigil_local import database, ports
from vigil_local.supervisor import Supervisor


def _process_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def _eventually(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met before deadline"
        await asyncio.sleep(0.02)


async def test_embedded_broker_round_trips_a_record_and_leaves_nothing_behind(tmp_path):
    broker = local_broker.EmbeddedBroker(log_path=tmp_path / "tansu.log")
    async with broker:
        bootstrap, pid, port = broker.bootstrap, broker.pid, broker.port
        assert bootstrap == f"127.0.0.1:{port}"
        topic = _unique("vigil.test.local-infra")
        await kafka.ensure_topics(bootstrap, [topic], partitions=3)
        await kafka.ensure_topics(bootstrap, [topic], partitions=3)  # idempotent

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                topic, b"payload", key=b"exec-1", headers=[("ce_type", b"vigil.test")]
            )
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=_unique("group"),
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
            session_timeout_ms=3000,
            heartbeat_interval_ms=300,
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), timeout=20)
        finally:
            await consumer.stop()
        assert (record.key, record.value) == (b"exec-1", b"payload")
        assert list(record.headers) == [("ce_type", b"vigil.test")]

    assert not ports.port_open("127.0.0.1", port)
    assert not _process_alive(pid)
    assert broker.pid is None


def test_embedded_broker_failing_to_start_reports_its_log(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        broker = local_broker.EmbeddedBroker(
            port=port, log_path=tmp_path / "tansu.log", start_timeout=5
        )
        with pytest.raises(local_broker.BrokerStartError) as failure:
            broker.start()
    assert "Address in use" in str(failure.value)  # from the log tail
    assert str(tmp_path / "tansu.log") in str(failure.value)
    assert broker.pid is None


def test_resolve_bootstrap_uses_kafka_bootstrap_when_set():
    bootstrap, broker = local_broker.resolve_bootstrap({"KAFKA_BOOTSTRAP": "kafka:9092"})
    assert (bootstrap, broker) == ("kafka:9092", None)


def test_resolve_bootstrap_starts_a_broker_without_kafka_bootstrap():
    bootstrap, broker = local_broker.resolve_bootstrap({})
    assert broker is not None
    try:
        assert bootstrap == broker.bootstrap
        assert ports.port_open("127.0.0.1", broker.port)
    finally:
        broker.stop()


def test_resolve_database_uses_database_url_when_set(tmp_path):
    url = "postgresql://someone@db.example:5432/vigil"
    resolved = database.resolve_database({"DATABASE_URL": url}, tmp_path)
    assert (resolved.url, resolved.server, resolved.source) == (url, None, "env")


async def test_resolve_database_finds_the_local_server_and_manages_databases(tmp_path):
    resolved = database.resolve_database({}, tmp_path / "state", dbname=_unique("vigil_test"))
    assert resolved.source == "local"
    assert resolved.server is None
    assert resolved.url.startswith("postgresql://postgres@127.0.0.1:5432/")
    assert not (tmp_path / "state").exists()
    await _check_create_use_drop(resolved.url)


async def test_embedded_postgres_is_used_when_nothing_answers_locally(tmp_path):
    dbname = _unique("vigil_test")
    resolved = database.resolve_database(
        {}, tmp_path / "state", dbname=dbname, local_port=ports.free_port()
    )
    assert resolved.source == "embedded"
    assert resolved.server is not None
    try:
        postmaster = resolved.server.pid
        assert f"host={resolved.server.socket_dir}" in resolved.url
        await _check_create_use_drop(resolved.url)
    finally:
        resolved.close()
    assert not _process_alive(postmaster)

    # The data directory survives a stop: a second start finds the same cluster.
    server = database.EmbeddedPostgres(tmp_path / "state" / "postgres").start()
    try:
        url = server.url(dbname)
        assert await database.create_database_if_missing(url) is True
    finally:
        server.stop()
    server = database.EmbeddedPostgres(tmp_path / "state" / "postgres").start()
    try:
        postmaster = server.pid
        assert await database.create_database_if_missing(server.url(dbname)) is False
    finally:
        server.stop()
    assert not _process_alive(postmaster)


async def _check_create_use_drop(url: str) -> None:
    created = await asyncio.gather(*(database.create_database_if_missing(url) for _ in range(6)))
    assert sorted(created) == [False] * 5 + [True]

    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT current_database()") == database.database_name(url)
    finally:
        await conn.close()
    with psycopg.connect(url) as sync_conn:
        assert sync_conn.execute("SELECT 1").fetchone() == (1,)

    lingering = await asyncpg.connect(url)  # drop_database must end this session itself
    try:
        await database.drop_database(url)
    finally:
        await lingering.close()
    await database.drop_database(url)  # absent is fine

    conn = await asyncpg.connect(database.with_database(url, "postgres"))
    try:
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", database.database_name(url)
        )
    finally:
        await conn.close()
    assert exists is None


_SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"
# Leaves a grandchild in its process group and ignores SIGTERM itself.
_STUBBORN = (
    "import signal, subprocess, sys, time;"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
    "print('grandchild', child.pid, flush=True); time.sleep(120)"
)


async def test_supervisor_stop_all_leaves_no_process_behind(tmp_path):
    out = io.StringIO()
    supervisor = Supervisor(out=out, logs_dir=tmp_path / "logs", tag_width=10)
    env = {"PATH": "/usr/bin:/bin"}
    try:
        first = await supervisor.start("sleeper-a", [sys.executable, "-c", _SLEEPER], env)
        second = await supervisor.start("sleeper-b", [sys.executable, "-c", _SLEEPER], env)
        stubborn = await supervisor.start("stubborn", [sys.executable, "-c", _STUBBORN], env)
        await _eventually(
            lambda: out.getvalue().count("ready") == 2 and "grandchild" in out.getvalue()
        )
        grandchild = int(out.getvalue().split("grandchild ")[1].split()[0])

        assert supervisor.alive("sleeper-a") and supervisor.alive("sleeper-b")
        assert "sleeper-a  | ready\n" in out.getvalue()
        with pytest.raises(ValueError, match="already running"):
            await supervisor.start("sleeper-a", [sys.executable, "-c", _SLEEPER], env)
    finally:
        await supervisor.stop_all(timeout=1.0)

    assert not _process_alive(grandchild)  # killed with its group, reaped by init
    for pid in (first.pid, second.pid, stubborn.pid):
        assert not Path(f"/proc/{pid}").exists(), f"{pid} is still there or was not reaped"
    assert first.returncode == second.returncode == -15
    assert stubborn.returncode == -9  # ignored SIGTERM
    assert not supervisor.alive("sleeper-a")
    assert (tmp_path / "logs" / "sleeper-b.log").read_text() == "ready\n"


async def test_supervisor_reports_a_crashed_child_with_its_exit_code(tmp_path):
    out = io.StringIO()
    env = {"PATH": "/usr/bin:/bin"}
    async with Supervisor(out=out, logs_dir=tmp_path) as supervisor:
        sleeper = await supervisor.start("sleeper", [sys.executable, "-c", _SLEEPER], env)
        await supervisor.start(
            "crasher",
            [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
            env,
            cwd=tmp_path,
        )
        crashed = await asyncio.wait_for(supervisor.wait_any_exit(), timeout=10)

        assert crashed is not None and crashed.name == "crasher"
        assert crashed.returncode == 3
        assert not crashed.stopped_by_supervisor
        assert supervisor.alive("sleeper") and not supervisor.alive("crasher")
        assert "boom" in out.getvalue()
        assert (tmp_path / "crasher.log").read_text() == "boom\n"
        assert await supervisor.stop("sleeper") == -15
        assert not supervisor.alive("sleeper")
    assert not Path(f"/proc/{sleeper.pid}").exists()


async def test_supervisor_wait_any_exit_ignores_processes_it_stopped():
    env = {"PATH": "/usr/bin:/bin"}
    async with Supervisor(out=io.StringIO()) as supervisor:
        await supervisor.start("sleeper", [sys.executable, "-c", _SLEEPER], env)
        watcher = asyncio.create_task(supervisor.wait_any_exit())
        await asyncio.sleep(0.1)
        await supervisor.stop_all(timeout=2)
        assert await asyncio.wait_for(watcher, timeout=5) is None
