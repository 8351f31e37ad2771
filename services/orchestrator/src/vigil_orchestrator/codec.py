"""Execution <-> JSON for the ``executions.state`` column. Plain mapping, no I/O."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from vigil_orchestrator.domain import (
    Execution,
    ExecutionStatus,
    FailureStrategy,
    PlannedStep,
    StepState,
    StepStatus,
    StepType,
    Verdict,
)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def dump(ex: Execution) -> dict[str, Any]:
    """A JSON-ready dict of the whole execution."""
    return {
        "id": ex.id, "account_id": ex.account_id, "pipeline": ex.pipeline,
        "version": ex.version, "inputs": ex.inputs,
        "steps": [{**asdict(s), "type": s.type.value, "strategy": s.strategy.value}
                  for s in ex.steps],
        "states": [{
            "status": s.status.value, "attempt": s.attempt, "message": s.message,
            "started_at": _time(s.started_at), "finished_at": _time(s.finished_at),
            "deadline": _time(s.deadline), "task_done": s.task_done,
            "verdicts": [asdict(v) for v in s.verdicts],
        } for s in ex.states],
        "created_at": _time(ex.created_at), "status": ex.status.value, "reason": ex.reason,
        "rolled_back": ex.rolled_back, "rolling_back": ex.rolling_back,
        "finished_at": _time(ex.finished_at),
    }


def load(doc: dict[str, Any]) -> Execution:
    """The Execution a ``dump`` produced."""
    steps = tuple(PlannedStep(**{**s, "type": StepType(s["type"]),
                                 "strategy": FailureStrategy(s["strategy"])})
                  for s in doc["steps"])
    states = tuple(StepState(
        status=StepStatus(s["status"]), attempt=s["attempt"], message=s["message"],
        started_at=_parse_time(s["started_at"]), finished_at=_parse_time(s["finished_at"]),
        deadline=_parse_time(s["deadline"]), task_done=s["task_done"],
        verdicts=tuple(Verdict(**v) for v in s["verdicts"]),
    ) for s in doc["states"])
    created = _parse_time(doc["created_at"])
    assert created is not None
    return Execution(
        id=doc["id"], account_id=doc["account_id"], pipeline=doc["pipeline"],
        version=doc["version"], inputs=doc["inputs"], steps=steps, states=states,
        created_at=created, status=ExecutionStatus(doc["status"]), reason=doc["reason"],
        rolled_back=doc["rolled_back"], rolling_back=doc["rolling_back"],
        finished_at=_parse_time(doc["finished_at"]),
    )
