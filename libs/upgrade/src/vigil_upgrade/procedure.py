"""Runs the upgrade decisions (domain/plan.py) against one platform: local processes or
Kubernetes. Observe, decide, act, repeat, with a deadline on every wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from vigil_upgrade.adapters.local import READY, STOPPED, GoalFile, grpc_serving
from vigil_upgrade.adapters.postgres import VersionStore, publish_pending
from vigil_upgrade.domain import (
    Done,
    Primary,
    PrimaryChangeKind,
    StartVersion,
    StopVersion,
    SwitchPrimary,
    UpgradeError,
    VersionView,
    Wait,
    World,
    check_version_name,
    next_upgrade_action,
    plan_finish,
    plan_rollback,
    plan_switch,
)


class Platform(Protocol):
    """Where versions run. ``start``/``stop`` return once done (or raise UpgradeError)."""

    async def start(self, version: str, timeout: float) -> None: ...
    async def stop(self, version: str, timeout: float) -> None: ...
    async def running(self) -> list[str]: ...
    async def problems(self, version: str) -> list[str]: ...
    async def route(self, version: str) -> None: ...
    async def endpoints(self, version: str) -> tuple[str, str]: ...


class LocalPlatform:
    """Versions as process sets run by the ``make run`` controller: this edits its goal file
    and follows ``vigil_versions``; the router follows the primary record by itself."""

    def __init__(self, store: VersionStore, goal: GoalFile):
        self._store = store
        self._goal = goal

    async def start(self, version: str, timeout: float) -> None:
        reg = (await self._store.versions()).get(version)
        if reg is not None and reg.state == READY:
            return
        if reg is not None and reg.state.startswith("FAILED"):
            await self._store.register(version, "STARTING")  # a retry: not the old failure
        wanted = self._goal.read()
        # Written even when listed: the controller reconciles on every change of the file,
        # which retries a version that failed to start.
        self._goal.write(wanted if version in wanted else [*wanted, version])
        await self._await_state(version, READY, timeout)

    async def stop(self, version: str, timeout: float) -> None:
        self._goal.write([v for v in self._goal.read() if v != version])
        await self._await_state(version, "STOPPED", timeout)

    async def running(self) -> list[str]:
        # FAILED and STOPPING count as running: their processes may be up, and `finish` or
        # the next upgrade tears them down.
        return [v for v, r in (await self._store.versions()).items() if r.state != STOPPED]

    async def problems(self, version: str) -> list[str]:
        reg = (await self._store.versions()).get(version)
        if reg is None:
            return ["not registered"]
        if reg.state != READY:
            return [f"state {reg.state}"]
        found = []
        for name, address in (("orchestrator", reg.api_address),
                              ("delegate-gateway", reg.gateway_address)):
            if status := await grpc_serving(address):
                found.append(f"{name}: {status}")
        return found

    async def route(self, version: str) -> None:
        """Nothing to do: the router follows the primary record (LISTEN vigil_primary)."""

    async def endpoints(self, version: str) -> tuple[str, str]:
        reg = (await self._store.versions()).get(version)
        return (reg.api_address, reg.gateway_address) if reg else ("", "")

    async def _await_state(self, version: str, state: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            reg = (await self._store.versions()).get(version)
            if reg is not None and reg.state == state:
                return
            if reg is not None and reg.state.startswith("FAILED"):
                raise UpgradeError(f"{version}: {reg.state}")
            if time.monotonic() > deadline:
                raise UpgradeError(f"{version} not {state} after {timeout:g}s (is `make run` "
                                   f"running and reading {self._goal.path}?)")
            await asyncio.sleep(0.2)


class Procedure:
    """The upgrade commands, each observing the world first."""

    def __init__(self, store: VersionStore, platform: Platform, *, min_delegates: int = 1,
                 by: str = "vigil upgrade", bootstrap: str = "",
                 say: Callable[[str], None] = print, pool: object = None):
        self._store = store
        self._platform = platform
        self._min_delegates = min_delegates
        self._by = by
        self._bootstrap = bootstrap
        self._say = say
        self._pool = pool

    async def observe(self) -> World:
        primary = await self._store.primary()
        if primary is None:
            raise UpgradeError("no primary version recorded yet (start Vigil once: make run)")
        executions = await self._store.executions_running()
        delegates = await self._store.delegates_connected()
        views = {}
        for version in await self._platform.running():
            problems = await self._platform.problems(version)
            views[version] = VersionView(version, True, not problems,
                                         delegates.get(version, 0),
                                         executions.get(version, 0), tuple(problems))
        return World(primary, views, self._min_delegates)

    async def run(self, target: str, timeout: float = 600.0, poll: float = 0.5) -> Primary:
        """The whole procedure to ``target``: tear down n-1, start n+1, verify, switch."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            left = deadline - time.monotonic()
            action = next_upgrade_action(await self.observe(), target)
            if isinstance(action, Done):
                self._say(action.summary)
                return await self._store.primary()  # type: ignore[return-value]
            if left <= 0:
                raise UpgradeError(f"upgrade to {target} not done after {timeout:g}s: "
                                   f"{getattr(action, 'reason', action)}")
            if isinstance(action, StopVersion):
                self._say(f"tearing down {action.version} (no execution runs on it)")
                await self._stop(action.version, left)
            elif isinstance(action, StartVersion):
                self._say(f"starting {action.version} beside the primary")
                await self.start(action.version, left)
            elif isinstance(action, SwitchPrimary):
                await self._switch(action, f"upgrade to {target}")
            elif isinstance(action, Wait):
                if action.reason != last:
                    self._say(f"waiting: {action.reason}")
                    last = action.reason
                await asyncio.sleep(poll)

    async def start(self, target: str, timeout: float = 600.0) -> None:
        """Only bring ``target`` up beside the primary (no switch)."""
        check_version_name(target)
        await self._platform.start(target, timeout)
        await self._store.register(target, READY, *await self._platform.endpoints(target))

    async def _stop(self, version: str, timeout: float) -> None:
        await self._platform.stop(version, timeout)
        await self._store.register(version, STOPPED)

    async def switch(self, target: str, reason: str = "") -> Primary:
        return await self._switch(plan_switch(await self.observe(), target),
                                  reason or f"switch to {target}")

    async def rollback(self, reason: str = "") -> Primary:
        action = plan_rollback(await self.observe())
        return await self._switch(action, reason or f"rollback to {action.version}")

    async def finish(self, timeout: float = 0.0, poll: float = 1.0) -> None:
        """Tear down every non-primary version once it has no running execution; waits up to
        ``timeout`` seconds for those that still have some."""
        deadline = time.monotonic() + timeout
        while True:
            actions = plan_finish(await self.observe())
            waits = [a for a in actions if isinstance(a, Wait)]
            for action in actions:
                if isinstance(action, StopVersion):
                    self._say(f"tearing down {action.version}")
                    await self._stop(action.version, max(30.0, timeout))
                elif isinstance(action, Done):
                    self._say(action.summary)
            if not waits:
                return
            if time.monotonic() > deadline:
                raise UpgradeError("; ".join(w.reason for w in waits) + " (kept running)")
            await asyncio.sleep(poll)

    async def _switch(self, action: SwitchPrimary, reason: str) -> Primary:
        before = await self._store.primary()
        assert before is not None
        started = time.monotonic()
        record = await self._store.switch(action.version, action.kind, expected=before.version,
                                          by=self._by, reason=reason)
        try:
            await self._platform.route(action.version)
        except Exception:
            # The record is the truth; do not leave it pointing where traffic does not go.
            await self._store.switch(before.version, PrimaryChangeKind.ROLLBACK,
                                     expected=action.version, by=self._by,
                                     reason=f"routing to {action.version} failed")
            raise
        verb = "rolled back" if action.kind is PrimaryChangeKind.ROLLBACK else "switched"
        self._say(f"primary {verb}: {before.version} -> {record.version} "
                  f"(generation {record.generation}, {1000 * (time.monotonic() - started):.0f} "
                  f"ms); {before.version} keeps running for its executions")
        if self._bootstrap and self._pool is not None:
            try:
                await publish_pending(self._pool, self._bootstrap)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - the outbox keeps it; relayed later
                self._say(f"note: event not published yet ({exc}); the router relays it")
        return record
