"""`ExportVerification`: a verify step's stored input data as a `vigil verify replay` document.

Which verification: the execution is the caller's (another account's is NOT_FOUND, like
every execution call); the verify step is named by path or name (or is the execution's only
one), or a verification id of the execution is given; of a retried step, the latest attempt
with stored data. The conversion itself is
:func:`vigil_metric_analyzer.export.replay_document` (pure, shared with the tests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from vigil.events.v1 import verification_pb2
from vigil_metric_analyzer.export import ExportError, replay_document
from vigil_orchestrator.adapters import verification_data
from vigil_orchestrator.adapters.postgres import PostgresStore
from vigil_orchestrator.domain import Execution, PlannedStep, StepType, task_id_for
from vigil_orchestrator.handlers import NotFound


class InvalidRequest(ValueError):
    """A request field is wrong; ``problems`` is [(field, description)]."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {d}" for f, d in problems))
        self.problems = problems


@dataclass(frozen=True)
class Exported:
    verification_id: str
    step: str
    attempt: int
    document_json: str
    present: list[str]
    missing: list[str]


async def export_verification(store: PostgresStore, pool: asyncpg.Pool, account_id: str,
                              execution_id: str, step: str = "",
                              verification_id: str = "") -> Exported:
    """Raises NotFound (no such execution, step, verification or stored data) or
    InvalidRequest (a step that is not a verify step, an ambiguous name)."""
    ex = await store.get(account_id, execution_id)
    if ex is None:
        raise NotFound(f"execution_id: no execution {execution_id}")
    candidates = _candidates(ex, step, verification_id)
    parts = await verification_data.load(pool, account_id, ex.id,
                                         [vid for _, _, vid in candidates])
    by_id: dict[str, list[verification_data.StoredPart]] = {}
    for p in parts:
        by_id.setdefault(p.verification_id, []).append(p)
    for index, attempt, vid in candidates:  # latest attempt first
        if vid in by_id:
            return _export(ex, index, attempt, vid, by_id[vid])
    chosen = ex.steps[candidates[0][0]]
    raise NotFound(
        f"{'verification_id' if verification_id else 'step'}: no stored data for "
        f"{chosen.path} ({chosen.name}): it has not collected anything yet, or its data is "
        "older than the retention (VERIFICATION_DATA_RETENTION_DAYS)")


def _candidates(ex: Execution, step: str, verification_id: str) -> list[tuple[int, int, str]]:
    """(step index, attempt, verification id) to look at, latest attempt first."""
    verify = [(k, s) for k, s in enumerate(ex.steps) if s.type is StepType.VERIFY]
    if step:
        named = [(k, s) for k, s in enumerate(ex.steps) if step in (s.path, s.name)]
        if not named:
            raise NotFound(f"step: no step {step!r} in execution {ex.id}; verify steps: "
                           f"{_names(s for _, s in verify) or 'none'}")
        verify_named = [(k, s) for k, s in named if s.type is StepType.VERIFY]
        if not verify_named:
            raise InvalidRequest([("step", f"{step!r} is a {named[0][1].type.value} step, not "
                                           "a verify step")])
        if len(verify_named) > 1:
            raise InvalidRequest([("step", f"{step!r} names several verify steps: "
                                           f"{_names(s for _, s in verify_named)}; give a path")])
        verify = verify_named
    elif not verification_id and len(verify) > 1:
        raise InvalidRequest([("step", "the execution has several verify steps: "
                                       f"{_names(s for _, s in verify)}; name one")])
    if not verify:
        raise NotFound(f"step: execution {ex.id} has no verify step")
    out = [(k, a, task_id_for(ex.id, s.path, a)) for k, s in verify
           for a in range(ex.step_states[k].attempt, 0, -1)]
    if verification_id:
        out = [c for c in out if c[2] == verification_id]
        if not out:
            raise NotFound(f"verification_id: no verification {verification_id} of "
                           f"{'step ' + repr(step) if step else 'execution ' + ex.id}")
    if not out:
        raise NotFound(f"step: {verify[0][1].path} ({verify[0][1].name}) has not started")
    return out


def _names(steps: object) -> str:
    return ", ".join(f"{s.name} ({s.path})" for s in steps)  # type: ignore[attr-defined]


def _export(ex: Execution, index: int, attempt: int, verification_id: str,
            parts: list[verification_data.StoredPart]) -> Exported:
    step: PlannedStep = ex.steps[index]
    state = ex.step_states[index]
    metrics = [p.message for p in parts
               if isinstance(p.message, verification_pb2.MetricsCollected)]
    logs = next((p.message for p in parts
                 if isinstance(p.message, verification_pb2.LogsCollected)), None)
    live = {"step": step.path, "step_name": step.name, "attempt": attempt,
            "step_status": state.status.value if attempt == state.attempt else "",
            "verdicts": {v.analysis: {"verdict": v.verdict, "reason": v.reason}
                         for v in state.verdicts} if attempt == state.attempt else {}}
    try:
        export = replay_document(metrics, logs, [p.part for p in parts], live=live)
    except ExportError as exc:
        raise NotFound(f"verification_id: {verification_id}: {exc}") from exc
    return Exported(verification_id, step.path, attempt,
                    json.dumps(export.document, indent=1, allow_nan=False),
                    export.present, export.missing)
