"""Issue 7: an orchestrator process dies in the middle of an execution; another process of the
same version carries on from the stored state, and no step runs twice."""

import asyncio
import os
import signal
import sys
import time
import uuid

import grpc
import pytest
from topic_reader import read_records

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil.events.v1 import execution_pb2, tasks_pb2
from vigil_common import topics
from vigil_local.ports import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

PIPELINE = """
name: failover
stages:
  - name: one
    workflow:
      failure_strategy: abort
      phases:
        - name: p
          steps:
            - {name: first, type: noop}
            - {name: soak, type: wait, duration: 4s}
            - {name: second, type: noop}
  - name: two
    workflow:
      failure_strategy: abort
      phases:
        - name: p
          steps:
            - {name: third, type: noop}
            - {name: fourth, type: noop}
"""


async def _wait_for(api, auth, execution_id: str, done, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        ex = await api.GetExecution(api_pb2.GetExecutionRequest(execution_id=execution_id),
                                    metadata=auth)
        if done(ex):
            return ex
        assert time.monotonic() < deadline, f"gave up waiting; last state:\n{ex}"
        await asyncio.sleep(0.2)


async def test_killing_an_orchestrator_mid_execution_loses_nothing_and_runs_nothing_twice(stack):
    auth = (("authorization", f"Bearer {stack.api_key}"),)
    survivor = await stack.start_orchestrator("orchestrator-2")
    victim = stack.supervisor.get("orchestrator")
    try:
        async with grpc.aio.insecure_channel(survivor) as channel:
            pipelines = api_pb2_grpc.PipelineServiceStub(channel)
            api = api_pb2_grpc.ExecutionServiceStub(channel)
            await pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=PIPELINE),
                                          metadata=auth)
            started = await api.StartExecution(api_pb2.StartExecutionRequest(
                pipeline="failover", idempotency_key=str(uuid.uuid4())), metadata=auth)
            execution_id = started.execution_id

            def first_done(ex):
                return any(s.ref.step == "first" and s.status == execution_pb2.STEP_STATUS_SUCCEEDED
                           for s in ex.steps)

            await _wait_for(api, auth, execution_id, first_done)
            os.killpg(victim.pid, signal.SIGKILL)  # mid-execution: the wait step is running
            final = await _wait_for(api, auth, execution_id,
                                    lambda ex: ex.status != execution_pb2.EXECUTION_STATUS_RUNNING)
        assert final.status == execution_pb2.EXECUTION_STATUS_SUCCEEDED, final.reason
        assert [(s.ref.step, s.attempt, s.status) for s in final.steps] == [
            (name, 1, execution_pb2.STEP_STATUS_SUCCEEDED)
            for name in ("first", "soak", "second", "third", "fourth")]

        dispatched = [e.message for e in await read_records(
            stack.bootstrap, topics.dispatch_commands("v1"), execution_id)]
        results = [e.message for e in await read_records(
            stack.bootstrap, topics.task_results("v1"), execution_id)]
        task_ids = {d.task_id for d in dispatched}
        assert len(task_ids) == 4, "each delegate step is dispatched as one task"
        succeeded = [r.task_id for r in results if isinstance(r, tasks_pb2.TaskSucceeded)]
        assert sorted(succeeded) == sorted(task_ids), "each task ran and reported exactly once"
        delegate_log = stack.supervisor.get("delegate-1").log_path.read_text()
        for task_id in task_ids:
            started_lines = [line for line in delegate_log.splitlines()
                             if task_id in line and '"task started"' in line]
            assert len(started_lines) == 1, f"task {task_id} started {len(started_lines)} times"
    finally:
        # Give the other tests their orchestrator back, on the API address they know.
        port = stack.api_address.rsplit(":", 1)[1]
        env = {**stack._service_env(), "INSTANCE_ID": "orchestrator-1",
               "METRICS_PORT": str(free_port()), "API_PORT": port}
        if victim.returncode is None:
            await victim.wait()
        await stack.supervisor.start("orchestrator", [sys.executable, "-m",
                                                      "vigil_orchestrator"], env)
        await stack._wait_serving(stack.api_address, "orchestrator")
