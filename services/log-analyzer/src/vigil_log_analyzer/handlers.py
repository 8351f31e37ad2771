"""log-analyzer use case: LogsCollected in -> cluster and judge -> verdict row + events.

"Known" means seen on the control side now or with a previous version: the templates of the
control group (the old version) are remembered per service in ``log_templates``. Templates
seen only on the test side are never remembered, so a regression stays unknown until it ships.
"""

from __future__ import annotations

import asyncpg

from vigil.events.v1 import verification_pb2
from vigil_common import inbox, logs, verdict_events
from vigil_common.envelope import Envelope
from vigil_common.kafka import RejectedEvent
from vigil_log_analyzer.domain import LogEvent, judge_logs, template_id, template_of

log = logs.get(__name__)
PRODUCER = "log-analyzer"


def events_of(msg: verification_pb2.LogsCollected, group: int) -> list[LogEvent]:
    return [LogEvent(r.host, r.level, r.message) for r in msg.records if r.group == group]


class Handlers:
    def __init__(self, pool: asyncpg.Pool, version: str):
        self._pool = pool
        self.consumer = f"{version}.log-analyzer"

    async def on_event(self, env: Envelope) -> None:
        msg = env.message
        if not isinstance(msg, verification_pb2.LogsCollected):
            raise RejectedEvent(f"the log analyzer does not handle {env.type}")
        if not msg.ref.verification_id or not msg.ref.vigil_version or not msg.ref.service:
            raise RejectedEvent("LogsCollected.ref needs verification_id, vigil_version, service")
        control = events_of(msg, verification_pb2.HOST_GROUP_CONTROL)
        test = events_of(msg, verification_pb2.HOST_GROUP_TEST)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await inbox.claim(conn, self.consumer, env.id):
                return
            known = {r["template_id"] for r in await conn.fetch(
                "SELECT template_id FROM log_templates WHERE service = $1", msg.ref.service)}
            result = judge_logs(control, test, verdict_events.sensitivity(msg.sensitivity),
                                known)
            examples = {c.id: (c.template, c.example) for c in result.clusters}
            event = verdict_events.to_event(msg.ref, "logs", result, examples)
            new = await verdict_events.publish(conn, PRODUCER, event, "logs")
            await _remember_control_templates(conn, msg.ref.service, control)
        log.info("logs judged", verification_id=msg.ref.verification_id,
                 verdict=result.verdict.value, reason=result.reason, clusters=len(result.clusters),
                 duplicate=not new)


async def _remember_control_templates(conn: asyncpg.Connection, service: str,
                                      control: list[LogEvent]) -> None:
    seen: dict[str, tuple[str, str, str]] = {}
    for e in control:
        t = template_of(e.message)
        seen.setdefault(template_id(t), (t, e.level, e.message.splitlines()[0] if e.message
                                         else ""))
    await conn.executemany(
        "INSERT INTO log_templates (service, template_id, template, level, example) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (service, template_id) "
        "DO UPDATE SET last_seen = now()",
        [(service, tid, t, level, example) for tid, (t, level, example) in seen.items()])
