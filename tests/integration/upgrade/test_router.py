"""The local primary front (vigil_upgrade.router): forwards bytes and metadata to the primary
version's API, follows a switch of the primary record within moments, and drains: calls and
streams started before a switch finish on the old backend. Real grpc.aio servers stand in for
two orchestrator versions; the primary record is in a real PostgreSQL."""

import asyncio
import time

import grpc
import pytest
import pytest_asyncio

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil_upgrade import router
from vigil_upgrade.adapters.postgres import VersionStore
from vigil_upgrade.domain import PrimaryChangeKind

pytestmark = pytest.mark.asyncio


class FakeOrchestrator(api_pb2_grpc.ExecutionServiceServicer):
    """Answers as version ``version``; ``slow-*`` ids take a while; echoes the API key."""

    def __init__(self, version: str):
        self.version = version

    async def GetExecution(self, request, context):  # noqa: N802
        if request.execution_id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "execution_id: no such execution",
                                (("x-field", "execution_id"),))
        if request.execution_id.startswith("slow"):
            await asyncio.sleep(1.5)
        key = dict(context.invocation_metadata()).get("authorization", "")
        return api_pb2.Execution(execution_id=request.execution_id, vigil_version=self.version,
                                 reason=key)

    async def WatchExecution(self, request, context):  # noqa: N802
        for _ in range(4):
            yield api_pb2.Execution(execution_id=request.execution_id,
                                    vigil_version=self.version)
            await asyncio.sleep(0.3)


@pytest_asyncio.fixture
async def pool(own_database):
    return own_database[0]


async def _backend(version: str) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    api_pb2_grpc.add_ExecutionServiceServicer_to_server(FakeOrchestrator(version), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_calls_started_before_a_switch_finish_on_the_old_version(pool):
    store = VersionStore(pool)
    (s1, a1), (s2, a2) = await _backend("v1"), await _backend("v2")
    await store.register("v1", "READY", a1)
    await store.register("v2", "READY", a2)
    await store.initialize("v1", by="test")
    auth = (("authorization", "Bearer k1"),)
    try:
        async with router.serve(0, pool) as (port, routes), \
                grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            api = api_pb2_grpc.ExecutionServiceStub(channel)
            reply = await api.GetExecution(api_pb2.GetExecutionRequest(execution_id="a"),
                                           metadata=auth, timeout=5)
            assert (reply.vigil_version, reply.reason) == ("v1", "Bearer k1")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await api.GetExecution(api_pb2.GetExecutionRequest(execution_id="missing"),
                                       timeout=5)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            assert caught.value.details() == "execution_id: no such execution"
            assert ("x-field", "execution_id") in tuple(caught.value.trailing_metadata())

            slow = asyncio.ensure_future(api.GetExecution(
                api_pb2.GetExecutionRequest(execution_id="slow-1"), timeout=10))
            watch = api.WatchExecution(api_pb2.GetExecutionRequest(execution_id="w"),
                                       timeout=10)
            assert (await watch.read()).vigil_version == "v1"
            await asyncio.sleep(0.2)
            switched_at = time.monotonic()
            await store.switch("v2", PrimaryChangeKind.SWITCH, expected="v1", by="test",
                               reason="")
            while (await api.GetExecution(api_pb2.GetExecutionRequest(execution_id="b"),
                                          timeout=5)).vigil_version != "v2":
                assert time.monotonic() - switched_at < 2, "the router did not follow"
            assert time.monotonic() - switched_at < 0.5, "NOTIFY, not the poll, woke it"
            assert not slow.done(), "the slow call is still in flight on v1"
            assert [b.version for b in routes.draining] == ["v1"]
            assert (await slow).vigil_version == "v1"
            rest = []
            while (message := await watch.read()) is not grpc.aio.EOF:
                rest.append(message.vigil_version)
            assert rest == ["v1", "v1", "v1"], "the stream finished on the old version"
            await asyncio.sleep(1.2)  # the router's poll closes idle draining backends
            assert routes.draining == []
    finally:
        await s1.stop(None)
        await s2.stop(None)


async def test_unknown_methods_are_not_forwarded(pool):
    store = VersionStore(pool)
    await store.initialize("v1", by="test")
    async with router.serve(0, pool) as (port, _), \
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/vigil.delegate.v1.DelegateAdmin/ListDelegates")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"", timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        api = api_pb2_grpc.ExecutionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await api.GetExecution(api_pb2.GetExecutionRequest(execution_id="a"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # v1 has no address yet
