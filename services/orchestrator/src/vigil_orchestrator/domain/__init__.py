"""The orchestrator's domain: pipeline definitions, planning and the execution state machine."""

from vigil_orchestrator.domain.execution import (
    DeadlineCheck,
    Decision,
    DispatchTask,
    Execution,
    ExecutionStatus,
    Lifecycle,
    StepState,
    StepStatus,
    TaskFinished,
    Verdict,
    VerdictArrived,
    decide,
    start,
)
from vigil_orchestrator.domain.pipeline import (
    FailureStrategy,
    PipelineInvalid,
    PipelineSpec,
    StepType,
    parse_duration,
    parse_pipeline,
)
from vigil_orchestrator.domain.plan import PlannedStep, plan, task_id_for

__all__ = [
    "DeadlineCheck", "Decision", "DispatchTask", "Execution", "ExecutionStatus", "FailureStrategy",
    "Lifecycle", "PipelineInvalid", "PipelineSpec", "PlannedStep", "StepState", "StepStatus",
    "StepType", "TaskFinished", "Verdict", "VerdictArrived", "decide", "parse_duration",
    "parse_pipeline", "plan", "start", "task_id_for",
]
