"""Picking a delegate for a task: right account, version, capability and selectors, room for
one more task; then least loaded."""

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
    selectors: frozenset[str] = frozenset()
    max_tasks: int = 0  # 0 = no limit

    @property
    def full(self) -> bool:
        return 0 < self.max_tasks <= self.running_tasks


def qualifies(c: Candidate, account_id: str, version: str, capability: str,
              selectors: Iterable[str] = ()) -> bool:
    """Whether ``c`` may run such a task at all (its load aside)."""
    return (c.account_id == account_id and c.version == version
            and capability in c.capabilities and set(selectors) <= c.selectors)


def pick(candidates: Iterable[Candidate], account_id: str, version: str,
         capability: str, selectors: Iterable[str] = ()) -> Candidate | None:
    """The delegate to run a task, or None when no connected delegate qualifies or has room.

    Never another account's delegate, never another Vigil version's; it must announce the
    capability and every selector. Among the rest that are below their ``max_tasks``, the one
    with the fewest running tasks; ties go to the smallest id, so the choice is deterministic.
    """
    wanted = frozenset(selectors)
    eligible = [c for c in candidates
                if qualifies(c, account_id, version, capability, wanted) and not c.full]
    if not eligible:
        return None
    return min(eligible, key=lambda c: (c.running_tasks, c.delegate_id))


def why_unassigned(candidates: Iterable[Candidate], account_id: str, version: str,
                   capability: str, selectors: Iterable[str], waited_seconds: float) -> str:
    """A reason a user can act on for a task no delegate took within its validity period."""
    wanted = sorted(selectors)
    need = f"capability {capability!r}" + (f" and selectors {', '.join(wanted)}"
                                            if wanted else "")
    own = [c for c in candidates if c.account_id == account_id and c.version == version]
    able = [c for c in own if qualifies(c, account_id, version, capability, wanted)]
    if not own:
        seen = f"no delegate of account {account_id!r} ({version}) is connected"
    elif not able:
        seen = f"{len(own)} connected delegate(s) of the account, none with {need}"
    else:
        seen = f"{len(able)} capable delegate(s), all at their task limit"
    return (f"no delegate took the task within its validity period of {waited_seconds:g}s: "
            f"it needs {need}; {seen}")
