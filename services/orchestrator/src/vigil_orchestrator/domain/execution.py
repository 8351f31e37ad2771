"""The execution state machine: pure, deterministic, no I/O.

``start`` creates an execution; ``decide`` advances it by one event. Time and ids come in as
arguments; the same (execution, event, now) always gives the same Decision. A duplicate or
stale event (a result for an attempt that is no longer running, a verdict already recorded)
returns the execution unchanged with nothing to do, which is what makes redelivery harmless.

Steps run one after another in plan order. A failed step is retried while it has retries
left; then its workflow's failure strategy applies: IGNORE carries on, ABORT skips the rest,
ROLLBACK skips the rest and appends rollback steps for the workflow's deployed phases,
newest first. The execution ends FAILED with the failing step's reason once they finish.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum

from vigil_orchestrator.domain.pipeline import FailureStrategy, StepType
from vigil_orchestrator.domain.plan import PlannedStep, rollback_steps, task_id_for

PASS = "PASS"


class ExecutionStatus(Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self is not ExecutionStatus.RUNNING


class StepStatus(Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"

    @property
    def is_done(self) -> bool:
        return self in (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED)


@dataclass(frozen=True)
class Verdict:
    """One analyzer's verdict on a verify step's verification."""

    analysis: str  # "metrics" | "logs"
    verdict: str  # PASS | FAIL | INCONCLUSIVE | NO_DATA | ERROR
    reason: str


@dataclass(frozen=True)
class StepState:
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline: datetime | None = None
    task_done: bool = False  # verify: the collection task finished
    verdicts: tuple[Verdict, ...] = ()

    def task_id(self, execution_id: str, step: PlannedStep) -> str:
        return task_id_for(execution_id, step.path, self.attempt)


@dataclass(frozen=True)
class Execution:
    id: str
    account_id: str
    pipeline: str
    version: str  # Vigil version that runs it to the end
    inputs: dict[str, str]
    steps: tuple[PlannedStep, ...]
    states: tuple[StepState, ...]
    created_at: datetime
    status: ExecutionStatus = ExecutionStatus.RUNNING
    reason: str = ""
    rolled_back: bool = False
    rolling_back: bool = False
    finished_at: datetime | None = None

    @property
    def next_deadline(self) -> datetime | None:
        running = [s.deadline for s in self.states if s.status is StepStatus.RUNNING and s.deadline]
        return min(running) if running else None


# ---- inputs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskFinished:
    task_id: str
    attempt: int
    success: bool
    summary: str = ""
    error: str = ""


@dataclass(frozen=True)
class VerdictArrived:
    verification_id: str
    verdict: Verdict


@dataclass(frozen=True)
class DeadlineCheck:
    """Sent by the durable timer sweep: fail running steps whose deadline has passed."""


Event = TaskFinished | VerdictArrived | DeadlineCheck


# ---- outputs ----------------------------------------------------------------------------

@dataclass(frozen=True)
class DispatchTask:
    task_id: str
    attempt: int
    step: PlannedStep
    timeout_seconds: float


@dataclass(frozen=True)
class Lifecycle:
    """A public lifecycle event: kind is ExecutionStarted, StepStarted, StepSucceeded,
    StepFailed or ExecutionFinished; ``step`` is set for step events."""

    kind: str
    event_id: str
    step: PlannedStep | None = None
    message: str = ""


@dataclass(frozen=True)
class Decision:
    execution: Execution
    commands: list[DispatchTask] = field(default_factory=list)
    events: list[Lifecycle] = field(default_factory=list)


def start(execution_id: str, account_id: str, pipeline: str, version: str,
          inputs: dict[str, str], steps: tuple[PlannedStep, ...], now: datetime) -> Decision:
    """A new execution, with its first step started."""
    ex = Execution(execution_id, account_id, pipeline, version, dict(inputs), steps,
                   tuple(StepState() for _ in steps), created_at=now)
    d = Decision(ex, events=[Lifecycle("ExecutionStarted", f"{execution_id}/started")])
    return _advance(d, now)


def decide(ex: Execution, event: Event, now: datetime) -> Decision:
    """Advance ``ex`` by one event. Stale and duplicate events change nothing."""
    if ex.status.is_terminal:
        return Decision(ex)
    if isinstance(event, TaskFinished):
        return _on_task(ex, event, now)
    if isinstance(event, VerdictArrived):
        return _on_verdict(ex, event, now)
    return _on_deadline(ex, now)


def _running(ex: Execution) -> int | None:
    for i, s in enumerate(ex.states):
        if s.status is StepStatus.RUNNING:
            return i
    return None


def _on_task(ex: Execution, ev: TaskFinished, now: datetime) -> Decision:
    i = _running(ex)
    if i is None:
        return Decision(ex)
    step, st = ex.steps[i], ex.states[i]
    if ev.attempt != st.attempt or ev.task_id != st.task_id(ex.id, step) or st.task_done:
        return Decision(ex)
    if not ev.success:
        return _fail_step(Decision(ex), i, ev.error or "task failed", now)
    if step.type is StepType.VERIFY:
        d = Decision(_set(ex, i, replace(st, task_done=True)))
        return _maybe_finish_verify(d, i, now)
    return _succeed_step(Decision(ex), i, ev.summary or "done", now)


def _on_verdict(ex: Execution, ev: VerdictArrived, now: datetime) -> Decision:
    i = _running(ex)
    if i is None:
        return Decision(ex)
    step, st = ex.steps[i], ex.states[i]
    if step.type is not StepType.VERIFY or ev.verification_id != st.task_id(ex.id, step):
        return Decision(ex)
    if any(v.analysis == ev.verdict.analysis for v in st.verdicts):
        return Decision(ex)
    if ev.verdict.analysis not in _analyses(step):
        return Decision(ex)
    st = replace(st, verdicts=tuple(sorted((*st.verdicts, ev.verdict), key=lambda v: v.analysis)))
    return _maybe_finish_verify(Decision(_set(ex, i, st)), i, now)


def _on_deadline(ex: Execution, now: datetime) -> Decision:
    i = _running(ex)
    if i is None:
        return Decision(ex)
    st = ex.states[i]
    if st.deadline is None or st.deadline > now:
        return Decision(ex)
    waited = "verdicts" if st.task_done else "the task result"
    reason = f"timed out after {ex.steps[i].timeout_seconds:g}s waiting for {waited}"
    return _fail_step(Decision(ex), i, reason, now)


def _analyses(step: PlannedStep) -> list[str]:
    return list(step.params.get("analyses") or ["metrics", "logs"])


def _maybe_finish_verify(d: Decision, i: int, now: datetime) -> Decision:
    ex = d.execution
    step, st = ex.steps[i], ex.states[i]
    if not st.task_done or {v.analysis for v in st.verdicts} != set(_analyses(step)):
        return d
    bad = [v for v in st.verdicts if v.verdict != PASS]
    if bad:
        reason = "; ".join(f"{v.analysis} {v.verdict}: {v.reason.removeprefix(v.verdict + ': ')}"
                           for v in bad)
        return _fail_step(d, i, reason, now)
    return _succeed_step(d, i, "; ".join(f"{v.analysis} PASS" for v in st.verdicts), now)


def _succeed_step(d: Decision, i: int, message: str, now: datetime) -> Decision:
    ex = d.execution
    st = replace(ex.states[i], status=StepStatus.SUCCEEDED, message=message, finished_at=now,
                 deadline=None)
    ev = Lifecycle("StepSucceeded", f"{ex.id}/{ex.steps[i].path}/{st.attempt}/ok",
                   ex.steps[i], message)
    return _advance(Decision(_set(ex, i, st), d.commands, [*d.events, ev]), now)


def _fail_step(d: Decision, i: int, reason: str, now: datetime) -> Decision:
    ex = d.execution
    step, st = ex.steps[i], ex.states[i]
    if st.attempt <= step.retries:  # retries left: run the step again as a new attempt
        retry = replace(st, attempt=st.attempt + 1, task_done=False, verdicts=(),
                        deadline=now + timedelta(seconds=step.timeout_seconds),
                        message=f"retrying after: {reason}")
        ex = _set(ex, i, retry)
        cmd = DispatchTask(retry.task_id(ex.id, step), retry.attempt, step, step.timeout_seconds)
        return Decision(ex, [*d.commands, cmd], d.events)
    st = replace(st, status=StepStatus.FAILED, message=reason, finished_at=now, deadline=None)
    ex = _set(ex, i, st)
    events = [*d.events, Lifecycle("StepFailed", f"{ex.id}/{step.path}/{st.attempt}/failed",
                                   step, reason)]
    if step.rollback or ex.rolling_back:
        ex = replace(ex, rolled_back=False, reason=f"{ex.reason}; rollback step {step.name} "
                                                    f"failed: {reason}")
        return _finish(Decision(_skip_pending(ex), d.commands, events), now)
    if step.strategy is FailureStrategy.IGNORE:
        return _advance(Decision(ex, d.commands, events), now)
    ex = replace(_skip_pending(ex), reason=f"step {step.stage}/{step.phase}/{step.name} "
                                             f"failed: {reason}")
    if step.strategy is FailureStrategy.ROLLBACK:
        done = [k for k, s in enumerate(ex.states) if s.status is StepStatus.SUCCEEDED]
        extra = rollback_steps(ex.steps, done, step.stage_index)
        if extra:
            ex = replace(ex, steps=ex.steps + tuple(extra),
                         states=ex.states + tuple(StepState() for _ in extra),
                         rolling_back=True)
            return _advance(Decision(ex, d.commands, events), now)
    return _finish(Decision(ex, d.commands, events), now)


def _skip_pending(ex: Execution) -> Execution:
    states = tuple(replace(s, status=StepStatus.SKIPPED) if s.status is StepStatus.PENDING
                   else s for s in ex.states)
    return replace(ex, states=states)


def _advance(d: Decision, now: datetime) -> Decision:
    """Start the next pending step, or finish the execution when none is left."""
    ex = d.execution
    if _running(ex) is not None:
        return d
    for i, st in enumerate(ex.states):
        if st.status is StepStatus.PENDING:
            step = ex.steps[i]
            st = replace(st, status=StepStatus.RUNNING, attempt=1, started_at=now,
                         deadline=now + timedelta(seconds=step.timeout_seconds))
            ex = _set(ex, i, st)
            cmd = DispatchTask(st.task_id(ex.id, step), 1, step, step.timeout_seconds)
            ev = Lifecycle("StepStarted", f"{ex.id}/{step.path}/started", step)
            return Decision(ex, [*d.commands, cmd], [*d.events, ev])
    if ex.rolling_back:
        ex = replace(ex, rolled_back=True, reason=f"{ex.reason}; rolled back")
    return _finish(Decision(ex, d.commands, d.events), now)


def _finish(d: Decision, now: datetime) -> Decision:
    ex = d.execution
    # Only an ABORT/ROLLBACK failure or a failed rollback sets a reason; IGNOREd failures don't.
    status = ExecutionStatus.FAILED if ex.reason else ExecutionStatus.SUCCEEDED
    ex = replace(ex, status=status, finished_at=now, rolling_back=False)
    ev = Lifecycle("ExecutionFinished", f"{ex.id}/finished", None, ex.reason)
    return Decision(ex, d.commands, [*d.events, ev])


def _set(ex: Execution, i: int, st: StepState) -> Execution:
    return replace(ex, states=ex.states[:i] + (st,) + ex.states[i + 1:])
