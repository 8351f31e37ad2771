"""Pipeline definitions: parsing and validating the YAML/dict form into a PipelineSpec.

Errors name the path of the bad field (``stages[1].workflow.phases[0].steps[2].timeout: must be
a duration``) and are collected, so a user sees every problem of a definition at once.

Shape (docs/pipelines.md has the full reference)::

    name: demo-canary
    stages:
      - name: canary
        workflow:
          failure_strategy: rollback        # abort | rollback | ignore
          phases:
            - name: canary
              steps:
                - name: deploy-canary
                  type: deploy              # deploy | verify | shell | rollback
                  service: demo
                  version: ${inputs.version}
                  nodes: [node-3]
                  command: [python, -m, vigil_demo, ...]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class StepType(Enum):
    DEPLOY = "deploy"
    VERIFY = "verify"
    SHELL = "shell"
    ROLLBACK = "rollback"

    @property
    def runs_on_delegate(self) -> bool:
        return True


class FailureStrategy(Enum):
    """What a workflow does when one of its steps fails (after the step's retries)."""

    ABORT = "abort"  # stop; what was deployed stays
    ROLLBACK = "rollback"  # roll back the workflow's completed deploy steps, newest first
    IGNORE = "ignore"  # carry on with the next step


DEFAULT_TIMEOUTS = {
    StepType.DEPLOY: 300.0, StepType.SHELL: 600.0, StepType.ROLLBACK: 300.0,
}


@dataclass(frozen=True)
class StepSpec:
    """One step. ``params`` holds the type's fields, variables not yet substituted."""

    name: str
    type: StepType
    params: dict[str, Any]
    timeout_seconds: float
    retries: int = 0


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    steps: tuple[StepSpec, ...]


@dataclass(frozen=True)
class WorkflowSpec:
    phases: tuple[PhaseSpec, ...]
    failure_strategy: FailureStrategy = FailureStrategy.ROLLBACK


@dataclass(frozen=True)
class StageSpec:
    name: str
    workflow: WorkflowSpec


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    stages: tuple[StageSpec, ...]
    inputs: dict[str, str] = field(default_factory=dict)  # declared inputs with defaults


class PipelineInvalid(ValueError):
    """A definition with one or more bad fields; ``problems`` are (path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))


def parse_duration(value: Any) -> float | None:
    """Seconds from "500ms", "10s", "5m", "1h" or a plain number of seconds; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value > 0 else None
    if isinstance(value, str):
        m = _DURATION.match(value.strip())
        if m and float(m.group(1)) > 0:
            return float(m.group(1)) * _UNITS[m.group(2)]
    return None


def has_variable(value: Any) -> bool:
    """True for a string holding a ${variable}, resolved only when an execution starts."""
    return isinstance(value, str) and "${" in value


class _Reader:
    """Collects problems while walking the definition."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, "must be a mapping")
            return {}
        return value

    def items(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            self.fail(path, "must be a non-empty list")
            return []
        return value

    def name(self, node: dict[str, Any], path: str) -> str:
        value = node.get("name")
        if not isinstance(value, str) or not _NAME.match(value):
            self.fail(f"{path}.name", "must be a lowercase name (a-z, 0-9, '-'), 1-63 chars")
            return "invalid"
        return value

    def strings(self, node: dict[str, Any], key: str, path: str) -> list[str]:
        value = node.get(key)
        if not isinstance(value, list) or not value or not all(
                isinstance(v, str) and v for v in value):
            self.fail(f"{path}.{key}", "must be a non-empty list of strings")
            return []
        return list(value)

    def string(self, node: dict[str, Any], key: str, path: str) -> str:
        value = node.get(key)
        if not isinstance(value, str) or not value:
            self.fail(f"{path}.{key}", "must be a non-empty string")
            return ""
        return value

    def unique(self, names: list[str], path: str, what: str) -> None:
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                self.fail(f"{path}[{i}].name", f"duplicate {what} name {n!r}")
            seen.add(n)


def parse_pipeline(doc: Any) -> PipelineSpec:
    """Validate a decoded YAML document; raises PipelineInvalid listing every bad field."""
    r = _Reader()
    root = r.mapping(doc, "")
    name = r.name(root, "") if root else "invalid"
    inputs = root.get("inputs", {}) if root else {}
    if not isinstance(inputs, dict) or not all(isinstance(k, str) for k in inputs):
        r.fail("inputs", "must be a mapping of input names to default values")
        inputs = {}
    stages = []
    for si, raw_stage in enumerate(r.items(root.get("stages"), "stages") if root else []):
        spath = f"stages[{si}]"
        stage = r.mapping(raw_stage, spath)
        if stage:
            stages.append(StageSpec(r.name(stage, spath), _workflow(r, stage, spath)))
    r.unique([s.name for s in stages], "stages", "stage")
    for key in sorted(set(root) - {"name", "stages", "inputs", "description"}):
        r.fail(key, "unknown field")
    if r.problems:
        raise PipelineInvalid(r.problems)
    return PipelineSpec(name, tuple(stages), {k: str(v) for k, v in inputs.items()})


def _workflow(r: _Reader, stage: dict[str, Any], spath: str) -> WorkflowSpec:
    wpath = f"{spath}.workflow"
    wf = r.mapping(stage.get("workflow"), wpath)
    strategy = FailureStrategy.ROLLBACK
    if "failure_strategy" in wf:
        try:
            strategy = FailureStrategy(wf["failure_strategy"])
        except ValueError:
            r.fail(f"{wpath}.failure_strategy",
                   f"must be one of {', '.join(s.value for s in FailureStrategy)}")
    phases = []
    for pi, raw_phase in enumerate(r.items(wf.get("phases"), f"{wpath}.phases") if wf else []):
        ppath = f"{wpath}.phases[{pi}]"
        phase = r.mapping(raw_phase, ppath)
        if not phase:
            continue
        steps = [_step(r, raw, f"{ppath}.steps[{i}]")
                 for i, raw in enumerate(r.items(phase.get("steps"), f"{ppath}.steps"))]
        r.unique([s.name for s in steps if s], f"{ppath}.steps", "step")
        phases.append(PhaseSpec(r.name(phase, ppath), tuple(s for s in steps if s)))
    r.unique([p.name for p in phases], f"{wpath}.phases", "phase")
    return WorkflowSpec(tuple(phases), strategy)


def _step(r: _Reader, raw: Any, path: str) -> StepSpec | None:
    node = r.mapping(raw, path)
    if not node:
        return None
    name = r.name(node, path)
    try:
        stype = StepType(node.get("type"))
    except ValueError:
        r.fail(f"{path}.type", f"must be one of {', '.join(t.value for t in StepType)}")
        return None
    params = {k: v for k, v in node.items() if k not in ("name", "type", "timeout", "retries")}
    _check_params(r, stype, params, path)
    timeout = DEFAULT_TIMEOUTS.get(stype, 0.0)
    if "timeout" in node:
        parsed = parse_duration(node["timeout"])
        if parsed is None:
            r.fail(f"{path}.timeout", "must be a duration (e.g. 90s, 5m)")
        else:
            timeout = parsed
    retries = node.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
        r.fail(f"{path}.retries", "must be an integer from 0 to 10")
        retries = 0
    return StepSpec(name, stype, params, timeout, retries)


_ALLOWED = {
    StepType.DEPLOY: {"service", "version", "nodes", "command", "ready_path"},
    StepType.ROLLBACK: {"service", "nodes"},
    StepType.SHELL: {"script", "working_dir", "env"},
    StepType.VERIFY: {"service", "mode", "control_nodes", "test_nodes", "duration", "interval",
                      "sensitivity", "analyses", "thresholds"},
}
SENSITIVITIES = ("low", "medium", "high")
ANALYSES = ("metrics", "logs")


def _check_params(r: _Reader, stype: StepType, p: dict[str, Any], path: str) -> None:
    for key in sorted(set(p) - _ALLOWED[stype]):
        r.fail(f"{path}.{key}", f"unknown field for a {stype.value} step")
    if stype is StepType.DEPLOY:
        r.string(p, "service", path)
        r.string(p, "version", path)
        r.strings(p, "nodes", path)
        r.strings(p, "command", path)
    elif stype is StepType.ROLLBACK:
        r.string(p, "service", path)
        r.strings(p, "nodes", path)
    elif stype is StepType.SHELL:
        r.string(p, "script", path)
        if "env" in p and not isinstance(p["env"], dict):
            r.fail(f"{path}.env", "must be a mapping of names to values")
    elif stype is StepType.VERIFY:
        _check_verify(r, p, path)


def _check_verify(r: _Reader, p: dict[str, Any], path: str) -> None:
    r.string(p, "service", path)
    if p.get("mode", "canary") != "canary":
        r.fail(f"{path}.mode", "must be canary (rolling, blue-green and load-test come later)")
    r.strings(p, "control_nodes", path)
    r.strings(p, "test_nodes", path)
    # A ${variable} is checked again once resolved (plan.plan).
    if not has_variable(p.get("duration")) and parse_duration(p.get("duration")) is None:
        r.fail(f"{path}.duration", "must be a duration (e.g. 5m)")
    if "interval" in p and not has_variable(p["interval"]) and parse_duration(
            p["interval"]) is None:
        r.fail(f"{path}.interval", "must be a duration (e.g. 60s)")
    if p.get("sensitivity", "medium") not in SENSITIVITIES:
        r.fail(f"{path}.sensitivity", f"must be one of {', '.join(SENSITIVITIES)}")
    analyses = p.get("analyses", list(ANALYSES))
    if not isinstance(analyses, list) or not analyses or any(a not in ANALYSES for a in analyses):
        r.fail(f"{path}.analyses", f"must be a non-empty list of {', '.join(ANALYSES)}")
    for i, t in enumerate(p.get("thresholds", []) or []):
        tpath = f"{path}.thresholds[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("metric"), str):
            r.fail(tpath, "must be a mapping with a metric name")
            continue
        for key in ("fail_fast_above", "ignore_below"):
            if key in t and (isinstance(t[key], bool) or not isinstance(t[key], int | float)):
                r.fail(f"{tpath}.{key}", "must be a number")
        for key in sorted(set(t) - {"metric", "fail_fast_above", "ignore_below"}):
            r.fail(f"{tpath}.{key}", "unknown field")
