"""Upgrade control beside a running local stack: what ``make run`` adds for issue 4.

``async with beside_stack(stack) as control:`` records the stack's version as the first
primary (if none is), registers its endpoints, starts the router (the local primary Service)
and the goal-file controller that starts and stops further versions for ``vigil upgrade``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from vigil_common import db
from vigil_upgrade import router
from vigil_upgrade.adapters.local import (
    READY,
    STOPPED,
    Controller,
    DelegateSpec,
    GoalFile,
    LocalVersions,
)
from vigil_upgrade.adapters.postgres import VersionStore
from vigil_upgrade.procedure import LocalPlatform, Procedure


@dataclass
class LocalControl:
    """Handles for the caller: where the router listens, the goal file, the procedure."""

    router_address: str
    goal: GoalFile
    store: VersionStore
    versions: LocalVersions
    pool: object
    bootstrap: str
    routes: router.Routes  # the router's current backend and draining ones (for measuring)

    def procedure(self, **kwargs: object) -> Procedure:
        """The upgrade procedure as ``vigil upgrade`` runs it (through the goal file)."""
        return Procedure(self.store, LocalPlatform(self.store, self.goal),
                         bootstrap=self.bootstrap, pool=self.pool, **kwargs)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def beside_stack(stack: object, *, router_port: int = 0,
                       goal_path: Path | None = None) -> AsyncIterator[LocalControl]:
    """Run upgrade control for ``stack`` (a started ``vigil_local.stack.Stack``)."""
    cfg = stack.config  # type: ignore[attr-defined]
    version = cfg.version
    goal = GoalFile(goal_path or cfg.state_dir / "upgrade" / "goal.json")
    async with db.pool(stack.database.url, max_size=4) as pool:  # type: ignore[attr-defined]
        store = VersionStore(pool)
        for stale in await store.versions():
            # Other versions' processes ended with the previous `make run`; the controller
            # starts them again if the goal file still lists them.
            if stale != version:
                await store.register(stale, STOPPED)
        await store.register(version, READY, stack.api_address,  # type: ignore[attr-defined]
                             stack.gateway_address)  # type: ignore[attr-defined]
        primary = await store.initialize(version, by="make run")
        if primary.version == version and not goal.read():
            goal.write([version])
        versions = LocalVersions(
            store, bootstrap=stack.bootstrap, database_url=stack.database.url,  # type: ignore[attr-defined]
            state_dir=cfg.state_dir, environ=cfg.environ,
            delegate=DelegateSpec(account="demo", token=stack.delegate_token))  # type: ignore[attr-defined]

        async def stop_stack_version() -> None:
            # n-1 torn down by a later upgrade: the stack's own service and delegate processes.
            for proc in reversed(stack.supervisor.processes):  # type: ignore[attr-defined]
                await stack.supervisor.stop(proc.name)  # type: ignore[attr-defined]

        versions.adopt(version, [("orchestrator", stack.api_address),  # type: ignore[attr-defined]
                                 ("delegate-gateway", stack.gateway_address)],  # type: ignore[attr-defined]
                       stop_stack_version)
        controller = Controller(versions, store, goal)
        task = asyncio.create_task(controller.run(), name="upgrade-controller")
        try:
            async with router.serve(router_port, pool, stack.bootstrap) as (port, routes):  # type: ignore[attr-defined]
                yield LocalControl(f"127.0.0.1:{port}", goal, store, versions, pool,
                                   stack.bootstrap, routes)  # type: ignore[attr-defined]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await versions.close()
