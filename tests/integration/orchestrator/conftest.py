"""The orchestrator's public API on the real PostgreSQL and a real in-process grpc.aio server.

Every test talks to ``vigil_orchestrator.adapters.grpc_api.serve`` through a real channel with
real API keys; task results come in through ``Handlers.on_event`` as real envelopes. Nothing is
mocked. Helpers and pipeline definitions live in ``orchestrator_api.py`` next to this file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import pytest

from vigil.api.v1 import api_pb2_grpc
from vigil_orchestrator.adapters import grpc_api
from vigil_orchestrator.adapters.postgres import PostgresStore
from vigil_orchestrator.handlers import Handlers

VERSION = "v1"
Metadata = tuple[tuple[str, str], ...]


class Clock:
    """The handlers' clock: real time unless a test sets ``now``."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or datetime.now(UTC)


@dataclass(frozen=True)
class Api:
    pipelines: api_pb2_grpc.PipelineServiceStub
    executions: api_pb2_grpc.ExecutionServiceStub


@pytest.fixture
def account(unique: str) -> str:
    return f"acct-a-{unique}"


@pytest.fixture
def other_account(unique: str) -> str:
    return f"acct-b-{unique}"


@pytest.fixture
def store(pool) -> PostgresStore:
    return PostgresStore(pool)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def handlers(store: PostgresStore, clock: Clock) -> Handlers:
    return Handlers(store, VERSION, clock=clock)


@pytest.fixture
async def api(handlers: Handlers, store: PostgresStore, pool) -> AsyncIterator[Api]:
    """The API server on a free port and a client channel to it, both closed afterwards."""
    async with grpc_api.serve(0, handlers, store, pool) as port, \
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Api(api_pb2_grpc.PipelineServiceStub(channel),
                  api_pb2_grpc.ExecutionServiceStub(channel))


@pytest.fixture
def key_for(store: PostgresStore) -> Callable[..., Awaitable[Metadata]]:
    """``await key_for(account, name)``: call metadata carrying a new API key of ``account``."""
    async def make(account: str, name: str = "ci-bot") -> Metadata:
        key = await store.create_api_key(account, name)
        return (("authorization", f"Bearer {key}"),)
    return make


@pytest.fixture
async def auth(key_for, account: str) -> Metadata:
    """A key of ``account`` named ci-bot."""
    return await key_for(account)
