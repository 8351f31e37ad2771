"""The upgrade procedure of issue 4 (the Harness article's own deployment), as decisions.

The procedure is a reconciler: given what is observed now (a ``World``) and the version to
upgrade to, ``next_upgrade_action`` returns the one thing to do next. The caller does it,
observes again and asks again, until ``Done``. Steps, in the article's order:

1. tear down n-1 (every version that is neither the primary n nor the target n+1), but only once
   no execution still runs on it: until then the answer is ``Wait``;
2. start n+1 beside n;
3. wait until n+1 is healthy (every service serving, at least the required delegates connected);
4. switch the primary to n+1; n keeps running for its in-flight executions and instant rollback.

Same inputs, same decision; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

_VERSION = re.compile(r"^v([1-9][0-9]{0,5})$")


class UpgradeError(Exception):
    """The requested change is not allowed in the observed state; the message says why."""


class PrimaryChangeKind(Enum):
    """Why the primary changed (mirrors vigil.events.v1.PrimaryChangeKind)."""

    INITIAL = "INITIAL"
    SWITCH = "SWITCH"
    ROLLBACK = "ROLLBACK"


def check_version_name(version: str) -> str:
    """Return ``version`` if it is a Vigil version name (``v1``, ``v2``, ...), else raise.

    The name is part of topic names (``vigil.<version>.*``), consumer groups, Kubernetes object
    names and the delegates' ``vigil-version`` header, so it is kept to that one shape.
    """
    if not _VERSION.match(version):
        raise UpgradeError(f"version {version!r}: must look like v1, v2, ... (v<number>)")
    return version


def version_number(version: str) -> int:
    """The number of a version name: ``v12`` -> 12."""
    return int(check_version_name(version)[1:])


@dataclass(frozen=True)
class Primary:
    """The primary record: the version that takes new API calls and new executions.

    Attributes:
        version: the primary version.
        previous_version: the one before it (where a rollback goes); empty at first.
        generation: +1 per change, so consumers can order and deduplicate changes.
    """

    version: str
    previous_version: str = ""
    generation: int = 0
    changed_by: str = ""
    reason: str = ""
    changed_at: datetime | None = None

    def switched_to(self, version: str, kind: PrimaryChangeKind, *, by: str, reason: str,
                    now: datetime) -> Primary:
        """The record after a switch or rollback to ``version``."""
        if version == self.version:
            raise UpgradeError(f"{version} is already the primary")
        return Primary(version, self.version, self.generation + 1, by, reason, now)


@dataclass(frozen=True)
class VersionView:
    """What is observed about one running (or registered) version.

    Attributes:
        version: its name.
        running: its processes / Deployments exist.
        services_serving: every service reports SERVING (gRPC health, readiness).
        delegates_connected: delegates of this version connected to its gateways.
        executions_running: executions of this version not yet finished.
        problems: readable reasons it is not healthy ("orchestrator: NOT_SERVING").
    """

    version: str
    running: bool = True
    services_serving: bool = False
    delegates_connected: int = 0
    executions_running: int = 0
    problems: tuple[str, ...] = ()

    def healthy(self, min_delegates: int) -> bool:
        """Ready to be primary: all services serving and enough delegates connected."""
        return self.running and self.services_serving and self.delegates_connected >= min_delegates

    def why_unhealthy(self, min_delegates: int) -> str:
        reasons = list(self.problems)
        if not self.running:
            reasons.append("not running")
        elif not self.services_serving and not self.problems:
            reasons.append("services not all serving")
        if self.delegates_connected < min_delegates:
            reasons.append(f"{self.delegates_connected} of {min_delegates} delegates connected")
        return "; ".join(reasons) or "healthy"


@dataclass(frozen=True)
class World:
    """Everything the procedure looks at: the primary record and the versions observed."""

    primary: Primary
    versions: dict[str, VersionView] = field(default_factory=dict)
    min_delegates: int = 1  # delegates of the new version that must be connected to switch

    def view(self, version: str) -> VersionView:
        return self.versions.get(version) or VersionView(version, running=False)

    def with_view(self, view: VersionView) -> World:
        return replace(self, versions={**self.versions, view.version: view})


# ---- actions ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class StopVersion:
    """Tear a version down (its executions have all finished)."""

    version: str


@dataclass(frozen=True)
class StartVersion:
    """Bring up every service and the delegates of a version beside the others."""

    version: str


@dataclass(frozen=True)
class SwitchPrimary:
    """Make ``version`` the primary (instant: new calls go there, nothing else moves)."""

    version: str
    kind: PrimaryChangeKind


@dataclass(frozen=True)
class Wait:
    """Nothing to do yet; observe again later. ``reason`` says what is awaited."""

    reason: str
    version: str = ""


@dataclass(frozen=True)
class Done:
    """The goal is reached."""

    summary: str


Action = StopVersion | StartVersion | SwitchPrimary | Wait | Done


def next_upgrade_action(world: World, target: str) -> Action:
    """The next step of the upgrade to ``target``.

    Raises:
        UpgradeError: ``target`` is not a version name, or is older than the primary.
    """
    check_version_name(target)
    current = world.primary.version
    if current == target:
        return Done(f"{target} is the primary")
    if version_number(target) < version_number(current):
        raise UpgradeError(f"{target} is older than the primary {current}; "
                           f"use rollback to go back to the previous version")
    for name in sorted(world.versions, key=version_number):
        view = world.versions[name]
        if name in (current, target) or not view.running:
            continue
        if view.executions_running:
            return Wait(f"{name} (n-1) still runs {view.executions_running} execution(s); it is "
                        f"torn down when they finish", name)
        return StopVersion(name)
    new = world.view(target)
    if not new.running:
        return StartVersion(target)
    if not new.healthy(world.min_delegates):
        return Wait(f"{target} not healthy yet: {new.why_unhealthy(world.min_delegates)}",
                    target)
    return SwitchPrimary(target, PrimaryChangeKind.SWITCH)


def plan_switch(world: World, target: str) -> SwitchPrimary:
    """A switch to ``target`` on its own (``vigil upgrade switch``): only to a healthy version.

    Raises:
        UpgradeError: it is already primary, not running or not healthy.
    """
    check_version_name(target)
    if world.primary.version == target:
        raise UpgradeError(f"{target} is already the primary")
    view = world.view(target)
    if not view.healthy(world.min_delegates):
        raise UpgradeError(f"{target} is not healthy: {view.why_unhealthy(world.min_delegates)}")
    kind = (PrimaryChangeKind.ROLLBACK if target == world.primary.previous_version
            and version_number(target) < version_number(world.primary.version)
            else PrimaryChangeKind.SWITCH)
    return SwitchPrimary(target, kind)


def plan_rollback(world: World) -> SwitchPrimary:
    """Flip the primary back to the previous version, which must still be running.

    Its delegates are still connected, so no warm-up is needed; health is not re-verified
    beyond "running with its services serving" because a rollback must not be blocked by a
    delegate that happens to be reconnecting.

    Raises:
        UpgradeError: there is no previous version, or it is no longer running.
    """
    previous = world.primary.previous_version
    if not previous:
        raise UpgradeError(f"nothing to roll back to: {world.primary.version} has no previous "
                           f"version")
    view = world.view(previous)
    if not view.running:
        raise UpgradeError(f"cannot roll back to {previous}: it is no longer running")
    if not view.services_serving:
        raise UpgradeError(f"cannot roll back to {previous}: {view.why_unhealthy(0)}")
    return SwitchPrimary(previous, PrimaryChangeKind.ROLLBACK)


def plan_finish(world: World) -> list[Action]:
    """``vigil upgrade finish``: tear down every version but the primary, each only once no
    execution runs on it (a ``Wait`` for those that still have some)."""
    actions: list[Action] = []
    for name in sorted(world.versions, key=version_number):
        view = world.versions[name]
        if name == world.primary.version or not view.running:
            continue
        if view.executions_running:
            actions.append(Wait(f"{name} still runs {view.executions_running} execution(s)",
                                name))
        else:
            actions.append(StopVersion(name))
    return actions or [Done(f"only the primary {world.primary.version} runs")]


def responsible_version(primary: Primary | None, at: datetime,
                        stopped: frozenset[str] = frozenset()) -> str | None:
    """The version that acts on a version-independent input (an artifact trigger on the
    public topic, which every version's orchestrator reads) that happened at ``at``.

    Every version decides alike from the same record: the version that was primary at ``at``,
    i.e. the previous one for an input older than the last change, unless that one has been
    torn down (``stopped``), then the current primary. None: no primary recorded (a single
    version installation), so any version may act.
    """
    if primary is None:
        return None
    if (primary.previous_version and primary.changed_at is not None and at < primary.changed_at
            and primary.previous_version not in stopped):
        return primary.previous_version
    return primary.version
