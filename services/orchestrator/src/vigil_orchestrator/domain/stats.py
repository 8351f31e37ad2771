"""Deployment statistics for dashboards, computed from finished executions. Pure."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Finished:
    """What statistics need of one finished execution."""

    status: str  # SUCCEEDED | FAILED | ABORTED
    environment: str
    service: str
    created_at: datetime
    finished_at: datetime
    failed_stage: str = ""  # the first stage that FAILED, if any


@dataclass(frozen=True)
class Day:
    day: str
    environment: str
    service: str
    succeeded: int
    failed: int
    aborted: int
    mean_duration_seconds: float


@dataclass(frozen=True)
class Stats:
    days: list[Day]
    total: int
    succeeded: int
    success_rate: float
    failures_by_stage: list[tuple[str, int]] = field(default_factory=list)


def deployment_stats(executions: Iterable[Finished]) -> Stats:
    """Per UTC day, environment and service: outcomes and mean duration; overall rate."""
    groups: dict[tuple[str, str, str], list[Finished]] = defaultdict(list)
    stages: Counter[str] = Counter()
    total = succeeded = 0
    for e in executions:
        groups[(e.created_at.date().isoformat(), e.environment, e.service)].append(e)
        total += 1
        succeeded += e.status == "SUCCEEDED"
        if e.failed_stage:
            stages[e.failed_stage] += 1
    days = [Day(day, env, svc,
                sum(e.status == "SUCCEEDED" for e in es), sum(e.status == "FAILED" for e in es),
                sum(e.status == "ABORTED" for e in es),
                sum((e.finished_at - e.created_at).total_seconds() for e in es) / len(es))
            for (day, env, svc), es in sorted(groups.items())]
    return Stats(days, total, succeeded, succeeded / total if total else 0.0,
                 sorted(stages.items(), key=lambda kv: (-kv[1], kv[0])))
