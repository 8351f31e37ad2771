"""Issue 4, the test that proves it: v1 runs with a delegate and a long execution waiting for
approval; `vigil upgrade run v2` brings v2 (services and a delegate) up beside it, verifies it
and switches the primary; a new execution runs on v2; the v1 execution is approved and finishes
on v1; `vigil upgrade rollback` flips back and a new execution runs on v1 again. Throughout, a
client hammering the public API through the router sees no failed call, and every event and
task is counted on the topics: none lost, none twice.

Runs its own stack in a database of its own (the session stack of the other e2e tests stays a
single-version v1 system).
"""

import asyncio
import collections
import io
import json
import os
import sys
import time
import uuid

import grpc
import pytest
from topic_reader import read_records

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil.events.v1 import execution_pb2, tasks_pb2, versions_pb2
from vigil_common import topics
from vigil_local.database import drop_database
from vigil_local.stack import Stack, StackConfig
from vigil_upgrade.control import beside_stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

GATED = """
name: gated
stages:
  - name: s
    workflow:
      failure_strategy: abort
      phases:
        - name: p
          steps:
            - {name: before, type: noop}
            - {name: gate, type: approval, message: "go on?"}
            - {name: after, type: noop}
"""
QUICK = """
name: quick
stages:
  - name: s
    workflow:
      failure_strategy: abort
      phases:
        - name: p
          steps:
            - {name: one, type: noop}
            - {name: two, type: noop}
"""
RUNNING = execution_pb2.EXECUTION_STATUS_RUNNING
SUCCEEDED = execution_pb2.EXECUTION_STATUS_SUCCEEDED


class Hammer:
    """Clients calling the public API through the router without pause; counts outcomes."""

    def __init__(self, address: str, auth, execution_id: str, workers: int = 3):
        self.ok = 0
        self.failed: list[str] = []
        self._address, self._auth, self._id, self._workers = address, auth, execution_id, workers
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(i)) for i in range(self._workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _work(self, i: int) -> None:
        async with grpc.aio.insecure_channel(self._address) as channel:
            api = api_pb2_grpc.ExecutionServiceStub(channel)
            while not self._stop.is_set():
                try:
                    if i % 2:
                        await api.ListExecutions(api_pb2.ListExecutionsRequest(page_size=5),
                                                 metadata=self._auth, timeout=15)
                    else:
                        await api.GetExecution(api_pb2.GetExecutionRequest(
                            execution_id=self._id), metadata=self._auth, timeout=15)
                    self.ok += 1
                except grpc.aio.AioRpcError as exc:
                    self.failed.append(f"{exc.code().name}: {exc.details()}")
                await asyncio.sleep(0.01)


async def _until(what: str, probe, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up after {timeout:g}s waiting for {what}"
        await asyncio.sleep(0.2)


async def _cli(*argv: str, database_url: str, goal, bootstrap: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vigil_cli", "upgrade", *argv, "--database-url", database_url,
        "--goal", str(goal), "--kafka", bootstrap, "--timeout", "90",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def _check_counts(bootstrap: str, execution_id: str, version: str,
                        steps: list[str], delegate_steps: int, logs_dir) -> None:
    """Every event of the execution once on the public topic, each task dispatched once,
    started once by a delegate and reported once, all on the execution's own version."""
    public = [e.message for e in await read_records(bootstrap, topics.EXECUTIONS, execution_id)]
    kinds = collections.Counter(type(m).__name__ for m in public)
    assert kinds["ExecutionStarted"] == 1 and kinds["ExecutionFinished"] == 1, kinds
    succeeded = collections.Counter(m.step.step for m in public
                                    if isinstance(m, execution_pb2.StepSucceeded))
    assert succeeded == collections.Counter(steps), succeeded
    dispatched = [e.message for e in await read_records(
        bootstrap, topics.dispatch_commands(version), execution_id)]
    results = [e.message for e in await read_records(
        bootstrap, topics.task_results(version), execution_id)]
    task_ids = [d.task_id for d in dispatched]
    assert len(task_ids) == len(set(task_ids)) == delegate_steps, task_ids
    reported = [r.task_id for r in results if isinstance(r, tasks_pb2.TaskSucceeded)]
    assert sorted(reported) == sorted(task_ids), "each task ran and reported exactly once"
    other = "v2" if version == "v1" else "v1"
    assert not await read_records(bootstrap, topics.dispatch_commands(other), execution_id)
    # The stack's v1 delegate and the watcher's v2 delegate log each task they start.
    lines = [line for path in logs_dir.glob("delegate-1*.log")
             for line in path.read_text().splitlines() if '"task started"' in line]
    for task_id in task_ids:
        started = [line for line in lines if task_id in line]
        assert len(started) == 1, f"task {task_id} started {len(started)} times"
        assert f'"version": "{version}"' in started[0], started[0]


async def test_upgrade_to_v2_and_rollback_without_a_failed_call_or_a_lost_event(
        tmp_path_factory):
    environ = dict(os.environ)
    own_db = "DATABASE_URL" not in environ
    config = StackConfig(state_dir=tmp_path_factory.mktemp("upgrade"), environ=environ,
                         database_name=f"vigil_upgrade_{uuid.uuid4().hex[:8]}")
    stack = Stack(config, out=io.StringIO())
    try:
        async with stack, beside_stack(stack) as control:
            auth = (("authorization", f"Bearer {stack.api_key}"),)
            cli = {"database_url": stack.database.url, "goal": control.goal.path,
                   "bootstrap": stack.bootstrap}
            async with grpc.aio.insecure_channel(control.router_address) as channel:
                pipelines = api_pb2_grpc.PipelineServiceStub(channel)
                api = api_pb2_grpc.ExecutionServiceStub(channel)
                for yaml in (GATED, QUICK):
                    await pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(yaml=yaml),
                                                  metadata=auth, timeout=10)

                async def start(pipeline: str) -> str:
                    reply = await api.StartExecution(api_pb2.StartExecutionRequest(
                        pipeline=pipeline, idempotency_key=str(uuid.uuid4())), metadata=auth,
                        timeout=10)
                    return reply.execution_id

                async def get(execution_id: str):
                    return await api.GetExecution(api_pb2.GetExecutionRequest(
                        execution_id=execution_id), metadata=auth, timeout=10)

                async def finished(execution_id: str):
                    ex = await get(execution_id)
                    return ex if ex.status != RUNNING else None

                # A long execution on v1: it waits for an approval.
                long_id = await start("gated")
                await _until("the v1 execution to wait for approval", lambda: _waiting(get,
                                                                                     long_id))
                watch = api.WatchExecution(api_pb2.GetExecutionRequest(execution_id=long_id),
                                           metadata=auth, timeout=100)
                assert (await watch.read()).status == RUNNING  # a stream open across the switch
                hammer = Hammer(control.router_address, auth, long_id)
                hammer.start()
                await asyncio.sleep(1)

                out = await _cli("run", "v2", **cli)
                assert "primary switched: v1 -> v2" in out, out
                assert "starting v2 beside the primary" in out, out
                assert (await control.store.primary()).version == "v2"
                status = await _cli("status", **cli)
                assert "v2" in status and "primary" in status, status

                new_id = await start("quick")
                done = await _until("the v2 execution to finish", lambda: finished(new_id))
                assert (done.status, done.vigil_version) == (SUCCEEDED, "v2"), done.reason

                await api.ApproveStep(api_pb2.ApproveStepRequest(
                    execution_id=long_id, approved=True, reason="after the upgrade"),
                    metadata=auth, timeout=10)
                done = await _until("the v1 execution to finish", lambda: finished(long_id))
                assert (done.status, done.vigil_version) == (SUCCEEDED, "v1"), done.reason
                seen = []
                while (message := await watch.read()) is not grpc.aio.EOF:
                    seen.append(message)
                assert seen and seen[-1].status == SUCCEEDED, "the watch stream drained on v1"

                out = await _cli("rollback", **cli)
                assert "primary rolled back: v2 -> v1" in out, out
                back_id = await start("quick")
                done = await _until("the execution after rollback", lambda: finished(back_id))
                assert (done.status, done.vigil_version) == (SUCCEEDED, "v1"), done.reason

                await asyncio.sleep(0.5)
                await hammer.stop()
            assert hammer.failed == [], f"{len(hammer.failed)} failed calls: {hammer.failed[:5]}"
            assert hammer.ok > 100, hammer.ok

            # The two-version period ends: v2 has no execution left, so it is torn down and
            # the watcher stops its delegate.
            out = await _cli("finish", **cli)
            assert "tearing down v2" in out, out
            assert (await control.store.versions())["v2"].state == "STOPPED"
            status = json.loads((config.state_dir / "upgrade" / "watcher-status.json")
                                .read_text())
            assert [d["state"] for d in status["delegates"] if d["name"] == "delegate-1-v2"
                    ] in ([], ["stopped"]), status

            for execution_id, version, steps in (
                    (long_id, "v1", ["before", "gate", "after"]), (new_id, "v2", ["one", "two"]),
                    (back_id, "v1", ["one", "two"])):
                await _check_counts(stack.bootstrap, execution_id, version, steps, 2,
                                    stack.logs_dir)
            changes = [e.message for e in await read_records(stack.bootstrap, topics.VERSIONS)]
            assert [(c.version, c.kind, c.generation) for c in changes] == [
                ("v1", versions_pb2.PRIMARY_CHANGE_KIND_INITIAL, 1),
                ("v2", versions_pb2.PRIMARY_CHANGE_KIND_SWITCH, 2),
                ("v1", versions_pb2.PRIMARY_CHANGE_KIND_ROLLBACK, 3)]
    finally:
        if own_db and stack.database is not None:
            await drop_database(stack.database.url)


async def _waiting(get, execution_id: str) -> bool:
    ex = await get(execution_id)
    assert ex.status == RUNNING, ex.reason
    return any(s.status == execution_pb2.STEP_STATUS_WAITING for s in ex.steps)
