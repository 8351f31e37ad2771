"""Local stand-in for a Kubernetes cluster: kmock's stateful API server plus a toy controller.

Not a cluster. kmock's ``KubernetesEmulator`` keeps objects in memory and serves the real
Kubernetes REST paths, so the delegate's real ``kubernetes`` client talks to it over HTTP. Two
things a real cluster does are added here, because the rollout logic depends on them:

- the API server bumps ``metadata.generation`` on every spec change (kmock does not);
- the Deployment controller reports status for the new generation (:class:`ToyController`):
  all replicas updated and available, or, for an image whose name contains ``crashloop``, a
  ``ProgressDeadlineExceeded`` condition.

The production path is the same client against a kubeconfig or in-cluster service account
(``vigil_delegate.targets.kubernetes.api_client``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import kmock
from kubernetes import client


class GenerationBumpingEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API server's ``metadata.generation`` bookkeeping."""

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        data = request.data if isinstance(request.data, dict) else None
        if data is not None and request.resource is not None and not request.subresource:
            meta = data.setdefault("metadata", {}) if "spec" in data else None
            if request.action == kmock.action.CREATE:
                data.setdefault("metadata", {})["generation"] = 1
            elif request.action == kmock.action.UPDATE and meta is not None:
                key = (request.resource, request.namespace, request.name)
                current = self.objects[key] if key in self.objects else {}  # noqa: SIM401 (no .get)
                meta["generation"] = (current.get("metadata", {}).get("generation") or 0) + 1
        return await super()._handle(request)


class ToyController:
    """Plays the Deployment controller: reports each new generation's rollout as finished."""

    def __init__(self, api: client.ApiClient, *, delay_s: float = 0.2) -> None:
        self._apps = client.AppsV1Api(api)
        self._delay_s = delay_s

    async def run(self) -> None:
        """Reconciles every Deployment, forever (cancel to stop)."""
        while True:
            listing = await asyncio.to_thread(self._apps.list_deployment_for_all_namespaces)
            for dep in listing.items:
                generation = dep.metadata.generation or 0
                if (dep.status and dep.status.observed_generation or 0) < generation:
                    await asyncio.sleep(self._delay_s)  # a rollout takes a moment
                    await asyncio.to_thread(
                        self._apps.patch_namespaced_deployment_status, dep.metadata.name,
                        dep.metadata.namespace, {"status": _status(dep, generation)},
                        _content_type="application/merge-patch+json")
            await asyncio.sleep(0.05)


def _status(dep: Any, generation: int) -> dict[str, Any]:
    replicas = dep.spec.replicas if dep.spec.replicas is not None else 1
    image = dep.spec.template.spec.containers[0].image
    if "crashloop" in image:
        return {"observedGeneration": generation, "replicas": replicas,
                "updatedReplicas": replicas, "availableReplicas": 0, "conditions": [{
                    "type": "Progressing", "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{dep.metadata.name}-1" has timed out progressing.'}]}
    return {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas, "conditions": [{
                "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[tuple[GenerationBumpingEmulator, client.ApiClient]]:
    """Starts the stand-in API server and the toy controller; yields (emulator, client)."""
    async with GenerationBumpingEmulator() as emulator, kmock.Server(emulator):
        emulator.resources["apps/v1/deployments"] = kmock.ResourceInfo(
            kind="Deployment", singular="deployment", namespaced=True,
            subresources={"status", "scale"})
        emulator.resources["v1/services"] = kmock.ResourceInfo(
            kind="Service", singular="service", namespaced=True, subresources={"status"})
        configuration = client.Configuration(host=str(emulator.url).rstrip("/"))
        api = client.ApiClient(configuration)
        controller = asyncio.ensure_future(ToyController(api).run())
        try:
            yield emulator, api
        finally:
            controller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await controller
            api.close()
