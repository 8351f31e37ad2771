"""Deployment targets the delegate can execute deploy and rollback tasks against."""

from vigil_delegate.targets.local_process import (
    DeploymentError,
    DeployResult,
    LocalProcessTarget,
    NodeInfo,
)

__all__ = ["DeployResult", "DeploymentError", "LocalProcessTarget", "NodeInfo"]
