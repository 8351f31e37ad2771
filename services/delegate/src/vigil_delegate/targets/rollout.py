"""Rollout status of a Deployment, judged as ``kubectl rollout status`` does.

Plain functions over the Deployment as a dict (the API's JSON), so the rules are testable
without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class RolloutFailed(Exception):
    """The Deployment controller gave up on the rollout (ProgressDeadlineExceeded)."""


@dataclass(frozen=True)
class RolloutStatus:
    """Where a rollout stands.

    Attributes:
        done: Every desired replica runs the latest template and is available, and no old
            replica is left.
        message: What it waits for, or that it finished, e.g.
            ``"2 of 3 updated replicas are available"``.
    """

    done: bool
    message: str


def rollout_status(deployment: Mapping[str, Any]) -> RolloutStatus:
    """Judges a Deployment's status.

    A status the controller has not yet computed for the latest spec (``observedGeneration``
    below ``metadata.generation``) is never "done": a freshly patched Deployment still shows
    its previous rollout's counts.

    Raises:
        RolloutFailed: The Progressing condition says ProgressDeadlineExceeded.
    """
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = meta.get("name", "?")
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return RolloutStatus(False, f"waiting for deployment {name} spec update to be observed")
    for condition in status.get("conditions") or []:
        if (condition.get("type") == "Progressing"
                and condition.get("reason") == "ProgressDeadlineExceeded"):
            raise RolloutFailed(f"deployment {name} exceeded its progress deadline: "
                                f"{condition.get('message') or 'no message'}")
    desired = spec.get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    total = status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < desired:
        return RolloutStatus(False, f"{updated} out of {desired} new replicas have been updated")
    if total > updated:
        return RolloutStatus(False, f"{total - updated} old replicas are pending termination")
    if available < updated:
        return RolloutStatus(False, f"{available} of {updated} updated replicas are available")
    return RolloutStatus(True, f"deployment {name} successfully rolled out "
                               f"({updated} replicas available)")
