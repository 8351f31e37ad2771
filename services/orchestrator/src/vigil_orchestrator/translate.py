"""Domain <-> protobuf: task specs for delegates, public lifecycle events, API views."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from vigil.api.v1 import api_pb2
from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.events.v1 import execution_pb2, tasks_pb2, verification_pb2
from vigil_orchestrator.domain import (
    DispatchTask,
    Execution,
    ExecutionStatus,
    Lifecycle,
    PlannedStep,
    StepStatus,
    StepType,
    parse_duration,
)

SENSITIVITY = {
    "low": verification_pb2.SENSITIVITY_LOW,
    "medium": verification_pb2.SENSITIVITY_MEDIUM,
    "high": verification_pb2.SENSITIVITY_HIGH,
}
VERDICT_NAMES = {
    verification_pb2.VERDICT_KIND_PASS: "PASS",
    verification_pb2.VERDICT_KIND_FAIL: "FAIL",
    verification_pb2.VERDICT_KIND_INCONCLUSIVE: "INCONCLUSIVE",
    verification_pb2.VERDICT_KIND_NO_DATA: "NO_DATA",
    verification_pb2.VERDICT_KIND_ERROR: "ERROR",
}
ANALYSIS_NAMES = {
    verification_pb2.ANALYSIS_KIND_METRICS: "metrics",
    verification_pb2.ANALYSIS_KIND_LOGS: "logs",
}
_EXECUTION_STATUS = {
    ExecutionStatus.RUNNING: execution_pb2.EXECUTION_STATUS_RUNNING,
    ExecutionStatus.SUCCEEDED: execution_pb2.EXECUTION_STATUS_SUCCEEDED,
    ExecutionStatus.FAILED: execution_pb2.EXECUTION_STATUS_FAILED,
}
_STEP_STATUS = {
    StepStatus.PENDING: execution_pb2.STEP_STATUS_PENDING,
    StepStatus.RUNNING: execution_pb2.STEP_STATUS_RUNNING,
    StepStatus.SUCCEEDED: execution_pb2.STEP_STATUS_SUCCEEDED,
    StepStatus.FAILED: execution_pb2.STEP_STATUS_FAILED,
    StepStatus.SKIPPED: execution_pb2.STEP_STATUS_SKIPPED,
}


def timestamp(when: datetime | None) -> Timestamp | None:
    if when is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def task_spec(ex: Execution, cmd: DispatchTask) -> spec_pb2.TaskSpec:
    """The delegate's TaskSpec for a step."""
    p, step = cmd.step.params, cmd.step
    if step.type is StepType.DEPLOY:
        return spec_pb2.TaskSpec(deploy_local_process=spec_pb2.DeployLocalProcess(
            service=p["service"], version=p["version"], nodes=p["nodes"], command=p["command"],
            ready_path=p.get("ready_path", "/healthz")))
    if step.type is StepType.ROLLBACK:
        return spec_pb2.TaskSpec(rollback_local_process=spec_pb2.RollbackLocalProcess(
            service=p["service"], nodes=p["nodes"]))
    if step.type is StepType.SHELL:
        return spec_pb2.TaskSpec(shell_script=spec_pb2.ShellScript(
            script=p["script"], working_dir=p.get("working_dir", ""),
            env={str(k): str(v) for k, v in (p.get("env") or {}).items()}))
    ref = verification_pb2.VerificationRef(
        verification_id=cmd.task_id, execution_id=ex.id, account_id=ex.account_id,
        service=p["service"], vigil_version=ex.version)
    thresholds = [verification_pb2.MetricThreshold(metric=t["metric"], **{
        k: float(t[k]) for k in ("fail_fast_above", "ignore_below") if k in t})
        for t in p.get("thresholds") or []]
    return spec_pb2.TaskSpec(collect_health_data=spec_pb2.CollectHealthData(
        ref=ref, source=spec_pb2.HealthSource(kind="local-process", service=p["service"]),
        control_hosts=p["control_nodes"], test_hosts=p["test_nodes"],
        duration_seconds=parse_duration(p["duration"]) or 0.0,
        interval_seconds=parse_duration(p.get("interval", "60s")) or 60.0,
        sensitivity=SENSITIVITY[p.get("sensitivity", "medium")], thresholds=thresholds))


def dispatch_command(ex: Execution, cmd: DispatchTask, now: datetime) -> tasks_pb2.DispatchTask:
    return tasks_pb2.DispatchTask(
        task_id=cmd.task_id, attempt=cmd.attempt, account_id=ex.account_id, execution_id=ex.id,
        capability=cmd.step.capability, spec=task_spec(ex, cmd),
        timeout_seconds=cmd.timeout_seconds, created_at=timestamp(now))


def step_ref(step: PlannedStep) -> execution_pb2.StepRef:
    return execution_pb2.StepRef(path=step.path, stage=step.stage, phase=step.phase,
                                 step=step.name, type=step.type.value, rollback=step.rollback)


def lifecycle_event(ex: Execution, ev: Lifecycle, now: datetime):  # noqa: ANN201 - a union
    """The public event for a domain lifecycle record."""
    at = timestamp(now)
    if ev.kind == "ExecutionStarted":
        return execution_pb2.ExecutionStarted(
            execution_id=ex.id, account_id=ex.account_id, pipeline=ex.pipeline,
            vigil_version=ex.version, inputs=ex.inputs, at=at)
    if ev.kind == "ExecutionFinished":
        return execution_pb2.ExecutionFinished(
            execution_id=ex.id, account_id=ex.account_id, pipeline=ex.pipeline,
            status=_EXECUTION_STATUS[ex.status], reason=ex.reason, at=at,
            rolled_back=ex.rolled_back)
    assert ev.step is not None
    ref = step_ref(ev.step)
    if ev.kind == "StepStarted":
        return execution_pb2.StepStarted(execution_id=ex.id, step=ref, at=at)
    if ev.kind == "StepSucceeded":
        return execution_pb2.StepSucceeded(execution_id=ex.id, step=ref, summary=ev.message,
                                           at=at)
    return execution_pb2.StepFailed(execution_id=ex.id, step=ref, reason=ev.message, at=at)


def execution_view(ex: Execution) -> api_pb2.Execution:
    """The API's view of an execution."""
    return api_pb2.Execution(
        execution_id=ex.id, account_id=ex.account_id, pipeline=ex.pipeline,
        status=_EXECUTION_STATUS[ex.status], reason=ex.reason, vigil_version=ex.version,
        rolled_back=ex.rolled_back,
        steps=[api_pb2.Step(ref=step_ref(step), status=_STEP_STATUS[st.status],
                            message=st.message, started_at=timestamp(st.started_at),
                            finished_at=timestamp(st.finished_at))
               for step, st in zip(ex.steps, ex.states, strict=True)],
        created_at=timestamp(ex.created_at), finished_at=timestamp(ex.finished_at))
