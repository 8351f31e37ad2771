"""Delegate selection and the task lifecycle, plain Python."""

from vigil_dispatch.domain.lifecycle import (
    IllegalTransition,
    TaskStatus,
    round_robin,
    statuses_from,
    transition,
)
from vigil_dispatch.domain.selection import Candidate, pick, qualifies, why_unassigned

__all__ = ["Candidate", "IllegalTransition", "TaskStatus", "pick", "qualifies", "round_robin",
           "statuses_from", "transition", "why_unassigned"]
