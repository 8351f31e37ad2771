"""The delegate stream of the real gRPC gateway (vigil_gateway.adapters.grpc_stream) with a
real grpc.aio client and real PostgreSQL: who may connect, and reports stored exactly once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from vigil.delegate.v1 import delegate_pb2, delegate_pb2_grpc
from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import envelope, topics
from vigil_gateway.adapters.grpc_stream import Connections, DelegateService, serve
from vigil_gateway.adapters.postgres import (
    PRODUCER,
    GatewayStore,
    create_token,
    delegate_id_for,
    revoke_token,
)

VERSION = "v1"
GATEWAY_ID = "gw-test"
CALL_TIMEOUT_S = 15.0


@pytest.fixture
async def gateway(pool) -> AsyncIterator[str]:
    """The gateway's delegate stream server on a free port; yields its address."""
    service = DelegateService(GatewayStore(pool, VERSION, GATEWAY_ID), Connections(), VERSION,
                              GATEWAY_ID)
    async with serve(0, service) as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture
def account(unique: str) -> str:
    return f"acct-{unique}"


@contextlib.asynccontextmanager
async def _stream(address: str, version: str | None = VERSION
                  ) -> AsyncIterator[grpc.aio.StreamStreamCall]:
    """An open Connect stream with ``vigil-version: version`` (no header when None)."""
    async with grpc.aio.insecure_channel(address) as channel:
        metadata = (("vigil-version", version),) if version is not None else ()
        call = delegate_pb2_grpc.DelegateServiceStub(channel).Connect(
            metadata=metadata, timeout=CALL_TIMEOUT_S)
        try:
            yield call
        finally:
            call.cancel()


def _register(account: str, token: str, name: str = "delegate-1") -> delegate_pb2.DelegateMessage:
    return delegate_pb2.DelegateMessage(register=delegate_pb2.Register(
        account_id=account, token=token, name=name, version="0.1.0",
        capabilities=["local-process", "shell"]))


async def _refusal(call: grpc.aio.StreamStreamCall) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        while True:
            assert await call.read() is not grpc.aio.EOF, "the stream ended without an error"
    return refused.value


async def _close(call: grpc.aio.StreamStreamCall) -> list[delegate_pb2.GatewayMessage]:
    """Half-close and read to the end: the gateway has then closed the session too."""
    await call.done_writing()
    rest = []
    while (msg := await call.read()) is not grpc.aio.EOF:
        rest.append(msg)
    assert await call.code() == grpc.StatusCode.OK
    return rest


async def _outbox(pool, key: str) -> list[envelope.Envelope]:
    rows = await pool.fetch(
        "SELECT topic, header_names, header_values, value FROM outbox "
        "WHERE producer = $1 AND key = $2 ORDER BY id", PRODUCER, key.encode())
    out = []
    for r in rows:
        headers = [(n, v.encode()) for n, v in zip(r["header_names"], r["header_values"],
                                                    strict=True)]
        out.append(envelope.decode(headers, r["value"]))
        assert r["topic"] == {
            "vigil.events.v1.DelegateConnected": topics.delegate_events(VERSION),
            "vigil.events.v1.DelegateDisconnected": topics.delegate_events(VERSION),
            "vigil.events.v1.TaskSucceeded": topics.task_results(VERSION),
        }[out[-1].type]
    return out


async def test_a_delegate_with_a_wrong_token_is_refused_as_unauthenticated(
        pool, gateway, account):
    await create_token(pool, account)
    revoked = await create_token(pool, account)
    assert await revoke_token(pool, account, revoked)

    for token in ("vgl_not-a-real-token", revoked):
        async with _stream(gateway) as call:
            await call.write(_register(account, token))
            refused = await _refusal(call)
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "register.token" in refused.details()

    delegate_id = delegate_id_for(account, "delegate-1")
    assert await pool.fetchval(
        "SELECT count(*) FROM delegate_sessions WHERE delegate_id = $1", delegate_id) == 0
    assert await _outbox(pool, delegate_id) == []


@pytest.mark.parametrize("version", [None, "v2"], ids=["missing", "another"])
async def test_a_delegate_without_this_gateways_vigil_version_is_refused(
        pool, gateway, account, version):
    token = await create_token(pool, account)
    async with _stream(gateway, version=version) as call:
        await call.write(_register(account, token))
        refused = await _refusal(call)

    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.details().startswith(f"vigil-version: {version or '(missing)'} is not served")
    assert await _outbox(pool, delegate_id_for(account, "delegate-1")) == []


async def test_a_stream_not_starting_with_register_is_refused_as_invalid_argument(
        gateway, account):
    async with _stream(gateway) as call:
        await call.write(delegate_pb2.DelegateMessage(
            heartbeat=delegate_pb2.Heartbeat(sent_at_unix_ms=1)))
        refused = await _refusal(call)

    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "register" in refused.details()


async def test_a_delegate_with_a_good_token_is_registered_and_announced(
        pool, gateway, account):
    token = await create_token(pool, account)
    delegate_id = delegate_id_for(account, "delegate-1")

    async with _stream(gateway) as call:
        await call.write(_register(account, token))
        first = await call.read()
        connected = await _outbox(pool, delegate_id)
        assert await _close(call) == []

    assert first.WhichOneof("kind") == "registered"
    assert (first.registered.delegate_id, first.registered.gateway_id,
            first.registered.session) == (delegate_id, GATEWAY_ID, 1)
    assert [e.type for e in connected] == ["vigil.events.v1.DelegateConnected"]
    announced = connected[0].message
    assert (announced.delegate_id, announced.account_id, announced.name, announced.version,
            list(announced.capabilities), announced.gateway_id, announced.session) == (
        delegate_id, account, "delegate-1", VERSION, ["local-process", "shell"], GATEWAY_ID, 1)
    assert connected[0].id == f"connected/{delegate_id}/1"
    events = await _outbox(pool, delegate_id)
    assert [e.id for e in events] == [f"connected/{delegate_id}/1",
                                      f"disconnected/{delegate_id}/1"]
    assert events[1].message.session == 1


async def test_a_task_result_sent_twice_is_published_once_and_acknowledged_twice(
        pool, gateway, account, unique):
    token = await create_token(pool, account)
    execution_id, task_id = f"ex-{unique}", f"task-{unique}"
    result = delegate_pb2.DelegateMessage(result=delegate_pb2.TaskResult(
        task_id=task_id, attempt=1, success=True, execution_id=execution_id,
        output=spec_pb2.TaskOutput(summary="deployed v1 on node-1, node-2")))

    async with _stream(gateway) as call:
        await call.write(_register(account, token))
        assert (await call.read()).WhichOneof("kind") == "registered"
        await call.write(result)
        await call.write(result)  # resent, e.g. after a lost acknowledgement
        acks = [await call.read(), await call.read()]
        await _close(call)

    assert [(a.WhichOneof("kind"), a.result_ack.task_id, a.result_ack.attempt)
            for a in acks] == [("result_ack", task_id, 1)] * 2
    events = await _outbox(pool, execution_id)
    assert [(e.type, e.id) for e in events] == [
        ("vigil.events.v1.TaskSucceeded", f"result/{task_id}/1")]
    published = events[0].message
    assert isinstance(published, tasks_pb2.TaskSucceeded)
    assert (published.task_id, published.attempt, published.account_id, published.execution_id,
            published.delegate_id, published.output.summary) == (
        task_id, 1, account, execution_id, delegate_id_for(account, "delegate-1"),
        "deployed v1 on node-1, node-2")


async def test_a_newer_stream_of_the_same_delegate_replaces_the_older_one(
        pool, gateway, account):
    token = await create_token(pool, account)
    delegate_id = delegate_id_for(account, "delegate-1")
    async with _stream(gateway) as old, _stream(gateway) as new:
        await old.write(_register(account, token))
        assert (await old.read()).registered.session == 1
        await new.write(_register(account, token))  # e.g. it reconnected before noticing
        assert (await new.read()).registered.session == 2

        replaced = await _refusal(old)
        assert replaced.code() == grpc.StatusCode.ABORTED
        assert "replaced by a newer stream" in replaced.details()
        row = await pool.fetchrow("SELECT session, connected FROM delegate_sessions "
                                  "WHERE delegate_id = $1", delegate_id)
        assert (row["session"], row["connected"]) == (2, True)  # closing 1 left 2 alone
        await new.write(delegate_pb2.DelegateMessage(
            heartbeat=delegate_pb2.Heartbeat(sent_at_unix_ms=7)))
        assert (await new.read()).heartbeat.sent_at_unix_ms == 7
        await _close(new)
