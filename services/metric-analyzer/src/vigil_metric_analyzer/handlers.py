"""metric-analyzer use case: MetricsCollected in -> judge -> verdict row + events.

A complete window (the default: one batch, ``partial`` false) is judged once. Partial batches
(issue 5, early decision) are stored and the minutes so far re-judged at each one: a FAIL is
published at once, with the look's alpha so repeated looks keep the false-fail rate; anything
else waits for the final batch. After the verdict, later batches change nothing.
"""

from __future__ import annotations

from dataclasses import replace

import asyncpg

from vigil.events.v1 import verification_pb2
from vigil_common import inbox, logs, verdict_events
from vigil_common.envelope import Envelope
from vigil_common.kafka import RejectedEvent
from vigil_metric_analyzer import batches
from vigil_metric_analyzer.adapters import postgres
from vigil_metric_analyzer.domain import (
    FINAL,
    AnalysisResult,
    Look,
    VerificationPolicy,
    default_policies,
    early,
    judge_metrics,
    judge_thresholds_only,
)

log = logs.get(__name__)
PRODUCER = "metric-analyzer"


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
            fail_fast_minutes=t.fail_fast_minutes if t.HasField("fail_fast_minutes")
            else base.fail_fast_minutes,
            ignore_below=t.ignore_below if t.HasField("ignore_below") else base.ignore_below)
    return VerificationPolicy(verdict_events.sensitivity(msg.sensitivity), metrics)


def judge(msg: verification_pb2.MetricsCollected,
          window: batches.Window, look: Look) -> AnalysisResult | None:
    """The result to publish for the window so far, or None to wait for more minutes."""
    policy = policy_for(msg)
    control = window.get(verification_pb2.HOST_GROUP_CONTROL, {})
    test = window.get(verification_pb2.HOST_GROUP_TEST, {})
    result = (judge_metrics(control, test, policy, look) if control
              else judge_thresholds_only(test, policy))
    return early(result, look)


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
        policy_for(msg)  # reject bad thresholds before touching the database
        whole = not msg.partial and msg.first_interval == 0
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, env.id):
                return
            if await postgres.decided(conn, msg.ref.verification_id):
                return
            received = [msg] if whole else await postgres.add_batch(conn, msg)
            look = FINAL if whole else batches.look(received, msg)
            result = None if look is None else judge(msg, batches.merge(received), look)
            if result is None:
                log.info("metrics batch kept", verification_id=msg.ref.verification_id,
                         first_interval=msg.first_interval)
                return
            event = verdict_events.to_event(msg.ref, "metrics", result)
            new = await verdict_events.publish(conn, PRODUCER, event, "metrics")
            if not whole:
                await postgres.forget(conn, msg.ref.verification_id)
        log.info("metrics judged", verification_id=msg.ref.verification_id,
                 verdict=result.verdict.value, reason=result.reason, duplicate=not new,
                 early=look is not None and not look.final)
