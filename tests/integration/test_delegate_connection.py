"""The delegate agent against a real in-process gateway (gRPC, PostgreSQL): TLS, token
revocation closing a live stream, and results kept on disk delivered by the next run of the
agent (a restart), exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vigil.delegate.v1 import delegate_pb2
from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil_common import topics
from vigil_delegate.agent import Agent, RegistrationRefused
from vigil_delegate.config import Settings
from vigil_delegate.pending import PendingReports
from vigil_gateway.adapters.connections import Connections
from vigil_gateway.adapters.grpc_stream import DelegateService, serve
from vigil_gateway.adapters.postgres import (
    PRODUCER,
    GatewayStore,
    create_token,
    delegate_id_for,
    revoke_token,
)
from vigil_gateway.handlers import watch_revocations

VERSION = "v1"


class Gateway:
    def __init__(self, pool, name: str):
        self.connections = Connections()
        self.store = GatewayStore(pool, VERSION, name)
        self.service = DelegateService(self.store, self.connections, VERSION, name)
        self.pool = pool


@contextlib.asynccontextmanager
async def _gateway(pool, name="gw-a", tls=None, port=0) -> AsyncIterator[tuple[Gateway, str]]:
    gw = Gateway(pool, name)
    watcher = asyncio.ensure_future(watch_revocations(pool, gw.store, gw.connections, 0.5))
    try:
        async with serve(port, gw.service, tls=tls) as bound:
            yield gw, f"{'localhost' if tls else '127.0.0.1'}:{bound}"
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


def _agent(address: str, account: str, token: str, workdir: Path, **env: str) -> Agent:
    return Agent(Settings.from_env({
        "DELEGATE_GATEWAY": address, "DELEGATE_ACCOUNT": account, "DELEGATE_TOKEN": token,
        "DELEGATE_NAME": "d1", "DELEGATE_WORKDIR": str(workdir),
        "DELEGATE_CAPABILITIES": "shell", "DELEGATE_SELECTORS": "cluster=eu", **env}))


@contextlib.asynccontextmanager
async def _running(agent: Agent) -> AsyncIterator[asyncio.Task]:
    task = asyncio.ensure_future(agent.run_forever())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.close()


async def _session(pool, account: str):
    return await pool.fetchrow("SELECT * FROM delegate_sessions WHERE delegate_id = $1",
                               delegate_id_for(account, "d1"))


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "gw.crt", tmp / "gw.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_a_delegate_connects_over_tls_with_the_gateways_ca_and_its_selectors_are_kept(
        pool, unique, tmp_path, eventually):
    account = f"acct-{unique}"
    token = await create_token(pool, account)
    cert, key = _self_signed(tmp_path)
    async with _gateway(pool, tls=(key.read_bytes(), cert.read_bytes())) as (gw, address):
        agent = _agent(address, account, token, tmp_path / "d", DELEGATE_TLS_CA=str(cert))
        async with _running(agent):
            row = await eventually(lambda: _session(pool, account), "a TLS session")
            assert row["connected"] and list(row["selectors"]) == ["cluster=eu"]
        # Without the CA the handshake fails: the agent keeps retrying, never registers.
        plain = _agent(address, account, token, tmp_path / "p")
        async with _running(plain) as task:
            await asyncio.sleep(1.0)
            assert not task.done() and plain.gateway_id == ""


async def test_revoking_a_token_closes_the_live_stream_and_refuses_the_next_connect(
        pool, unique, tmp_path, eventually):
    account = f"acct-{unique}"
    token = await create_token(pool, account)
    async with _gateway(pool) as (gw, address):
        agent = _agent(address, account, token, tmp_path / "d")
        async with _running(agent) as task:
            await eventually(lambda: len(gw.connections) == 1, "connected")
            assert await revoke_token(pool, account, token)
            with pytest.raises(RegistrationRefused, match="UNAUTHENTICATED: register.token: "
                                                         "revoked"):
                await asyncio.wait_for(task, 3.0)  # NOTIFY: at once; re-check: 0.5 s
        again = _agent(address, account, token, tmp_path / "d")
        async with _running(again) as task:
            with pytest.raises(RegistrationRefused, match="not a valid token"):
                await asyncio.wait_for(task, 5.0)
        assert not (await _session(pool, account))["connected"]


async def test_a_result_finished_while_disconnected_is_delivered_by_the_restarted_agent_once(
        pool, unique, tmp_path, eventually):
    account, workdir = f"acct-{unique}", tmp_path / "d"
    token = await create_token(pool, account)
    delegate_id = delegate_id_for(account, "d1")
    task_id = f"task-{unique}"
    assignment = delegate_pb2.GatewayMessage(assignment=delegate_pb2.TaskAssignment(
        task_id=task_id, attempt=1, execution_id=f"ex-{unique}", timeout_seconds=30,
        spec=spec_pb2.TaskSpec(shell_script=spec_pb2.ShellScript(script="sleep 3.5; echo done"))))
    async with _gateway(pool) as (gw, address):
        first = _agent(address, account, token, workdir)
        run = asyncio.ensure_future(first.run_forever())
        await eventually(lambda: len(gw.connections) == 1, "connected")
        assert gw.connections.send(delegate_id, account, assignment)
        await eventually(lambda: task_id in str(first._running), "task running")
    # The gateway is gone (its 2 s stop grace ends first) while the task finishes: the
    # result waits on disk.
    pending = PendingReports(workdir / "pending")
    await eventually(lambda: pending.has(task_id, 1), "result kept on disk", timeout=10)
    run.cancel()  # the delegate process dies with the result unacknowledged
    await asyncio.gather(run, return_exceptions=True)
    await first.close()

    async with _gateway(pool, name="gw-b") as (gw, address):
        for _ in range(2):  # a restart, then another: delivered once, then nothing to send
            agent = _agent(address, account, token, workdir)
            async with _running(agent):
                await eventually(lambda: not pending.has(task_id, 1), "result acknowledged")
    rows = await pool.fetch(
        "SELECT header_values FROM outbox WHERE producer = $1 AND topic = $2 AND key = $3",
        PRODUCER, topics.task_results(VERSION), f"ex-{unique}".encode())
    assert len(rows) == 1 and "vigil.events.v1.TaskSucceeded" in rows[0]["header_values"]
