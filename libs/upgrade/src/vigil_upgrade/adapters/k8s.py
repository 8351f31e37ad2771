"""Vigil's versions on Kubernetes: objects per version, the primary Services, the switch.

Per version ``vN`` (``version_objects``): a Deployment, a PodDisruptionBudget and (for the
gRPC servers) a Service per service, all labelled ``vigil.io/version: vN``, a migration Job,
and an Ingress that sends delegates whose ``vigil-version`` header says ``vN`` to that version's
gateway. Shared (``primary_objects``): the primary Services ``vigil-api`` and
``vigil-delegates``, whose selectors name the primary version; switching is one selector patch
each. Rendered copies live in infra/k8s/ (``python -m vigil_upgrade.adapters.k8s render``).

Header routing uses ingress-nginx canary-by-header rules, which apply one canary per host and
path: delegates without the header, or with the primary's version, reach ``vigil-delegates``
(the primary); the one non-primary version (the article keeps two) has its header Ingress. So
at a switch the new primary's header Ingress is removed and the old primary's is created.

The ``kubernetes`` client is synchronous; every call goes through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import yaml
from kubernetes import client

from vigil_upgrade.domain import UpgradeError, check_version_name

VERSION_LABEL = "vigil.io/version"
PART_OF = {"app.kubernetes.io/part-of": "vigil"}
DELEGATES_HOST = "delegates.vigil.example.com"
API_HOST = "api.vigil.example.com"


# name: (module, gRPC port or 0, replicas, cpu request, memory request, memory limit)
SERVICES: dict[str, tuple[str, int, int, str, str, str]] = {
    "orchestrator": ("vigil_orchestrator", 50051, 2, "250m", "256Mi", "512Mi"),
    "task-dispatch": ("vigil_dispatch", 0, 2, "100m", "128Mi", "256Mi"),
    "metric-analyzer": ("vigil_metric_analyzer", 0, 1, "250m", "512Mi", "1Gi"),
    "log-analyzer": ("vigil_log_analyzer", 50071, 1, "250m", "512Mi", "1Gi"),
    "delegate-gateway": ("vigil_gateway", 50061, 2, "250m", "256Mi", "1Gi"),
}
METRICS_PORT = 9100
PORT_ENV = {"orchestrator": "API_PORT", "log-analyzer": "API_PORT",
            "delegate-gateway": "GATEWAY_PORT"}


def _labels(service: str, version: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": f"vigil-{service}", **PART_OF, VERSION_LABEL: version}


def _env(version: str, service: str, port: int) -> list[dict[str, Any]]:
    env = [
        {"name": "VIGIL_VERSION", "value": version},
        {"name": "INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "METRICS_PORT", "value": str(METRICS_PORT)},
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "vigil-database",
                                                                "key": "url"}}},
    ]
    if port:
        env.append({"name": PORT_ENV[service], "value": str(port)})
    return env


def _probe(port: int, period: int) -> dict[str, Any]:
    # gRPC servers: the kubelet's gRPC probe asks their grpc.health.v1 service. The others
    # serve only Prometheus metrics: their HTTP endpoint answering means the loop is alive.
    handler = ({"grpc": {"port": port}} if port
               else {"httpGet": {"path": "/metrics", "port": METRICS_PORT}})
    return {**handler, "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": 3}


def deployment(service: str, version: str, image: str) -> dict[str, Any]:
    module, port, replicas, cpu, memory, memory_limit = SERVICES[service]
    ports = [{"name": "metrics", "containerPort": METRICS_PORT}]
    if port:
        ports.insert(0, {"name": "grpc", "containerPort": port})
    labels = _labels(service, version)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"vigil-{service}-{version}", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {"prometheus.io/scrape": "true",
                                             "prometheus.io/port": str(METRICS_PORT)}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": service,
                        "image": image.format(version=version),
                        "command": ["python", "-m", module],
                        "ports": ports,
                        "envFrom": [{"configMapRef": {"name": "vigil-config"}}],
                        "env": _env(version, service, port),
                        "resources": {"requests": {"cpu": cpu, "memory": memory},
                                      "limits": {"memory": memory_limit}},
                        "startupProbe": {**_probe(port, 2), "failureThreshold": 30},
                        "readinessProbe": _probe(port, 5),
                        "livenessProbe": _probe(port, 10),
                    }],
                },
            },
        },
    }


def version_objects(version: str, image: str = "ghcr.io/vigil/vigil:{version}"
                    ) -> list[dict[str, Any]]:
    """Every object of one version (no namespace: applied into the caller's)."""
    check_version_name(version)
    objects: list[dict[str, Any]] = [{
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"vigil-migrate-{version}",
                     "labels": {**PART_OF, VERSION_LABEL: version}},
        "spec": {"backoffLimit": 3, "template": {"spec": {
            "restartPolicy": "OnFailure",
            "containers": [{
                "name": "migrate", "image": image.format(version=version),
                "command": ["python", "-m", "vigil_common.migrate"],
                "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {
                    "name": "vigil-database", "key": "url"}}}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"memory": "256Mi"}}}]}}},
    }]
    for service, (_, port, replicas, *_rest) in SERVICES.items():
        labels = _labels(service, version)
        objects.append(deployment(service, version, image))
        objects.append({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": f"vigil-{service}-{version}", "labels": labels},
            "spec": {"selector": {"matchLabels": labels},
                     **({"minAvailable": 1} if replicas > 1 else {"maxUnavailable": 1})},
        })
        if port:
            objects.append({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": f"vigil-{service}-{version}", "labels": labels},
                "spec": {"selector": labels, "ports": [
                    {"name": "grpc", "port": port, "targetPort": "grpc",
                     "appProtocol": "kubernetes.io/h2c"}]},
            })
    return objects


def delegates_ingress(version: str) -> dict[str, Any]:
    """Delegates sending ``vigil-version: <version>`` go to that version's gateway."""
    port = SERVICES["delegate-gateway"][1]
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {
            "name": f"vigil-delegates-{version}",
            "labels": {**PART_OF, VERSION_LABEL: version},
            "annotations": {
                "nginx.ingress.kubernetes.io/backend-protocol": "GRPC",
                "nginx.ingress.kubernetes.io/canary": "true",
                "nginx.ingress.kubernetes.io/canary-by-header": "vigil-version",
                "nginx.ingress.kubernetes.io/canary-by-header-value": version,
                # Delegate streams live for hours: no proxy timeout cuts them.
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "86400",
            }},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": DELEGATES_HOST, "http": {
            "paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {
                "name": f"vigil-delegate-gateway-{version}", "port": {"number": port}}}}]}}]},
    }


def primary_objects(version: str) -> list[dict[str, Any]]:
    """The primary Services (API and delegates) and their Ingresses, pointing at ``version``."""
    api_port, gw_port = SERVICES["orchestrator"][1], SERVICES["delegate-gateway"][1]
    objects = []
    for name, service, port, host in (("vigil-api", "orchestrator", api_port, API_HOST),
                                      ("vigil-delegates", "delegate-gateway", gw_port,
                                       DELEGATES_HOST)):
        objects.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": {**PART_OF, "vigil.io/role": "primary"}},
            "spec": {"selector": _labels(service, version), "ports": [
                {"name": "grpc", "port": port, "targetPort": "grpc",
                 "appProtocol": "kubernetes.io/h2c"}]},
        })
        objects.append({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "labels": PART_OF, "annotations": {
                "nginx.ingress.kubernetes.io/backend-protocol": "GRPC",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "86400"}},
            "spec": {"ingressClassName": "nginx", "rules": [{"host": host, "http": {
                "paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {
                    "name": name, "port": {"number": port}}}}]}}]},
        })
    return objects


# ---- applying and switching -------------------------------------------------------------------

def api_client(kubeconfig: str = "") -> client.ApiClient:
    """A client for the cluster: ``kubeconfig``, else in-cluster, else ``~/.kube/config``."""
    from vigil_delegate.targets.kubernetes import api_client as build
    return build(kubeconfig)


class KubernetesPlatform:
    """Versions as Kubernetes objects in one namespace (the ``Platform`` of procedure.py)."""

    def __init__(self, api: client.ApiClient, namespace: str,
                 image: str = "ghcr.io/vigil/vigil:{version}", poll: float = 0.5):
        self._ns = namespace
        self._image = image
        self._poll = poll
        self._apps = client.AppsV1Api(api)
        self._core = client.CoreV1Api(api)
        self._policy = client.PolicyV1Api(api)
        self._net = client.NetworkingV1Api(api)
        self._batch = client.BatchV1Api(api)

    def _kinds(self) -> dict[str, tuple[Any, Any, Any, Any]]:
        # kind: (create, replace, delete, list) of the namespaced typed API.
        return {
            "Deployment": (self._apps.create_namespaced_deployment,
                           self._apps.replace_namespaced_deployment,
                           self._apps.delete_namespaced_deployment,
                           self._apps.list_namespaced_deployment),
            "Service": (self._core.create_namespaced_service,
                        self._core.patch_namespaced_service,
                        self._core.delete_namespaced_service,
                        self._core.list_namespaced_service),
            "PodDisruptionBudget": (self._policy.create_namespaced_pod_disruption_budget,
                                    self._policy.replace_namespaced_pod_disruption_budget,
                                    self._policy.delete_namespaced_pod_disruption_budget,
                                    self._policy.list_namespaced_pod_disruption_budget),
            "Ingress": (self._net.create_namespaced_ingress,
                        self._net.replace_namespaced_ingress,
                        self._net.delete_namespaced_ingress,
                        self._net.list_namespaced_ingress),
            "Job": (self._batch.create_namespaced_job, None,
                    self._batch.delete_namespaced_job, self._batch.list_namespaced_job),
        }

    async def apply(self, obj: dict[str, Any]) -> None:
        """Create ``obj``, or replace it if it exists (Jobs are immutable: kept)."""
        create, replace, _, _ = self._kinds()[obj["kind"]]
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": self._ns}}
        try:
            await asyncio.to_thread(create, self._ns, obj)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            if replace is not None:
                await asyncio.to_thread(replace, obj["metadata"]["name"], self._ns, obj)

    async def _delete(self, kind: str, name: str) -> None:
        try:
            await asyncio.to_thread(self._kinds()[kind][2], name, self._ns)
        except client.ApiException as exc:
            if exc.status != 404:
                raise

    async def install(self, primary: str) -> None:
        """First installation: the primary's version objects and the primary Services."""
        for obj in [*version_objects(primary, self._image), *primary_objects(primary)]:
            await self.apply(obj)

    async def start(self, version: str, timeout: float) -> None:
        for obj in [*version_objects(version, self._image), delegates_ingress(version)]:
            await self.apply(obj)
        deadline = time.monotonic() + timeout
        while problems := await self.problems(version):
            if time.monotonic() > deadline:
                raise UpgradeError(f"{version} not ready after {timeout:g}s: "
                                   f"{'; '.join(problems)}")
            await asyncio.sleep(self._poll)

    async def stop(self, version: str, timeout: float) -> None:
        selector = f"{VERSION_LABEL}={version}"
        for kind, (_, _, _, lister) in self._kinds().items():
            listing = await asyncio.to_thread(lister, self._ns, label_selector=selector)
            for item in listing.items:
                # Checked here too: a selector is a filter the server may not apply (kmock).
                if (item.metadata.labels or {}).get(VERSION_LABEL) == version:
                    await self._delete(kind, item.metadata.name)

    async def running(self) -> list[str]:
        listing = await asyncio.to_thread(self._apps.list_namespaced_deployment, self._ns,
                                          label_selector="app.kubernetes.io/part-of=vigil")
        return sorted({d.metadata.labels[VERSION_LABEL] for d in listing.items
                       if d.metadata.labels and VERSION_LABEL in d.metadata.labels})

    async def problems(self, version: str) -> list[str]:
        """Deployments of ``version`` that are missing or not fully ready."""
        listing = await asyncio.to_thread(self._apps.list_namespaced_deployment, self._ns,
                                          label_selector=f"{VERSION_LABEL}={version}")
        found = {d.metadata.name: d for d in listing.items
                 if (d.metadata.labels or {}).get(VERSION_LABEL) == version}
        problems = []
        for service in SERVICES:
            name = f"vigil-{service}-{version}"
            dep = found.get(name)
            if dep is None:
                problems.append(f"{name}: missing")
                continue
            want = dep.spec.replicas if dep.spec.replicas is not None else 1
            ready = (dep.status.ready_replicas or 0) if dep.status else 0
            if ready < want:
                problems.append(f"{name}: {ready}/{want} ready")
        return problems

    async def endpoints(self, version: str) -> tuple[str, str]:
        """The in-cluster addresses of the version's API and delegate gateway Services."""
        return (f"vigil-orchestrator-{version}.{self._ns}.svc:{SERVICES['orchestrator'][1]}",
                f"vigil-delegate-gateway-{version}.{self._ns}.svc:"
                f"{SERVICES['delegate-gateway'][1]}")

    async def primary_version(self) -> str:
        svc = await asyncio.to_thread(self._core.read_namespaced_service, "vigil-api", self._ns)
        return svc.spec.selector.get(VERSION_LABEL, "")

    async def route(self, version: str) -> None:
        """Point the primary Services at ``version`` (one selector patch each), then move
        the header Ingress from it to the old primary."""
        old = await self.primary_version()
        for name, service in (("vigil-api", "orchestrator"),
                              ("vigil-delegates", "delegate-gateway")):
            await asyncio.to_thread(self._core.patch_namespaced_service, name, self._ns,
                                    {"spec": {"selector": _labels(service, version)}})
        if old and old != version and old in await self.running():
            await self.apply(delegates_ingress(old))
        await self._delete("Ingress", f"vigil-delegates-{version}")


# ---- rendering --------------------------------------------------------------------------------

def render(objects: list[dict[str, Any]], header: str) -> str:
    """YAML documents with a header saying how they were made."""
    return header + "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)


def main(argv: list[str]) -> int:
    """``python -m vigil_upgrade.adapters.k8s render vN [--primary|--delegates-ingress]``
    prints manifests."""
    if len(argv) < 2 or argv[0] != "render":
        print("usage: python -m vigil_upgrade.adapters.k8s render vN "
              "[--primary|--delegates-ingress]",
              file=sys.stderr)
        return 2
    version = argv[1]
    if "--primary" in argv:
        objects = primary_objects(version)
        what = f"the primary Services and Ingresses, pointing at {version}"
    elif "--delegates-ingress" in argv:
        objects = [delegates_ingress(version)]
        what = (f"the header-routing Ingress of {version}'s delegates, which exists while "
                f"{version} runs but is not the primary (applied by `vigil upgrade`)")
    else:
        objects = version_objects(version)
        what = f"every object of Vigil {version}"
    print(render(objects, f"# Generated: {what}.\n# Made by `python -m vigil_upgrade.adapters."
                          f"k8s render {' '.join(argv[1:])}`; do not edit by hand.\n"), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
