"""Pipeline definitions: parsing and validating the YAML/dict form into a PipelineSpec.

Errors name the path of the bad field (``stages[1].workflow.phases[0].steps[2].timeout: must be
a duration``) and are collected, so a user sees every problem of a definition at once. The
reference is docs/pipelines.md; ``infra/demo/pipelines/`` has complete examples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vigil_orchestrator.domain.failure import CHOICES, Action, FailurePolicy
from vigil_orchestrator.domain.steps import STEP_FIELDS, StepType, check_step

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class StepSpec:
    """One step. ``params`` holds the type's fields, variables not yet substituted."""

    name: str
    type: StepType
    params: dict[str, Any]
    timeout_seconds: float
    failure: FailurePolicy | None = None  # None: inherit from the enclosing levels
    retries: int = 0


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    steps: tuple[StepSpec, ...]
    failure: FailurePolicy | None = None
    rollback_steps: tuple[StepSpec, ...] = ()  # custom rollback; default: undo its deploys


@dataclass(frozen=True)
class WorkflowSpec:
    phases: tuple[PhaseSpec, ...]
    failure: FailurePolicy | None = None


@dataclass(frozen=True)
class StageSpec:
    name: str
    workflow: WorkflowSpec
    depends_on: tuple[str, ...] | None = None  # None: the previous stage
    failure: FailurePolicy | None = None


@dataclass(frozen=True)
class ArtifactTrigger:
    """Start the pipeline when an artifact of ``service`` is published (version -> input)."""

    service: str
    input: str = "version"


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    stages: tuple[StageSpec, ...]
    inputs: dict[str, str] = field(default_factory=dict)  # declared inputs with defaults
    application: str = ""
    service: str = ""
    environment: str = ""
    triggers: tuple[ArtifactTrigger, ...] = ()
    infrastructure: dict[str, str] = field(default_factory=dict)  # ${infra.<key>}

    def stage_dependencies(self) -> dict[str, tuple[str, ...]]:
        """Each stage's prerequisites, with the default (the previous stage) filled in."""
        out: dict[str, tuple[str, ...]] = {}
        for i, s in enumerate(self.stages):
            out[s.name] = s.depends_on if s.depends_on is not None else (
                (self.stages[i - 1].name,) if i else ())
        return out


class PipelineInvalid(ValueError):
    """A definition with one or more bad fields; ``problems`` are (path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))


def parse_duration(value: Any) -> float | None:
    """Seconds from "500ms", "10s", "5m", "1h", "2d" or a positive number; None if invalid."""
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


class Reader:
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

    def name(self, node: dict[str, Any], path: str, key: str = "name") -> str:
        value = node.get(key)
        if not isinstance(value, str) or not _NAME.match(value):
            self.fail(f"{path}.{key}".lstrip("."),
                      "must be a lowercase name (a-z, 0-9, '-'), 1-63 chars")
            return "invalid"
        return value

    def unknown(self, node: dict[str, Any], allowed: set[str], path: str, what: str) -> None:
        for key in sorted(set(node) - allowed):
            self.fail(f"{path}.{key}".lstrip("."), f"unknown field for {what}")

    def unique(self, names: list[str], path: str, what: str) -> None:
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                self.fail(f"{path}[{i}].name", f"duplicate {what} name {n!r}")
            seen.add(n)

    def duration(self, node: dict[str, Any], key: str, path: str,
                 required: bool = False) -> float | None:
        if key not in node:
            if required:
                self.fail(f"{path}.{key}", "is required (a duration, e.g. 90s, 5m)")
            return None
        if has_variable(node[key]):
            return None
        parsed = parse_duration(node[key])
        if parsed is None:
            self.fail(f"{path}.{key}", "must be a duration (e.g. 90s, 5m)")
        return parsed

    def failure(self, node: dict[str, Any], path: str) -> FailurePolicy | None:
        """The ``failure_strategy`` of a level, or None when it declares none."""
        if "failure_strategy" not in node:
            return None
        fpath = f"{path}.failure_strategy".lstrip(".")
        raw = node["failure_strategy"]
        if isinstance(raw, str):
            raw = {"action": raw}
        spec = self.mapping(raw, fpath)
        if not spec:
            return None
        self.unknown(spec, {"action", "retries", "interval", "backoff", "then", "timeout",
                            "timeout_action"}, fpath, "a failure strategy")
        action = self._action(spec.get("action"), f"{fpath}.action", tuple(Action))
        then = self._action(spec.get("then", "abort"), f"{fpath}.then", tuple(Action)[1:])
        timeout_action = self._action(spec.get("timeout_action", "abort"),
                                      f"{fpath}.timeout_action", CHOICES[1:])
        retries = spec.get("retries", 3 if action is Action.RETRY else 0)
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 20:
            self.fail(f"{fpath}.retries", "must be an integer from 0 to 20")
            retries = 0
        backoff = spec.get("backoff", 1.0)
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not (
                1.0 <= backoff <= 10.0):
            self.fail(f"{fpath}.backoff", "must be a number from 1 to 10")
            backoff = 1.0
        interval = self.duration(spec, "interval", fpath) or 0.0
        timeout = self.duration(spec, "timeout", fpath)
        return FailurePolicy(action, retries, interval, float(backoff), then, timeout,
                             timeout_action)

    def _action(self, value: Any, path: str, allowed: tuple[Action, ...]) -> Action:
        try:
            action = Action(value)
        except ValueError:
            action = None
        if action not in allowed:
            self.fail(path, f"must be one of {', '.join(a.value for a in allowed)}")
            return Action.ABORT
        return action


_ROOT_FIELDS = {"name", "description", "stages", "inputs", "application", "service",
                "environment", "triggers", "infrastructure"}


def parse_pipeline(doc: Any) -> PipelineSpec:
    """Validate a decoded YAML document; raises PipelineInvalid listing every bad field."""
    r = Reader()
    root = r.mapping(doc, "")
    if not root:
        raise PipelineInvalid(r.problems)
    name = r.name(root, "")
    r.unknown(root, _ROOT_FIELDS, "", "a pipeline")
    inputs = root.get("inputs", {})
    if not isinstance(inputs, dict) or not all(isinstance(k, str) for k in inputs):
        r.fail("inputs", "must be a mapping of input names to default values")
        inputs = {}
    labels = {k: root.get(k, "") for k in ("application", "service", "environment")}
    for k, v in labels.items():
        if not isinstance(v, str):
            r.fail(k, "must be a string")
            labels[k] = ""
    stages = [_stage(r, raw, f"stages[{i}]")
              for i, raw in enumerate(r.items(root.get("stages"), "stages"))]
    stages = [s for s in stages if s is not None]
    r.unique([s.name for s in stages], "stages", "stage")
    _check_dependencies(r, stages)
    _check_barriers(r, stages)
    triggers = _triggers(r, root.get("triggers", []), {str(k) for k in inputs})
    infra = _infrastructure(r, root.get("infrastructure"))
    if r.problems:
        raise PipelineInvalid(r.problems)
    return PipelineSpec(name, tuple(stages), {k: str(v) for k, v in inputs.items()},
                        labels["application"], labels["service"], labels["environment"],
                        tuple(triggers), infra)


def _infrastructure(r: Reader, raw: Any) -> dict[str, str]:
    """Where the pipeline deploys: a Kubernetes cluster and namespace, or a set of hosts.

    Exposed to steps as ${infra.kind}, ${infra.cluster}, ${infra.namespace}, ${infra.hosts}.
    """
    if raw is None:
        return {}
    node = r.mapping(raw, "infrastructure")
    kind = node.get("kind")
    if kind == "kubernetes":
        r.unknown(node, {"kind", "cluster", "namespace"}, "infrastructure", "kubernetes")
        for key in ("cluster", "namespace"):
            if not isinstance(node.get(key), str) or not node[key]:
                r.fail(f"infrastructure.{key}", "must be a non-empty string")
        return {"kind": kind, "cluster": str(node.get("cluster", "")),
                "namespace": str(node.get("namespace", ""))}
    if kind == "hosts":
        r.unknown(node, {"kind", "hosts"}, "infrastructure", "hosts")
        hosts = node.get("hosts")
        if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
            r.fail("infrastructure.hosts", "must be a non-empty list of host names")
            hosts = []
        return {"kind": kind, "hosts": ",".join(hosts)}
    if node:
        r.fail("infrastructure.kind", "must be kubernetes or hosts")
    return {}


def _stage(r: Reader, raw: Any, spath: str) -> StageSpec | None:
    stage = r.mapping(raw, spath)
    if not stage:
        return None
    r.unknown(stage, {"name", "workflow", "depends_on", "failure_strategy"}, spath, "a stage")
    depends = stage.get("depends_on")
    if depends is not None and (not isinstance(depends, list) or not all(
            isinstance(d, str) for d in depends)):
        r.fail(f"{spath}.depends_on", "must be a list of stage names ([] runs it at once)")
        depends = None
    wpath = f"{spath}.workflow"
    wf = r.mapping(stage.get("workflow"), wpath)
    r.unknown(wf, {"phases", "failure_strategy"}, wpath, "a workflow")
    phases = [_phase(r, raw_phase, f"{wpath}.phases[{pi}]")
              for pi, raw_phase in enumerate(r.items(wf.get("phases"), f"{wpath}.phases")
                                             if wf else [])]
    phases = [p for p in phases if p is not None]
    r.unique([p.name for p in phases], f"{wpath}.phases", "phase")
    r.unique([s.name for p in phases for s in p.steps], f"{wpath}.phases[*].steps", "step")
    return StageSpec(r.name(stage, spath), WorkflowSpec(tuple(phases), r.failure(wf, wpath)),
                     tuple(depends) if depends is not None else None,
                     r.failure(stage, spath))


def _phase(r: Reader, raw: Any, ppath: str) -> PhaseSpec | None:
    phase = r.mapping(raw, ppath)
    if not phase:
        return None
    r.unknown(phase, {"name", "steps", "failure_strategy", "rollback_steps"}, ppath, "a phase")
    steps = [_step(r, raw, f"{ppath}.steps[{i}]")
             for i, raw in enumerate(r.items(phase.get("steps"), f"{ppath}.steps"))]
    rollback = [_step(r, raw, f"{ppath}.rollback_steps[{i}]")
                for i, raw in enumerate(phase.get("rollback_steps") or [])]
    return PhaseSpec(r.name(phase, ppath), tuple(s for s in steps if s),
                     r.failure(phase, ppath), tuple(s for s in rollback if s))


def _step(r: Reader, raw: Any, path: str) -> StepSpec | None:
    node = r.mapping(raw, path)
    if not node:
        return None
    name = r.name(node, path)
    try:
        stype = StepType(node.get("type"))
    except ValueError:
        r.fail(f"{path}.type", f"must be one of {', '.join(t.value for t in StepType)}")
        return None
    common = {"name", "type", "timeout", "retries", "failure_strategy"}
    on_delegate = {"delegate"} if stype.runs_on_delegate else set()
    r.unknown(node, common | STEP_FIELDS[stype] | on_delegate, path, f"a {stype.value} step")
    params = {k: v for k, v in node.items() if k not in common}
    check_step(r, stype, params, path)
    if "delegate" in params:
        _check_delegate(r, params["delegate"], f"{path}.delegate")
    timeout = r.duration(node, "timeout", path) or stype.default_timeout
    retries = node.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 20:
        r.fail(f"{path}.retries", "must be an integer from 0 to 20")
        retries = 0
    return StepSpec(name, stype, params, timeout, r.failure(node, path), retries)


def _check_delegate(r: Reader, raw: Any, path: str) -> None:
    """``delegate: {selectors: [tag, ...], validity: 5m}`` on a step that runs on a delegate:
    only delegates announcing every selector may take its task, and a task no delegate takes
    within ``validity`` fails with the reason (task-dispatch's default otherwise)."""
    node = r.mapping(raw, path)
    if not node:
        return
    r.unknown(node, {"selectors", "validity"}, path, "a delegate choice")
    selectors = node.get("selectors", [])
    if not isinstance(selectors, list) or not all(isinstance(x, str) and x.strip()
                                                  for x in selectors):
        r.fail(f"{path}.selectors", "must be a list of non-empty strings, e.g. [cluster=prod-eu]")
    r.duration(node, "validity", path)


def delegate_choice(params: dict[str, Any]) -> tuple[list[str], float]:
    """(selectors, validity seconds or 0 for dispatch's default) of a step's parameters as
    run (variables resolved)."""
    choice = params.get("delegate") or {}
    return list(choice.get("selectors") or []), parse_duration(choice.get("validity")) or 0.0


def _check_dependencies(r: Reader, stages: list[StageSpec]) -> None:
    names = {s.name for s in stages}
    for i, s in enumerate(stages):
        for d in s.depends_on or ():
            if d not in names:
                r.fail(f"stages[{i}].depends_on", f"unknown stage {d!r}")
            elif d == s.name:
                r.fail(f"stages[{i}].depends_on", "a stage cannot depend on itself")
    deps = {s.name: s.depends_on if s.depends_on is not None else (
        (stages[i - 1].name,) if i else ()) for i, s in enumerate(stages)}
    state: dict[str, int] = {}

    def visit(n: str) -> bool:
        if state.get(n) == 1:
            return False
        if state.get(n) == 2:
            return True
        state[n] = 1
        ok = all(visit(d) for d in deps.get(n, ()) if d in deps)
        state[n] = 2
        return ok

    for i, s in enumerate(stages):
        if not visit(s.name):
            r.fail(f"stages[{i}].depends_on", "stages depend on each other in a cycle")
            return


def _check_barriers(r: Reader, stages: list[StageSpec]) -> None:
    holders: dict[str, list[str]] = {}
    for s in stages:
        for p in s.workflow.phases:
            for step in p.steps:
                if step.type is StepType.BARRIER and isinstance(step.params.get("barrier"), str):
                    holders.setdefault(step.params["barrier"], []).append(s.name)
    for barrier, owners in sorted(holders.items()):
        if len(owners) < 2:
            r.fail("stages", f"barrier {barrier!r} appears in only one stage; a barrier "
                             "synchronizes parallel stages")
        elif len(set(owners)) != len(owners):
            r.fail("stages", f"barrier {barrier!r} appears twice in stage {owners[0]!r}")


def _triggers(r: Reader, raw: Any, inputs: set[str]) -> list[ArtifactTrigger]:
    if not isinstance(raw, list):
        r.fail("triggers", "must be a list")
        return []
    out = []
    for i, t in enumerate(raw):
        path = f"triggers[{i}]"
        node = r.mapping(t, path)
        art = r.mapping(node.get("artifact"), f"{path}.artifact") if node else {}
        if not art:
            continue
        r.unknown(art, {"service", "input"}, f"{path}.artifact", "an artifact trigger")
        service, target = art.get("service"), art.get("input", "version")
        if not isinstance(service, str) or not service:
            r.fail(f"{path}.artifact.service", "must be a non-empty string")
            continue
        if target not in inputs:
            r.fail(f"{path}.artifact.input", f"must name a declared input, not {target!r}")
            continue
        out.append(ArtifactTrigger(service, target))
    return out
