"""The execution state machine, driven through the demo pipeline and its failure strategies."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil_orchestrator.domain import (
    Decision,
    ExecutionStatus,
    StepStatus,
    StepType,
    TaskFinished,
    Verdict,
    VerdictArrived,
    decide,
    parse_pipeline,
    plan,
    start,
)
from vigil_orchestrator.domain.execution import DeadlineCheck

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DEMO = Path(__file__).parents[2] / "infra/demo/pipelines/demo-canary.yaml"


def demo_start(**overrides: str) -> Decision:
    spec = parse_pipeline(yaml.safe_load(DEMO.read_text()))
    return start("ex-1", "acme", spec.name, "v1", overrides, plan(spec, overrides, "ex-1"), T0)


def running_task(d: Decision) -> tuple[str, int]:
    (cmd,) = d.commands
    return cmd.task_id, cmd.attempt


def ok(d: Decision) -> Decision:
    task_id, attempt = running_task(d)
    return decide(d.execution, TaskFinished(task_id, attempt, True, "deployed"), T0)


def verdicts(d: Decision, metrics: str, logs: str) -> Decision:
    verification_id, attempt = running_task(d)
    ex = decide(d.execution, TaskFinished(verification_id, attempt, True, "collected"), T0)
    ex = decide(ex.execution, VerdictArrived(verification_id, Verdict("metrics", metrics, "m")), T0)
    return decide(ex.execution, VerdictArrived(verification_id, Verdict("logs", logs, "l")), T0)


def test_start_dispatches_the_first_deploy_step():
    d = demo_start()
    assert [e.kind for e in d.events] == ["ExecutionStarted", "StepStarted"]
    (cmd,) = d.commands
    assert cmd.step.type is StepType.DEPLOY and cmd.step.params["nodes"] == ["node-1", "node-2"]
    assert d.execution.states[0].status is StepStatus.RUNNING


def test_canary_with_failing_verification_rolls_back_and_fails_with_the_reasons():
    d = verdicts(ok(ok(demo_start())), "FAIL", "FAIL")
    kinds = [e.kind for e in d.events]
    assert kinds[:2] == ["StepFailed", "StepStarted"]
    (rollback,) = d.commands
    assert rollback.step.type is StepType.ROLLBACK and rollback.step.params["nodes"] == ["node-3"]
    d = ok(d)
    ex = d.execution
    assert ex.status is ExecutionStatus.FAILED and ex.rolled_back
    assert "verify-canary" in ex.reason and "metrics FAIL: m" in ex.reason
    assert d.events[-1].kind == "ExecutionFinished"


def test_passing_verification_succeeds_without_rollback():
    d = verdicts(ok(ok(demo_start())), "PASS", "PASS")
    assert d.execution.status is ExecutionStatus.SUCCEEDED and not d.execution.rolled_back
    assert d.commands == []


def test_no_data_is_never_a_silent_pass():
    d = verdicts(ok(ok(demo_start())), "PASS", "NO_DATA")
    assert d.execution.states[2].status is StepStatus.FAILED


def test_failed_primary_deploy_aborts_and_skips_the_rest():
    d = demo_start()
    task_id, attempt = running_task(d)
    d = decide(d.execution, TaskFinished(task_id, attempt, False, error="node-1 not ready"), T0)
    assert d.execution.status is ExecutionStatus.FAILED and not d.execution.rolled_back
    assert [s.status for s in d.execution.states[1:]] == [StepStatus.SKIPPED] * 2
    assert "node-1 not ready" in d.execution.reason


def test_stale_result_of_an_old_attempt_changes_nothing():
    d = demo_start()
    task_id, _ = running_task(d)
    after = decide(d.execution, TaskFinished(task_id, 7, True), T0)
    assert after.execution == d.execution and after.commands == [] and after.events == []


def test_deadline_fails_a_step_that_never_reports():
    d = demo_start()
    late = T0 + timedelta(seconds=61)
    assert decide(d.execution, DeadlineCheck(), T0).execution == d.execution
    d = decide(d.execution, DeadlineCheck(), late)
    assert d.execution.status is ExecutionStatus.FAILED
    assert "timed out after 60s" in d.execution.reason


def _all_events(metrics: str) -> tuple[Decision, list]:
    """Run the demo to the end, returning the start and every event the engine consumed."""
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


@settings(max_examples=200, deadline=None)
@given(data=st.data(), metrics=st.sampled_from(["PASS", "FAIL"]))
def test_duplicated_and_reordered_events_give_the_same_final_state(data, metrics):
    expected, events = _all_events(metrics)
    # Deliver every event of the run at least once, in any order, with duplicates, and keep
    # re-delivering until the engine has nothing left to do (a consumer that retries).
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
    assert d.execution.states == expected.execution.states
