"""metric-analyzer use case: MetricsCollected in -> judge -> verdict row + events.

A complete window (the default: one batch, ``partial`` false) is judged once. Partial batches
(issue 5, early decision) are stored and the minutes so far re-judged at each one: a FAIL is
published at once, with the look's alpha so repeated looks keep the false-fail rate; anything
else waits for the final batch. After the verdict, later batches change nothing (and the
gateway stops publishing them, telling the delegate to stop collecting).

Modes (``MetricsCollected.mode``): canary compares test with control hosts of the same window;
rolling and blue/green compare with the pre-deployment window the delegate read as the control
group (``control_window_start``); a load test compares the service with its baseline, the
test series of its last passed load test (``metric_baselines``, migration 0013), which a
passed load test replaces. The first load test of a service has no baseline: it is judged on
its fail-fast thresholds only, says so, and becomes the baseline unless it failed.
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
    Finding,
    Look,
    Mode,
    Verdict,
    VerificationPolicy,
    default_policies,
    early,
    judge_metrics,
    judge_thresholds_only,
)
from vigil_metric_analyzer.domain.scorers.verdict import ALL_HOSTS, result_of

log = logs.get(__name__)
PRODUCER = "metric-analyzer"
MODES = {
    verification_pb2.VERIFICATION_MODE_UNSPECIFIED: Mode.CANARY,
    verification_pb2.VERIFICATION_MODE_CANARY: Mode.CANARY,
    verification_pb2.VERIFICATION_MODE_ROLLING: Mode.ROLLING,
    verification_pb2.VERIFICATION_MODE_BLUE_GREEN: Mode.BLUE_GREEN,
    verification_pb2.VERIFICATION_MODE_LOAD_TEST: Mode.LOAD_TEST,
}


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
    mode = MODES.get(msg.mode)
    if mode is None:
        raise RejectedEvent(f"mode: unknown VerificationMode {msg.mode}")
    return VerificationPolicy(verdict_events.sensitivity(msg.sensitivity), metrics, mode=mode,
                              gap_minutes=gap_intervals(msg))


def gap_intervals(msg: verification_pb2.MetricsCollected) -> float | None:
    """Intervals ("minutes") from the control window's start to the test window's (pre/post
    modes), for carrying a control trend; None when the windows are not both known."""
    if not (msg.HasField("window_start") and msg.HasField("control_window_start")
            and msg.interval_seconds > 0):
        return None
    seconds = (msg.window_start.ToDatetime() - msg.control_window_start.ToDatetime()
               ).total_seconds()
    return seconds / msg.interval_seconds if seconds > 0 else None


NO_BASELINE = "no-baseline"


def judge(msg: verification_pb2.MetricsCollected, window: batches.Window, look: Look,
          baseline: batches.Window | None = None) -> AnalysisResult | None:
    """The result to publish for the window so far, or None to wait for more minutes.

    ``baseline``: for a load test, the service's baseline run as ``{group: ...}`` (its series
    in the control group); None when it has none yet.
    """
    policy = policy_for(msg)
    test = window.get(verification_pb2.HOST_GROUP_TEST, {})
    if policy.mode is Mode.LOAD_TEST:
        control = (baseline or {}).get(verification_pb2.HOST_GROUP_CONTROL, {})
        if not control:
            result = judge_thresholds_only(test, policy)
            result = result_of([*result.findings, Finding(
                subject=ALL_HOSTS, host=ALL_HOSTS, verdict=Verdict.PASS, rule=NO_BASELINE,
                reason=f"no passed load test of {msg.ref.service} to compare with yet: judged "
                       "on its fail-fast thresholds only; this run becomes the baseline unless "
                       "it fails", control_summary={}, test_summary={})])
            return early(result, look)
    else:
        control = window.get(verification_pb2.HOST_GROUP_CONTROL, {})
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
            load_test = policy_for(msg).mode is Mode.LOAD_TEST
            baseline = (await postgres.baseline(conn, msg.ref.account_id, msg.ref.service)
                        if load_test and look is not None else None)
            window = batches.merge(received)
            result = None if look is None else judge(
                msg, window, look, batches.merge([baseline]) if baseline else None)
            if result is None:
                log.info("metrics batch kept", verification_id=msg.ref.verification_id,
                         first_interval=msg.first_interval)
                return
            event = verdict_events.to_event(msg.ref, "metrics", result)
            new = await verdict_events.publish(conn, PRODUCER, event, "metrics")
            if load_test and new and keeps_baseline(result, baseline is not None):
                await postgres.keep_baseline(conn, msg, window)
            if not whole:
                await postgres.forget(conn, msg.ref.verification_id)
        log.info("metrics judged", verification_id=msg.ref.verification_id,
                 verdict=result.verdict.value, reason=result.reason, duplicate=not new,
                 early=look is not None and not look.final)


def keeps_baseline(result: AnalysisResult, had_baseline: bool) -> bool:
    """Whether a load test's result makes its run the service's baseline: a PASS, or the
    first run of a service (no baseline yet) that did not fail."""
    if result.verdict is Verdict.PASS:
        return True
    return not had_baseline and result.verdict not in (Verdict.FAIL, Verdict.ERROR)
