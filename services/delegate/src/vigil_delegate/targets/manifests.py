"""Kubernetes manifests the delegate applies: Deployments and Services, always validated.

Every object built here goes through :func:`validate` (the Kubernetes JSON schemas of
``kubernetes-validate``, strict mode: unknown fields are errors) before it is sent, so a
malformed spec fails its task with the schema's reason instead of a half-applied rollout.

Labels the strategies rely on (see docs/delegate.md):

- ``app``: the workload name, on every pod; rolling/canary Services select on it alone.
- ``vigil.dev/track``: ``primary`` or ``canary``; part of each Deployment's selector.
- ``vigil.dev/slot``: ``blue`` or ``green`` for blue/green; the Service selects the live slot.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kubernetes_validate

KUBERNETES_VERSION = "1.37"
"""Schema version manifests are validated against (the newest kubernetes-validate knows)."""

APP = "app"
TRACK = "vigil.dev/track"
SLOT = "vigil.dev/slot"
SPEC_HASH = "vigil.dev/spec-hash"
"""Pod-template annotation: hash of what Vigil asked for, so a repeated deploy is a no-op."""

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class ManifestError(ValueError):
    """A manifest the delegate built is not a valid Kubernetes object; the message says why."""


@dataclass(frozen=True)
class PortSpec:
    """A container port and the Service port exposing it (0: same as the container port)."""

    name: str
    container_port: int
    service_port: int = 0


@dataclass(frozen=True)
class Workload:
    """What one Deployment runs: the fields of a KubernetesDeploy that shape the pod.

    Attributes:
        name: Workload name (DNS-1035): the container name and the ``app`` label.
        namespace: Namespace of every object.
        image: Container image.
        labels: Extra pod labels.
        ports: Container ports.
        env: Container environment.
        args: Container args; empty keeps the image's CMD.
        readiness_path: HTTP readiness probe path on the first port; empty: no probe.
    """

    name: str
    namespace: str
    image: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Sequence[PortSpec] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    args: Sequence[str] = ()
    readiness_path: str = ""


def check_name(name: str, what: str = "name") -> None:
    """Raises ManifestError unless ``name`` is a DNS-1035 label of at most 63 characters.

    Deployment and Service names must be; the schemas do not check it.
    """
    if len(name) > 63 or not _DNS_1035.match(name):
        raise ManifestError(f"{what} {name!r}: must be a DNS-1035 label (lowercase letters, "
                            "digits and '-', starting with a letter, at most 63 characters)")


def pod_template(workload: Workload, selector: Mapping[str, str]) -> dict[str, Any]:
    """The pod template of ``workload``, labelled with ``selector`` and the spec hash."""
    if not workload.image.strip():
        raise ManifestError(f"{workload.name}: image must be set")
    for i, port in enumerate(workload.ports):
        for what, number in (("container_port", port.container_port),
                             ("service_port", port.service_port or port.container_port)):
            if not 1 <= number <= 65535:
                raise ManifestError(f"ports[{i}].{what}: {number} is not in 1-65535")
    for key, value in {**workload.labels, **selector}.items():
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ManifestError(f"label {key}={value!r}: a label value is at most 63 "
                                "alphanumerics, '-', '_' or '.', starting and ending alphanumeric")
    container: dict[str, Any] = {"name": workload.name, "image": workload.image}
    if workload.args:
        container["args"] = list(workload.args)
    if workload.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(workload.env.items())]
    if workload.ports:
        container["ports"] = [_container_port(p) for p in workload.ports]
        if workload.readiness_path:
            container["readinessProbe"] = {"httpGet": {
                "path": workload.readiness_path, "port": workload.ports[0].container_port}}
    elif workload.readiness_path:
        raise ManifestError("readiness_path needs at least one port to probe")
    labels = {**workload.labels, **selector}
    spec_hash = hashlib.sha256(json.dumps([labels, container], sort_keys=True).encode())
    return {
        "metadata": {"labels": labels, "annotations": {SPEC_HASH: spec_hash.hexdigest()[:16]}},
        "spec": {"containers": [container]},
    }


def deployment(name: str, workload: Workload, replicas: int,
               selector: Mapping[str, str]) -> dict[str, Any]:
    """A validated ``apps/v1`` Deployment ``name`` running ``workload`` with ``replicas``.

    Args:
        name: Deployment name (may differ from the workload's, e.g. ``shop-canary``).
        workload: The pod to run.
        replicas: Desired replicas (0 allowed: a scaled-down slot).
        selector: The Deployment's label selector; immutable once created.

    Raises:
        ManifestError: A name is invalid or the object fails schema validation.
    """
    check_name(name)
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": workload.namespace,
                     "labels": {**workload.labels, **selector}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(selector)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": pod_template(workload, selector),
        },
    }
    validate(manifest)
    return manifest


def service(workload: Workload, selector: Mapping[str, str]) -> dict[str, Any]:
    """A validated ClusterIP Service named after the workload, exposing its ports.

    Raises:
        ManifestError: The workload has no ports, or the object fails schema validation.
    """
    if not workload.ports:
        raise ManifestError(f"service {workload.name}: no ports to expose")
    check_name(workload.name)
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": workload.name, "namespace": workload.namespace,
                     "labels": {APP: workload.name}},
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            "ports": [_service_port(p) for p in workload.ports],
        },
    }
    validate(manifest)
    return manifest


def validate(manifest: Mapping[str, Any]) -> None:
    """Checks ``manifest`` against the Kubernetes schemas (strict: unknown fields fail).

    Raises:
        ManifestError: Naming the object, the field path and the schema's message, e.g.
            ``Deployment shop: spec.replicas: -1 is less than the minimum of 0``.
    """
    what = f"{manifest.get('kind', '?')} {manifest.get('metadata', {}).get('name', '?')}"
    try:
        kubernetes_validate.validate(dict(manifest), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(root)"
        raise ManifestError(f"{what}: {path}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise ManifestError(f"{what}: {exc.message}") from None


def _container_port(port: PortSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"containerPort": port.container_port, "protocol": "TCP"}
    if port.name:
        out["name"] = port.name
    return out


def _service_port(port: PortSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"port": port.service_port or port.container_port,
                           "targetPort": port.container_port, "protocol": "TCP"}
    if port.name:
        out["name"] = port.name
    return out
