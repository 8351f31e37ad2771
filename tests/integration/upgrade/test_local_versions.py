"""Issue 4, locally: a version that cannot start is recorded FAILED with the reason, leaves no
process behind, keeps the primary untouched, and is marked STOPPED once removed from the goal
file. Real service processes, the real broker and PostgreSQL."""

import asyncio
import os

import pytest
import pytest_asyncio

from vigil_upgrade.adapters.local import Controller, GoalFile, LocalVersions
from vigil_upgrade.adapters.postgres import VersionStore

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def store(own_database):
    pool, url = own_database
    return VersionStore(pool), url


async def test_a_version_that_cannot_start_is_failed_cleaned_up_then_stopped(
        store, kafka_bootstrap, tmp_path):
    store, url = store
    await store.initialize("v1", by="test")
    # Every service refuses this setting at start (ConfigError), as a broken release would.
    versions = LocalVersions(store, bootstrap=kafka_bootstrap, database_url=url,
                             state_dir=tmp_path, delegate=None,
                             environ={**os.environ, "KAFKA_FETCH_MAX_WAIT_MS": "soon"})
    goal = GoalFile(tmp_path / "goal.json")
    controller = Controller(versions, store, goal)
    try:
        goal.write(["v3"])
        await asyncio.wait_for(controller.reconcile_once(), 60)
        state = (await store.versions())["v3"].state
        assert state.startswith("FAILED: v3 did not come up"), state
        assert "exited with code" in state
        assert versions.supervisor.processes == [], "nothing of v3 is left running"
        assert versions.owned() == []
        assert (await store.primary()).version == "v1"

        goal.write([])
        await controller.reconcile_once()
        assert (await store.versions())["v3"].state == "STOPPED"
    finally:
        await versions.close()
