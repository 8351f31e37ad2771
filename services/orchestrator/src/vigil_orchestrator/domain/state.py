"""Execution state and the engine's inputs and outputs: plain data, no behaviour beyond
small queries. The engine (engine.py) is the only code that changes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from vigil_orchestrator.domain.failure import Action
from vigil_orchestrator.domain.plan import PlannedStep, StagePlan, task_id_for


class ExecutionStatus(Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"  # a person or an API call aborted it

    @property
    def is_terminal(self) -> bool:
        return self is not ExecutionStatus.RUNNING


class StageStatus(Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"  # a stage it depends on did not succeed
    ABORTED = "ABORTED"

    @property
    def is_done(self) -> bool:
        return self not in (StageStatus.PENDING, StageStatus.RUNNING)


class StepStatus(Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"  # a task, a verification or a timer is under way
    WAITING = "WAITING"  # for a person (approval, intervention), a retry, or a barrier
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    ABORTED = "ABORTED"

    @property
    def is_done(self) -> bool:
        return self in (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED,
                        StepStatus.ABORTED)

    @property
    def is_active(self) -> bool:
        return self in (StepStatus.RUNNING, StepStatus.WAITING)


class Waiting(Enum):
    """What an active step waits for."""

    TASK = "task"
    VERDICTS = "verdicts"
    TIMER = "timer"
    APPROVAL = "approval"
    INTERVENTION = "intervention"
    RETRY = "retry"
    BARRIER = "barrier"


@dataclass(frozen=True)
class Verdict:
    """One analyzer's verdict on a verify step's verification."""

    analysis: str  # "metrics" | "logs"
    verdict: str  # PASS | FAIL | INCONCLUSIVE | NO_DATA | ERROR
    reason: str


@dataclass
class StepState:
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline: datetime | None = None  # the step fails (or times out its wait) at this time
    wake_at: datetime | None = None  # a wait step ends, or a retry starts, at this time
    waiting: Waiting | None = None
    task_done: bool = False  # verify: the collection task finished
    verdicts: list[Verdict] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    params: dict = field(default_factory=dict)  # as run: deferred variables resolved
    ignored: bool = False  # failed, and the failure strategy said ignore

    def task_id(self, execution_id: str, step: PlannedStep) -> str:
        return task_id_for(execution_id, step.path, self.attempt)


@dataclass
class StageState:
    status: StageStatus = StageStatus.PENDING
    reason: str = ""
    rolling_back: bool = False
    rolled_back: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass
class Execution:
    id: str
    account_id: str
    pipeline: str
    version: str  # Vigil version that runs it to the end
    inputs: dict[str, str]
    created_at: datetime
    stages: list[StagePlan]
    steps: list[PlannedStep]
    custom_rollbacks: list[PlannedStep] = field(default_factory=list)
    step_states: list[StepState] = field(default_factory=list)
    stage_states: list[StageState] = field(default_factory=list)
    application: str = ""
    service: str = ""
    environment: str = ""
    status: ExecutionStatus = ExecutionStatus.RUNNING
    reason: str = ""
    rolled_back: bool = False
    paused: bool = False
    halting: bool = False  # an abort strategy fired: no new stage starts
    controls: int = 0  # count of pause/resume actions, for unique event ids
    finished_at: datetime | None = None

    @property
    def next_wake(self) -> datetime | None:
        """When the durable timer must look at this execution next."""
        times = [t for s in self.step_states if s.status.is_active
                 for t in (s.deadline, s.wake_at) if t is not None]
        return min(times) if times else None

    def waiting_for_input(self) -> list[tuple[PlannedStep, Waiting]]:
        """Steps waiting for a person: approvals and manual interventions."""
        return [(self.steps[i], s.waiting) for i, s in enumerate(self.step_states)
                if s.status is StepStatus.WAITING
                and s.waiting in (Waiting.APPROVAL, Waiting.INTERVENTION)]


# ---- inputs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskFinished:
    task_id: str
    attempt: int
    success: bool
    summary: str = ""
    error: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VerdictArrived:
    verification_id: str
    verdict: Verdict


@dataclass(frozen=True)
class TimerFired:
    """From the durable timer sweep: deadlines, waits and retry back-offs that are due."""


@dataclass(frozen=True)
class Approve:
    """A person's decision on a step waiting for approval (``step``: its name or path)."""

    step: str
    approved: bool
    actor: str
    reason: str


@dataclass(frozen=True)
class Intervene:
    """A person's choice for a failed step waiting for manual intervention."""

    step: str
    action: Action  # retry | abort | rollback | ignore
    actor: str
    reason: str


@dataclass(frozen=True)
class Abort:
    actor: str
    reason: str


@dataclass(frozen=True)
class Pause:
    actor: str
    reason: str


@dataclass(frozen=True)
class Resume:
    actor: str
    reason: str


Event = TaskFinished | VerdictArrived | TimerFired | Approve | Intervene | Abort | Pause | Resume
HUMAN_ACTIONS = (Approve, Intervene, Abort, Pause, Resume)


class IllegalAction(ValueError):
    """A person asked for something the execution's state does not allow; says why."""


# ---- outputs ----------------------------------------------------------------------------

@dataclass(frozen=True)
class DispatchTask:
    task_id: str
    attempt: int
    step: PlannedStep
    params: dict  # the step's parameters as run (deferred variables resolved)
    timeout_seconds: float


@dataclass(frozen=True)
class Lifecycle:
    """A public lifecycle event. ``kind`` is one of ExecutionStarted, ExecutionFinished,
    ExecutionPaused, ExecutionResumed, StageStarted, StageFinished, StepStarted,
    StepSucceeded, StepFailed, StepRetrying, StepWaiting, StepAborted."""

    kind: str
    event_id: str
    step: PlannedStep | None = None
    stage: str = ""
    message: str = ""
    attempt: int = 0
    status: str = ""  # StageFinished: the stage's status


@dataclass
class Decision:
    execution: Execution
    commands: list[DispatchTask] = field(default_factory=list)
    events: list[Lifecycle] = field(default_factory=list)
