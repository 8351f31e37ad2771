"""Issue 4 on Kubernetes: the upgrade procedure applies a version's objects beside the
primary, waits for its Deployments, switches the primary Services' selectors and moves the
delegates' header Ingress, rolls back, and tears n-1 down, all with the real `kubernetes`
client against kmock's stateful API stand-in (tests/integration/delegate/kube_standin.py) and
the primary record in a real PostgreSQL."""

import asyncio
import contextlib
import sys
from pathlib import Path

import kmock
import pytest
import pytest_asyncio

from vigil_upgrade.adapters import k8s
from vigil_upgrade.adapters.postgres import VersionStore
from vigil_upgrade.domain import UpgradeError
from vigil_upgrade.procedure import Procedure

# The delegate tests' stand-in (kmock emulator + toy Deployment controller), shared.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "delegate"))
from kube_standin import cluster  # noqa: E402

pytestmark = pytest.mark.asyncio
NS = "vigil"


@pytest_asyncio.fixture
async def kube():
    async with cluster() as (emulator, api):
        for path, kind, singular in [
                ("policy/v1/poddisruptionbudgets", "PodDisruptionBudget", "poddisruptionbudget"),
                ("networking.k8s.io/v1/ingresses", "Ingress", "ingress"),
                ("batch/v1/jobs", "Job", "job")]:
            emulator.resources[path] = kmock.ResourceInfo(kind=kind, singular=singular,
                                                          namespaced=True)
        yield k8s.KubernetesPlatform(api, NS, poll=0.05)


@pytest_asyncio.fixture
async def store(own_database):
    return VersionStore(own_database[0])


async def _selector(platform: k8s.KubernetesPlatform, name: str) -> str:
    svc = await asyncio.to_thread(platform._core.read_namespaced_service, name, NS)
    return svc.spec.selector[k8s.VERSION_LABEL]


async def _ingresses(platform: k8s.KubernetesPlatform) -> set[str]:
    listing = await asyncio.to_thread(platform._net.list_namespaced_ingress, NS)
    return {i.metadata.name for i in listing.items}


async def test_upgrade_switches_the_primary_services_and_rollback_flips_them_back(kube, store):
    await kube.install("v1")
    await store.initialize("v1", by="test")
    said: list[str] = []
    procedure = Procedure(store, kube, min_delegates=0, say=said.append)

    await procedure.run("v2", timeout=30, poll=0.05)
    assert await kube.running() == ["v1", "v2"], "v1 keeps running beside the new primary"
    assert await _selector(kube, "vigil-api") == "v2"
    assert await _selector(kube, "vigil-delegates") == "v2"
    assert (await store.primary()).version == "v2"
    # The primary's delegates reach it through vigil-delegates; v1's keep their header rule.
    assert await _ingresses(kube) == {"vigil-api", "vigil-delegates", "vigil-delegates-v1"}
    assert said[0] == "starting v2 beside the primary"

    record = await procedure.rollback("test rollback")
    assert (record.version, record.previous_version) == ("v1", "v2")
    assert await _selector(kube, "vigil-api") == "v1"
    assert await _ingresses(kube) == {"vigil-api", "vigil-delegates", "vigil-delegates-v2"}


async def test_the_next_upgrade_tears_down_n_minus_1_first(kube, store):
    await kube.install("v1")
    await store.initialize("v1", by="test")
    procedure = Procedure(store, kube, min_delegates=0, say=lambda _: None)
    await procedure.run("v2", timeout=30, poll=0.05)
    await procedure.run("v3", timeout=30, poll=0.05)
    assert await kube.running() == ["v2", "v3"]
    assert await kube.problems("v1") == [f"vigil-{s}-v1: missing" for s in k8s.SERVICES]
    assert await _selector(kube, "vigil-api") == "v3"
    assert await _ingresses(kube) == {"vigil-api", "vigil-delegates", "vigil-delegates-v2"}


async def test_a_version_whose_deployments_never_get_ready_is_not_switched_to(kube, store):
    await kube.install("v1")
    await store.initialize("v1", by="test")
    crashing = k8s.KubernetesPlatform(kube._apps.api_client, NS, image="crashloop:{version}",
                                      poll=0.05)
    procedure = Procedure(store, crashing, min_delegates=0, say=lambda _: None)
    with pytest.raises(UpgradeError, match=r"v2 not ready after [0-9.]+s: "
                                         r"vigil-orchestrator-v2: 0/2"):
        await procedure.run("v2", timeout=1, poll=0.05)
    assert await _selector(kube, "vigil-api") == "v1"
    assert (await store.primary()).version == "v1"
    with contextlib.suppress(UpgradeError):
        await procedure.switch("v2")
    assert (await store.primary()).version == "v1"
