"""Publishing an analyzer's verdict: one row in ``verdicts`` and two events, in one transaction.

The verdict goes to the execution's own Vigil version (``vigil.<v>.verification.verdicts``,
which its orchestrator consumes) and to the public ``vigil.public.verifications`` topic. Both
analyzers use this, so a verdict looks the same whichever analysis produced it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.events.v1 import verification_pb2
from vigil_common import outbox, topics
from vigil_common.verdicts import AnalysisResult, Sensitivity, Verdict

VERDICT_KINDS = {
    Verdict.PASS: verification_pb2.VERDICT_KIND_PASS,
    Verdict.FAIL: verification_pb2.VERDICT_KIND_FAIL,
    Verdict.INCONCLUSIVE: verification_pb2.VERDICT_KIND_INCONCLUSIVE,
    Verdict.NO_DATA: verification_pb2.VERDICT_KIND_NO_DATA,
    Verdict.ERROR: verification_pb2.VERDICT_KIND_ERROR,
}
ANALYSES = {"metrics": verification_pb2.ANALYSIS_KIND_METRICS,
            "logs": verification_pb2.ANALYSIS_KIND_LOGS}
SENSITIVITIES = {
    verification_pb2.SENSITIVITY_LOW: Sensitivity.LOW,
    verification_pb2.SENSITIVITY_MEDIUM: Sensitivity.MEDIUM,
    verification_pb2.SENSITIVITY_HIGH: Sensitivity.HIGH,
}


def sensitivity(value: int) -> Sensitivity:
    """The proto sensitivity; unspecified means MEDIUM (the documented default)."""
    return SENSITIVITIES.get(value, Sensitivity.MEDIUM)


def to_event(ref: verification_pb2.VerificationRef, analysis: str, result: AnalysisResult,
             examples: Mapping[str, tuple[str, str]] | None = None,
             now: datetime | None = None) -> verification_pb2.VerificationCompleted:
    """The VerificationCompleted event; ``examples`` maps a subject to (template, example)."""
    at = Timestamp()
    at.FromDatetime(now or datetime.now(UTC))
    event = verification_pb2.VerificationCompleted(
        ref=ref, analysis=ANALYSES[analysis], verdict=VERDICT_KINDS[result.verdict],
        reason=result.reason, analyzer=result.analyzer, completed_at=at)
    for f in result.findings:
        template, example = (examples or {}).get(f.subject, ("", ""))
        event.findings.add(subject=f.subject, host=f.host, verdict=VERDICT_KINDS[f.verdict],
                           reason=f.reason, rule=f.rule, control_summary=f.control_summary,
                           test_summary=f.test_summary, template=template, example=example)
    return event


async def publish(conn: asyncpg.Connection, producer: str,
                  event: verification_pb2.VerificationCompleted, analysis: str) -> bool:
    """Store the verdict and queue both events; False if this verification already has one."""
    ref = event.ref
    stored = await conn.fetchval(
        "INSERT INTO verdicts (verification_id, analysis, execution_id, verdict, reason, "
        "analyzer, findings) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING "
        "RETURNING true", ref.verification_id, analysis, ref.execution_id,
        verification_pb2.VerdictKind.Name(event.verdict).removeprefix("VERDICT_KIND_"),
        event.reason, event.analyzer,
        json.dumps([{"subject": f.subject, "host": f.host, "reason": f.reason, "rule": f.rule,
                     "verdict": verification_pb2.VerdictKind.Name(f.verdict)}
                    for f in event.findings]))
    if not stored:
        return False
    event_id = f"verdict/{ref.verification_id}/{analysis}"
    await outbox.add(conn, producer, topics.verification_verdicts(ref.vigil_version),
                     ref.execution_id, event, event_id=event_id)
    await outbox.add(conn, producer, topics.VERIFICATIONS, ref.execution_id, event,
                     event_id=event_id)
    return True
