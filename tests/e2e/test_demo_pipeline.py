"""End to end through real processes: the same Stack `make run` starts (embedded broker, real
PostgreSQL, five services and a delegate as separate processes), driven through the public
gRPC API and observed on the public Kafka topics."""

import asyncio
import io
import json
import sys
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil.events.v1 import execution_pb2
from vigil_delegate.targets import LocalProcessTarget
from vigil_local.demo import run_demo
from vigil_local.stack import DEMO_ACCOUNT

pytestmark = pytest.mark.asyncio(loop_scope="session")


def bad_request(err: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """The (field, description) violations of a rich INVALID_ARGUMENT error."""
    status = rpc_status.from_call(err)
    out = []
    for detail in status.details:
        br = error_details_pb2.BadRequest()
        assert detail.Unpack(br)
        out += [(v.field, v.description) for v in br.field_violations]
    return out


def auth(stack) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {stack.api_key}"),)


async def test_canary_with_a_regression_is_rolled_back_and_the_execution_fails(
        stack, tmp_path):
    out = io.StringIO()
    outcome = await run_demo(stack, out=out)
    failed = [c.what for c in outcome.checks if not c.ok]
    assert failed == [], f"unexpected demo outcome {failed}:\n{out.getvalue()}"
    ex = outcome.execution
    assert ex.status == execution_pb2.EXECUTION_STATUS_FAILED and ex.rolled_back
    # The metrics reason names what failed: the slower response time at the end of the
    # window, or, when an early batch already fails (issue 5, live early decision), the error
    # rate above its fail-fast threshold.
    assert "NullPointerException" in ex.reason
    assert "response_time_ms" in ex.reason or "error_rate_pct on node-3" in ex.reason
    # The delegate's local-process target: the canary node is gone, the primaries still run v1.
    nodes = {n.node: n for n in LocalProcessTarget(stack.delegate_workdir / "local-process")
             .nodes("demo")}
    assert sorted(nodes) == ["node-1", "node-2"]
    assert all(n.version == "v1" and n.alive for n in nodes.values())
    await _export_replays_the_failed_verification(stack, ex.execution_id, tmp_path)


async def _vigil(*args: str) -> tuple[int, str, str]:
    """The CLI as a separate process."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vigil_cli", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def _export_replays_the_failed_verification(stack, execution_id: str, tmp_path) -> None:
    """Issue 5: `vigil verify export` then `vigil verify replay` reproduces the live FAIL."""
    path = tmp_path / "verify-canary.json"
    code, _, err = await _vigil("verify", "export", execution_id, "--step", "verify-canary",
                                "-o", str(path), "--api", stack.api_address,
                                "--api-key", stack.api_key)
    assert code == 0, err
    doc = json.loads(path.read_text())
    assert doc["live"]["verdicts"]["metrics"]["verdict"] == "FAIL", doc["live"]
    assert doc["hosts"] == {"control": ["node-1", "node-2"], "test": ["node-3"]}
    assert doc["logs"]["test"], "the canary's logs were not exported"
    code, out, err = await _vigil("verify", "replay", str(path), "--sensitivity",
                                  doc["sensitivity"])
    assert code == 0, err
    replayed = json.loads(out)
    assert replayed["verdict_metrics"] == {doc["sensitivity"]: "FAIL"}, (
        err, replayed["explanations"]["metrics"]["reason"])


async def test_a_healthy_canary_passes_verification_and_the_execution_succeeds(stack):
    out = io.StringIO()
    outcome = await run_demo(stack, out=out, inputs={"canary_version": "v3"})
    ex = outcome.execution
    assert ex.status == execution_pb2.EXECUTION_STATUS_SUCCEEDED, out.getvalue()
    assert not ex.rolled_back
    assert [s.status for s in ex.steps] == [execution_pb2.STEP_STATUS_SUCCEEDED] * 3


async def test_a_malformed_pipeline_is_refused_with_the_path_of_the_bad_field(stack):
    bad = """
name: broken
stages:
  - name: only
    workflow:
      phases:
        - name: p
          steps:
            - name: s
              type: deploy
              service: demo
              version: v1
              nodes: [node-1]
              command: [true]
              timeout: soon
"""
    async with grpc.aio.insecure_channel(stack.api_address) as channel:
        api = api_pb2_grpc.PipelineServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.ApplyPipeline(api_pb2.ApplyPipelineRequest(account_id=DEMO_ACCOUNT,
                                                                 yaml=bad), metadata=auth(stack))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "stages[0].workflow.phases[0].steps[0].timeout: must be a duration" in \
        err.value.details()
    violations = bad_request(err.value)
    assert ("stages[0].workflow.phases[0].steps[0].timeout",
            "must be a duration (e.g. 90s, 5m)") in violations


async def test_a_delegate_with_a_wrong_token_is_refused_and_exits_with_the_reason(stack):
    await stack.start_delegate("intruder", token="vgl_not-a-real-token")
    proc = stack.supervisor.get("intruder")
    code = await proc.wait()
    assert code == 2
    log = proc.log_path.read_text()
    assert "UNAUTHENTICATED" in log and "register.token" in log


async def test_an_unknown_execution_is_not_found(stack):
    async with grpc.aio.insecure_channel(stack.api_address) as channel:
        api = api_pb2_grpc.ExecutionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.GetExecution(api_pb2.GetExecutionRequest(
                account_id=DEMO_ACCOUNT, execution_id=str(uuid.uuid4())), metadata=auth(stack))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
