"""Health sources for verification: one interface, one module per source, one factory."""

from vigil.delegate.v1 import tasks_pb2
from vigil_delegate.health.sources.base import (
    LOGS,
    METRICS,
    Collected,
    HealthSource,
    HealthSourceError,
    Window,
)
from vigil_delegate.health.sources.file_logs import FileLogSource
from vigil_delegate.health.sources.local_process import LocalProcessSource
from vigil_delegate.health.sources.prometheus import PrometheusClient, PrometheusSource
from vigil_delegate.health.sources.search_logs import SearchClient, SearchLogSource
from vigil_delegate.targets import LocalProcessTarget

KINDS = ("local-process", "prometheus", "file", "elasticsearch")


def build(source: tasks_pb2.HealthSource, local: LocalProcessTarget) -> HealthSource:
    """The source a HealthSource message describes, with its client.

    Args:
        source: The task's source config; ``kind`` picks the implementation.
        local: The delegate's local-process target (the ``local-process`` source's client).

    Raises:
        HealthSourceError: Unknown kind or invalid config, naming the field.
    """
    if source.kind == "local-process":
        if not source.service:
            raise HealthSourceError("source.service: local-process needs the service name")
        return LocalProcessSource(local, source.service)
    if source.kind == "prometheus":
        p = source.prometheus
        return PrometheusSource(p, PrometheusClient(p.url, p.headers, p.timeout_seconds or 30.0))
    if source.kind == "file":
        return FileLogSource(source.file)
    if source.kind == "elasticsearch":
        e = source.elasticsearch
        return SearchLogSource(e, SearchClient(e.url, e.headers, e.timeout_seconds or 30.0))
    raise HealthSourceError(f"source.kind: {source.kind!r} is not one of {', '.join(KINDS)}")


__all__ = [
    "KINDS",
    "LOGS",
    "METRICS",
    "Collected",
    "FileLogSource",
    "HealthSource",
    "HealthSourceError",
    "LocalProcessSource",
    "PrometheusClient",
    "PrometheusSource",
    "SearchClient",
    "SearchLogSource",
    "Window",
    "build",
]
