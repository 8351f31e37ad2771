"""The demo: apply the demo pipeline through the public gRPC API, start it, narrate it from
the public Kafka topics, and check that the expected outcome happened.

Expected (issue 2): v1 on node-1 and node-2, v2 canary on node-3, verification FAILs on the
metrics (errors above the fail-fast threshold, usually within the first minutes, else the
slower response time at the window's end) and on the logs (new NullPointerException), the
canary is rolled back, and the execution ends FAILED with the verification's reasons.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import grpc
from aiokafka import AIOKafkaConsumer

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil.events.v1 import execution_pb2, verification_pb2
from vigil_common import envelope, topics
from vigil_local.stack import DEMO_ACCOUNT, Stack

PIPELINE = Path(__file__).resolve().parents[3] / "demo" / "pipelines" / "demo-canary.yaml"


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool


@dataclass(frozen=True)
class DemoOutcome:
    execution: api_pb2.Execution
    checks: list[Check]
    verdicts: list[verification_pb2.VerificationCompleted]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


async def run_demo(stack: Stack, out: TextIO = sys.stdout, timeout: float = 240.0,
                   inputs: dict[str, str] | None = None) -> DemoOutcome:
    """Run the demo pipeline once on a started stack and report what happened."""
    auth = (("authorization", f"Bearer {stack.api_key}"),)
    async with grpc.aio.insecure_channel(stack.api_address) as channel:
        pipelines = api_pb2_grpc.PipelineServiceStub(channel)
        executions = api_pb2_grpc.ExecutionServiceStub(channel)
        applied = await pipelines.ApplyPipeline(api_pb2.ApplyPipelineRequest(
            account_id=DEMO_ACCOUNT, yaml=PIPELINE.read_text()), metadata=auth)
        started = await executions.StartExecution(api_pb2.StartExecutionRequest(
            account_id=DEMO_ACCOUNT, pipeline=applied.name,
            inputs={"python": sys.executable, **(inputs or {})},
            idempotency_key=str(uuid.uuid4())), metadata=auth)
        execution_id = started.execution_id
        verdicts = await _narrate(stack.bootstrap, execution_id, out, timeout)
        final = await executions.GetExecution(api_pb2.GetExecutionRequest(
            account_id=DEMO_ACCOUNT, execution_id=execution_id), metadata=auth)
    return DemoOutcome(final, expected_checks(final, verdicts), verdicts)


async def _narrate(bootstrap: str, execution_id: str, out: TextIO,
                   timeout: float) -> list[verification_pb2.VerificationCompleted]:
    """Print the execution's public events until it finishes; returns its verdicts."""
    consumer = AIOKafkaConsumer(topics.EXECUTIONS, topics.VERIFICATIONS,
                                bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    t0 = time.monotonic()
    verdicts: list[verification_pb2.VerificationCompleted] = []
    try:
        while time.monotonic() - t0 < timeout:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    msg = envelope.decode(record.headers, record.value).message
                    if isinstance(msg, verification_pb2.VerificationCompleted):
                        if msg.ref.execution_id == execution_id:
                            verdicts.append(msg)
                            _print_verdict(msg, out, time.monotonic() - t0)
                        continue
                    if getattr(msg, "execution_id", "") != execution_id:
                        continue
                    print(f"[{time.monotonic() - t0:6.1f}s] {describe(msg)}", file=out,
                          flush=True)
                    if isinstance(msg, execution_pb2.ExecutionFinished):
                        return verdicts
        raise TimeoutError(f"execution {execution_id} did not finish within {timeout:g}s")
    finally:
        await consumer.stop()


def _status(enum: object, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix)  # type: ignore[attr-defined]


def describe(msg: object) -> str:
    """One line for a public lifecycle event."""
    e = execution_pb2
    if isinstance(msg, e.ExecutionStarted):
        return (f"execution {msg.execution_id} started: pipeline {msg.pipeline} "
                f"on {msg.vigil_version}")
    if isinstance(msg, e.ExecutionFinished):
        status = _status(e.ExecutionStatus, msg.status, "EXECUTION_STATUS_")
        extra = " (rolled back)" if msg.rolled_back else ""
        return f"execution finished {status}{extra}" + (f": {msg.reason}" if msg.reason else "")
    if isinstance(msg, e.ExecutionPaused | e.ExecutionResumed):
        return f"execution {type(msg).__name__.removeprefix('Execution').lower()}: {msg.reason}"
    if isinstance(msg, e.StageStarted):
        return f" stage {msg.stage} started"
    if isinstance(msg, e.StageFinished):
        status = _status(e.StageStatus, msg.status, "STAGE_STATUS_")
        return f" stage {msg.stage} {status}" + (f": {msg.reason}" if msg.reason else "")
    step = getattr(msg, "step", None)
    where = f"{step.stage}/{step.phase}/{step.step} [{step.type}]" if step else "?"
    lines = {
        e.StepStarted: lambda m: f"  > {where} started"
        + (f" (attempt {m.attempt})" if m.attempt > 1 else ""),
        e.StepSucceeded: lambda m: f"  + {where} succeeded: {m.summary}",
        e.StepFailed: lambda m: f"  x {where} FAILED: {m.reason}",
        e.StepRetrying: lambda m: f"  ~ {where} {m.reason}",
        e.StepWaiting: lambda m: f"  ? {where} waiting: {m.message}",
        e.StepAborted: lambda m: f"  - {where} aborted: {m.reason}",
    }
    render = lines.get(type(msg))
    return render(msg) if render else f"  ? {type(msg).__name__}"


def _print_verdict(msg: verification_pb2.VerificationCompleted, out: TextIO, t: float) -> None:
    analysis = verification_pb2.AnalysisKind.Name(msg.analysis).removeprefix("ANALYSIS_KIND_")
    verdict = verification_pb2.VerdictKind.Name(msg.verdict).removeprefix("VERDICT_KIND_")
    print(f"[{t:6.1f}s]     {analysis.lower()} analysis ({msg.analyzer}): {verdict}", file=out)
    for f in msg.findings:
        if f.verdict != verification_pb2.VERDICT_KIND_PASS:
            fv = verification_pb2.VerdictKind.Name(f.verdict).removeprefix("VERDICT_KIND_")
            where = "" if f.reason.startswith(f.subject) else f"{f.subject} on {f.host}: "
            print(f"              - {fv} {where}{f.reason}", file=out)
    out.flush()


def expected_checks(ex: api_pb2.Execution,
                    verdicts: list[verification_pb2.VerificationCompleted]) -> list[Check]:
    """The demo's expected outcomes, each checked on the final state and the verdicts."""
    steps = {s.ref.step: s for s in ex.steps}

    def status(name: str) -> int:
        return steps[name].status if name in steps else execution_pb2.STEP_STATUS_UNSPECIFIED

    by_kind = {v.analysis: v for v in verdicts}
    metrics = by_kind.get(verification_pb2.ANALYSIS_KIND_METRICS)
    logs = by_kind.get(verification_pb2.ANALYSIS_KIND_LOGS)
    text = lambda v: " ".join([v.reason, *(f.reason + f.example for f in v.findings)])  # noqa: E731
    failed_on = lambda v: {f.subject for f in v.findings  # noqa: E731
                           if f.verdict == verification_pb2.VERDICT_KIND_FAIL}
    return [
        Check("v1 deployed to node-1 and node-2",
              status("deploy-primary") == execution_pb2.STEP_STATUS_SUCCEEDED),
        Check("v2 deployed as a canary on node-3",
              status("deploy-canary") == execution_pb2.STEP_STATUS_SUCCEEDED),
        Check("metric analysis failed the canary on its error rate or response time",
              metrics is not None and metrics.verdict == verification_pb2.VERDICT_KIND_FAIL
              and bool(failed_on(metrics) & {"error_rate_pct", "response_time_ms"})),
        Check("log analysis failed the canary on a new NullPointerException",
              logs is not None and logs.verdict == verification_pb2.VERDICT_KIND_FAIL
              and "NullPointerException" in text(logs)),
        Check("verification step failed",
              status("verify-canary") == execution_pb2.STEP_STATUS_FAILED),
        Check("canary rolled back", status("rollback-deploy-canary")
              == execution_pb2.STEP_STATUS_SUCCEEDED and ex.rolled_back),
        Check("execution ended FAILED with the verification's reasons",
              ex.status == execution_pb2.EXECUTION_STATUS_FAILED and "verify-canary" in ex.reason
              and "metrics FAIL" in ex.reason and "logs FAIL" in ex.reason),
    ]
