"""The delegate plane on this machine: broker and database, task-dispatch, any number of
delegate-gateway instances and delegates, each a real process from its own entry point.

Used by the delegate end-to-end tests and the delegate benchmarks, which need several gateway
instances and delegates that the demo `Stack` does not start. Leaving the context stops every
process, the embedded broker and an embedded PostgreSQL, and drops a database it created.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import asyncpg

from vigil_common import apikeys, db, topics
from vigil_common.kafka import ensure_topics
from vigil_gateway.adapters.postgres import create_token
from vigil_local import readiness
from vigil_local.broker import EmbeddedBroker, resolve_bootstrap
from vigil_local.database import (
    ResolvedDatabase,
    create_database_if_missing,
    drop_database,
    resolve_database,
)
from vigil_local.ports import free_port
from vigil_local.supervisor import Supervisor


class DelegatePlane:
    """``async with DelegatePlane(state_dir) as plane:`` then start what the scenario needs."""

    def __init__(self, state_dir: Path, version: str = "v1",
                 environ: Mapping[str, str] | None = None):
        self.state_dir = state_dir
        self.version = version
        self.environ = dict(os.environ if environ is None else environ)
        self.bootstrap = ""
        self.database_url = ""
        self.gateways: dict[str, str] = {}  # instance id -> address
        self.supervisor: Supervisor | None = None
        self._broker: EmbeddedBroker | None = None
        self._database: ResolvedDatabase | None = None
        self._created_db = False
        self._devnull = None

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    async def __aenter__(self) -> DelegatePlane:
        try:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            self.bootstrap, self._broker = await asyncio.to_thread(
                resolve_bootstrap, self.environ, log_path=self.logs_dir / "broker.log")
            name = f"vigil_plane_{uuid.uuid4().hex[:8]}"
            self._database = await asyncio.to_thread(resolve_database, self.environ,
                                                     self.state_dir, name)
            self.database_url = self._database.url
            self._created_db = (await create_database_if_missing(self.database_url)
                                and "DATABASE_URL" not in self.environ)
            await asyncio.to_thread(db.migrate, self.database_url)
            await ensure_topics(self.bootstrap, topics.all_topics(self.version))
            self._devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in __aexit__
            self.supervisor = Supervisor(logs_dir=self.logs_dir, out=self._devnull)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.supervisor is not None:
            await self.supervisor.stop_all()
        if self._created_db:
            with contextlib.suppress(Exception):
                await drop_database(self.database_url)
        if self._database is not None:
            await asyncio.to_thread(self._database.close)
        if self._broker is not None:
            await asyncio.to_thread(self._broker.stop)
        if self._devnull is not None:
            self._devnull.close()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every process of the plane gets, plus ``extra``."""
        return {**self.environ, "VIGIL_VERSION": self.version, "KAFKA_BOOTSTRAP": self.bootstrap,
                "DATABASE_URL": self.database_url, "KAFKA_SESSION_TIMEOUT_MS": "3000",
                "KAFKA_HEARTBEAT_INTERVAL_MS": "300", "METRICS_PORT": "0",
                "PYTHONUNBUFFERED": "1", **extra}

    async def token(self, account: str) -> str:
        async with db.pool(self.database_url, max_size=1) as pool:
            return await create_token(pool, account, "delegate plane")

    async def api_key(self, account: str) -> str:
        """An API key of the account (DelegateAdmin and the other public services)."""
        async with db.pool(self.database_url, max_size=1) as pool:
            return await apikeys.create(pool, account, "delegate plane")

    async def start_dispatch(self, **env: str) -> None:
        assert self.supervisor is not None
        await self.supervisor.start("task-dispatch", [sys.executable, "-m", "vigil_dispatch"],
                                    self.env(INSTANCE_ID="task-dispatch-1", **env))

    async def start_gateway(self, instance: str, *, argv_prefix: tuple[str, ...] = (),
                            **env: str) -> str:
        """Start a gateway instance on a free port; returns its address once it serves."""
        assert self.supervisor is not None
        port = free_port()
        await self.supervisor.start(instance, [*argv_prefix, sys.executable, "-m",
                                               "vigil_gateway"],
                                    self.env(INSTANCE_ID=instance, GATEWAY_PORT=str(port), **env))
        address = f"127.0.0.1:{port}"
        await self.wait_serving(address, instance)
        self.gateways[instance] = address
        return address

    async def start_delegate(self, name: str, account: str, token: str,
                             gateways: list[str], **env: str) -> None:
        assert self.supervisor is not None
        await self.supervisor.start(name, [sys.executable, "-m", "vigil_delegate"], self.env(
            DELEGATE_GATEWAY=",".join(gateways), DELEGATE_ACCOUNT=account,
            DELEGATE_TOKEN=token, DELEGATE_NAME=name,
            DELEGATE_WORKDIR=str(self.state_dir / "delegates" / name), **env))

    def kill(self, name: str) -> None:
        """SIGKILL a process and its group: a crash, no clean shutdown."""
        assert self.supervisor is not None
        os.killpg(self.supervisor.get(name).pid, signal.SIGKILL)

    async def wait_serving(self, address: str, name: str, timeout: float = 60.0) -> None:
        await readiness.wait_serving(address, name, lambda: self._check_alive(name),
                                     self.logs_dir / f"{name}.log", timeout)

    async def wait_connected(self, account: str, name: str, timeout: float = 60.0,
                             not_on: str = "") -> str:
        """Wait until task-dispatch sees the delegate connected (on a gateway other than
        ``not_on``); returns the gateway instance holding it."""
        deadline = time.monotonic() + timeout
        conn = await asyncpg.connect(self.database_url)
        try:
            while True:
                self._check_alive(name)
                row = await conn.fetchrow("SELECT connected, gateway_id FROM delegates WHERE "
                                          "account_id = $1 AND name = $2", account, name)
                if row and row["connected"] and row["gateway_id"] != not_on:
                    return row["gateway_id"]
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not connected within {timeout:g}s; see "
                                       f"{self.logs_dir}")
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def _check_alive(self, name: str) -> None:
        proc = next((p for p in self.supervisor.processes if p.name == name), None)
        if proc is not None and proc.returncode is not None and not proc.stopped_by_supervisor:
            raise RuntimeError(f"{name} exited with code {proc.returncode}; see {proc.log_path}")
