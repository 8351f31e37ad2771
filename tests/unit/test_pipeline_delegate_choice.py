"""A step's ``delegate`` block (selectors, validity): validated with field paths, resolved with
the step's variables, and carried on the DispatchTask command to task-dispatch."""

from datetime import UTC, datetime

import pytest

from vigil_orchestrator import translate
from vigil_orchestrator.domain import PipelineInvalid, parse_pipeline, plan, start

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _pipeline(step: dict) -> dict:
    return {"name": "p", "inputs": {"region": "eu"}, "stages": [{"name": "s", "workflow": {
        "phases": [{"name": "main", "steps": [step]}]}}]}


def _violations(step: dict) -> dict[str, str]:
    with pytest.raises(PipelineInvalid) as bad:
        parse_pipeline(_pipeline(step))
    return dict(bad.value.problems)


def test_selectors_and_validity_reach_the_dispatch_command_with_variables_resolved():
    spec = parse_pipeline(_pipeline({
        "name": "migrate", "type": "shell", "script": "true",
        "delegate": {"selectors": ["cluster=${inputs.region}", "db-access"], "validity": "2m"}}))
    inputs = {"region": "prod-eu"}
    d = start("ex-1", "acme", spec.name, "v1", inputs, plan(spec, inputs, "ex-1"), T0)
    (cmd,) = d.commands

    command = translate.dispatch_command(d.execution, cmd, T0)

    assert list(command.selectors) == ["cluster=prod-eu", "db-access"]
    assert command.validity_seconds == 120.0
    assert command.capability == "shell"


def test_a_step_without_a_delegate_block_leaves_the_choice_to_dispatch():
    spec = parse_pipeline(_pipeline({"name": "hi", "type": "noop"}))
    d = start("ex-1", "acme", spec.name, "v1", {}, plan(spec, {}, "ex-1"), T0)
    (cmd,) = d.commands

    command = translate.dispatch_command(d.execution, cmd, T0)

    assert (list(command.selectors), command.validity_seconds) == ([], 0.0)


def test_a_bad_delegate_block_is_refused_naming_each_field():
    path = "stages[0].workflow.phases[0].steps[0].delegate"
    found = _violations({"name": "x", "type": "shell", "script": "true", "delegate": {
        "selectors": ["ok", ""], "validity": "soon", "region": "eu"}})
    assert set(found) >= {f"{path}.selectors", f"{path}.validity", f"{path}.region"}
    assert "non-empty strings" in found[f"{path}.selectors"]


def test_steps_that_do_not_run_on_a_delegate_have_no_delegate_block():
    found = _violations({"name": "ok?", "type": "approval", "delegate": {"selectors": ["a"]}})
    assert "stages[0].workflow.phases[0].steps[0].delegate" in found


def _k8s_pipeline(infrastructure: dict | None, step: dict) -> dict:
    doc = _pipeline(step)
    if infrastructure is not None:
        doc["infrastructure"] = infrastructure
    return doc


def _command(doc: dict):  # noqa: ANN202 - a DispatchTask message
    spec = parse_pipeline(doc)
    d = start("ex-1", "acme", spec.name, "v1", {}, plan(spec, {}, "ex-1"), T0)
    (cmd,) = d.commands
    return translate.dispatch_command(d.execution, cmd, T0)


K8S_STEP = {"name": "wait", "type": "k8s_wait_rollout", "namespace": "shop",
            "deployment": "web"}


def test_a_kubernetes_step_goes_only_to_a_delegate_that_reaches_the_pipelines_cluster():
    command = _command(_k8s_pipeline(
        {"kind": "kubernetes", "cluster": "prod-eu", "namespace": "shop"},
        {**K8S_STEP, "delegate": {"selectors": ["team=web"]}}))

    assert command.capability == "kubernetes"
    assert list(command.selectors) == ["team=web", "k8s-cluster=prod-eu"]


def test_without_a_named_cluster_a_kubernetes_step_needs_only_the_capability():
    command = _command(_k8s_pipeline(None, K8S_STEP))

    assert (command.capability, list(command.selectors)) == ("kubernetes", [])


def test_a_verify_step_reading_prometheus_needs_a_delegate_that_reaches_prometheus():
    verify = {"name": "verify", "type": "verify", "service": "web", "mode": "canary",
              "control_nodes": ["a"], "test_nodes": ["b"], "duration": "5m",
              "analyses": ["metrics"], "prometheus": {"url": "http://prom:9090", "queries": [
                  {"metric": "latency_ms", "query": "latency{host=\"{host}\"}"}]}}
    assert _command(_pipeline(verify)).capability == "prometheus"
    local = {k: v for k, v in verify.items() if k != "prometheus"}
    assert _command(_pipeline({**local, "analyses": ["metrics", "logs"]})).capability == \
        "local-process"
