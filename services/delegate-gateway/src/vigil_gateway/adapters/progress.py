"""Progress lines of running tasks, batched and rate-limited before they become events.

A delegate may print thousands of lines a second; the gateway keeps at most ``max_lines``
per task attempt per flush interval and counts the rest as dropped, then publishes one
TaskProgressed per task attempt per interval on ``vigil.<v>.task.progress`` (keyed by
execution id). Memory is bounded by tasks x max_lines.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from vigil.delegate.v1 import delegate_pb2
from vigil.events.v1 import tasks_pb2
from vigil_common import logs, topics, tracing
from vigil_gateway.adapters.kafka import DirectPublisher

log = logs.get(__name__)
DROPPED = Counter("vigil_gateway_progress_lines_dropped_total", "Progress lines over the limit")


@dataclass
class _Batch:
    account_id: str
    delegate_id: str
    execution_id: str
    trace: tracing.TraceContext | None  # the task's span, sent by the delegate
    lines: list[str] = field(default_factory=list)
    dropped: int = 0


class ProgressBatcher:
    def __init__(self, publisher: DirectPublisher, version: str, max_lines: int = 100):
        self._publisher = publisher
        self._topic = topics.task_progress(version)
        self._max_lines = max_lines
        self._batches: dict[tuple[str, int], _Batch] = {}

    def add(self, account_id: str, delegate_id: str, p: delegate_pb2.TaskProgress) -> None:
        """Buffer one line (or count it as dropped when the batch is full)."""
        key = (p.task_id, p.attempt)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch(account_id, delegate_id, p.execution_id,
                                                tracing.parse(p.traceparent or None))
        if len(batch.lines) < self._max_lines:
            batch.lines.append(p.line[:4000])
        else:
            batch.dropped += 1
            DROPPED.inc()

    async def flush(self) -> int:
        """Publish every buffered batch; returns how many events were sent."""
        batches, self._batches = self._batches, {}
        now = Timestamp()
        now.GetCurrentTime()
        for (task_id, attempt), b in batches.items():
            with tracing.use(b.trace):
                await self._publish(task_id, attempt, b, now)
        return len(batches)

    async def _publish(self, task_id: str, attempt: int, b: _Batch, now: Timestamp) -> None:
        await self._publisher.publish(self._topic, b.execution_id or task_id,
                                      tasks_pb2.TaskProgressed(
                                          task_id=task_id, attempt=attempt,
                                          account_id=b.account_id, execution_id=b.execution_id,
                                          delegate_id=b.delegate_id, lines=b.lines,
                                          dropped_lines=b.dropped, sent_at=now))

    async def run(self, interval: float) -> None:
        """Flush every ``interval`` seconds until cancelled (and once more then)."""
        try:
            while True:
                await asyncio.sleep(interval)
                await self.flush()
        finally:
            await self.flush()
