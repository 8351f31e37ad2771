"""Use cases of the orchestrator: message in -> domain -> store + outbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import yaml

from vigil.events.v1 import tasks_pb2, verification_pb2
from vigil_common import logs
from vigil_common.envelope import Envelope
from vigil_common.kafka import RejectedEvent
from vigil_orchestrator import translate
from vigil_orchestrator.adapters.postgres import PostgresStore
from vigil_orchestrator.domain import (
    DeadlineCheck,
    PipelineInvalid,
    TaskFinished,
    Verdict,
    VerdictArrived,
    decide,
    parse_pipeline,
    plan,
    start,
)

log = logs.get(__name__)


class UnknownPipeline(LookupError):
    """StartExecution named a pipeline the account does not have."""


def parse_yaml(text: str) -> object:
    """YAML text to a document; a syntax error becomes PipelineInvalid with the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise PipelineInvalid(
            [("", f"not valid YAML: {where}{getattr(exc, 'problem', exc)}")]) from None


class Handlers:
    """The orchestrator's use cases for one Vigil version."""

    def __init__(self, store: PostgresStore, version: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 new_id: Callable[[], str] = lambda: str(uuid.uuid4())):
        self._store = store
        self._version = version
        self._clock = clock
        self._new_id = new_id
        self.consumer = f"{version}.orchestrator"

    async def apply_pipeline(self, account_id: str, yaml_text: str) -> tuple[str, int]:
        """Validate and store a definition; raises PipelineInvalid naming every bad field."""
        spec = parse_pipeline(parse_yaml(yaml_text))
        return spec.name, await self._store.put_pipeline(account_id, spec.name, yaml_text)

    async def start_execution(self, account_id: str, pipeline: str, inputs: dict[str, str],
                              idempotency_key: str = "") -> str:
        """Start an execution on this version; the same idempotency key returns the same id."""
        if idempotency_key:
            existing = await self._store.find_by_key(account_id, idempotency_key)
            if existing:
                return existing
        text = await self._store.get_pipeline(account_id, pipeline)
        if text is None:
            raise UnknownPipeline(pipeline)
        spec = parse_pipeline(parse_yaml(text))
        unknown = sorted(set(inputs) - set(spec.inputs))
        if unknown:
            raise PipelineInvalid([(f"inputs.{k}", "not an input of the pipeline")
                                   for k in unknown])
        execution_id, now = self._new_id(), self._clock()
        steps = plan(spec, inputs, execution_id)
        resolved = {**spec.inputs, **inputs}
        decision = start(execution_id, account_id, spec.name, self._version, resolved, steps, now)
        created = await self._store.create(decision, idempotency_key or None, now)
        log.info("execution started", execution_id=created, pipeline=pipeline,
                 account_id=account_id)
        return created

    async def on_event(self, env: Envelope) -> None:
        """Task results and verdicts, from this version's internal topics."""
        msg = env.message
        if isinstance(msg, tasks_pb2.TaskSucceeded | tasks_pb2.TaskFailed):
            success = isinstance(msg, tasks_pb2.TaskSucceeded)
            event = TaskFinished(
                msg.task_id, msg.attempt, success,
                summary=msg.output.summary if success else "",
                error="" if success else msg.error)
            execution_id = msg.execution_id
        elif isinstance(msg, verification_pb2.VerificationCompleted):
            event = VerdictArrived(msg.ref.verification_id, Verdict(
                translate.ANALYSIS_NAMES.get(msg.analysis, "unknown"),
                translate.VERDICT_NAMES.get(msg.verdict, "ERROR"), msg.reason))
            execution_id = msg.ref.execution_id
        else:
            raise RejectedEvent(f"the orchestrator does not handle {env.type}")
        try:
            uuid.UUID(execution_id)
        except ValueError:
            raise RejectedEvent(f"execution_id {execution_id!r} is not a UUID") from None
        now = self._clock()
        decision = await self._store.apply(execution_id, self.consumer, env.id,
                                           lambda ex: decide(ex, event, now), now)
        if decision is not None and decision.events:
            for ev in decision.events:
                log.info("execution progressed", execution_id=execution_id, kind=ev.kind,
                         step=ev.step.name if ev.step else None, message=ev.message or None)

    async def sweep_deadlines(self) -> int:
        """Fail the running steps whose deadline passed (the durable timer); returns how many
        executions were checked."""
        now = self._clock()
        due = await self._store.due(self._version, now)
        for execution_id in due:
            # A distinct event id per sweep moment: each check is a new, idempotent look.
            await self._store.apply(execution_id, self.consumer,
                                    f"deadline/{execution_id}/{now.isoformat()}",
                                    lambda ex: decide(ex, DeadlineCheck(), now), now)
        return len(due)
