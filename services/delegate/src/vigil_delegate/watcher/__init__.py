"""The delegate watcher: keeps the delegate versions of a goal state running on a host."""

from vigil_delegate.watcher.goal import DelegateGoal, GoalError, backoff_seconds, parse_goal
from vigil_delegate.watcher.supervisor import Supervisor

__all__ = ["DelegateGoal", "GoalError", "Supervisor", "backoff_seconds", "parse_goal"]
