"""Planning: a validated PipelineSpec plus inputs becomes the steps to run, in order per stage.

Variables are substituted here, once, so the execution keeps the resolved pipeline it ran:
``${inputs.<name>}``, ``${artifact.<key>}``, ``${env.name}``, ``${pipeline.name}``,
``${execution.id}``. ``${steps.<step>.output.<key>}`` is resolved when that later step starts.
Failure strategies are resolved to one policy per step (step > phase > workflow > stage).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from typing import Any

from vigil_orchestrator.domain.failure import Action, FailurePolicy, with_retries
from vigil_orchestrator.domain.pipeline import (
    PipelineInvalid,
    PipelineSpec,
    StepSpec,
    parse_duration,
)
from vigil_orchestrator.domain.steps import StepType

VAR = re.compile(r"\$\{([a-zA-Z0-9_.-]+)\}")
_TASK_NAMESPACE = uuid.UUID("6f1c4c1e-3d2a-4a3b-9a77-1f0c2b9e5d10")
DEFAULT_FAILURE = FailurePolicy(Action.ROLLBACK)


@dataclass(frozen=True)
class PlannedStep:
    """A step with its static variables resolved and its place in the pipeline."""

    path: str
    stage_index: int
    stage: str
    phase: str
    name: str
    type: StepType
    params: dict[str, Any]
    timeout_seconds: float
    failure: FailurePolicy
    phase_index: int = 0
    rollback: bool = False

    @property
    def capability(self) -> str:
        """The delegate capability its task needs: the step type's, except that a verify
        step reading Prometheus needs a delegate that reaches Prometheus."""
        if self.type is StepType.VERIFY and "prometheus" in self.params:
            return "prometheus"
        return self.type.capability


@dataclass(frozen=True)
class StagePlan:
    name: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    stages: tuple[StagePlan, ...]
    steps: tuple[PlannedStep, ...]
    custom_rollbacks: tuple[PlannedStep, ...] = ()  # phases' rollback_steps, if declared


def task_id_for(execution_id: str, path: str, attempt: int) -> str:
    """Deterministic task id: re-deciding the same step attempt yields the same id."""
    return str(uuid.uuid5(_TASK_NAMESPACE, f"{execution_id}/{path}/{attempt}"))


def plan(spec: PipelineSpec, inputs: dict[str, str], execution_id: str,
         artifact: dict[str, str] | None = None) -> Plan:
    """Resolve variables and policies; raises PipelineInvalid naming each bad field."""
    values = {f"inputs.{k}": v for k, v in {**spec.inputs, **inputs}.items()}
    values.update({f"artifact.{k}": v for k, v in (artifact or {}).items()})
    values.update({"execution.id": execution_id, "pipeline.name": spec.name,
                   "env.name": spec.environment, "application.name": spec.application,
                   "service.name": spec.service})
    values.update({f"infra.{k}": v for k, v in spec.infrastructure.items()})
    problems: list[tuple[str, str]] = []
    step_names = {s.name for st in spec.stages for p in st.workflow.phases for s in p.steps}
    steps, rollbacks = [], []
    for si, stage in enumerate(spec.stages):
        for pi, phase in enumerate(stage.workflow.phases):
            inherited = (phase.failure or stage.workflow.failure or stage.failure
                         or DEFAULT_FAILURE)
            base = f"stages[{si}].workflow.phases[{pi}]"
            for ti, step in enumerate(phase.steps):
                steps.append(_planned(_on_cluster(step, spec.infrastructure),
                                      f"{base}.steps[{ti}]", si, stage.name, pi, phase.name,
                                      inherited, values, step_names, problems))
            for ti, step in enumerate(phase.rollback_steps):
                rollbacks.append(replace(_planned(
                    _on_cluster(step, spec.infrastructure), f"{base}.rollback_steps[{ti}]", si,
                    stage.name, pi, phase.name, FailurePolicy(Action.ABORT), values,
                    step_names, problems), rollback=True))
    if problems:
        raise PipelineInvalid(problems)
    deps = spec.stage_dependencies()
    return Plan(tuple(StagePlan(s.name, deps[s.name]) for s in spec.stages), tuple(steps),
                tuple(rollbacks))


CLUSTER_SELECTOR = "k8s-cluster="  # what a delegate announces per cluster it reaches


def _on_cluster(step: StepSpec, infrastructure: dict[str, str]) -> StepSpec:
    """A Kubernetes step of a pipeline whose infrastructure names a cluster goes only to a
    delegate that reaches that cluster: it requires the selector ``k8s-cluster=<cluster>``
    (delegates announce it from DELEGATE_KUBERNETES_CLUSTERS)."""
    cluster = infrastructure.get("cluster", "")
    if not (step.type.capability == "kubernetes" and infrastructure.get("kind") == "kubernetes"
            and cluster):
        return step
    choice = dict(step.params.get("delegate") or {})
    wanted = f"{CLUSTER_SELECTOR}{cluster}"
    if wanted not in (choice.get("selectors") or []):
        choice["selectors"] = [*(choice.get("selectors") or []), wanted]
    return replace(step, params={**step.params, "delegate": choice})


def _planned(step: StepSpec, path: str, si: int, stage: str, pi: int, phase: str,
             inherited: FailurePolicy, values: dict[str, str], step_names: set[str],
             problems: list[tuple[str, str]]) -> PlannedStep:
    params = resolve(step.params, values, path, problems, step_names)
    timeout = step.timeout_seconds
    for key in ("duration", "interval"):
        if key in params and parse_duration(params[key]) is None and "${" not in str(
                params[key]):
            problems.append((f"{path}.{key}", "must be a duration (e.g. 5m)"))
    if step.type is StepType.VERIFY:
        window = parse_duration(params.get("duration")) or 0.0
        timeout = max(timeout, window + 120.0)
    failure = with_retries(step.failure or inherited, step.retries)
    return PlannedStep(path, si, stage, phase, step.name, step.type, params, timeout, failure,
                       pi)


def resolve(value: Any, values: dict[str, str], path: str, problems: list[tuple[str, str]],
            deferred: set[str] | None = None) -> Any:
    """Substitute ${...} in strings, recursively. ``steps.<name>...`` is left for later when
    <name> is in ``deferred``; any other unknown variable is a problem at ``path``."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            key = m.group(1)
            if key in values:
                return values[key]
            parts = key.split(".")
            if deferred is not None and len(parts) == 4 and parts[0] == "steps" and \
                    parts[2] == "output" and parts[1] in deferred:
                return m.group(0)
            problems.append((path, f"unknown variable ${{{key}}}"))
            return m.group(0)
        return VAR.sub(sub, value)
    if isinstance(value, list):
        return [resolve(v, values, f"{path}[{i}]", problems, deferred)
                for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: resolve(v, values, f"{path}.{k}", problems, deferred)
                for k, v in value.items()}
    return value


_UNDO = {StepType.DEPLOY: StepType.ROLLBACK, StepType.K8S_DEPLOY: StepType.K8S_ROLLBACK}


def _undo_params(step: PlannedStep) -> dict[str, Any]:
    p = step.params
    if step.type is StepType.K8S_DEPLOY:
        return {"strategy": p.get("strategy", "rolling"), "namespace": p["namespace"],
                "deployment": p["deployment"]}
    return {"service": p["service"], "nodes": list(p["nodes"])}


def rollback_steps(steps: tuple[PlannedStep, ...], custom: tuple[PlannedStep, ...],
                   succeeded: list[int], stage_index: int) -> list[PlannedStep]:
    """Steps that undo a workflow's completed phases, newest phase first.

    A phase with declared ``rollback_steps`` runs those; otherwise each of its succeeded
    deploy steps is rolled back (newest first).
    """
    done = [steps[i] for i in succeeded if steps[i].stage_index == stage_index
            and not steps[i].rollback]
    phases = sorted({s.phase_index for s in done}, reverse=True)
    out: list[PlannedStep] = []
    for pi in phases:
        declared = [c for c in custom if c.stage_index == stage_index and c.phase_index == pi]
        if declared:
            out.extend(declared)
            continue
        for d in reversed([s for s in done if s.phase_index == pi and s.type.deploys]):
            out.append(PlannedStep(
                path=f"{d.path}.rollback", stage_index=stage_index, stage=d.stage,
                phase=d.phase, name=f"rollback-{d.name}", type=_UNDO[d.type],
                params=_undo_params(d),
                timeout_seconds=d.timeout_seconds,
                failure=FailurePolicy(Action.RETRY, 1, 0.0, 1.0, Action.ABORT),
                phase_index=pi, rollback=True))
    return out
