"""Picking a delegate for a task: right account, version and capability; then least loaded."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """A connected delegate as task-dispatch sees it."""

    delegate_id: str
    account_id: str
    version: str
    capabilities: frozenset[str]
    running_tasks: int


def pick(candidates: Iterable[Candidate], account_id: str, version: str,
         capability: str) -> Candidate | None:
    """The delegate to run a task, or None when no connected delegate qualifies.

    Never another account's delegate, never another Vigil version's. Among the rest, the one
    with the fewest running tasks; ties go to the smallest id, so the choice is deterministic.
    """
    eligible = [c for c in candidates
                if c.account_id == account_id and c.version == version
                and capability in c.capabilities]
    if not eligible:
        return None
    return min(eligible, key=lambda c: (c.running_tasks, c.delegate_id))
