"""Topic names, in one place.

Internal work topics carry Vigil's own version (``vigil.<version>.<owner>.<what>``) so that
several versions can run side by side, each consuming only its own. Public topics are
version-independent; their payloads carry the schema version in ``ce_type``.
"""

from __future__ import annotations

# Public, version-independent topics (documented in docs/events.md).
EXECUTIONS = "vigil.public.executions"
VERIFICATIONS = "vigil.public.verifications"
ARTIFACTS = "vigil.public.artifacts"  # ArtifactPublished, from CI; starts triggered pipelines
VERSIONS = "vigil.public.versions"  # PrimaryVersionChanged, from the upgrade procedure (issue 4)


def dispatch_commands(version: str) -> str:
    """DispatchTask commands, orchestrator -> task-dispatch."""
    return f"vigil.{version}.dispatch.commands"


def gateway_assignments(version: str) -> str:
    """TaskAssigned events, task-dispatch -> every delegate-gateway instance."""
    return f"vigil.{version}.gateway.assignments"


def delegate_events(version: str) -> str:
    """DelegateConnected / DelegateDisconnected / TaskStarted / BroadcastAnswered,
    delegate-gateway -> task-dispatch (keyed by delegate id)."""
    return f"vigil.{version}.delegate.events"


def task_results(version: str) -> str:
    """TaskSucceeded / TaskFailed, delegate-gateway -> orchestrator and task-dispatch."""
    return f"vigil.{version}.task.results"


def task_progress(version: str) -> str:
    """TaskProgressed (batched log lines of running tasks), delegate-gateway -> anyone."""
    return f"vigil.{version}.task.progress"


def broadcast_results(version: str) -> str:
    """BroadcastCompleted (aggregated answers), task-dispatch -> every delegate-gateway."""
    return f"vigil.{version}.broadcast.results"


def analysis_metrics(version: str) -> str:
    """MetricsCollected, delegate-gateway -> metric-analyzer."""
    return f"vigil.{version}.analysis.metrics"


def analysis_logs(version: str) -> str:
    """LogsCollected, delegate-gateway -> log-analyzer."""
    return f"vigil.{version}.analysis.logs"


def verification_verdicts(version: str) -> str:
    """VerificationCompleted, analyzers -> orchestrator (the public copy goes to VERIFICATIONS)."""
    return f"vigil.{version}.verification.verdicts"


def dead_letter(topic: str) -> str:
    """Where undecodable records of ``topic`` go, with the reason in a header."""
    return f"{topic}.dlq"


def all_topics(version: str) -> list[str]:
    """Every topic a version uses, for creating them up front."""
    internal = [
        dispatch_commands(version), gateway_assignments(version), delegate_events(version),
        task_results(version), analysis_metrics(version), analysis_logs(version),
        verification_verdicts(version), task_progress(version), broadcast_results(version),
    ]
    public = [EXECUTIONS, VERIFICATIONS, ARTIFACTS, VERSIONS]
    return internal + public + [dead_letter(t) for t in internal + public]
