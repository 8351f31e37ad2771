"""The watcher's goal state and restart policy: plain data, no processes.

A goal file is JSON::

    {"delegates": [
       {"name": "delegate-v1", "version": "v1",
        "command": ["/opt/vigil/v1/bin/python", "-m", "vigil_delegate"],
        "env": {"DELEGATE_ACCOUNT": "acme", "DELEGATE_TOKEN_FILE": "..."},
        "cwd": "/var/lib/vigil/v1"}
    ]}

``name`` is unique; ``version`` becomes VIGIL_VERSION; ``command`` defaults to this Python's
``-m vigil_delegate``; ``env`` is added to the watcher's environment (DELEGATE_NAME defaults
to ``name``). Any change to an entry restarts its process.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class GoalError(ValueError):
    """The goal file is not valid; the message names the field."""


@dataclass(frozen=True)
class DelegateGoal:
    """One delegate process that must run.

    Attributes:
        name: Unique name (also the log file's and, by default, DELEGATE_NAME).
        version: Vigil version it speaks (VIGIL_VERSION).
        command: argv.
        env: Extra environment variables.
        cwd: Working directory; empty means the watcher's.
    """

    name: str
    version: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = ""

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything that needs a restart changes."""
        data = [self.version, list(self.command), sorted(self.env.items()), self.cwd]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:12]

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The process environment: ``base``, DELEGATE_NAME, VIGIL_VERSION, then ``env``."""
        return {**base, "DELEGATE_NAME": self.name, "VIGIL_VERSION": self.version, **self.env}


def parse_goal(text: str) -> dict[str, DelegateGoal]:
    """Parses a goal file's text into name -> goal.

    Raises:
        GoalError: Invalid JSON or field, e.g. ``delegates[1].name: duplicate 'd-v1'``.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise GoalError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("delegates"), list):
        raise GoalError("delegates: must be a list")
    goals: dict[str, DelegateGoal] = {}
    for i, entry in enumerate(data["delegates"]):
        goal = _entry(entry, f"delegates[{i}]")
        if goal.name in goals:
            raise GoalError(f"delegates[{i}].name: duplicate {goal.name!r}")
        goals[goal.name] = goal
    return goals


def _entry(entry: Any, where: str) -> DelegateGoal:
    if not isinstance(entry, dict):
        raise GoalError(f"{where}: must be an object")
    unknown = set(entry) - {"name", "version", "command", "env", "cwd"}
    if unknown:
        raise GoalError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    name, version = entry.get("name"), entry.get("version")
    if not isinstance(name, str) or not _NAME.match(name):
        raise GoalError(f"{where}.name: letters, digits, '.', '_', '-' (at most 63)")
    if not isinstance(version, str) or not version:
        raise GoalError(f"{where}.version: must be a non-empty string")
    command = entry.get("command", [sys.executable, "-m", "vigil_delegate"])
    if not (isinstance(command, list) and command and all(isinstance(a, str) for a in command)):
        raise GoalError(f"{where}.command: must be a non-empty list of strings")
    env = entry.get("env", {})
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise GoalError(f"{where}.env: must map names to strings")
    cwd = entry.get("cwd", "")
    if not isinstance(cwd, str):
        raise GoalError(f"{where}.cwd: must be a string")
    return DelegateGoal(name, version, tuple(command), dict(env), cwd)


def backoff_seconds(crashes: int, initial_s: float = 1.0, maximum_s: float = 60.0) -> float:
    """Delay before restart number ``crashes`` (1 = first): initial, doubled each time, capped."""
    return min(maximum_s, initial_s * 2 ** max(0, crashes - 1))
