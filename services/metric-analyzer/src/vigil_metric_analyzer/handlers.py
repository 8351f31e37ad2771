"""metric-analyzer use case: MetricsCollected in -> judge -> verdict row + events."""

from __future__ import annotations

from dataclasses import replace

import asyncpg

from vigil.events.v1 import verification_pb2
from vigil_common import inbox, logs, verdict_events
from vigil_common.envelope import Envelope
from vigil_common.kafka import RejectedEvent
from vigil_metric_analyzer.domain import (
    VerificationPolicy,
    default_policies,
    judge_metrics,
    judge_thresholds_only,
)

log = logs.get(__name__)
PRODUCER = "metric-analyzer"


def group_data(msg: verification_pb2.MetricsCollected, group: int) -> dict:
    """{metric: {host: [value | None]}} for one host group."""
    out: dict[str, dict[str, list[float | None]]] = {}
    for s in msg.series:
        if s.group == group:
            out.setdefault(s.metric, {})[s.host] = [p.value if p.present else None
                                                    for p in s.points]
    return out


def policy_for(msg: verification_pb2.MetricsCollected) -> VerificationPolicy:
    """Default policies with the step's thresholds applied."""
    metrics = default_policies()
    for t in msg.thresholds:
        base = metrics.get(t.metric)
        if base is None:
            raise RejectedEvent(f"thresholds: unknown metric {t.metric!r}")
        metrics[t.metric] = replace(
            base,
            fail_fast_above=t.fail_fast_above if t.HasField("fail_fast_above")
            else base.fail_fast_above,
            ignore_below=t.ignore_below if t.HasField("ignore_below") else base.ignore_below)
    return VerificationPolicy(verdict_events.sensitivity(msg.sensitivity), metrics)


class Handlers:
    def __init__(self, pool: asyncpg.Pool, version: str):
        self._pool = pool
        self.consumer = f"{version}.metric-analyzer"

    async def on_event(self, env: Envelope) -> None:
        msg = env.message
        if not isinstance(msg, verification_pb2.MetricsCollected):
            raise RejectedEvent(f"the metric analyzer does not handle {env.type}")
        if not msg.ref.verification_id or not msg.ref.vigil_version:
            raise RejectedEvent("MetricsCollected.ref needs verification_id and vigil_version")
        policy = policy_for(msg)
        control = group_data(msg, verification_pb2.HOST_GROUP_CONTROL)
        test = group_data(msg, verification_pb2.HOST_GROUP_TEST)
        result = (judge_metrics(control, test, policy) if control
                  else judge_thresholds_only(test, policy))
        event = verdict_events.to_event(msg.ref, "metrics", result)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, env.id):
                return
            new = await verdict_events.publish(conn, PRODUCER, event, "metrics")
        log.info("metrics judged", verification_id=msg.ref.verification_id,
                 verdict=result.verdict.value, reason=result.reason, duplicate=not new)
