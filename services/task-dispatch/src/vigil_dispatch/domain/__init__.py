"""Delegate selection, plain Python."""

from vigil_dispatch.domain.selection import Candidate, pick

__all__ = ["Candidate", "pick"]
