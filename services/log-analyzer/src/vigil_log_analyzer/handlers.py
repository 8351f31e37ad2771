"""log-analyzer use case: LogsCollected in -> cluster, label, judge -> verdict row + events.

The service's clusterer is loaded from PostgreSQL (its remembered signatures and merges), so
cluster ids are stable across verifications and versions; "known" means seen on a control side
before (stored ``baseline`` clusters) or in this verification's control group. The verdict and
what the run taught (signatures, clusters, baseline flags) commit in one transaction. Clusters
seen only on the test side are remembered for their ids but never become baseline, so a
regression stays unknown until its version becomes the control.
"""

from __future__ import annotations

from datetime import UTC

import asyncpg

from vigil.events.v1 import verification_pb2
from vigil_common import inbox, logs, verdict_events
from vigil_common.envelope import Envelope
from vigil_common.kafka import RejectedEvent
from vigil_log_analyzer.adapters import postgres
from vigil_log_analyzer.adapters.postgres import ServiceKey
from vigil_log_analyzer.domain import (
    LogAnalysisResult,
    LogEvent,
    judge_logs,
    normalize_level,
)

log = logs.get(__name__)
PRODUCER = "log-analyzer"


def events_of(msg: verification_pb2.LogsCollected, group: int) -> list[LogEvent]:
    """The records of one host group as domain events (time None when not set)."""
    return [LogEvent(r.host, r.level, r.message,
                     r.time.ToDatetime(tzinfo=UTC) if r.HasField("time") else None)
            for r in msg.records if r.group == group]


class Handlers:
    def __init__(self, pool: asyncpg.Pool, version: str, max_signatures: int = 20_000):
        self._pool = pool
        self._max_signatures = max_signatures
        self.consumer = f"{version}.log-analyzer"

    async def on_event(self, env: Envelope) -> None:
        msg = env.message
        if not isinstance(msg, verification_pb2.LogsCollected):
            raise RejectedEvent(f"the log analyzer does not handle {env.type}")
        if not msg.ref.verification_id or not msg.ref.vigil_version or not msg.ref.service:
            raise RejectedEvent("LogsCollected.ref needs verification_id, vigil_version, service")
        key = ServiceKey(msg.ref.account_id, msg.ref.service)
        control = events_of(msg, verification_pb2.HOST_GROUP_CONTROL)
        test = events_of(msg, verification_pb2.HOST_GROUP_TEST)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, env.id):
                return
            # One analysis per service at a time, so concurrent verifications of a service
            # do not give one statement two ids.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                               f"log-analyzer/{key.account_id}/{key.service}")
            clusterer = await postgres.load_clusterer(conn, key, self._max_signatures)
            known = await postgres.baseline_ids(conn, key)
            feedback = [s.feedback for s in await postgres.load_feedback(conn, key)]
            result = judge_logs(control, test, verdict_events.sensitivity(msg.sensitivity),
                                known, feedback, clusterer)
            event = to_event(msg.ref, result)
            new = await verdict_events.publish(conn, PRODUCER, event, "logs")
            examples = _control_examples(control, result.control_ids)
            await postgres.save_clusters(conn, key, clusterer, result.clusters,
                                         result.control_ids, examples)
        log.info("logs judged", verification_id=msg.ref.verification_id,
                 verdict=result.verdict.value, reason=result.reason,
                 clusters=len(result.clusters), duplicate=not new)


def to_event(ref: verification_pb2.VerificationRef, result: LogAnalysisResult
             ) -> verification_pb2.VerificationCompleted:
    """The verdict event, each finding carrying its cluster's template, example, label,
    feedback risk and per-minute counts."""
    by_id = {v.cluster.id: v for v in result.clusters}
    examples = {cid: (v.cluster.template, v.cluster.example) for cid, v in by_id.items()}
    event = verdict_events.to_event(ref, "logs", result, examples)
    for finding in event.findings:
        decided = by_id.get(finding.subject)
        if decided is None:
            continue
        finding.label = decided.cluster.label.value
        finding.risk = decided.risk.value if decided.risk else ""
        finding.control_per_minute.update(
            {m: float(n) for m, n in decided.cluster.control_minutes.items()})
        finding.test_per_minute.update(
            {m: float(n) for m, n in decided.cluster.test_minutes.items()})
    return event


def _control_examples(control: list[LogEvent], ids: tuple[str, ...]
                      ) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for event, cid in zip(control, ids, strict=True):
        level = normalize_level(event.level)
        first = event.message.splitlines()[0].strip() if event.message.strip() else ""
        previous = out.get(cid)
        if previous is None or _RANK[level] > _RANK[previous[0]]:
            out[cid] = (level, first)
    return out


_RANK = {"INFO": 0, "WARN": 1, "ERROR": 2}

