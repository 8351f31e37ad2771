"""Execution <-> JSON for the ``executions.state`` column. Plain mapping, no I/O.

The document keeps the resolved plan, so an execution always carries the pipeline it ran.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vigil_orchestrator.domain import (
    Execution,
    ExecutionStatus,
    FailurePolicy,
    PlannedStep,
    StagePlan,
    StageState,
    StageStatus,
    StepState,
    StepStatus,
    StepType,
    Verdict,
    Waiting,
)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _step(s: PlannedStep) -> dict[str, Any]:
    return {"path": s.path, "stage_index": s.stage_index, "stage": s.stage, "phase": s.phase,
            "name": s.name, "type": s.type.value, "params": s.params,
            "timeout_seconds": s.timeout_seconds, "failure": s.failure.to_dict(),
            "phase_index": s.phase_index, "rollback": s.rollback}


def _load_step(d: dict[str, Any]) -> PlannedStep:
    return PlannedStep(**{**d, "type": StepType(d["type"]),
                          "failure": FailurePolicy.from_dict(d["failure"])})


def dump(ex: Execution) -> dict[str, Any]:
    """A JSON-ready dict of the whole execution."""
    return {
        "id": ex.id, "account_id": ex.account_id, "pipeline": ex.pipeline,
        "version": ex.version, "inputs": ex.inputs, "created_at": _time(ex.created_at),
        "stages": [{"name": s.name, "depends_on": list(s.depends_on)} for s in ex.stages],
        "steps": [_step(s) for s in ex.steps],
        "custom_rollbacks": [_step(s) for s in ex.custom_rollbacks],
        "step_states": [{
            "status": s.status.value, "attempt": s.attempt, "message": s.message,
            "started_at": _time(s.started_at), "finished_at": _time(s.finished_at),
            "deadline": _time(s.deadline), "wake_at": _time(s.wake_at),
            "waiting": s.waiting.value if s.waiting else None, "task_done": s.task_done,
            "verdicts": [{"analysis": v.analysis, "verdict": v.verdict, "reason": v.reason}
                         for v in s.verdicts],
            "outputs": s.outputs, "params": s.params, "ignored": s.ignored,
        } for s in ex.step_states],
        "stage_states": [{
            "status": s.status.value, "reason": s.reason, "rolling_back": s.rolling_back,
            "rolled_back": s.rolled_back, "started_at": _time(s.started_at),
            "finished_at": _time(s.finished_at),
        } for s in ex.stage_states],
        "application": ex.application, "service": ex.service, "environment": ex.environment,
        "status": ex.status.value, "reason": ex.reason, "rolled_back": ex.rolled_back,
        "paused": ex.paused, "halting": ex.halting, "controls": ex.controls,
        "finished_at": _time(ex.finished_at),
    }


def load(doc: dict[str, Any]) -> Execution:
    """The Execution a ``dump`` produced."""
    created = _parse_time(doc["created_at"])
    assert created is not None
    return Execution(
        id=doc["id"], account_id=doc["account_id"], pipeline=doc["pipeline"],
        version=doc["version"], inputs=doc["inputs"], created_at=created,
        stages=[StagePlan(s["name"], tuple(s["depends_on"])) for s in doc["stages"]],
        steps=[_load_step(s) for s in doc["steps"]],
        custom_rollbacks=[_load_step(s) for s in doc["custom_rollbacks"]],
        step_states=[StepState(
            status=StepStatus(s["status"]), attempt=s["attempt"], message=s["message"],
            started_at=_parse_time(s["started_at"]), finished_at=_parse_time(s["finished_at"]),
            deadline=_parse_time(s["deadline"]), wake_at=_parse_time(s["wake_at"]),
            waiting=Waiting(s["waiting"]) if s["waiting"] else None, task_done=s["task_done"],
            verdicts=[Verdict(**v) for v in s["verdicts"]], outputs=s["outputs"],
            params=s["params"], ignored=s["ignored"],
        ) for s in doc["step_states"]],
        stage_states=[StageState(
            status=StageStatus(s["status"]), reason=s["reason"], rolling_back=s["rolling_back"],
            rolled_back=s["rolled_back"], started_at=_parse_time(s["started_at"]),
            finished_at=_parse_time(s["finished_at"]),
        ) for s in doc["stage_states"]],
        application=doc["application"], service=doc["service"],
        environment=doc["environment"], status=ExecutionStatus(doc["status"]),
        reason=doc["reason"], rolled_back=doc["rolled_back"], paused=doc["paused"],
        halting=doc["halting"], controls=doc["controls"],
        finished_at=_parse_time(doc["finished_at"]),
    )
