"""The execution state machine: the demo pipeline, every step type and failure strategy,
parallel stages, people's actions, and property tests over redelivered, reordered events."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil_orchestrator.domain import (
    Abort,
    Action,
    Approve,
    Decision,
    ExecutionStatus,
    IllegalAction,
    Intervene,
    Pause,
    Resume,
    StageStatus,
    StepStatus,
    StepType,
    TaskFinished,
    TimerFired,
    Verdict,
    VerdictArrived,
    decide,
    parse_pipeline,
    plan,
    start,
)

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DEMO = Path(__file__).parents[2] / "infra/demo/pipelines/demo-canary.yaml"


def begin(doc: dict | str, **inputs: str) -> Decision:
    spec = parse_pipeline(yaml.safe_load(doc) if isinstance(doc, str) else doc)
    return start("ex-1", "acme", spec.name, "v1", inputs, plan(spec, inputs, "ex-1"), T0)


def demo_start(**inputs: str) -> Decision:
    return begin(DEMO.read_text(), **inputs)


def shell(name: str, **extra) -> dict:
    return {"name": name, "type": "shell", "script": f"echo {name}", **extra}


def pipeline(*stages: dict, **extra) -> dict:
    return {"name": "p", "stages": list(stages), **extra}


def stage(name: str, *steps: dict, depends_on=None, failure=None) -> dict:
    s = {"name": name, "workflow": {"phases": [{"name": "main", "steps": list(steps)}]}}
    if depends_on is not None:
        s["depends_on"] = depends_on
    if failure is not None:
        s["workflow"]["failure_strategy"] = failure
    return s


def finish(d: Decision, name: str, success: bool = True, at: datetime = T0, **kw) -> Decision:
    """Report the result of the running task of step ``name``."""
    ex = d.execution
    i = next(i for i, s in enumerate(ex.steps) if s.name == name)
    st = ex.step_states[i]
    assert st.status is StepStatus.RUNNING, f"{name} is {st.status}"
    return decide(ex, TaskFinished(st.task_id(ex.id, ex.steps[i]), st.attempt, success, **kw),
                  at)


def status_of(d: Decision, name: str) -> StepStatus:
    ex = d.execution
    return next(ex.step_states[i].status for i, s in enumerate(ex.steps) if s.name == name)


def running(d: Decision) -> list[str]:
    return sorted(c.step.name for c in d.commands)


# ---- the demo pipeline ------------------------------------------------------------------

def verdicts(d: Decision, metrics: str, logs: str) -> Decision:
    (cmd,) = d.commands
    d = decide(d.execution, TaskFinished(cmd.task_id, cmd.attempt, True, "collected"), T0)
    d = decide(d.execution, VerdictArrived(cmd.task_id, Verdict("metrics", metrics, "m")), T0)
    return decide(d.execution, VerdictArrived(cmd.task_id, Verdict("logs", logs, "l")), T0)


def test_start_dispatches_the_first_deploy_step():
    d = demo_start()
    assert [e.kind for e in d.events] == ["ExecutionStarted", "StageStarted", "StepStarted"]
    (cmd,) = d.commands
    assert cmd.step.type is StepType.DEPLOY and cmd.params["nodes"] == ["node-1", "node-2"]


def test_canary_with_failing_verification_rolls_back_and_fails_with_the_reasons():
    d = verdicts(finish(finish(demo_start(), "deploy-primary"), "deploy-canary"), "FAIL", "FAIL")
    assert [e.kind for e in d.events][:2] == ["StepFailed", "StepStarted"]
    (rollback,) = d.commands
    assert rollback.step.type is StepType.ROLLBACK and rollback.params["nodes"] == ["node-3"]
    d = finish(d, "rollback-deploy-canary")
    ex = d.execution
    assert ex.status is ExecutionStatus.FAILED and ex.rolled_back
    assert "verify-canary" in ex.reason and "metrics FAIL: m" in ex.reason
    assert ex.stage_states[1].status is StageStatus.FAILED and ex.stage_states[1].rolled_back
    assert d.events[-1].kind == "ExecutionFinished"


def test_passing_verification_succeeds_without_rollback():
    d = verdicts(finish(finish(demo_start(), "deploy-primary"), "deploy-canary"), "PASS", "PASS")
    assert d.execution.status is ExecutionStatus.SUCCEEDED and not d.execution.rolled_back
    assert d.commands == []


def test_no_data_is_never_a_silent_pass():
    d = verdicts(finish(finish(demo_start(), "deploy-primary"), "deploy-canary"), "PASS",
                 "NO_DATA")
    assert status_of(d, "verify-canary") is StepStatus.FAILED


def test_failed_primary_deploy_aborts_and_skips_the_rest():
    d = finish(demo_start(), "deploy-primary", False, error="node-1 not ready")
    ex = d.execution
    assert ex.status is ExecutionStatus.FAILED and not ex.rolled_back
    assert [s.status for s in ex.step_states[1:]] == [StepStatus.SKIPPED] * 2
    assert ex.stage_states[1].status is StageStatus.SKIPPED
    assert "node-1 not ready" in ex.reason


def test_stale_result_of_an_old_attempt_changes_nothing():
    d = demo_start()
    (cmd,) = d.commands
    after = decide(d.execution, TaskFinished(cmd.task_id, 7, True), T0)
    assert after.execution == d.execution and after.commands == [] and after.events == []


def test_deadline_fails_a_step_that_never_reports():
    d = demo_start()
    assert decide(d.execution, TimerFired(), T0).execution == d.execution
    d = decide(d.execution, TimerFired(), T0 + timedelta(seconds=61))
    assert d.execution.status is ExecutionStatus.FAILED
    assert "timed out after 60s" in d.execution.reason


# ---- parallel stages and barriers -------------------------------------------------------

def test_stages_without_dependencies_run_in_parallel_and_a_join_waits_for_both():
    d = begin(pipeline(stage("manager", shell("m"), depends_on=[]),
                       stage("ui", shell("u"), depends_on=[]),
                       stage("qa", shell("q"), depends_on=["manager", "ui"])))
    assert running(d) == ["m", "u"]
    d = finish(d, "m")
    assert d.commands == []  # qa still waits for ui
    d = finish(d, "u")
    assert running(d) == ["q"]
    assert finish(d, "q").execution.status is ExecutionStatus.SUCCEEDED


def test_a_failed_parallel_stage_skips_its_dependents_while_the_other_finishes():
    d = begin(pipeline(stage("a", shell("a1"), depends_on=[], failure="ignore"),
                       stage("b", shell("b1"), shell("b2"), depends_on=[], failure="rollback"),
                       stage("c", shell("c1"), depends_on=["b"])))
    d = finish(d, "b1", False, error="boom")  # b fails, nothing deployed, nothing to undo
    assert d.execution.stage_states[2].status is StageStatus.SKIPPED
    assert status_of(d, "a1") is StepStatus.RUNNING
    d = finish(d, "a1")
    assert d.execution.status is ExecutionStatus.FAILED
    assert "b1 failed: boom" in d.execution.reason


def test_barrier_releases_when_every_parallel_stage_reaches_it():
    barrier = {"name": "sync", "type": "barrier", "barrier": "deployed"}
    d = begin(pipeline(stage("a", shell("a1"), dict(barrier), shell("a2"), depends_on=[]),
                       stage("b", shell("b1"), dict(barrier), shell("b2"), depends_on=[])))
    d = finish(d, "a1")
    assert status_of(d, "sync") is StepStatus.WAITING and "a2" not in running(d)
    d = finish(d, "b1")
    assert running(d) == ["a2", "b2"]


def test_barrier_fails_when_another_stage_ends_without_reaching_it():
    barrier = {"name": "sync", "type": "barrier", "barrier": "deployed"}
    d = begin(pipeline(stage("a", dict(barrier), shell("a2"), depends_on=[]),
                       stage("b", shell("b1"), dict(barrier), depends_on=[], failure="ignore")))
    d = finish(d, "b1", False, error="x")  # ignored: b carries on to its barrier
    assert running(d) == ["a2"]
    d = begin(pipeline(stage("a", dict(barrier), shell("a2"), depends_on=[], failure="abort"),
                       stage("b", shell("b1"), dict(barrier), depends_on=[],
                             failure="rollback")))
    d = finish(d, "b1", False, error="x")
    assert d.execution.status is ExecutionStatus.FAILED
    assert "ended before reaching barrier 'deployed'" in " ".join(
        s.message for s in d.execution.step_states)


# ---- failure strategies -----------------------------------------------------------------

def test_retry_waits_with_backoff_then_applies_the_final_action():
    policy = {"action": "retry", "retries": 2, "interval": "10s", "backoff": 2, "then": "abort"}
    d = begin(pipeline(stage("s", shell("flaky"), failure=policy)))
    d = finish(d, "flaky", False, error="e1")
    assert d.commands == [] and status_of(d, "flaky") is StepStatus.WAITING
    assert d.execution.next_wake == T0 + timedelta(seconds=10)
    assert decide(d.execution, TimerFired(), T0 + timedelta(seconds=9)).commands == []
    d = decide(d.execution, TimerFired(), T0 + timedelta(seconds=10))
    assert [c.attempt for c in d.commands] == [2]
    d = finish(d, "flaky", False, at=T0 + timedelta(seconds=11), error="e2")
    assert d.execution.next_wake == T0 + timedelta(seconds=31)  # 20 s back-off
    d = decide(d.execution, TimerFired(), T0 + timedelta(seconds=31))
    d = finish(d, "flaky", False, at=T0 + timedelta(seconds=32), error="e3")
    assert d.execution.status is ExecutionStatus.FAILED and "e3" in d.execution.reason


def test_step_retries_shorthand_retries_then_inherits_the_workflow_strategy():
    d = begin(pipeline(stage("s", shell("x", retries=1), failure="ignore"), ))
    d = finish(d, "x", False, error="once")
    assert [c.attempt for c in d.commands] == [2]
    d = finish(d, "x", False, error="twice")
    assert d.execution.status is ExecutionStatus.SUCCEEDED  # ignored


def test_manual_intervention_waits_for_a_choice_and_retry_runs_again():
    d = begin(pipeline(stage("s", shell("x"), failure={"action": "manual"})))
    d = finish(d, "x", False, error="bad")
    assert d.events[-1].kind == "StepWaiting" and d.execution.waiting_for_input()
    d = decide(d.execution, Intervene("x", Action.RETRY, "ana", "fixed the config"), T0)
    assert [c.attempt for c in d.commands] == [2]
    d = finish(d, "x", False, error="still bad")
    d = decide(d.execution, Intervene("", Action.IGNORE, "ana", "known issue"), T0)
    assert d.execution.status is ExecutionStatus.SUCCEEDED
    assert "ignore chosen by ana: known issue" in d.execution.step_states[0].message


def test_manual_intervention_times_out_into_its_timeout_action():
    policy = {"action": "manual", "timeout": "1h", "timeout_action": "abort"}
    d = finish(begin(pipeline(stage("s", shell("x"), failure=policy))), "x", False, error="e")
    d = decide(d.execution, TimerFired(), T0 + timedelta(hours=1))
    assert d.execution.status is ExecutionStatus.FAILED
    assert "nobody chose within 3600s" in d.execution.reason


def test_rollback_undoes_completed_phases_newest_first():
    deploy = {"type": "deploy", "service": "svc", "version": "v2", "command": ["run"]}
    doc = pipeline({"name": "s", "workflow": {"failure_strategy": "rollback", "phases": [
        {"name": "p1", "steps": [{**deploy, "name": "d1", "nodes": ["n1"]}]},
        {"name": "p2", "steps": [{**deploy, "name": "d2", "nodes": ["n2"]}, shell("check")]},
    ]}})
    d = finish(finish(begin(doc), "d1"), "d2")
    d = finish(d, "check", False, error="broken")
    assert running(d) == ["rollback-d2"]
    d = finish(d, "rollback-d2")
    assert running(d) == ["rollback-d1"]
    d = finish(d, "rollback-d1")
    assert d.execution.status is ExecutionStatus.FAILED and d.execution.rolled_back


# ---- people ------------------------------------------------------------------------------

def test_approval_waits_for_an_allowed_approver():
    doc = pipeline(stage("s", {"name": "go", "type": "approval", "approvers": ["lead"]},
                         shell("after")))
    d = begin(doc)
    assert d.commands == [] and status_of(d, "go") is StepStatus.WAITING
    with pytest.raises(IllegalAction, match="intern may not approve go"):
        decide(d.execution, Approve("go", True, "intern", "lgtm"), T0)
    d = decide(d.execution, Approve("go", True, "lead", "lgtm"), T0)
    assert running(d) == ["after"]


def test_rejection_fails_the_step_without_retrying():
    doc = pipeline(stage("s", {"name": "go", "type": "approval"}, failure={
        "action": "retry", "retries": 3, "then": "abort"}))
    d = decide(begin(doc).execution, Approve("go", False, "lead", "not today"), T0)
    assert d.execution.status is ExecutionStatus.FAILED
    assert "rejected by lead: not today" in d.execution.reason


def test_approval_times_out():
    doc = pipeline(stage("s", {"name": "go", "type": "approval", "timeout": "2h"}))
    d = decide(begin(doc).execution, TimerFired(), T0 + timedelta(hours=2))
    assert "timed out after 7200s waiting for an approval" in d.execution.reason


def test_wait_step_is_a_durable_timer():
    d = begin(pipeline(stage("s", {"name": "soak", "type": "wait", "duration": "30m"},
                             shell("next"))))
    assert d.execution.next_wake == T0 + timedelta(minutes=30)
    d = decide(d.execution, TimerFired(), T0 + timedelta(minutes=30))
    assert running(d) == ["next"]


def test_abort_stops_running_steps_and_skips_the_rest():
    d = begin(pipeline(stage("a", shell("a1"), depends_on=[]), stage("b", shell("b1"),
                                                                      depends_on=[]),
                       stage("c", shell("c1"))))
    d = decide(d.execution, Abort("ops", "wrong artifact"), T0)
    ex = d.execution
    assert ex.status is ExecutionStatus.ABORTED and ex.reason == "aborted by ops: wrong artifact"
    assert {s.status for s in ex.step_states} == {StepStatus.ABORTED, StepStatus.SKIPPED}
    assert decide(ex, TimerFired(), T0).execution == ex
    with pytest.raises(IllegalAction, match="already finished"):
        decide(ex, Pause("ops", "x"), T0)


def test_pause_holds_new_steps_until_resume():
    d = begin(pipeline(stage("s", shell("one"), shell("two"))))
    d = decide(d.execution, Pause("ops", "freeze"), T0)
    d = finish(d, "one")
    assert d.commands == [] and status_of(d, "two") is StepStatus.PENDING
    with pytest.raises(IllegalAction):
        decide(d.execution, Pause("ops", "again"), T0)
    d = decide(d.execution, Resume("ops", "thaw"), T0)
    assert running(d) == ["two"]


def test_outputs_of_a_step_feed_a_later_step():
    d = begin(pipeline(stage("s", shell("build"),
                             shell("use", env={"TAG": "${steps.build.output.tag}"}))))
    d = finish(d, "build", outputs={"tag": "1.4.2"})
    (cmd,) = d.commands
    assert cmd.params["env"] == {"TAG": "1.4.2"}


def test_a_missing_output_fails_the_step_with_the_reason():
    d = begin(pipeline(stage("s", shell("build"),
                             shell("use", env={"TAG": "${steps.build.output.tag}"}),
                             failure="abort")))
    d = finish(d, "build")
    assert "has not succeeded with an output 'tag'" in d.execution.reason


# ---- properties ---------------------------------------------------------------------------

def _all_events(metrics: str) -> tuple[Decision, list]:
    """Run the demo to the end, returning the final decision and every event consumed."""
    d = demo_start()
    consumed = []
    while d.commands:
        (cmd,) = d.commands
        if cmd.step.type is StepType.VERIFY:
            batch = [TaskFinished(cmd.task_id, cmd.attempt, True, "collected"),
                     VerdictArrived(cmd.task_id, Verdict("metrics", metrics, "m")),
                     VerdictArrived(cmd.task_id, Verdict("logs", "PASS", "l"))]
        else:
            batch = [TaskFinished(cmd.task_id, cmd.attempt, True, "ok")]
        for ev in batch:
            d = decide(d.execution, ev, T0)
        consumed.extend(batch)
    return d, consumed


@settings(max_examples=150, deadline=None)
@given(data=st.data(), metrics=st.sampled_from(["PASS", "FAIL"]))
def test_duplicated_and_reordered_events_give_the_same_final_state(data, metrics):
    expected, events = _all_events(metrics)
    # Deliver every event at least once, in any order, with duplicates, re-delivering until
    # the engine has nothing left to do (a consumer that retries).
    noisy = data.draw(st.lists(st.sampled_from(events), max_size=30)) + events
    d = demo_start()
    dispatched = {c.task_id for c in d.commands}
    pending = list(data.draw(st.permutations(noisy)))
    for _ in range(len(events) + 1):
        for ev in pending:
            d = decide(d.execution, ev, T0)
            for c in d.commands:
                assert c.task_id not in dispatched, "a step attempt was dispatched twice"
                dispatched.add(c.task_id)
    assert d.execution.status == expected.execution.status
    assert d.execution.step_states == expected.execution.step_states
    assert all(s.status.is_done for s in d.execution.step_states), "a step was lost"


@settings(max_examples=100, deadline=None)
@given(outcomes=st.lists(st.booleans(), min_size=4, max_size=4),
       strategies=st.lists(st.sampled_from(["abort", "rollback", "ignore"]), min_size=2,
                           max_size=2))
def test_every_execution_ends_with_every_step_done(outcomes, strategies):
    deploy = {"type": "deploy", "service": "svc", "version": "v", "nodes": ["n"],
              "command": ["x"]}
    d = begin(pipeline(stage("a", {**deploy, "name": "a1"}, shell("a2"), depends_on=[],
                             failure=strategies[0]),
                       stage("b", {**deploy, "name": "b1"}, shell("b2"), depends_on=[],
                             failure=strategies[1])))
    results = iter(outcomes)
    for _ in range(20):
        if not d.commands:
            break
        cmd = d.commands[0]
        rest = d.commands[1:]
        ok = next(results, True) if not cmd.step.rollback else True
        d = decide(d.execution, TaskFinished(cmd.task_id, cmd.attempt, ok, error="e"), T0)
        d = Decision(d.execution, rest + d.commands, d.events)
    ex = d.execution
    assert ex.status.is_terminal
    assert all(s.status.is_done for s in ex.step_states)
    assert (ex.status is ExecutionStatus.SUCCEEDED) == all(
        s.status is not StageStatus.FAILED and s.status is not StageStatus.SKIPPED
        for s in ex.stage_states)


def test_infrastructure_definition_feeds_variables():
    doc = pipeline(stage("s", shell("show", env={"NS": "${infra.namespace}"})),
                   infrastructure={"kind": "kubernetes", "cluster": "eu-1", "namespace": "shop"})
    (cmd,) = begin(doc).commands
    assert cmd.params["env"] == {"NS": "shop"}


@pytest.mark.parametrize(("doc", "path", "message"), [
    (pipeline(stage("s", {"name": "x", "type": "teleport"})),
     "stages[0].workflow.phases[0].steps[0].type", "must be one of"),
    (pipeline(stage("a", shell("x"), depends_on=["nope"])), "stages[0].depends_on",
     "unknown stage 'nope'"),
    (pipeline(stage("a", shell("x"), depends_on=["b"]), stage("b", shell("y"),
                                                              depends_on=["a"])),
     "stages[0].depends_on", "cycle"),
    (pipeline(stage("a", shell("x"), failure={"action": "explode"})),
     "stages[0].workflow.failure_strategy.action", "must be one of"),
    (pipeline(stage("a", {"name": "w", "type": "wait"})),
     "stages[0].workflow.phases[0].steps[0].duration", "is required"),
    (pipeline(stage("a", shell("x", timeout="soon"))),
     "stages[0].workflow.phases[0].steps[0].timeout", "must be a duration"),
    (pipeline(stage("a", shell("x")), infrastructure={"kind": "mainframe"}),
     "infrastructure.kind", "must be kubernetes or hosts"),
])
def test_a_bad_definition_names_the_path_of_the_bad_field(doc, path, message):
    from vigil_orchestrator.domain import PipelineInvalid

    with pytest.raises(PipelineInvalid) as err:
        parse_pipeline(doc)
    assert any(p == path and message in m for p, m in err.value.problems), err.value.problems
