"""The Kubernetes deployment target: rolling, canary and blue/green through the real client.

The ``kubernetes`` client is synchronous; every call runs in a worker thread
(``asyncio.to_thread``). Objects are patched with JSON merge patches
(``application/merge-patch+json``): the pod template Vigil sends replaces the old one's lists
(containers, env), so a field dropped from the spec really goes away.

Objects per strategy (``<name>`` is KubernetesDeploy.name):

- rolling: Deployment ``<name>`` (selector ``app``, ``vigil.dev/track=primary``); before its
  template changes, the old template is kept in the annotation ``vigil.dev/previous-template``
  so a rollback restores it without relying on ReplicaSet history.
- canary: Deployment ``<name>-canary`` (``vigil.dev/track=canary``) beside the primary; both
  carry ``app=<name>``, so the Service ``<name>`` sends traffic to both.
- blue/green: Deployments ``<name>-blue`` / ``<name>-green``; the Service ``<name>`` selects
  ``vigil.dev/slot`` of the live one, and remembers the previous slot in the annotation
  ``vigil.dev/previous-slot``.

Production uses a kubeconfig or the in-cluster service account (:func:`api_client`); the tests
run the same code against kmock's stateful Kubernetes API stand-in.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, config

from vigil.delegate.v1 import kubernetes_pb2
from vigil_delegate.targets import manifests
from vigil_delegate.targets.manifests import APP, SLOT, SPEC_HASH, TRACK, PortSpec, Workload
from vigil_delegate.targets.rollout import RolloutFailed, rollout_status

Progress = Callable[[str], None]
Strategy = kubernetes_pb2.KubernetesStrategy

PREVIOUS_TEMPLATE = "vigil.dev/previous-template"
PREVIOUS_SLOT = "vigil.dev/previous-slot"
DEFAULT_TIMEOUT_S = 300.0
_MERGE_PATCH = "application/merge-patch+json"


class KubernetesError(Exception):
    """A Kubernetes task failed; the message names the object and the API's reason."""


def api_client(kubeconfig: str = "") -> client.ApiClient:
    """Builds the API client for the cluster this delegate manages.

    Args:
        kubeconfig: Path of a kubeconfig file (DELEGATE_KUBECONFIG). Empty: the in-cluster
            service account when running in a pod, else the client's default kubeconfig
            (``$KUBECONFIG`` or ``~/.kube/config``).
    """
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config()


class KubernetesTarget:
    """Deploys, waits for and rolls back workloads in one cluster.

    Every operation is idempotent: repeating a deploy with the same spec patches nothing and
    only waits for the rollout.
    """

    def __init__(self, api: client.ApiClient, *, poll_interval_s: float = 1.0) -> None:
        """Creates a target using ``api`` (see :func:`api_client`); the caller closes it."""
        self._api = api
        self._apps = client.AppsV1Api(api)
        self._core = client.CoreV1Api(api)
        self._poll_s = poll_interval_s

    async def deploy(self, spec: kubernetes_pb2.KubernetesDeploy, progress: Progress) -> str:
        """Runs one deploy; returns a one-line summary.

        Raises:
            KubernetesError, manifests.ManifestError, RolloutFailed: with the reason.
        """
        workload = _workload(spec)
        manifests.check_name(spec.name)
        timeout = spec.rollout_timeout_seconds or DEFAULT_TIMEOUT_S
        if spec.strategy == Strategy.KUBERNETES_STRATEGY_ROLLING:
            return await self._rolling(workload, spec.replicas or 1, timeout, progress)
        if spec.strategy == Strategy.KUBERNETES_STRATEGY_CANARY:
            if spec.promote:
                return await self._promote(workload, spec.replicas, timeout, progress)
            return await self._canary(workload, list(spec.canary_phases) or [1],
                                      spec.phase_pause_seconds, timeout, progress)
        if spec.strategy == Strategy.KUBERNETES_STRATEGY_BLUE_GREEN:
            return await self._blue_green(workload, spec.replicas or 1,
                                          not spec.blue_green_skip_switch, timeout, progress)
        raise KubernetesError(f"strategy: must be rolling, canary or blue_green, got "
                              f"{Strategy.Name(spec.strategy)}")

    async def rollback(self, spec: kubernetes_pb2.KubernetesRollback, progress: Progress) -> str:
        """Undoes the last deploy of ``spec.name`` made with ``spec.strategy``."""
        ns, name = spec.namespace or "default", spec.name
        timeout = spec.rollout_timeout_seconds or DEFAULT_TIMEOUT_S
        if spec.strategy == Strategy.KUBERNETES_STRATEGY_ROLLING:
            current = await self._get("Deployment", ns, name)
            annotations = (current or {}).get("metadata", {}).get("annotations") or {}
            if current is None or PREVIOUS_TEMPLATE not in annotations:
                raise KubernetesError(f"deployment {ns}/{name}: no previous template to roll "
                                      "back to (never updated by Vigil)")
            previous = json.loads(annotations[PREVIOUS_TEMPLATE])
            await self._patch("Deployment", ns, name, {
                "metadata": {"annotations": {
                    PREVIOUS_TEMPLATE: json.dumps(current["spec"]["template"])}},
                "spec": {"template": previous}})
            progress(f"deployment {ns}/{name}: previous pod template restored")
            await self.wait_rollout(ns, name, timeout, progress)
            return f"{name} rolled back to {_image(previous)}"
        if spec.strategy == Strategy.KUBERNETES_STRATEGY_CANARY:
            removed = await self._delete_deployment(ns, f"{name}-canary")
            progress(f"deployment {ns}/{name}-canary " + ("deleted" if removed else "not found"))
            return f"{name} canary removed" if removed else f"{name} had no canary"
        if spec.strategy == Strategy.KUBERNETES_STRATEGY_BLUE_GREEN:
            svc = await self._get("Service", ns, name)
            annotations = (svc or {}).get("metadata", {}).get("annotations") or {}
            if svc is None or PREVIOUS_SLOT not in annotations:
                raise KubernetesError(f"service {ns}/{name}: no previous slot to switch back to")
            live, previous = svc["spec"]["selector"].get(SLOT), annotations[PREVIOUS_SLOT]
            await self.wait_rollout(ns, f"{name}-{previous}", timeout, progress)
            await self._switch(ns, name, previous, live, progress)
            return f"{name} switched back from {live} to {previous}"
        raise KubernetesError(f"strategy: must be rolling, canary or blue_green, got "
                              f"{Strategy.Name(spec.strategy)}")

    async def wait_rollout(self, namespace: str, deployment: str, timeout_s: float,
                           progress: Progress) -> str:
        """Polls the Deployment until its rollout is complete; returns the final message.

        Raises:
            KubernetesError: The Deployment does not exist, or ``timeout_s`` passed (with the
                last status).
            RolloutFailed: The controller reports ProgressDeadlineExceeded.
        """
        deadline = time.monotonic() + timeout_s
        last = ""
        while True:
            current = await self._get("Deployment", namespace, deployment)
            if current is None:
                raise KubernetesError(f"deployment {namespace}/{deployment} not found")
            status = rollout_status(current)
            if status.message != last:
                progress(status.message)
                last = status.message
            if status.done:
                return status.message
            if time.monotonic() >= deadline:
                raise KubernetesError(f"rollout of {namespace}/{deployment} not complete after "
                                      f"{timeout_s:g}s: {status.message}")
            await asyncio.sleep(self._poll_s)

    async def _rolling(self, w: Workload, replicas: int, timeout: float,
                       progress: Progress) -> str:
        selector = {APP: w.name, TRACK: "primary"}
        changed = await self._apply(manifests.deployment(w.name, w, replicas, selector), progress)
        if w.ports:
            await self._apply_service(w, {APP: w.name}, progress)
        await self.wait_rollout(w.namespace, w.name, timeout, progress)
        return (f"{w.name} {'rolled out' if changed else 'already at'} {w.image} "
                f"({replicas} replicas)")

    async def _canary(self, w: Workload, phases: list[int], pause_s: float, timeout: float,
                      progress: Progress) -> str:
        if await self._get("Deployment", w.namespace, w.name) is None:
            raise KubernetesError(f"deployment {w.namespace}/{w.name}: no primary to run a "
                                  "canary beside; deploy it first with the rolling strategy")
        name, selector = f"{w.name}-canary", {APP: w.name, TRACK: "canary"}
        for number, replicas in enumerate(phases, start=1):
            await self._apply(manifests.deployment(name, w, replicas, selector), progress)
            await self.wait_rollout(w.namespace, name, timeout, progress)
            progress(f"canary phase {number}/{len(phases)}: {replicas} replicas of {w.image}")
            if number < len(phases) and pause_s > 0:
                await asyncio.sleep(pause_s)
        if w.ports:
            await self._apply_service(w, {APP: w.name}, progress)
        return f"{name} runs {w.image} with {phases[-1]} replicas"

    async def _promote(self, w: Workload, replicas: int, timeout: float,
                       progress: Progress) -> str:
        primary = await self._get("Deployment", w.namespace, w.name)
        if primary is None:
            raise KubernetesError(f"deployment {w.namespace}/{w.name}: no primary to promote to")
        replicas = replicas or primary["spec"].get("replicas", 1)
        summary = await self._rolling(w, replicas, timeout, progress)
        removed = await self._delete_deployment(w.namespace, f"{w.name}-canary")
        progress(f"deployment {w.namespace}/{w.name}-canary "
                 + ("deleted" if removed else "was already gone"))
        return f"promoted: {summary}"

    async def _blue_green(self, w: Workload, replicas: int, switch: bool, timeout: float,
                          progress: Progress) -> str:
        if not w.ports:
            raise KubernetesError("blue_green needs ports: the Service switches the traffic")
        svc = await self._get("Service", w.namespace, w.name)
        live = (svc or {}).get("spec", {}).get("selector", {}).get(SLOT)
        target = "green" if live == "blue" else "blue"
        wanted = _slot(w, target, replicas)
        if live is not None and await self._runs(w.namespace, _slot(w, live, replicas)):
            progress(f"{w.image} is already live in slot {live}")
            return f"{w.name} already live: {w.image} in slot {live}"
        await self._apply(wanted, progress)
        await self.wait_rollout(w.namespace, f"{w.name}-{target}", timeout, progress)
        if not switch:
            return f"{w.name}-{target} ready with {w.image}; traffic stays on {live}"
        if svc is None:
            await self._create("Service", manifests.service(w, {APP: w.name, SLOT: target}))
            progress(f"service {w.namespace}/{w.name} created on slot {target}")
        else:
            await self._switch(w.namespace, w.name, target, live, progress)
        return f"{w.name} switched to slot {target} running {w.image}"

    async def _switch(self, ns: str, name: str, to: str, previous: str | None,
                      progress: Progress) -> None:
        body: dict[str, Any] = {"spec": {"selector": {SLOT: to}}}
        if previous:
            body["metadata"] = {"annotations": {PREVIOUS_SLOT: previous}}
        await self._patch("Service", ns, name, body)
        progress(f"service {ns}/{name} now selects slot {to}"
                 + (f" (was {previous})" if previous else ""))

    async def _runs(self, ns: str, wanted: dict[str, Any]) -> bool:
        current = await self._get("Deployment", ns, wanted["metadata"]["name"])
        return current is not None and _hash(current) == _hash(wanted)

    async def _apply(self, manifest: dict[str, Any], progress: Progress) -> bool:
        """Creates or patches a Deployment; returns whether anything changed."""
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        current = await self._get("Deployment", ns, name)
        if current is None:
            await self._create("Deployment", manifest)
            progress(f"deployment {ns}/{name} created ({manifest['spec']['replicas']} replicas)")
            return True
        if current["spec"]["selector"] != manifest["spec"]["selector"]:
            raise KubernetesError(f"deployment {ns}/{name}: selector "
                                  f"{current['spec']['selector']} is not Vigil's "
                                  f"{manifest['spec']['selector']} (selectors are immutable)")
        same_template = _hash(current) == _hash(manifest)
        if same_template and current["spec"].get("replicas") == manifest["spec"]["replicas"]:
            progress(f"deployment {ns}/{name} unchanged")
            return False
        body: dict[str, Any] = {"spec": {"replicas": manifest["spec"]["replicas"]}}
        if not same_template:
            body["spec"]["template"] = manifest["spec"]["template"]
            body["metadata"] = {"annotations": {
                PREVIOUS_TEMPLATE: json.dumps(current["spec"]["template"])}}
        await self._patch("Deployment", ns, name, body)
        progress(f"deployment {ns}/{name} updated: "
                 + (f"image {_image(manifest['spec']['template'])}, " if not same_template else "")
                 + f"{manifest['spec']['replicas']} replicas")
        return True

    async def _apply_service(self, w: Workload, selector: dict[str, str],
                             progress: Progress) -> None:
        manifest = manifests.service(w, selector)
        if await self._get("Service", w.namespace, w.name) is None:
            await self._create("Service", manifest)
            progress(f"service {w.namespace}/{w.name} created")
        else:
            await self._patch("Service", w.namespace, w.name, {"spec": manifest["spec"]})

    async def _get(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        read = (self._apps.read_namespaced_deployment if kind == "Deployment"
                else self._core.read_namespaced_service)
        try:
            obj = await asyncio.to_thread(read, name, ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise _error("read", kind, ns, name, exc) from None
        return self._api.sanitize_for_serialization(obj)

    async def _create(self, kind: str, manifest: dict[str, Any]) -> None:
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        create = (self._apps.create_namespaced_deployment if kind == "Deployment"
                  else self._core.create_namespaced_service)
        try:
            await asyncio.to_thread(create, ns, manifest)
        except client.ApiException as exc:
            raise _error("create", kind, ns, name, exc) from None

    async def _patch(self, kind: str, ns: str, name: str, body: dict[str, Any]) -> None:
        patch = (self._apps.patch_namespaced_deployment if kind == "Deployment"
                 else self._core.patch_namespaced_service)
        try:
            await asyncio.to_thread(patch, name, ns, body, _content_type=_MERGE_PATCH)
        except client.ApiException as exc:
            raise _error("patch", kind, ns, name, exc) from None

    async def _delete_deployment(self, ns: str, name: str) -> bool:
        """Deletes the Deployment (and, in the foreground, its pods); False if it was absent."""
        try:
            await asyncio.to_thread(self._apps.delete_namespaced_deployment, name, ns,
                                    propagation_policy="Foreground")
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise _error("delete", "Deployment", ns, name, exc) from None
        return True


def _workload(spec: kubernetes_pb2.KubernetesDeploy) -> Workload:
    return Workload(
        name=spec.name, namespace=spec.namespace or "default", image=spec.image,
        labels={**spec.labels, APP: spec.name},
        ports=tuple(PortSpec(p.name, p.container_port, p.service_port) for p in spec.ports),
        env=dict(spec.env), args=tuple(spec.args), readiness_path=spec.readiness_path)


def _slot(w: Workload, slot: str, replicas: int) -> dict[str, Any]:
    return manifests.deployment(f"{w.name}-{slot}", w, replicas, {APP: w.name, SLOT: slot})


def _hash(deployment: dict[str, Any]) -> str | None:
    template = deployment.get("spec", {}).get("template", {})
    return (template.get("metadata", {}).get("annotations") or {}).get(SPEC_HASH)


def _image(template: dict[str, Any]) -> str:
    containers = template.get("spec", {}).get("containers") or [{}]
    return containers[0].get("image", "?")


def _error(verb: str, kind: str, ns: str, name: str, exc: client.ApiException) -> KubernetesError:
    message = exc.reason
    try:
        message = json.loads(exc.body or "{}").get("message") or message
    except (ValueError, AttributeError):
        pass
    return KubernetesError(f"{verb} {kind.lower()} {ns}/{name}: HTTP {exc.status}: {message}")


__all__ = ["KubernetesError", "KubernetesTarget", "RolloutFailed", "api_client"]
