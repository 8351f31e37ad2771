"""Domain <-> protobuf: task specs for delegates, public lifecycle events, API views."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from vigil.api.v1 import api_pb2
from vigil.delegate.v1 import http_pb2, kubernetes_pb2
from vigil.delegate.v1 import tasks_pb2 as spec_pb2
from vigil.delegate.v1.health_sources_pb2 import PrometheusQuery, PrometheusSource
from vigil.events.v1 import execution_pb2, tasks_pb2, verification_pb2
from vigil_common import verdict_events
from vigil_orchestrator.domain import (
    DispatchTask,
    Execution,
    Lifecycle,
    PlannedStep,
    StepType,
    delegate_choice,
    parse_duration,
)

SENSITIVITY = {
    "low": verification_pb2.SENSITIVITY_LOW,
    "medium": verification_pb2.SENSITIVITY_MEDIUM,
    "high": verification_pb2.SENSITIVITY_HIGH,
}
# The analyzers' closed verdict set and analysis kinds, read back from their one definition.
VERDICT_NAMES = {kind: verdict.value for verdict, kind in verdict_events.VERDICT_KINDS.items()}
ANALYSIS_NAMES = {kind: name for name, kind in verdict_events.ANALYSES.items()}
VERIFY_MODES = {
    "canary": verification_pb2.VERIFICATION_MODE_CANARY,
    "rolling": verification_pb2.VERIFICATION_MODE_ROLLING,
    "blue_green": verification_pb2.VERIFICATION_MODE_BLUE_GREEN,
    "load_test": verification_pb2.VERIFICATION_MODE_LOAD_TEST,
}
K8S_STRATEGY = {
    "rolling": kubernetes_pb2.KUBERNETES_STRATEGY_ROLLING,
    "canary": kubernetes_pb2.KUBERNETES_STRATEGY_CANARY,
    "blue_green": kubernetes_pb2.KUBERNETES_STRATEGY_BLUE_GREEN,
}


def enum_value(enum: Any, prefix: str, name: str) -> int:
    """``ExecutionStatus`` + "EXECUTION_STATUS_" + "FAILED" -> the proto enum number."""
    return enum.Value(f"{prefix}{name}")


def execution_status_name(value: int) -> str:
    """The domain name of a proto ExecutionStatus, e.g. 3 -> "FAILED"."""
    return execution_pb2.ExecutionStatus.Name(value).removeprefix("EXECUTION_STATUS_")


def timestamp(when: datetime | None) -> Timestamp | None:
    if when is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def task_spec(ex: Execution, cmd: DispatchTask) -> spec_pb2.TaskSpec:
    """The delegate's TaskSpec for a step attempt (its params as run)."""
    p, kind = cmd.params, cmd.step.type
    if kind is StepType.DEPLOY:
        return spec_pb2.TaskSpec(deploy_local_process=spec_pb2.DeployLocalProcess(
            service=p["service"], version=p["version"], nodes=p["nodes"], command=p["command"],
            ready_path=p.get("ready_path", "/healthz")))
    if kind is StepType.ROLLBACK:
        return spec_pb2.TaskSpec(rollback_local_process=spec_pb2.RollbackLocalProcess(
            service=p["service"], nodes=p["nodes"]))
    if kind is StepType.SHELL:
        return spec_pb2.TaskSpec(shell_script=spec_pb2.ShellScript(
            script=p["script"], working_dir=p.get("working_dir", ""),
            env={str(k): str(v) for k, v in (p.get("env") or {}).items()}))
    if kind is StepType.HTTP_CHECK:
        status = p.get("expect_status", [])
        return spec_pb2.TaskSpec(http_check=http_pb2.HttpCheck(
            url=p["url"], method=p.get("method", "GET"),
            expected_status=status if isinstance(status, list) else [status],
            body_contains=p.get("body_contains", ""),
            retries=max(int(p.get("attempts", 1)) - 1, 0),
            retry_interval_seconds=parse_duration(p.get("interval", "1s")) or 1.0))
    if kind is StepType.K8S_DEPLOY:
        return spec_pb2.TaskSpec(kubernetes_deploy=kubernetes_pb2.KubernetesDeploy(
            strategy=K8S_STRATEGY[p.get("strategy", "rolling")], namespace=p["namespace"],
            name=p["deployment"], image=p["image"], replicas=int(p.get("replicas", 1)),
            canary_phases=p.get("canary_phases", []), promote=bool(p.get("promote", False)),
            labels={str(k): str(v) for k, v in (p.get("labels") or {}).items()},
            ports=[kubernetes_pb2.KubernetesPort(
                name=str(x.get("name", "")), container_port=int(x["container_port"]),
                service_port=int(x.get("service_port", x["container_port"])))
                for x in p.get("ports", [])],
            env={str(k): str(v) for k, v in (p.get("env") or {}).items()},
            args=[str(a) for a in p.get("args", [])],
            readiness_path=p.get("readiness_path", ""),
            rollout_timeout_seconds=cmd.timeout_seconds,
            phase_pause_seconds=parse_duration(p.get("phase_pause", 0)) or 0.0))
    if kind is StepType.K8S_ROLLBACK:
        return spec_pb2.TaskSpec(kubernetes_rollback=kubernetes_pb2.KubernetesRollback(
            strategy=K8S_STRATEGY[p.get("strategy", "rolling")], namespace=p["namespace"],
            name=p["deployment"], rollout_timeout_seconds=cmd.timeout_seconds))
    if kind is StepType.NOOP:
        return spec_pb2.TaskSpec(noop=spec_pb2.NoOp(echo=str(p.get("echo", ""))))
    if kind is StepType.K8S_WAIT_ROLLOUT:
        return spec_pb2.TaskSpec(kubernetes_wait_rollout=kubernetes_pb2.KubernetesWaitRollout(
            namespace=p["namespace"], deployment=p["deployment"],
            timeout_seconds=cmd.timeout_seconds))
    return spec_pb2.TaskSpec(collect_health_data=_collect(ex, cmd))


def _collect(ex: Execution, cmd: DispatchTask) -> spec_pb2.CollectHealthData:
    p = cmd.params
    ref = verification_pb2.VerificationRef(
        verification_id=cmd.task_id, execution_id=ex.id, account_id=ex.account_id,
        service=p["service"], vigil_version=ex.version)
    thresholds = [verification_pb2.MetricThreshold(metric=t["metric"], **{
        k: float(t[k]) for k in ("fail_fast_above", "ignore_below") if k in t})
        for t in p.get("thresholds") or []]
    mode = p.get("mode", "canary")
    duration = parse_duration(p["duration"]) or 0.0
    source = spec_pb2.HealthSource(kind="local-process", service=p["service"])
    if "prometheus" in p:  # metrics only (validated: analyses [metrics])
        prom = p["prometheus"]
        source = spec_pb2.HealthSource(kind="prometheus", prometheus=PrometheusSource(
            url=prom["url"], host_label=prom.get("host_label", ""),
            queries=[PrometheusQuery(metric=q["metric"], query=q["query"])
                     for q in prom.get("queries") or []]))
    baseline = None
    if mode in ("rolling", "blue_green"):
        # The pre-deployment window: the step's duration, ending when its stage started.
        stage_start = ex.stage_states[cmd.step.stage_index].started_at
        baseline = timestamp(stage_start - timedelta(seconds=duration)) if stage_start else None
    return spec_pb2.CollectHealthData(
        ref=ref, source=source,
        control_hosts=p.get("control_nodes") or [], test_hosts=p["test_nodes"],
        duration_seconds=duration,
        interval_seconds=parse_duration(p.get("interval", "60s")) or 60.0,
        sensitivity=SENSITIVITY[p.get("sensitivity", "medium")], thresholds=thresholds,
        mode=VERIFY_MODES[mode], batch_intervals=int(p.get("batch_intervals", 0)),
        baseline_window_start=baseline)


def dispatch_command(ex: Execution, cmd: DispatchTask, now: datetime) -> tasks_pb2.DispatchTask:
    selectors, validity = delegate_choice(cmd.params)
    return tasks_pb2.DispatchTask(
        task_id=cmd.task_id, attempt=cmd.attempt, account_id=ex.account_id, execution_id=ex.id,
        capability=cmd.step.capability, spec=task_spec(ex, cmd),
        timeout_seconds=cmd.timeout_seconds, created_at=timestamp(now), selectors=selectors,
        validity_seconds=validity)


def step_ref(step: PlannedStep) -> execution_pb2.StepRef:
    return execution_pb2.StepRef(path=step.path, stage=step.stage, phase=step.phase,
                                 step=step.name, type=step.type.value, rollback=step.rollback)


_STEP_EVENTS = {
    "StepStarted": (execution_pb2.StepStarted, None),
    "StepSucceeded": (execution_pb2.StepSucceeded, "summary"),
    "StepFailed": (execution_pb2.StepFailed, "reason"),
    "StepRetrying": (execution_pb2.StepRetrying, "reason"),
    "StepWaiting": (execution_pb2.StepWaiting, "message"),
    "StepAborted": (execution_pb2.StepAborted, "reason"),
}


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
            status=enum_value(execution_pb2.ExecutionStatus, "EXECUTION_STATUS_", ev.status),
            reason=ex.reason, at=at, rolled_back=ex.rolled_back)
    if ev.kind == "ExecutionPaused":
        return execution_pb2.ExecutionPaused(execution_id=ex.id, reason=ev.message, at=at)
    if ev.kind == "ExecutionResumed":
        return execution_pb2.ExecutionResumed(execution_id=ex.id, reason=ev.message, at=at)
    if ev.kind == "StageStarted":
        return execution_pb2.StageStarted(execution_id=ex.id, stage=ev.stage, at=at)
    if ev.kind == "StageFinished":
        k = next(i for i, s in enumerate(ex.stages) if s.name == ev.stage)
        return execution_pb2.StageFinished(
            execution_id=ex.id, stage=ev.stage, reason=ev.message, at=at,
            status=enum_value(execution_pb2.StageStatus, "STAGE_STATUS_", ev.status),
            rolled_back=ex.stage_states[k].rolled_back)
    cls, text_field = _STEP_EVENTS[ev.kind]
    assert ev.step is not None
    fields = {"execution_id": ex.id, "step": step_ref(ev.step), "at": at,
              "attempt": ev.attempt}
    if text_field:
        fields[text_field] = ev.message
    return cls(**fields)


def execution_view(ex: Execution, with_steps: bool = True) -> api_pb2.Execution:
    """The API's view of an execution."""
    view = api_pb2.Execution(
        execution_id=ex.id, account_id=ex.account_id, pipeline=ex.pipeline,
        status=enum_value(execution_pb2.ExecutionStatus, "EXECUTION_STATUS_", ex.status.value),
        reason=ex.reason, vigil_version=ex.version, rolled_back=ex.rolled_back,
        created_at=timestamp(ex.created_at), finished_at=timestamp(ex.finished_at),
        paused=ex.paused, application=ex.application, service=ex.service,
        environment=ex.environment, inputs=ex.inputs,
        stages=[api_pb2.Stage(
            name=plan.name, depends_on=plan.depends_on, reason=st.reason,
            status=enum_value(execution_pb2.StageStatus, "STAGE_STATUS_", st.status.value),
            rolled_back=st.rolled_back, started_at=timestamp(st.started_at),
            finished_at=timestamp(st.finished_at))
            for plan, st in zip(ex.stages, ex.stage_states, strict=True)])
    if with_steps:
        view.steps.extend(api_pb2.Step(
            ref=step_ref(step), message=st.message, attempt=st.attempt,
            status=enum_value(execution_pb2.StepStatus, "STEP_STATUS_", st.status.value),
            started_at=timestamp(st.started_at), finished_at=timestamp(st.finished_at),
            waiting_for=st.waiting.value if st.waiting and st.status.is_active else "",
            params_json=json.dumps(st.params or step.params, sort_keys=True),
            outputs=st.outputs)
            for step, st in zip(ex.steps, ex.step_states, strict=True))
    return view
