"""Kubernetes deploy strategies through the real client against the kmock stand-in cluster.

See kube_standin.py: kmock's stateful API server stands in for a cluster (none can run here);
the delegate code under test is the production code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kube_standin import cluster
from kubernetes import client

from vigil.delegate.v1 import kubernetes_pb2
from vigil_delegate.targets.kubernetes import KubernetesError, KubernetesTarget
from vigil_delegate.targets.manifests import ManifestError
from vigil_delegate.targets.rollout import RolloutFailed

S = kubernetes_pb2.KubernetesStrategy
NS = "shop-prod"


@pytest.fixture
async def k8s() -> AsyncIterator[tuple[KubernetesTarget, client.ApiClient]]:
    async with cluster() as (_, api):
        yield KubernetesTarget(api, poll_interval_s=0.05), api


def deploy(strategy: int, image: str, **fields: Any) -> kubernetes_pb2.KubernetesDeploy:
    return kubernetes_pb2.KubernetesDeploy(
        strategy=strategy, namespace=NS, name="shop", image=image, rollout_timeout_seconds=10,
        ports=[kubernetes_pb2.KubernetesPort(name="http", container_port=8080,
                                             service_port=80)],
        readiness_path="/healthz", **fields)


def rollback(strategy: int) -> kubernetes_pb2.KubernetesRollback:
    return kubernetes_pb2.KubernetesRollback(strategy=strategy, namespace=NS, name="shop",
                                             rollout_timeout_seconds=10)


# The stand-in server runs on the test's event loop: the sync client must call from a thread.
async def read_deployment(api: client.ApiClient, name: str) -> client.V1Deployment:
    return await asyncio.to_thread(client.AppsV1Api(api).read_namespaced_deployment, name, NS)


async def image_of(api: client.ApiClient, name: str) -> str:
    return (await read_deployment(api, name)).spec.template.spec.containers[0].image


async def deployment_names(api: client.ApiClient) -> set[str]:
    listing = await asyncio.to_thread(client.AppsV1Api(api).list_namespaced_deployment, NS)
    return {d.metadata.name for d in listing.items}


async def selector(api: client.ApiClient) -> dict[str, str]:
    svc = await asyncio.to_thread(client.CoreV1Api(api).read_namespaced_service, "shop", NS)
    return svc.spec.selector


async def test_rolling_update_waits_for_rollout_and_rolls_back_to_the_previous_template(
        k8s: tuple[KubernetesTarget, client.ApiClient]) -> None:
    target, api = k8s
    lines: list[str] = []
    first = await target.deploy(deploy(S.KUBERNETES_STRATEGY_ROLLING, "shop:1", replicas=3),
                                lines.append)
    assert first == "shop rolled out shop:1 (3 replicas)"
    assert "deployment shop successfully rolled out (3 replicas available)" in lines
    assert await selector(api) == {"app": "shop"}

    await target.deploy(deploy(S.KUBERNETES_STRATEGY_ROLLING, "shop:2", replicas=3), lines.append)
    assert await image_of(api, "shop") == "shop:2"
    again = await target.deploy(deploy(S.KUBERNETES_STRATEGY_ROLLING, "shop:2", replicas=3),
                                lines.append)
    assert again == "shop already at shop:2 (3 replicas)"

    assert await target.rollback(rollback(S.KUBERNETES_STRATEGY_ROLLING), lines.append) == (
        "shop rolled back to shop:1")
    assert await image_of(api, "shop") == "shop:1"


async def test_canary_scales_in_phases_beside_the_primary_then_promotes(
        k8s: tuple[KubernetesTarget, client.ApiClient]) -> None:
    target, api = k8s
    lines: list[str] = []
    with pytest.raises(KubernetesError, match="no primary to run a canary beside"):
        await target.deploy(deploy(S.KUBERNETES_STRATEGY_CANARY, "shop:2"), lines.append)
    await target.deploy(deploy(S.KUBERNETES_STRATEGY_ROLLING, "shop:1", replicas=4), lines.append)

    summary = await target.deploy(deploy(S.KUBERNETES_STRATEGY_CANARY, "shop:2",
                                         canary_phases=[1, 2]), lines.append)
    assert summary == "shop-canary runs shop:2 with 2 replicas"
    assert [line for line in lines if line.startswith("canary phase")] == [
        "canary phase 1/2: 1 replicas of shop:2", "canary phase 2/2: 2 replicas of shop:2"]
    canary = await read_deployment(api, "shop-canary")
    assert canary.spec.replicas == 2
    assert canary.spec.template.metadata.labels["vigil.dev/track"] == "canary"
    assert await image_of(api, "shop") == "shop:1"
    assert await selector(api) == {"app": "shop"}  # the Service reaches primary and canary pods

    promoted = await target.deploy(deploy(S.KUBERNETES_STRATEGY_CANARY, "shop:2", promote=True),
                                   lines.append)
    assert promoted == "promoted: shop rolled out shop:2 (4 replicas)"
    assert await deployment_names(api) == {"shop"}
    assert await image_of(api, "shop") == "shop:2"


async def test_canary_rollback_removes_the_canary_and_leaves_the_primary(
        k8s: tuple[KubernetesTarget, client.ApiClient]) -> None:
    target, api = k8s
    await target.deploy(deploy(S.KUBERNETES_STRATEGY_ROLLING, "shop:1"), print)
    await target.deploy(deploy(S.KUBERNETES_STRATEGY_CANARY, "shop:2"), print)
    assert await deployment_names(api) == {"shop", "shop-canary"}
    assert await target.rollback(rollback(S.KUBERNETES_STRATEGY_CANARY), print) == (
        "shop canary removed")
    assert await deployment_names(api) == {"shop"}
    assert await image_of(api, "shop") == "shop:1"


async def test_blue_green_deploys_the_idle_slot_switches_the_service_and_switches_back(
        k8s: tuple[KubernetesTarget, client.ApiClient]) -> None:
    target, api = k8s
    lines: list[str] = []
    assert await target.deploy(deploy(S.KUBERNETES_STRATEGY_BLUE_GREEN, "shop:1"),
                               lines.append) == "shop switched to slot blue running shop:1"
    assert await selector(api) == {"app": "shop", "vigil.dev/slot": "blue"}

    staged = await target.deploy(deploy(S.KUBERNETES_STRATEGY_BLUE_GREEN, "shop:2",
                                        blue_green_skip_switch=True), lines.append)
    assert staged == "shop-green ready with shop:2; traffic stays on blue"
    assert (await selector(api))["vigil.dev/slot"] == "blue"
    switched = await target.deploy(deploy(S.KUBERNETES_STRATEGY_BLUE_GREEN, "shop:2"),
                                   lines.append)
    assert switched == "shop switched to slot green running shop:2"
    assert (await selector(api))["vigil.dev/slot"] == "green"
    assert await image_of(api, "shop-blue") == "shop:1"
    assert await image_of(api, "shop-green") == "shop:2"
    assert await target.deploy(deploy(S.KUBERNETES_STRATEGY_BLUE_GREEN, "shop:2"),
                               lines.append) == "shop already live: shop:2 in slot green"

    assert await target.rollback(rollback(S.KUBERNETES_STRATEGY_BLUE_GREEN), lines.append) == (
        "shop switched back from green to blue")
    assert (await selector(api))["vigil.dev/slot"] == "blue"


async def test_a_rollout_past_its_progress_deadline_fails_with_the_controllers_message(
        k8s: tuple[KubernetesTarget, client.ApiClient]) -> None:
    target, _ = k8s
    with pytest.raises(RolloutFailed, match="exceeded its progress deadline: ReplicaSet"):
        await target.deploy(deploy(S.KUBERNETES_STRATEGY_ROLLING, "shop:crashloop"), print)


async def test_an_invalid_manifest_is_refused_before_anything_is_sent(
        k8s: tuple[KubernetesTarget, client.ApiClient]) -> None:
    target, api = k8s
    bad = deploy(S.KUBERNETES_STRATEGY_ROLLING, "shop:1")
    bad.ports[0].container_port = 70000
    with pytest.raises(ManifestError, match=r"ports\[0\].container_port: 70000 is not in"):
        await target.deploy(bad, print)
    with pytest.raises(ManifestError, match="must be a DNS-1035 label"):
        await target.deploy(kubernetes_pb2.KubernetesDeploy(
            strategy=S.KUBERNETES_STRATEGY_ROLLING, name="Shop_1", image="x"), print)
    assert await deployment_names(api) == set()


async def test_waiting_for_a_missing_deployment_fails_naming_it(
        k8s: tuple[KubernetesTarget, client.ApiClient]) -> None:
    target, _ = k8s
    with pytest.raises(KubernetesError, match="deployment shop-prod/nope not found"):
        await target.wait_rollout(NS, "nope", 1, print)
