"""The orchestrator's domain: pipeline definitions, planning and the execution state machine.

Nothing here does I/O; see engine.py for the rules of an execution.
"""

from vigil_orchestrator.domain.engine import decide, start
from vigil_orchestrator.domain.failure import Action, FailurePolicy
from vigil_orchestrator.domain.pipeline import (
    ArtifactTrigger,
    PipelineInvalid,
    PipelineSpec,
    delegate_choice,
    parse_duration,
    parse_pipeline,
)
from vigil_orchestrator.domain.plan import Plan, PlannedStep, StagePlan, plan, task_id_for
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
    Verdict,
    VerdictArrived,
    Waiting,
)
from vigil_orchestrator.domain.steps import StepType

__all__ = [
    "Abort", "Action", "Approve", "ArtifactTrigger", "Decision", "DispatchTask", "Event",
    "Execution",
    "ExecutionStatus", "FailurePolicy", "IllegalAction", "Intervene", "Lifecycle", "Pause",
    "PipelineInvalid", "PipelineSpec", "Plan", "PlannedStep", "Resume", "StagePlan",
    "StageState", "StageStatus", "StepState", "StepStatus", "StepType", "TaskFinished",
    "TimerFired", "Verdict", "VerdictArrived", "Waiting", "decide", "delegate_choice",
    "parse_duration",
    "parse_pipeline", "plan", "start", "task_id_for",
]
