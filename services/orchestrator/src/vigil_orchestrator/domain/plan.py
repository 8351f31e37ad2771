"""Planning: a validated PipelineSpec plus inputs becomes the ordered list of steps to run.

Variables (``${inputs.version}``, ``${execution.id}``, ``${pipeline.name}``) are substituted
here, once, so the execution keeps the resolved pipeline it ran.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from vigil_orchestrator.domain.pipeline import (
    FailureStrategy,
    PipelineInvalid,
    PipelineSpec,
    StepType,
    parse_duration,
)

_VAR = re.compile(r"\$\{([a-zA-Z0-9_.-]+)\}")
_TASK_NAMESPACE = uuid.UUID("6f1c4c1e-3d2a-4a3b-9a77-1f0c2b9e5d10")

CAPABILITY = {
    StepType.DEPLOY: "local-process",
    StepType.ROLLBACK: "local-process",
    StepType.VERIFY: "local-process",
    StepType.SHELL: "shell",
}


@dataclass(frozen=True)
class PlannedStep:
    """A step with its variables resolved and its place in the pipeline."""

    path: str
    stage_index: int
    stage: str
    phase: str
    name: str
    type: StepType
    params: dict[str, Any]
    timeout_seconds: float
    retries: int
    strategy: FailureStrategy
    rollback: bool = False

    @property
    def capability(self) -> str:
        return CAPABILITY[self.type]


def task_id_for(execution_id: str, path: str, attempt: int) -> str:
    """Deterministic task id: re-deciding the same step attempt yields the same id."""
    return str(uuid.uuid5(_TASK_NAMESPACE, f"{execution_id}/{path}/{attempt}"))


def plan(spec: PipelineSpec, inputs: dict[str, str], execution_id: str) -> tuple[PlannedStep, ...]:
    """Resolve variables and flatten stages -> phases -> steps, in execution order.

    Raises PipelineInvalid naming the field with an unknown variable or a missing input.
    """
    values = {f"inputs.{k}": v for k, v in spec.inputs.items()}
    values.update({f"inputs.{k}": v for k, v in inputs.items()})
    values["execution.id"] = execution_id
    values["pipeline.name"] = spec.name
    problems: list[tuple[str, str]] = []
    steps = []
    for si, stage in enumerate(spec.stages):
        for pi, phase in enumerate(stage.workflow.phases):
            for ti, step in enumerate(phase.steps):
                path = f"stages[{si}].workflow.phases[{pi}].steps[{ti}]"
                params = _resolve(step.params, values, path, problems)
                timeout = step.timeout_seconds
                if step.type is StepType.VERIFY:
                    timeout = _verify_timeout(params, timeout, path, problems)
                steps.append(PlannedStep(
                    path=path, stage_index=si, stage=stage.name, phase=phase.name,
                    name=step.name, type=step.type, params=params,
                    timeout_seconds=timeout, retries=step.retries,
                    strategy=stage.workflow.failure_strategy,
                ))
    if problems:
        raise PipelineInvalid(problems)
    return tuple(steps)


def _verify_timeout(params: dict[str, Any], timeout: float, path: str,
                    problems: list[tuple[str, str]]) -> float:
    """Check a verify step's resolved durations; its timeout covers the window plus slack."""
    duration = parse_duration(params.get("duration"))
    if duration is None:
        problems.append((f"{path}.duration", "must be a duration (e.g. 5m)"))
        return timeout
    interval = parse_duration(params.get("interval", "60s"))
    if interval is None or interval > duration:
        problems.append((f"{path}.interval", "must be a duration no longer than duration"))
    return max(timeout, duration + 120.0)


def _resolve(value: Any, values: dict[str, str], path: str,
             problems: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in values:
                problems.append((path, f"unknown variable ${{{m.group(1)}}}"))
                return m.group(0)
            return values[m.group(1)]
        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [_resolve(v, values, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _resolve(v, values, f"{path}.{k}", problems) for k, v in value.items()}
    return value


def rollback_steps(steps: tuple[PlannedStep, ...], succeeded: list[int],
                   stage_index: int) -> list[PlannedStep]:
    """Rollback steps for the succeeded deploy steps of one workflow, newest first."""
    deploys = [steps[i] for i in succeeded
               if steps[i].stage_index == stage_index and steps[i].type is StepType.DEPLOY
               and not steps[i].rollback]
    out = []
    for k, d in enumerate(reversed(deploys)):
        out.append(PlannedStep(
            path=f"stages[{stage_index}].rollback[{k}]", stage_index=stage_index,
            stage=d.stage, phase=d.phase, name=f"rollback-{d.name}", type=StepType.ROLLBACK,
            params={"service": d.params["service"], "nodes": list(d.params["nodes"])},
            timeout_seconds=d.timeout_seconds, retries=1, strategy=FailureStrategy.ABORT,
            rollback=True,
        ))
    return out
