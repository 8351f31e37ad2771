"""Runs one task spec and produces its reports (health data, then the result).

Pure orchestration of the executors in targets/ and health/; no gRPC here. Every failure
becomes a failed TaskResult with a reason a user can act on, never an exception that kills
the agent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from vigil.delegate.v1 import delegate_pb2, tasks_pb2
from vigil.events.v1 import verification_pb2
from vigil_delegate.health import collect_metrics, read_log_records
from vigil_delegate.targets import DeploymentError, LocalProcessTarget

Progress = Callable[[str], None]
_SECRET_KEY = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|CREDENTIAL)", re.I)


class TaskError(Exception):
    """A task failed for a reason worth showing to the user."""


def mask(line: str, secrets: list[str]) -> str:
    """Replace every secret value in a progress line by ***."""
    for value in secrets:
        if len(value) >= 4:
            line = line.replace(value, "***")
    return line


class Runner:
    """Executes task specs on this host."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.local = LocalProcessTarget(workdir / "local-process")

    async def run(self, assignment: delegate_pb2.TaskAssignment,
                  progress: Progress) -> list[delegate_pb2.DelegateMessage]:
        """Run a task; returns the reports to deliver, the TaskResult last."""
        key = dict(task_id=assignment.task_id, attempt=assignment.attempt)
        reports: list[delegate_pb2.DelegateMessage] = []
        try:
            async with asyncio.timeout(assignment.timeout_seconds or None):
                summary, data = await self._execute(assignment.spec, progress)
            reports += [delegate_pb2.DelegateMessage(health_data=delegate_pb2.HealthData(
                **key, **d)) for d in data]
            result = delegate_pb2.TaskResult(**key, success=True,
                                             execution_id=assignment.execution_id,
                                             output=tasks_pb2.TaskOutput(summary=summary))
        except TimeoutError:
            result = delegate_pb2.TaskResult(
                **key, success=False, execution_id=assignment.execution_id,
                error=f"timed out after {assignment.timeout_seconds:g}s")
        except (TaskError, DeploymentError, ValueError, OSError) as exc:
            result = delegate_pb2.TaskResult(**key, success=False,
                                             execution_id=assignment.execution_id, error=str(exc))
        reports.append(delegate_pb2.DelegateMessage(result=result))
        return reports

    async def _execute(self, spec: tasks_pb2.TaskSpec,
                       progress: Progress) -> tuple[str, list[dict]]:
        kind = spec.WhichOneof("kind")
        if kind == "deploy_local_process":
            d = spec.deploy_local_process
            res = await self.local.deploy(d.service, d.version, list(d.nodes), list(d.command),
                                          progress, ready_path=d.ready_path or "/healthz")
            return (f"{d.service} {d.version} running on "
                    f"{', '.join(f'{n.node}:{n.port}' for n in res.nodes)}"), []
        if kind == "rollback_local_process":
            r = spec.rollback_local_process
            res = await self.local.rollback(r.service, list(r.nodes), progress)
            back = [f"{n.node}->{n.version}" for n in res.nodes if n.node in r.nodes]
            return (f"{r.service} rolled back: {', '.join(back) or 'nothing to restore'}"
                    + (f"; removed {', '.join(res.removed)}" if res.removed else "")), []
        if kind == "shell_script":
            return await self._shell(spec.shell_script, progress), []
        if kind == "collect_health_data":
            return await self._collect(spec.collect_health_data, progress)
        raise TaskError(f"unsupported task kind {kind!r}: this delegate cannot run it")

    async def _shell(self, s: tasks_pb2.ShellScript, progress: Progress) -> str:
        secrets = [v for k, v in s.env.items() if _SECRET_KEY.search(k)]
        proc = await asyncio.create_subprocess_shell(
            s.script, cwd=s.working_dir or str(self.workdir), env={**_base_env(), **s.env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
        tail: list[str] = []
        try:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = mask(raw.decode(errors="replace").rstrip("\n"), secrets)
                progress(line)
                tail = (tail + [line])[-20:]
            code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if code != 0:
            raise TaskError(f"script exited with code {code}: " + " | ".join(tail[-5:]))
        return f"script exited 0 ({len(tail)} last lines captured)"

    async def _collect(self, c: tasks_pb2.CollectHealthData,
                       progress: Progress) -> tuple[str, list[dict]]:
        if c.source.kind != "local-process":
            raise TaskError(f"source.kind {c.source.kind!r}: this delegate reads local-process")
        nodes = {n.node: n for n in self.local.nodes(c.source.service)}
        groups = {**{h: verification_pb2.HOST_GROUP_CONTROL for h in c.control_hosts},
                  **{h: verification_pb2.HOST_GROUP_TEST for h in c.test_hosts}}
        absent = [h for h in groups if h not in nodes or not nodes[h].alive]
        if absent:
            progress(f"no running process for {', '.join(absent)}: they will have no data")
        endpoints = {h: f"http://127.0.0.1:{nodes[h].port}/metrics"
                     for h in groups if h not in absent}
        since = datetime.now(UTC)
        series = await collect_metrics(endpoints, c.duration_seconds, c.interval_seconds,
                                       progress)
        until = datetime.now(UTC)
        metrics = verification_pb2.MetricsCollected(
            ref=c.ref, sensitivity=c.sensitivity, thresholds=c.thresholds,
            interval_seconds=c.interval_seconds)
        for metric, by_host in series.items():
            for host, values in by_host.items():
                metrics.series.add(metric=metric, host=host, group=groups[host], points=[
                    verification_pb2.Point(value=v or 0.0, present=v is not None)
                    for v in values])
        logs = verification_pb2.LogsCollected(ref=c.ref, sensitivity=c.sensitivity)
        for host in endpoints:
            for rec in read_log_records(Path(nodes[host].log_file), since, until):
                ts = Timestamp()
                ts.FromDatetime(rec.timestamp)
                logs.records.add(host=host, group=groups[host], time=ts, level=rec.level,
                                 logger=rec.logger, message=rec.message)
        summary = (f"collected {len(metrics.series)} series and {len(logs.records)} log records "
                   f"from {len(endpoints)} hosts over {c.duration_seconds:g}s")
        progress(summary)
        return summary, [{"metrics": metrics}, {"logs": logs}]


def _base_env() -> dict[str, str]:
    import os
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
