"""Failure strategies: what happens when a step fails, declared at any level.

A strategy is written ``failure_strategy: rollback`` or as a mapping::

    failure_strategy:
      action: retry          # retry | abort | rollback | manual | ignore
      retries: 3             # retry: attempts after the first
      interval: 10s          # retry: wait before the first retry
      backoff: 2             # retry: the wait grows by this factor per attempt
      then: rollback         # retry: what to do once retries are spent (default abort)
      timeout: 1h            # manual: how long to wait for someone to choose
      timeout_action: abort  # manual: what happens when nobody chose in time

The most specific level wins: step, then phase, then workflow, then stage, then the default
(rollback). A step's ``retries: N`` is shorthand for retrying N times, then applying the
strategy inherited from the enclosing levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Action(Enum):
    RETRY = "retry"
    ABORT = "abort"  # stop the execution; nothing is undone
    ROLLBACK = "rollback"  # roll back the workflow's completed phases, newest first
    MANUAL = "manual"  # pause the step until someone chooses retry/abort/rollback/ignore
    IGNORE = "ignore"  # the step stays failed, the workflow carries on


FINAL_ACTIONS = (Action.ABORT, Action.ROLLBACK, Action.MANUAL, Action.IGNORE)
CHOICES = (Action.RETRY, Action.ABORT, Action.ROLLBACK, Action.IGNORE)  # manual intervention


@dataclass(frozen=True)
class FailurePolicy:
    action: Action = Action.ROLLBACK
    retries: int = 0
    interval_seconds: float = 0.0
    backoff: float = 1.0
    then: Action = Action.ABORT
    timeout_seconds: float | None = None
    timeout_action: Action = Action.ABORT

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 1)."""
        return self.interval_seconds * (self.backoff ** max(attempt - 1, 0))

    def after(self, attempt: int) -> Action:
        """The action for a failure of ``attempt``: retry while retries remain."""
        if self.action is Action.RETRY:
            return Action.RETRY if attempt <= self.retries else self.then
        return self.action

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "retries": self.retries,
                "interval_seconds": self.interval_seconds, "backoff": self.backoff,
                "then": self.then.value, "timeout_seconds": self.timeout_seconds,
                "timeout_action": self.timeout_action.value}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FailurePolicy:
        return cls(Action(d["action"]), d["retries"], d["interval_seconds"], d["backoff"],
                   Action(d["then"]), d["timeout_seconds"], Action(d["timeout_action"]))


def with_retries(inherited: FailurePolicy, retries: int, interval: float = 0.0) -> FailurePolicy:
    """A step's ``retries: N`` on top of the inherited strategy."""
    if retries <= 0:
        return inherited
    then = inherited.then if inherited.action is Action.RETRY else inherited.action
    return FailurePolicy(Action.RETRY, retries, interval, 1.0, then,
                         inherited.timeout_seconds, inherited.timeout_action)
