"""The execution state machine: pure, deterministic, no I/O.

``start`` creates an execution; ``decide`` advances it by one event. Time comes in as an
argument; the same (execution, event, now) always gives the same Decision. A duplicate or
stale event (a result for an attempt no longer running, a verdict already recorded, a timer
with nothing due) changes nothing, which is what makes redelivery harmless. A person's
action that the state does not allow raises IllegalAction saying why.

Stages start when the stages they depend on succeeded, so independent stages run in
parallel; inside a stage, steps run one after another (phase by phase). A failed step follows
its failure policy (failure.py): retry after a back-off, ignore, abort the execution, roll back
the workflow's completed phases newest first, or wait for a person's choice.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

from vigil_orchestrator.domain.failure import Action
from vigil_orchestrator.domain.pipeline import parse_duration
from vigil_orchestrator.domain.plan import VAR, Plan, rollback_steps
from vigil_orchestrator.domain.state import (
    Abort,
    Approve,
    Decision,
    DispatchTask,
    Event,
    Execution,
    ExecutionStatus,
    IllegalAction,
    Intervene,
    Lifecycle,
    Pause,
    Resume,
    StageState,
    StageStatus,
    StepState,
    StepStatus,
    TaskFinished,
    TimerFired,
    VerdictArrived,
    Waiting,
)
from vigil_orchestrator.domain.steps import StepType

PASS = "PASS"


def start(execution_id: str, account_id: str, pipeline: str, version: str,
          inputs: dict[str, str], plan: Plan, now: datetime, *, application: str = "",
          service: str = "", environment: str = "") -> Decision:
    """A new execution with its first stages and steps started."""
    ex = Execution(
        id=execution_id, account_id=account_id, pipeline=pipeline, version=version,
        inputs=dict(inputs), created_at=now, stages=list(plan.stages), steps=list(plan.steps),
        custom_rollbacks=list(plan.custom_rollbacks),
        step_states=[StepState() for _ in plan.steps],
        stage_states=[StageState() for _ in plan.stages],
        application=application, service=service, environment=environment)
    d = Decision(ex, events=[Lifecycle("ExecutionStarted", f"{execution_id}/started")])
    _advance(d, now)
    return d


def decide(ex: Execution, event: Event, now: datetime) -> Decision:
    """Advance ``ex`` by one event; the input execution is never modified."""
    if ex.status.is_terminal:
        if isinstance(event, Approve | Intervene | Abort | Pause | Resume):
            raise IllegalAction(f"execution already finished ({ex.status.value})")
        return Decision(ex)
    d = Decision(copy.deepcopy(ex))
    handler = _HANDLERS[type(event)]
    handler(d, event, now)
    _advance(d, now)
    return d


# ---- event handlers ---------------------------------------------------------------------

def _on_task(d: Decision, ev: TaskFinished, now: datetime) -> None:
    ex = d.execution
    for i, st in enumerate(ex.step_states):
        if (st.status is StepStatus.RUNNING and st.waiting in (Waiting.TASK, Waiting.VERDICTS)
                and not st.task_done and st.attempt == ev.attempt
                and st.task_id(ex.id, ex.steps[i]) == ev.task_id):
            break
    else:
        return
    if not ev.success:
        _fail(d, i, ev.error or "task failed", now)
        return
    st.outputs = dict(ev.outputs)
    if ex.steps[i].type is StepType.VERIFY:
        st.task_done = True
        st.waiting = Waiting.VERDICTS
        _maybe_finish_verify(d, i, now)
    else:
        _succeed(d, i, ev.summary or "done", now)


def _on_verdict(d: Decision, ev: VerdictArrived, now: datetime) -> None:
    ex = d.execution
    for i, st in enumerate(ex.step_states):
        step = ex.steps[i]
        if (st.status is StepStatus.RUNNING and step.type is StepType.VERIFY
                and st.task_id(ex.id, step) == ev.verification_id):
            break
    else:
        return
    if any(v.analysis == ev.verdict.analysis for v in st.verdicts):
        return
    if ev.verdict.analysis not in _analyses(step.params):
        return
    st.verdicts = sorted([*st.verdicts, ev.verdict], key=lambda v: v.analysis)
    _maybe_finish_verify(d, i, now)


def _on_timer(d: Decision, _ev: TimerFired, now: datetime) -> None:
    ex = d.execution
    for i, st in enumerate(ex.step_states):
        if not st.status.is_active:
            continue
        if st.wake_at is not None and st.wake_at <= now:
            if st.waiting is Waiting.TIMER:
                _succeed(d, i, f"waited {ex.steps[i].params.get('duration')}", now)
            elif st.waiting is Waiting.RETRY:
                _start_step(d, i, now)
        elif st.deadline is not None and st.deadline <= now:
            if st.waiting is Waiting.INTERVENTION:
                policy = ex.steps[i].failure
                _apply(d, i, policy.timeout_action, f"{st.message}; nobody chose within "
                       f"{policy.timeout_seconds:g}s, so: {policy.timeout_action.value}", now)
            else:
                waited = {Waiting.VERDICTS: "verdicts", Waiting.APPROVAL: "an approval",
                          Waiting.BARRIER: "the other stages at the barrier"}.get(
                    st.waiting, "the task result")
                _fail(d, i, f"timed out after {ex.steps[i].timeout_seconds:g}s waiting for "
                      f"{waited}", now)


def _find_waiting(ex: Execution, ref: str, waiting: Waiting) -> int:
    matches = [i for i, st in enumerate(ex.step_states)
               if st.status is StepStatus.WAITING and st.waiting is waiting
               and (not ref or ref in (ex.steps[i].name, ex.steps[i].path))]
    if not matches:
        what = "an approval" if waiting is Waiting.APPROVAL else "a manual intervention"
        target = f"step {ref!r}" if ref else "no step"
        raise IllegalAction(f"{target} is not waiting for {what}" if ref
                            else f"no step is waiting for {what}")
    if len(matches) > 1:
        raise IllegalAction("several steps are waiting: name one of "
                            + ", ".join(ex.steps[i].name for i in matches))
    return matches[0]


def _on_approve(d: Decision, ev: Approve, now: datetime) -> None:
    ex = d.execution
    i = _find_waiting(ex, ev.step, Waiting.APPROVAL)
    approvers = ex.steps[i].params.get("approvers") or []
    if approvers and ev.actor not in approvers:
        raise IllegalAction(f"{ev.actor} may not approve {ex.steps[i].name}: approvers are "
                            + ", ".join(approvers))
    if ev.approved:
        _succeed(d, i, f"approved by {ev.actor}: {ev.reason}", now)
    else:
        _fail(d, i, f"rejected by {ev.actor}: {ev.reason}", now, no_retry=True)


def _on_intervene(d: Decision, ev: Intervene, now: datetime) -> None:
    ex = d.execution
    i = _find_waiting(ex, ev.step, Waiting.INTERVENTION)
    st = ex.step_states[i]
    if ev.action is Action.MANUAL:
        raise IllegalAction("choose one of retry, abort, rollback, ignore")
    note = f"{ev.action.value} chosen by {ev.actor}: {ev.reason}"
    if ev.action is Action.RETRY:
        st.message = f"{st.message}; {note}"
        _start_step(d, i, now)
    else:
        _apply(d, i, ev.action, f"{st.message}; {note}", now)


def _on_abort(d: Decision, ev: Abort, now: datetime) -> None:
    ex = d.execution
    ex.status = ExecutionStatus.ABORTED
    ex.reason = f"aborted by {ev.actor}: {ev.reason}"
    _stop_everything(d, ex.reason, now)


def _on_pause(d: Decision, ev: Pause, now: datetime) -> None:
    ex = d.execution
    if ex.paused:
        raise IllegalAction("execution is already paused")
    ex.paused, ex.controls = True, ex.controls + 1
    d.events.append(Lifecycle("ExecutionPaused", f"{ex.id}/paused/{ex.controls}",
                              message=f"paused by {ev.actor}: {ev.reason}"))


def _on_resume(d: Decision, ev: Resume, now: datetime) -> None:
    ex = d.execution
    if not ex.paused:
        raise IllegalAction("execution is not paused")
    ex.paused, ex.controls = False, ex.controls + 1
    d.events.append(Lifecycle("ExecutionResumed", f"{ex.id}/resumed/{ex.controls}",
                              message=f"resumed by {ev.actor}: {ev.reason}"))


_HANDLERS = {TaskFinished: _on_task, VerdictArrived: _on_verdict, TimerFired: _on_timer,
             Approve: _on_approve, Intervene: _on_intervene, Abort: _on_abort,
             Pause: _on_pause, Resume: _on_resume}


# ---- steps ------------------------------------------------------------------------------

def _analyses(params: dict) -> list[str]:
    return list(params.get("analyses") or ["metrics", "logs"])


def _maybe_finish_verify(d: Decision, i: int, now: datetime) -> None:
    st = d.execution.step_states[i]
    if not st.task_done or {v.analysis for v in st.verdicts} != set(_analyses(st.params)):
        return
    bad = [v for v in st.verdicts if v.verdict != PASS]
    if bad:
        _fail(d, i, "; ".join(
            f"{v.analysis} {v.verdict}: {v.reason.removeprefix(v.verdict + ': ')}"
            for v in bad), now)
    else:
        _succeed(d, i, "; ".join(f"{v.analysis} PASS" for v in st.verdicts), now)


def _resolve_outputs(ex: Execution, i: int) -> tuple[dict, str | None]:
    """The step's params with ${steps.<name>.output.<key>} filled in, or a problem."""
    step = ex.steps[i]
    problem: list[str] = []

    def lookup(name: str, key: str) -> str | None:
        same_stage = [j for j, s in enumerate(ex.steps) if s.name == name
                      and s.stage_index == step.stage_index]
        candidates = same_stage or [j for j, s in enumerate(ex.steps) if s.name == name]
        for j in candidates:
            st = ex.step_states[j]
            if st.status is StepStatus.SUCCEEDED and key in st.outputs:
                return st.outputs[key]
        return None

    def walk(value):  # noqa: ANN001, ANN202 - JSON-like values
        if isinstance(value, str):
            def sub(m):  # noqa: ANN001, ANN202
                parts = m.group(1).split(".")
                if len(parts) == 4 and parts[0] == "steps":
                    found = lookup(parts[1], parts[3])
                    if found is None:
                        problem.append(f"{m.group(0)} has no value: step {parts[1]!r} has not "
                                       f"succeeded with an output {parts[3]!r}")
                        return m.group(0)
                    return found
                return m.group(0)
            return VAR.sub(sub, value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    params = walk(step.params)
    return params, (problem[0] if problem else None)


def _start_step(d: Decision, i: int, now: datetime) -> None:
    ex = d.execution
    step, st = ex.steps[i], ex.step_states[i]
    first = st.attempt == 0
    st.attempt += 1
    st.status, st.task_done, st.verdicts, st.wake_at = StepStatus.RUNNING, False, [], None
    st.started_at = st.started_at or now
    st.deadline = now + timedelta(seconds=step.timeout_seconds)
    d.events.append(Lifecycle("StepStarted", f"{ex.id}/{step.path}/{st.attempt}/started", step,
                              attempt=st.attempt,
                              message="" if first else f"attempt {st.attempt}"))
    params, problem = _resolve_outputs(ex, i)
    st.params = params
    if problem:
        _fail(d, i, problem, now, no_retry=True)
        return
    if step.type.runs_on_delegate:
        st.waiting = Waiting.TASK
        d.commands.append(DispatchTask(st.task_id(ex.id, step), st.attempt, step, params,
                                       step.timeout_seconds))
    elif step.type is StepType.WAIT:
        st.waiting = Waiting.TIMER
        st.wake_at = now + timedelta(seconds=parse_duration(params.get("duration")) or 0.0)
    elif step.type is StepType.APPROVAL:
        st.status, st.waiting = StepStatus.WAITING, Waiting.APPROVAL
        d.events.append(Lifecycle("StepWaiting", f"{ex.id}/{step.path}/{st.attempt}/waiting",
                                  step, message=params.get("message") or "waiting for approval",
                                  attempt=st.attempt))
    elif step.type is StepType.BARRIER:
        st.status, st.waiting = StepStatus.WAITING, Waiting.BARRIER


def _succeed(d: Decision, i: int, message: str, now: datetime) -> None:
    ex = d.execution
    st = ex.step_states[i]
    st.status, st.message, st.finished_at = StepStatus.SUCCEEDED, message, now
    st.deadline = st.wake_at = st.waiting = None
    d.events.append(Lifecycle("StepSucceeded", f"{ex.id}/{ex.steps[i].path}/{st.attempt}/ok",
                              ex.steps[i], message=message, attempt=st.attempt))


def _fail(d: Decision, i: int, reason: str, now: datetime, no_retry: bool = False) -> None:
    """A step attempt failed: apply its failure policy."""
    ex = d.execution
    step, st = ex.steps[i], ex.step_states[i]
    action = step.failure.after(st.attempt)
    if no_retry and action is Action.RETRY:
        action = step.failure.then
    if step.rollback:
        action = Action.ABORT
    if action is Action.RETRY:
        delay = step.failure.retry_delay(st.attempt)
        st.status, st.waiting = StepStatus.WAITING, Waiting.RETRY
        st.wake_at, st.deadline = now + timedelta(seconds=delay), None
        st.message = f"attempt {st.attempt} failed: {reason}; retrying in {delay:g}s"
        d.events.append(Lifecycle("StepRetrying", f"{ex.id}/{step.path}/{st.attempt}/retrying",
                                  step, message=st.message, attempt=st.attempt))
        if delay <= 0:
            _start_step(d, i, now)
        return
    if action is Action.MANUAL:
        policy = step.failure
        st.status, st.waiting, st.wake_at = StepStatus.WAITING, Waiting.INTERVENTION, None
        st.deadline = (now + timedelta(seconds=policy.timeout_seconds)
                       if policy.timeout_seconds else None)
        st.message = f"failed: {reason}"
        d.events.append(Lifecycle(
            "StepWaiting", f"{ex.id}/{step.path}/{st.attempt}/intervention", step,
            message=f"{st.message}; waiting for a manual choice (retry, abort, rollback, "
                    f"ignore)", attempt=st.attempt))
        return
    _apply(d, i, action, reason, now)


def _apply(d: Decision, i: int, action: Action, reason: str, now: datetime) -> None:
    """Record the step as failed and carry out a final action: abort, rollback or ignore."""
    ex = d.execution
    step, st = ex.steps[i], ex.step_states[i]
    st.status, st.message, st.finished_at = StepStatus.FAILED, reason, now
    st.deadline = st.wake_at = st.waiting = None
    st.ignored = action is Action.IGNORE
    d.events.append(Lifecycle("StepFailed", f"{ex.id}/{step.path}/{st.attempt}/failed", step,
                              message=reason, attempt=st.attempt))
    if action is Action.IGNORE:
        return
    stage = ex.stage_states[step.stage_index]
    if step.rollback:
        stage.reason = f"{stage.reason}; rollback step {step.name} failed: {reason}"
        stage.rolling_back = False
        _skip_pending(ex, step.stage_index)
        return
    stage.reason = f"step {step.stage}/{step.phase}/{step.name} failed: {reason}"
    _skip_pending(ex, step.stage_index)
    if action is Action.ABORT:
        ex.halting = True
        ex.reason = ex.reason or stage.reason
        _stop_everything(d, f"stopped: {stage.reason}", now, keep_stage=step.stage_index)
        return
    done = [k for k, s in enumerate(ex.step_states) if s.status is StepStatus.SUCCEEDED]
    extra = rollback_steps(tuple(ex.steps), tuple(ex.custom_rollbacks), done, step.stage_index)
    if extra:
        ex.steps.extend(extra)
        ex.step_states.extend(StepState() for _ in extra)
        stage.rolling_back = True


def _skip_pending(ex: Execution, stage_index: int) -> None:
    for k, s in enumerate(ex.step_states):
        if ex.steps[k].stage_index == stage_index and s.status is StepStatus.PENDING:
            s.status = StepStatus.SKIPPED


def _stop_everything(d: Decision, reason: str, now: datetime, keep_stage: int = -1) -> None:
    """Abort every active step (except in ``keep_stage``) and skip what has not started."""
    ex = d.execution
    for k, s in enumerate(ex.step_states):
        if ex.steps[k].stage_index == keep_stage:
            continue
        if s.status.is_active:
            s.status, s.message, s.finished_at = StepStatus.ABORTED, reason, now
            s.deadline = s.wake_at = s.waiting = None
            d.events.append(Lifecycle("StepAborted",
                                      f"{ex.id}/{ex.steps[k].path}/{s.attempt}/aborted",
                                      ex.steps[k], message=reason, attempt=s.attempt))
        elif s.status is StepStatus.PENDING:
            s.status = StepStatus.SKIPPED
    for k, stage in enumerate(ex.stage_states):
        if k != keep_stage and not stage.status.is_done:
            started = stage.status is StageStatus.RUNNING
            stage.status = StageStatus.ABORTED if started else StageStatus.SKIPPED
            stage.finished_at, stage.reason = now, reason
            d.events.append(Lifecycle("StageFinished", f"{ex.id}/stage/{ex.stages[k].name}/done",
                                      stage=ex.stages[k].name, message=reason,
                                      status=stage.status.value))


# ---- advancing --------------------------------------------------------------------------

def _advance(d: Decision, now: datetime) -> None:
    """Start what can start, finish what is done; repeat until nothing changes."""
    ex = d.execution
    if ex.status.is_terminal and ex.finished_at is not None:
        return
    changed = True
    while changed:
        changed = _barriers(d, now)
        for k, stage in enumerate(ex.stage_states):
            if stage.status is StageStatus.RUNNING:
                changed |= _advance_stage(d, k, now)
            elif stage.status is StageStatus.PENDING:
                changed |= _maybe_start_stage(d, k, now)
    if all(s.status.is_done for s in ex.stage_states):
        _finish(d, now)


def _advance_stage(d: Decision, k: int, now: datetime) -> bool:
    ex = d.execution
    mine = [i for i, s in enumerate(ex.steps) if s.stage_index == k]
    if any(ex.step_states[i].status.is_active for i in mine):
        return False
    pending = [i for i in mine if ex.step_states[i].status is StepStatus.PENDING]
    if pending:
        if ex.paused:
            return False
        _start_step(d, pending[0], now)
        return True
    stage = ex.stage_states[k]
    if stage.rolling_back:
        stage.rolling_back, stage.rolled_back = False, True
        stage.reason = f"{stage.reason}; rolled back"
        ex.rolled_back = True
    stage.status = StageStatus.FAILED if stage.reason else StageStatus.SUCCEEDED
    stage.finished_at = now
    d.events.append(Lifecycle("StageFinished", f"{ex.id}/stage/{ex.stages[k].name}/done",
                              stage=ex.stages[k].name, message=stage.reason,
                              status=stage.status.value))
    return True


def _maybe_start_stage(d: Decision, k: int, now: datetime) -> bool:
    ex = d.execution
    by_name = {s.name: ex.stage_states[j] for j, s in enumerate(ex.stages)}
    deps = [by_name[n] for n in ex.stages[k].depends_on]
    stage = ex.stage_states[k]
    blocked = [n for n in ex.stages[k].depends_on if by_name[n].status.is_done
               and by_name[n].status is not StageStatus.SUCCEEDED]
    if blocked or ex.halting:
        stage.status, stage.finished_at = StageStatus.SKIPPED, now
        stage.reason = (f"skipped: {', '.join(blocked)} did not succeed" if blocked
                        else "skipped: the execution is stopping")
        _skip_pending(ex, k)
        d.events.append(Lifecycle("StageFinished", f"{ex.id}/stage/{ex.stages[k].name}/done",
                                  stage=ex.stages[k].name, message=stage.reason,
                                  status=stage.status.value))
        return True
    if ex.paused or not all(s.status is StageStatus.SUCCEEDED for s in deps):
        return False
    stage.status, stage.started_at = StageStatus.RUNNING, now
    d.events.append(Lifecycle("StageStarted", f"{ex.id}/stage/{ex.stages[k].name}/started",
                              stage=ex.stages[k].name))
    return True


def _barriers(d: Decision, now: datetime) -> bool:
    """Release (or break) barriers once every stage holding one has reached it (or ended)."""
    ex = d.execution
    waiting = {ex.steps[i].params["barrier"] for i, s in enumerate(ex.step_states)
               if s.waiting is Waiting.BARRIER and s.status is StepStatus.WAITING}
    changed = False
    for barrier in sorted(waiting):
        holders = [i for i, s in enumerate(ex.steps) if s.type is StepType.BARRIER
                   and not s.rollback and s.params.get("barrier") == barrier]
        broken = [ex.steps[i].stage for i in holders
                  if ex.stage_states[ex.steps[i].stage_index].status.is_done
                  and ex.step_states[i].status is not StepStatus.SUCCEEDED]
        reached = all(ex.step_states[i].status is StepStatus.SUCCEEDED
                      or ex.step_states[i].waiting is Waiting.BARRIER for i in holders)
        if not broken and not reached:
            continue
        for i in holders:
            if ex.step_states[i].waiting is Waiting.BARRIER:
                changed = True
                if broken:
                    _fail(d, i, f"stage {', '.join(broken)} ended before reaching barrier "
                                f"{barrier!r}", now, no_retry=True)
                else:
                    _succeed(d, i, f"all {len(holders)} stages reached barrier {barrier!r}",
                             now)
    return changed


def _finish(d: Decision, now: datetime) -> None:
    ex = d.execution
    if ex.finished_at is not None:
        return
    if ex.status is not ExecutionStatus.ABORTED:
        failed = [ex.stages[k].name for k, s in enumerate(ex.stage_states)
                  if s.status is not StageStatus.SUCCEEDED]
        if failed:
            ex.status = ExecutionStatus.FAILED
            ex.reason = ex.reason or next(
                (s.reason for s in ex.stage_states if s.status is StageStatus.FAILED),
                f"stages did not succeed: {', '.join(failed)}")
            if ex.rolled_back and "rolled back" not in ex.reason:
                ex.reason = f"{ex.reason}; rolled back"
        else:
            ex.status = ExecutionStatus.SUCCEEDED
    ex.finished_at = now
    d.events.append(Lifecycle("ExecutionFinished", f"{ex.id}/finished", message=ex.reason,
                              status=ex.status.value))

