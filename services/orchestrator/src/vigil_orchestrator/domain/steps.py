"""Step types: their fields, validation, and what each needs from the engine."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vigil_orchestrator.domain.pipeline import Reader


class StepType(Enum):
    DEPLOY = "deploy"  # local-process deployment on a delegate
    ROLLBACK = "rollback"  # restore nodes' previous version on a delegate
    SHELL = "shell"  # a script on a delegate
    HTTP_CHECK = "http_check"  # an HTTP probe from a delegate
    VERIFY = "verify"  # continuous verification: delegate collects, analyzers judge
    APPROVAL = "approval"  # a person (or an API call) approves or rejects
    WAIT = "wait"  # a durable timer
    BARRIER = "barrier"  # parallel stages wait for each other here
    K8S_DEPLOY = "k8s_deploy"  # Kubernetes rolling, canary or blue/green deployment
    K8S_ROLLBACK = "k8s_rollback"  # undo a Kubernetes deployment
    K8S_WAIT_ROLLOUT = "k8s_wait_rollout"  # wait until a Deployment has rolled out
    NOOP = "noop"  # a delegate round trip that does nothing (smoke tests, benchmarks)

    @property
    def runs_on_delegate(self) -> bool:
        return self not in (StepType.APPROVAL, StepType.WAIT, StepType.BARRIER)

    @property
    def deploys(self) -> bool:
        """Deploy steps are what a rollback undoes."""
        return self in (StepType.DEPLOY, StepType.K8S_DEPLOY)

    @property
    def capability(self) -> str:
        """The delegate capability a task of this step needs."""
        if self.value.startswith("k8s_"):
            return "kubernetes"
        return {StepType.SHELL: "shell", StepType.HTTP_CHECK: "http",
                StepType.NOOP: "noop"}.get(self, "local-process")

    @property
    def default_timeout(self) -> float:
        return {StepType.DEPLOY: 600.0, StepType.ROLLBACK: 600.0, StepType.SHELL: 600.0,
                StepType.HTTP_CHECK: 120.0, StepType.VERIFY: 1800.0,
                StepType.APPROVAL: 86400.0, StepType.WAIT: 86400.0 * 7,
                StepType.BARRIER: 86400.0, StepType.K8S_DEPLOY: 900.0,
                StepType.K8S_ROLLBACK: 600.0, StepType.K8S_WAIT_ROLLOUT: 600.0,
                StepType.NOOP: 60.0}[self]


STEP_FIELDS: dict[StepType, set[str]] = {
    StepType.DEPLOY: {"service", "version", "nodes", "command", "ready_path"},
    StepType.ROLLBACK: {"service", "nodes"},
    StepType.SHELL: {"script", "working_dir", "env"},
    StepType.HTTP_CHECK: {"url", "method", "expect_status", "body_contains", "attempts",
                          "interval"},
    StepType.VERIFY: {"service", "mode", "control_nodes", "test_nodes", "duration", "interval",
                      "sensitivity", "analyses", "thresholds", "batch_intervals", "prometheus"},
    StepType.APPROVAL: {"message", "approvers"},
    StepType.WAIT: {"duration"},
    StepType.BARRIER: {"barrier"},
    StepType.K8S_DEPLOY: {"strategy", "namespace", "deployment", "image", "replicas",
                          "canary_phases", "promote", "labels", "ports", "env", "args",
                          "readiness_path", "phase_pause"},
    StepType.K8S_ROLLBACK: {"strategy", "namespace", "deployment"},
    StepType.K8S_WAIT_ROLLOUT: {"namespace", "deployment"},
    StepType.NOOP: {"echo"},
}
K8S_STRATEGIES = ("rolling", "canary", "blue_green")
SENSITIVITIES = ("low", "medium", "high")
VERIFY_MODES = ("canary", "rolling", "blue_green", "load_test")
PRE_POST_MODES = ("rolling", "blue_green")
ANALYSES = ("metrics", "logs")


def _string(r: Reader, p: dict[str, Any], key: str, path: str) -> None:
    if not isinstance(p.get(key), str) or not p[key]:
        r.fail(f"{path}.{key}", "must be a non-empty string")


def _strings(r: Reader, p: dict[str, Any], key: str, path: str, required: bool = True) -> None:
    if key not in p and not required:
        return
    value = p.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v
                                                           for v in value):
        r.fail(f"{path}.{key}", "must be a non-empty list of strings")


def check_step(r: Reader, stype: StepType, p: dict[str, Any], path: str) -> None:
    """Report every bad field of one step's type-specific part."""
    if stype is StepType.DEPLOY:
        for key in ("service", "version"):
            _string(r, p, key, path)
        _strings(r, p, "nodes", path)
        _strings(r, p, "command", path)
    elif stype is StepType.ROLLBACK:
        _string(r, p, "service", path)
        _strings(r, p, "nodes", path)
    elif stype is StepType.SHELL:
        _string(r, p, "script", path)
        if "env" in p and not isinstance(p["env"], dict):
            r.fail(f"{path}.env", "must be a mapping of names to values")
    elif stype is StepType.HTTP_CHECK:
        _string(r, p, "url", path)
        if p.get("method", "GET") not in ("GET", "HEAD", "POST"):
            r.fail(f"{path}.method", "must be GET, HEAD or POST")
        status = p.get("expect_status", 200)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            r.fail(f"{path}.expect_status", "must be an HTTP status code")
        attempts = p.get("attempts", 1)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100:
            r.fail(f"{path}.attempts", "must be an integer from 1 to 100")
        r.duration(p, "interval", path)
    elif stype is StepType.VERIFY:
        _check_verify(r, p, path)
    elif stype is StepType.APPROVAL:
        _strings(r, p, "approvers", path, required=False)
    elif stype is StepType.WAIT:
        r.duration(p, "duration", path, required=True)
    elif stype is StepType.BARRIER:
        r.name(p, path, "barrier")
    elif stype in (StepType.K8S_DEPLOY, StepType.K8S_ROLLBACK, StepType.K8S_WAIT_ROLLOUT):
        _check_k8s(r, stype, p, path)


def _check_k8s(r: Reader, stype: StepType, p: dict[str, Any], path: str) -> None:
    _string(r, p, "namespace", path)
    _string(r, p, "deployment", path)
    if stype is StepType.K8S_WAIT_ROLLOUT:
        return
    if p.get("strategy", "rolling") not in K8S_STRATEGIES:
        r.fail(f"{path}.strategy", f"must be one of {', '.join(K8S_STRATEGIES)}")
    if stype is StepType.K8S_ROLLBACK:
        return
    _string(r, p, "image", path)
    replicas = p.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= 1000:
        r.fail(f"{path}.replicas", "must be an integer from 0 to 1000")
    phases = p.get("canary_phases", [])
    if not isinstance(phases, list) or any(isinstance(x, bool) or not isinstance(x, int)
                                           or x < 1 for x in phases):
        r.fail(f"{path}.canary_phases", "must be a list of positive replica counts")
    for key in ("labels", "env"):
        if key in p and not isinstance(p[key], dict):
            r.fail(f"{path}.{key}", "must be a mapping of names to values")
    for i, port in enumerate(p.get("ports", []) or []):
        if not isinstance(port, dict) or not isinstance(port.get("container_port"), int):
            r.fail(f"{path}.ports[{i}]", "must be a mapping with an integer container_port")
    r.duration(p, "phase_pause", path)


def _check_verify(r: Reader, p: dict[str, Any], path: str) -> None:
    _string(r, p, "service", path)
    mode = p.get("mode", "canary")
    if mode not in VERIFY_MODES:
        r.fail(f"{path}.mode", f"must be one of {', '.join(VERIFY_MODES)}")
    if mode == "canary":
        _strings(r, p, "control_nodes", path)
    elif mode == "load_test" and "control_nodes" in p:
        r.fail(f"{path}.control_nodes", "must be left out for load_test: the baseline is the "
               "service's last passed load test")
    else:  # rolling, blue_green: the same hosts before the deployment unless given
        _strings(r, p, "control_nodes", path, required=False)
    _strings(r, p, "test_nodes", path)
    if mode in PRE_POST_MODES and "prometheus" not in p:
        r.fail(f"{path}.prometheus", f"required for mode {mode}: the control group is the "
               "pre-deployment window, which needs a metrics source with history")
    if "prometheus" in p:
        _check_prometheus(r, p["prometheus"], f"{path}.prometheus")
    if (mode in PRE_POST_MODES or "prometheus" in p) and p.get(
            "analyses", list(ANALYSES)) != ["metrics"]:
        r.fail(f"{path}.analyses", "must be [metrics] with prometheus (and for rolling, "
               "blue_green): logs come from the local processes, which have no history")
    batch = p.get("batch_intervals", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 10000:
        r.fail(f"{path}.batch_intervals", "must be an integer from 1 to 10000 (intervals per "
               "metrics batch sent while the window runs)")
    r.duration(p, "duration", path, required=True)
    r.duration(p, "interval", path)
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
        r.unknown(t, {"metric", "fail_fast_above", "ignore_below"}, tpath, "a threshold")


def _check_prometheus(r: Reader, raw: Any, path: str) -> None:
    """``prometheus: {url, host_label, queries: [{metric, query}]}`` of a verify step."""
    if not isinstance(raw, dict):
        r.fail(path, "must be a mapping with a url")
        return
    r.unknown(raw, {"url", "host_label", "queries"}, path, "a prometheus source")
    url = raw.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        r.fail(f"{path}.url", "must be an http(s) URL")
    if "host_label" in raw and (not isinstance(raw["host_label"], str) or not raw["host_label"]):
        r.fail(f"{path}.host_label", "must be a non-empty string")
    queries = raw.get("queries", [])
    if not isinstance(queries, list):
        r.fail(f"{path}.queries", "must be a list of {metric, query}")
        return
    for i, q in enumerate(queries):
        if not isinstance(q, dict) or not all(isinstance(q.get(k), str) and q[k]
                                              for k in ("metric", "query")):
            r.fail(f"{path}.queries[{i}]", "must be a mapping with a metric and a query")
