"""Runs one task spec and produces its reports (health data, then the result).

Pure orchestration of the executors in targets/, health/ and http_check.py: one small method
per task kind. No gRPC here. Every failure becomes a failed TaskResult with a reason a user
can act on, never an exception that kills the agent.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from vigil.delegate.v1 import delegate_pb2, tasks_pb2
from vigil.events.v1 import verification_pb2
from vigil_delegate import http_check
from vigil_delegate.health import sources
from vigil_delegate.health.sources import LOGS, METRICS, Collected, HealthSourceError, Window
from vigil_delegate.targets import DeploymentError, LocalProcessTarget
from vigil_delegate.targets.kubernetes import (
    KubernetesError,
    KubernetesTarget,
    RolloutFailed,
    api_client,
)

Progress = Callable[[str], None]
Emit = Callable[[delegate_pb2.DelegateMessage], None]
_SECRET_KEY = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|CREDENTIAL)", re.I)


class TaskError(Exception):
    """A task failed for a reason worth showing to the user."""


def mask(line: str, secrets: list[str]) -> str:
    """Replace every secret value in a progress line by ***."""
    for value in secrets:
        if len(value) >= 4:
            line = line.replace(value, "***")
    return line


_FAILURES = (TaskError, DeploymentError, KubernetesError, RolloutFailed,
             http_check.HttpCheckFailed, HealthSourceError, ValueError, OSError)
"""Exceptions that fail a task with their message (anything else is a delegate bug)."""


class Runner:
    """Executes task specs on this host."""

    def __init__(self, workdir: Path, *, kubernetes: KubernetesTarget | None = None,
                 kubeconfig: str = "", metrics_batch_intervals: int = 1):
        """Creates a runner.

        Args:
            workdir: The delegate's work directory (local-process state, scripts' cwd).
            kubernetes: The Kubernetes target; None builds one on the first Kubernetes task
                from ``kubeconfig`` (see ``targets.kubernetes.api_client``).
            kubeconfig: Kubeconfig path (DELEGATE_KUBECONFIG); empty: in-cluster or default.
            metrics_batch_intervals: Intervals per metrics batch of a health-collection task
                whose spec does not say (DELEGATE_METRICS_BATCH_INTERVALS).
        """
        self.workdir = workdir
        self.local = LocalProcessTarget(workdir / "local-process")
        self._kubernetes = kubernetes
        self._kubeconfig = kubeconfig
        self.metrics_batch_intervals = max(1, metrics_batch_intervals)
        self._kinds: dict[str, Callable[[tasks_pb2.TaskSpec, Progress],
                                        Awaitable[tuple[str, list[dict]]]]] = {
            "deploy_local_process": self._deploy_local_process,
            "rollback_local_process": self._rollback_local_process,
            "shell_script": self._shell_script,
            "collect_health_data": self._collect_health_data,
            "kubernetes_deploy": self._kubernetes_deploy,
            "kubernetes_rollback": self._kubernetes_rollback,
            "kubernetes_wait_rollout": self._kubernetes_wait_rollout,
            "http_check": self._http_check,
        }

    async def run(self, assignment: delegate_pb2.TaskAssignment, progress: Progress,
                  emit: Emit | None = None,
                  stop: Stop | None = None) -> list[delegate_pb2.DelegateMessage]:
        """Run a task; returns the reports to deliver, the TaskResult last.

        Args:
            assignment: The task.
            progress: Called with each progress line.
            emit: Called with reports to deliver while the task still runs (the partial metrics
                batches of a health-collection task); None: they are returned with the rest.
            stop: Set (with a reason) when a health-collection task should stop collecting.
        """
        key = dict(task_id=assignment.task_id, attempt=assignment.attempt)
        reports: list[delegate_pb2.DelegateMessage] = []

        def emitted(data: dict) -> None:
            msg = delegate_pb2.DelegateMessage(health_data=delegate_pb2.HealthData(**key, **data))
            if emit is None:
                reports.append(msg)
            else:
                emit(msg)

        try:
            async with asyncio.timeout(assignment.timeout_seconds or None):
                if assignment.spec.WhichOneof("kind") == "collect_health_data":
                    summary, data = await self._collect_health_data(
                        assignment.spec, progress, emit=emitted, stop=stop)
                else:
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
        except _FAILURES as exc:
            result = delegate_pb2.TaskResult(**key, success=False,
                                             execution_id=assignment.execution_id, error=str(exc))
        reports.append(delegate_pb2.DelegateMessage(result=result))
        return reports

    async def _execute(self, spec: tasks_pb2.TaskSpec,
                       progress: Progress) -> tuple[str, list[dict]]:
        kind = spec.WhichOneof("kind")
        run = self._kinds.get(kind or "")
        if run is None:
            raise TaskError(f"unsupported task kind {kind!r}: this delegate cannot run it")
        return await run(spec, progress)

    async def _deploy_local_process(self, spec: tasks_pb2.TaskSpec,
                                    progress: Progress) -> tuple[str, list[dict]]:
        d = spec.deploy_local_process
        res = await self.local.deploy(d.service, d.version, list(d.nodes), list(d.command),
                                      progress, ready_path=d.ready_path or "/healthz")
        return (f"{d.service} {d.version} running on "
                f"{', '.join(f'{n.node}:{n.port}' for n in res.nodes)}"), []

    async def _rollback_local_process(self, spec: tasks_pb2.TaskSpec,
                                      progress: Progress) -> tuple[str, list[dict]]:
        r = spec.rollback_local_process
        res = await self.local.rollback(r.service, list(r.nodes), progress)
        back = [f"{n.node}->{n.version}" for n in res.nodes if n.node in r.nodes]
        return (f"{r.service} rolled back: {', '.join(back) or 'nothing to restore'}"
                + (f"; removed {', '.join(res.removed)}" if res.removed else "")), []

    async def _kubernetes_deploy(self, spec: tasks_pb2.TaskSpec,
                                 progress: Progress) -> tuple[str, list[dict]]:
        return await (await self._kube()).deploy(spec.kubernetes_deploy, progress), []

    async def _kubernetes_rollback(self, spec: tasks_pb2.TaskSpec,
                                   progress: Progress) -> tuple[str, list[dict]]:
        return await (await self._kube()).rollback(spec.kubernetes_rollback, progress), []

    async def _kubernetes_wait_rollout(self, spec: tasks_pb2.TaskSpec,
                                       progress: Progress) -> tuple[str, list[dict]]:
        w = spec.kubernetes_wait_rollout
        target = await self._kube()
        return await target.wait_rollout(w.namespace or "default", w.deployment,
                                         w.timeout_seconds or 300.0, progress), []

    async def _http_check(self, spec: tasks_pb2.TaskSpec,
                          progress: Progress) -> tuple[str, list[dict]]:
        return await http_check.run(spec.http_check, progress), []

    async def _kube(self) -> KubernetesTarget:
        if self._kubernetes is None:
            try:
                api = await asyncio.to_thread(api_client, self._kubeconfig)
            except Exception as exc:  # the config loaders raise several unrelated types
                raise KubernetesError(f"no Kubernetes access configured: {exc}") from None
            self._kubernetes = KubernetesTarget(api)
        return self._kubernetes

    async def _shell_script(self, spec: tasks_pb2.TaskSpec,
                            progress: Progress) -> tuple[str, list[dict]]:
        s = spec.shell_script
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
        return f"script exited 0 ({len(tail)} last lines captured)", []

    async def _collect_health_data(self, spec: tasks_pb2.TaskSpec, progress: Progress,
                                   emit: Callable[[dict], None] | None = None,
                                   stop: Stop | None = None) -> tuple[str, list[dict]]:
        """Reads the window batch by batch; every metrics batch but the last goes to ``emit``
        at once (partial MetricsCollected, for the metric analyzer's early decision), the last
        one and the logs of the whole window are returned. ``stop`` set ends the collection at
        once: the logs read so far are returned, no further metrics."""
        c = spec.collect_health_data
        built = [sources.build(s, self.local) for s in [c.source, *c.additional_sources]]
        start = c.window_start.ToDatetime(UTC) if c.HasField("window_start") else _now()
        window = Window.starting(start, c.duration_seconds, c.interval_seconds)
        baseline = (Window.starting(c.baseline_window_start.ToDatetime(UTC), c.duration_seconds,
                                    c.interval_seconds)
                    if c.HasField("baseline_window_start") else None)
        plan = batch_plan(window.intervals, c.batch_intervals or self.metrics_batch_intervals)
        has_metrics = any(METRICS in s.provides for s in built)
        logs = verification_pb2.LogsCollected(ref=c.ref, sensitivity=c.sensitivity)
        test = set(c.test_hosts)
        data: list[dict] = []
        series = done = 0
        stopped = ""
        for first, count in plan:
            current = window.part(first, count)
            if baseline is not None:
                groups = [(verification_pb2.HOST_GROUP_CONTROL,
                           list(c.control_hosts or c.test_hosts), baseline.part(first, count)),
                          (verification_pb2.HOST_GROUP_TEST, list(c.test_hosts), current)]
            else:  # one window: one read of every host per source, grouped by host afterwards
                groups = [(0, [*c.control_hosts, *c.test_hosts], current)]
            reads = [(src, group, hosts, win) for src in built for group, hosts, win in groups]
            results = await _unless_stopped(asyncio.gather(
                *(src.collect(hosts, win, progress) for src, _, hosts, win in reads)), stop)
            if results is None:
                stopped = stop.reason if stop is not None else "stopped"
                break
            last = first + count >= window.intervals
            metrics = verification_pb2.MetricsCollected(
                ref=c.ref, sensitivity=c.sensitivity, thresholds=c.thresholds,
                interval_seconds=c.interval_seconds, partial=not last, first_interval=first,
                planned_intervals=window.intervals, mode=c.mode,
                window_start=_timestamp(window.start),
                control_window_start=_timestamp(baseline.start) if baseline else None)
            for (_, group, _, _), found in zip(reads, results, strict=True):
                _add(metrics, logs, found, group, test)
            series, done = max(series, len(metrics.series)), first + count
            if has_metrics and last:
                data.append({"metrics": metrics})
            elif has_metrics:
                progress(f"metrics intervals {first}-{first + count - 1} of {window.intervals} "
                         "sent to the analyzer")
                (emit or data.append)({"metrics": metrics})
            if stop is not None and stop.is_set():
                stopped = stop.reason
                break
        records = len(logs.records)
        if any(LOGS in s.provides for s in built):
            data.append({"logs": logs})
        summary = (f"collected {series} series and {records} log records from "
                   f"{', '.join(s.kind for s in built)} over {c.duration_seconds:g}s"
                   if not stopped else
                   f"stopped after {done} of {window.intervals} intervals ({stopped}); "
                   f"collected {records} log records from {', '.join(s.kind for s in built)}")
        progress(summary)
        return summary, data


class Stop(asyncio.Event):
    """Set by the agent when a health-collection task's verification is already decided."""

    def __init__(self) -> None:
        super().__init__()
        self.reason = ""

    def stop(self, reason: str) -> None:
        self.reason = reason or "stop requested"
        self.set()


def batch_plan(intervals: int, per_batch: int) -> list[tuple[int, int]]:
    """(first interval, intervals) of each metrics batch of a window, in order."""
    per_batch = max(1, min(per_batch, intervals))
    return [(first, min(per_batch, intervals - first)) for first in range(0, intervals, per_batch)]


async def _unless_stopped(work: Awaitable, stop: Stop | None):  # noqa: ANN202 - work's result
    """``work``'s result, or None (``work`` cancelled) when ``stop`` is set first."""
    if stop is None:
        return await work
    job = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({job, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if job.done():
        return job.result()
    job.cancel()
    await asyncio.gather(job, return_exceptions=True)
    return None


def _timestamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def _add(metrics: verification_pb2.MetricsCollected, logs: verification_pb2.LogsCollected,
         found: Collected, group: int, test_hosts: set[str]) -> None:
    """Appends one read's data; group 0 means "by host": test hosts TEST, others CONTROL."""
    def group_of(host: str) -> int:
        if group:
            return group
        return (verification_pb2.HOST_GROUP_TEST if host in test_hosts
                else verification_pb2.HOST_GROUP_CONTROL)

    for metric, by_host in found.metrics.items():
        for host, values in by_host.items():
            metrics.series.add(metric=metric, host=host, group=group_of(host), points=[
                verification_pb2.Point(value=v or 0.0, present=v is not None) for v in values])
    for host, records in found.logs.items():
        for rec in records:
            ts = Timestamp()
            ts.FromDatetime(rec.timestamp)
            logs.records.add(host=host, group=group_of(host), time=ts, level=rec.level,
                             logger=rec.logger, message=rec.message)


def _now() -> datetime:
    return datetime.now(UTC)


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
