"""The ``local-process`` health source: scrape each node's /metrics and read its log file live.

Nodes are the local-process target's processes of one service (the demo target). The source
has no history: it collects from now until the window's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vigil_delegate.health.logs import read_log_records
from vigil_delegate.health.metrics import collect_metrics
from vigil_delegate.health.sources.base import (
    LOGS,
    METRICS,
    Collected,
    HealthSourceError,
    Progress,
    Window,
)
from vigil_delegate.targets import LocalProcessTarget

_LATE_START = timedelta(seconds=5)


class LocalProcessSource:
    """Metrics and logs of the local-process target's nodes of ``service``."""

    kind = "local-process"
    provides = frozenset({METRICS, LOGS})

    def __init__(self, target: LocalProcessTarget, service: str) -> None:
        self._target = target
        self._service = service

    async def collect(self, hosts: Sequence[str], window: Window,
                      progress: Progress) -> Collected:
        if window.start < datetime.now(UTC) - _LATE_START:
            raise HealthSourceError("local-process reads live data only: a window starting in "
                                    "the past (or a baseline window) needs a source with history")
        nodes = {n.node: n for n in self._target.nodes(self._service)}
        absent = [h for h in hosts if h not in nodes or not nodes[h].alive]
        if absent:
            progress(f"no running process for {', '.join(absent)}: they will have no data")
        live = [h for h in hosts if h not in absent]
        endpoints = {h: f"http://127.0.0.1:{nodes[h].port}/metrics" for h in live}
        since = datetime.now(UTC)
        duration = (window.end - max(window.start, since)).total_seconds()
        series = await collect_metrics(endpoints, max(duration, window.interval_s),
                                       window.interval_s, progress)
        until = datetime.now(UTC)
        logs = {h: read_log_records(Path(nodes[h].log_file), since, until) for h in live}
        return Collected(metrics=series, logs=logs)
