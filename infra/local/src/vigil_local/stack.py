"""The whole system on this machine: broker, database, the five services and one delegate.

Used by ``make run`` / ``make demo`` (``python -m vigil_local``) and by the end-to-end tests,
so the tests start exactly what a user starts. ``Stack`` is an async context manager; leaving
it stops every process it started (the demo service's nodes included), the embedded broker
and an embedded PostgreSQL, leaving nothing running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import asyncpg

from vigil_common import db, topics
from vigil_common.kafka import ensure_topics
from vigil_gateway.adapters.postgres import create_token
from vigil_local import readiness
from vigil_local.broker import EmbeddedBroker, resolve_bootstrap
from vigil_local.database import (
    ResolvedDatabase,
    create_database_if_missing,
    resolve_database,
)
from vigil_local.ports import free_port
from vigil_local.supervisor import Supervisor
from vigil_orchestrator.adapters.postgres import PostgresStore

SERVICES = {
    # process name: python module (each service's one entry point)
    "orchestrator": "vigil_orchestrator",
    "task-dispatch": "vigil_dispatch",
    "metric-analyzer": "vigil_metric_analyzer",
    "log-analyzer": "vigil_log_analyzer",
    "delegate-gateway": "vigil_gateway",
}
DEMO_ACCOUNT = "demo"


@dataclass
class StackConfig:
    state_dir: Path  # var/ under the checkout: logs, delegate work dir, embedded database
    version: str = "v1"
    api_port: int = 0  # 0 = a free port
    gateway_port: int = 0
    database_name: str = "vigil"
    echo_service_logs: bool = False  # copy every service log line to stdout
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


class Stack:
    """Brings the system up on ``__aenter__`` and down on ``__aexit__``."""

    def __init__(self, config: StackConfig, out: TextIO = sys.stdout):
        self.config = config
        self.out = out
        self.broker: EmbeddedBroker | None = None
        self.database: ResolvedDatabase | None = None
        self.bootstrap = ""
        self.api_address = ""
        self.gateway_address = ""
        self.delegate_token = ""
        self.api_key = ""
        self.supervisor: Supervisor | None = None
        self._devnull: TextIO | None = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @property
    def logs_dir(self) -> Path:
        return self.config.state_dir / "logs"

    @property
    def delegate_workdir(self) -> Path:
        return self.config.state_dir / "delegate"

    async def __aenter__(self) -> Stack:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        cfg = self.config
        started = time.monotonic()
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        await _stop_leftover_nodes(self.delegate_workdir)
        shutil.rmtree(self.delegate_workdir, ignore_errors=True)
        shutil.rmtree(self.logs_dir, ignore_errors=True)
        self.logs_dir.mkdir(parents=True)

        self.bootstrap, self.broker = await asyncio.to_thread(
            resolve_bootstrap, cfg.environ, log_path=self.logs_dir / "broker.log")
        self.say(f"broker      {self.bootstrap} "
                 f"({'embedded tansu' if self.broker else 'KAFKA_BOOTSTRAP'})")
        self.database = await asyncio.to_thread(resolve_database, cfg.environ, cfg.state_dir,
                                                cfg.database_name)
        await create_database_if_missing(self.database.url)
        applied = await asyncio.to_thread(db.migrate, self.database.url)
        self.say(f"database    {self.database.url} ({self.database.source}; "
                 f"{len(applied)} migrations applied)")
        await ensure_topics(self.bootstrap, topics.all_topics(cfg.version))

        async with db.pool(self.database.url, max_size=2) as pool:
            self.delegate_token = await create_token(pool, DEMO_ACCOUNT, "local stack delegate")
            self.api_key = await PostgresStore(pool).create_api_key(DEMO_ACCOUNT, "local-admin")

        api_port = cfg.api_port or free_port()
        gateway_port = cfg.gateway_port or free_port()
        self.api_address = f"127.0.0.1:{api_port}"
        self.gateway_address = f"127.0.0.1:{gateway_port}"
        if not cfg.echo_service_logs:
            self._devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in __aexit__
        self.supervisor = Supervisor(logs_dir=self.logs_dir, out=self._devnull)
        base = self._service_env()
        for name, module in SERVICES.items():
            env = {**base, "INSTANCE_ID": f"{name}-1", "METRICS_PORT": str(free_port())}
            if name == "orchestrator":
                env["API_PORT"] = str(api_port)
            if name == "delegate-gateway":
                env["GATEWAY_PORT"] = str(gateway_port)
            if name == "log-analyzer":  # its LogFeedbackService API
                env["API_PORT"] = str(free_port())
            await self.supervisor.start(name, [sys.executable, "-m", module], env)
        await self._wait_serving(self.api_address, "orchestrator")
        await self._wait_serving(self.gateway_address, "delegate-gateway")
        await self.start_delegate("delegate-1")
        await self._wait_delegate_connected("delegate-1")
        self.say(f"services    orchestrator API {self.api_address}, delegate gateway "
                 f"{self.gateway_address}, task-dispatch, metric-analyzer, log-analyzer, "
                 f"delegate-1 ({time.monotonic() - started:.1f}s; logs in {self.logs_dir})")

    def _service_env(self) -> dict[str, str]:
        assert self.database is not None
        return {
            **self.config.environ,
            "VIGIL_VERSION": self.config.version,
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "DATABASE_URL": self.database.url,
            # Fast group joins on a laptop (RUNTIME.md); production keeps the defaults.
            "KAFKA_SESSION_TIMEOUT_MS": "3000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
            "PYTHONUNBUFFERED": "1",
        }

    async def start_orchestrator(self, name: str) -> str:
        """Start one more orchestrator process of this version; returns its API address.

        Instances of one version share the consumer group and the database, so any of them
        carries on an execution another one started (issue 7: kill one mid-execution).
        """
        assert self.supervisor is not None
        port = free_port()
        env = {**self._service_env(), "INSTANCE_ID": name, "METRICS_PORT": str(free_port()),
               "API_PORT": str(port)}
        await self.supervisor.start(name, [sys.executable, "-m", "vigil_orchestrator"], env)
        await self._wait_serving(f"127.0.0.1:{port}", name)
        return f"127.0.0.1:{port}"

    async def start_delegate(self, name: str, token: str | None = None) -> None:
        assert self.supervisor is not None
        env = {**self._service_env(), "DELEGATE_GATEWAY": self.gateway_address,
               "DELEGATE_ACCOUNT": DEMO_ACCOUNT, "DELEGATE_TOKEN": token or self.delegate_token,
               "DELEGATE_NAME": name, "DELEGATE_WORKDIR": str(self.delegate_workdir),
               "DELEGATE_CAPABILITIES": "local-process,shell,http,noop"}
        await self.supervisor.start(name, [sys.executable, "-m", "vigil_delegate"], env)

    async def _wait_serving(self, address: str, name: str, timeout: float = 60.0) -> None:
        await readiness.wait_serving(address, name, lambda: self._check_alive(name),
                                     self.logs_dir / f"{name}.log", timeout, poll=0.2)

    async def _wait_delegate_connected(self, name: str, timeout: float = 60.0) -> None:
        assert self.database is not None
        deadline = time.monotonic() + timeout
        conn = await asyncpg.connect(self.database.url)
        try:
            while True:
                self._check_alive()
                if await conn.fetchval("SELECT connected FROM delegates WHERE account_id = $1 "
                                       "AND name = $2", DEMO_ACCOUNT, name):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} did not connect within {timeout:g}s; see "
                                       f"{self.logs_dir}")
                await asyncio.sleep(0.2)
        finally:
            await conn.close()

    def _check_alive(self, only: str | None = None) -> None:
        """Raise if a started process (or just ``only``) exited on its own."""
        assert self.supervisor is not None
        for proc in self.supervisor.processes:
            if only is not None and proc.name != only:
                continue
            if proc.returncode is not None and not proc.stopped_by_supervisor:
                raise RuntimeError(f"{proc.name} exited with code {proc.returncode}; "
                                   f"see {proc.log_path}")

    async def __aexit__(self, *exc_info: object) -> None:
        if self.supervisor is not None:
            await self.supervisor.stop_all()
        await _stop_leftover_nodes(self.delegate_workdir)
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
        if self.database is not None:
            await asyncio.to_thread(self.database.close)
        if self._devnull is not None:
            self._devnull.close()


async def _stop_leftover_nodes(workdir: Path) -> None:
    """Stop demo-service nodes a delegate started under ``workdir`` (they outlive it)."""
    from vigil_delegate.targets import LocalProcessTarget

    target_dir = workdir / "local-process"
    if target_dir.exists():
        await LocalProcessTarget(target_dir).stop_all()
