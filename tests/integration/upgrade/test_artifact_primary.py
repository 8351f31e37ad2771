"""Issue 4: with v1 and v2 both running, both orchestrators read the public artifacts topic;
only the version that was primary when the artifact was published starts its executions."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio

from vigil.events.v1 import artifact_pb2
from vigil_common import envelope
from vigil_orchestrator.adapters.postgres import PostgresStore
from vigil_orchestrator.handlers import Handlers
from vigil_upgrade.adapters.postgres import VersionStore
from vigil_upgrade.domain import PrimaryChangeKind

pytestmark = pytest.mark.asyncio

PIPELINE = """
name: ship-checkout
inputs:
  version: none
triggers:
  - artifact: {service: checkout, input: version}
stages:
  - name: ship
    workflow:
      phases:
        - name: p
          steps:
            - {name: announce, type: noop}
"""


@pytest_asyncio.fixture
async def pool(own_database):
    return own_database[0]


def _published(at: datetime) -> envelope.Envelope:
    headers, value = envelope.encode(artifact_pb2.ArtifactPublished(
        account_id="acme", service="checkout", version=uuid.uuid4().hex[:6]), source="ci",
        event_id=str(uuid.uuid4()), time=at)
    return envelope.decode(headers, value)


async def _versions_started(pool) -> list[str]:
    rows = await pool.fetch("SELECT vigil_version FROM executions ORDER BY created_at")
    return [r["vigil_version"] for r in rows]


async def test_only_the_primary_of_the_artifacts_time_starts_executions(pool):
    store, versions = PostgresStore(pool), VersionStore(pool)
    v1, v2 = Handlers(store, "v1"), Handlers(store, "v2")
    await v1.apply_pipeline("acme", PIPELINE)

    before = _published(datetime.now(UTC) - timedelta(minutes=5))
    for handlers in (v1, v2):  # no primary recorded: one-version installation, any acts
        await handlers.on_event(before)
    assert await _versions_started(pool) == ["v1"]

    await versions.initialize("v1", by="test")
    await versions.register("v1", "READY")
    await versions.register("v2", "READY")
    await versions.switch("v2", PrimaryChangeKind.SWITCH, expected="v1", by="test", reason="")
    late = _published(datetime.now(UTC) - timedelta(minutes=1))  # published before the switch
    fresh = _published(datetime.now(UTC) + timedelta(seconds=1))
    for event in (late, fresh):
        for handlers in (v2, v1):
            await handlers.on_event(event)
    assert await _versions_started(pool) == ["v1", "v1", "v2"]

    await versions.register("v1", "STOPPED")  # torn down: its late inputs go to the primary
    for handlers in (v1, v2):
        await handlers.on_event(_published(datetime.now(UTC) - timedelta(minutes=1)))
    assert await _versions_started(pool) == ["v1", "v1", "v2", "v2"]
