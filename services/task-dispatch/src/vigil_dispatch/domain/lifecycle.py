"""A task's lifecycle in task-dispatch, and fair ordering of queued work.

    QUEUED -> ASSIGNED -> RUNNING -> SUCCEEDED | FAILED
       |          |          |
       |          +----------+--> QUEUED    (its delegate vanished: same attempt re-sent)
       +----------+----------+--> EXPIRED   (not assigned in time / no result in time)

A result may arrive in any non-terminal state (a fast task's result can overtake its
TaskStarted); a terminal task never changes again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

T = TypeVar("T")


class TaskStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    ASSIGNED = "ASSIGNED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.EXPIRED)

    @property
    def in_flight(self) -> bool:
        """On a delegate: it holds one of the delegate's task slots."""
        return self in (TaskStatus.ASSIGNED, TaskStatus.RUNNING)


_ALLOWED = {
    TaskStatus.QUEUED: {TaskStatus.ASSIGNED, TaskStatus.EXPIRED, TaskStatus.SUCCEEDED,
                        TaskStatus.FAILED},
    TaskStatus.ASSIGNED: {TaskStatus.RUNNING, TaskStatus.QUEUED, TaskStatus.EXPIRED,
                          TaskStatus.SUCCEEDED, TaskStatus.FAILED},
    TaskStatus.RUNNING: {TaskStatus.QUEUED, TaskStatus.EXPIRED, TaskStatus.SUCCEEDED,
                         TaskStatus.FAILED},
}


class IllegalTransition(ValueError):
    """A transition the lifecycle does not allow; the message names both states."""


def transition(current: TaskStatus, to: TaskStatus) -> TaskStatus:
    """``to`` when the lifecycle allows it from ``current``; raises IllegalTransition else."""
    if to not in _ALLOWED.get(current, set()):
        raise IllegalTransition(f"a task in {current} cannot become {to}")
    return to


def statuses_from(to: TaskStatus) -> list[str]:
    """The states a task may be in to move to ``to`` (for SQL ``status = ANY(...)``)."""
    return sorted(s.value for s, targets in _ALLOWED.items() if to in targets)


def round_robin(items: Iterable[T], key: Callable[[T], Hashable]) -> list[T]:
    """Interleave items by key, keeping each key's own order: a1 b1 c1 a2 b2 a3 ...

    Used to assign queued tasks fairly across accounts: an account with a long backlog
    cannot delay another account's first task by more than one turn.
    """
    queues: dict[Hashable, list[T]] = {}
    for item in items:
        queues.setdefault(key(item), []).append(item)
    out: list[T] = []
    depth = 0
    while len(out) < sum(len(q) for q in queues.values()):
        out.extend(q[depth] for q in queues.values() if depth < len(q))
        depth += 1
    return out
