"""Use cases of the orchestrator: message or request in -> domain -> store + outbox."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import yaml

from vigil.events.v1 import artifact_pb2, tasks_pb2, verification_pb2
from vigil_common import logs, tracing
from vigil_common.envelope import Envelope
from vigil_common.kafka import RejectedEvent
from vigil_orchestrator import translate
from vigil_orchestrator.adapters.postgres import Audit, ExecutionFilter, PostgresStore
from vigil_orchestrator.domain import (
    Abort,
    Action,
    Approve,
    Decision,
    Event,
    Execution,
    IllegalAction,
    Intervene,
    Pause,
    PipelineInvalid,
    Plan,
    Resume,
    StagePlan,
    StepStatus,
    TaskFinished,
    TimerFired,
    Verdict,
    VerdictArrived,
    Waiting,
    decide,
    parse_pipeline,
    plan,
    start,
)
from vigil_orchestrator.domain.plan import rollback_steps
from vigil_orchestrator.domain.stats import Finished, Stats, deployment_stats

log = logs.get(__name__)


class NotFound(LookupError):
    """The named pipeline or execution does not exist in this account; says which."""


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

    # ---- pipelines and starting -----------------------------------------------------------

    async def apply_pipeline(self, account_id: str, yaml_text: str) -> tuple[str, int]:
        """Validate and store a definition; raises PipelineInvalid naming every bad field."""
        spec = parse_pipeline(parse_yaml(yaml_text))
        return spec.name, await self._store.put_pipeline(account_id, spec, yaml_text)

    async def start_execution(self, account_id: str, pipeline: str, inputs: dict[str, str],
                              idempotency_key: str = "",
                              artifact: dict[str, str] | None = None) -> str:
        """Start an execution on this version; the same idempotency key returns the same id."""
        if idempotency_key:
            existing = await self._store.find_by_key(account_id, idempotency_key)
            if existing:
                return existing
        row = await self._store.get_pipeline(account_id, pipeline)
        if row is None:
            raise NotFound(f"pipeline: no pipeline {pipeline!r} in this account")
        spec = parse_pipeline(parse_yaml(row["yaml"]))
        unknown = sorted(set(inputs) - set(spec.inputs))
        if unknown:
            raise PipelineInvalid([(f"inputs.{k}", "not an input of the pipeline")
                                   for k in unknown])
        execution_id, now = self._new_id(), self._clock()
        resolved = plan(spec, inputs, execution_id, artifact)
        decision = start(execution_id, account_id, spec.name, self._version,
                         {**spec.inputs, **inputs}, resolved, now,
                         application=spec.application, service=spec.service,
                         environment=spec.environment)
        created = await self._store.create(decision, idempotency_key or None, now)
        log.info("execution started", execution_id=created, pipeline=pipeline,
                 account_id=account_id)
        return created

    async def rollback_execution(self, account_id: str, execution_id: str, actor: str,
                                 reason: str) -> str:
        """Start an execution that undoes a finished one's succeeded deployments."""
        ex = await self._get(account_id, execution_id)
        if not ex.status.is_terminal:
            raise IllegalAction("execution is still running: abort it, or let its failure "
                                "strategy roll it back")
        done = [i for i, s in enumerate(ex.step_states) if s.status is StepStatus.SUCCEEDED]
        undo = [st for k in reversed(range(len(ex.stages)))
                for st in rollback_steps(tuple(ex.steps), tuple(ex.custom_rollbacks), done, k)]
        if not undo:
            raise IllegalAction("execution deployed nothing that can be rolled back")
        stage_name = "rollback"
        steps = tuple(replace(s, stage_index=0, stage=stage_name) for s in undo)
        new_id, now = self._new_id(), self._clock()
        decision = start(new_id, account_id, ex.pipeline, self._version,
                         {"rollback_of": ex.id}, Plan((StagePlan(stage_name, ()),), steps), now,
                         application=ex.application, service=ex.service,
                         environment=ex.environment)
        created = await self._store.create(decision, f"rollback/{ex.id}", now)
        if created == new_id:  # a repeated request returns the first rollback, audited once
            await self._store.apply(ex.id, lambda e: Decision(e), now, account_id=account_id,
                                    audit=Audit(actor, "rollback", reason))
        log.info("rollback started", execution_id=created, rollback_of=ex.id, actor=actor)
        return created

    # ---- people's actions -----------------------------------------------------------------

    async def act(self, account_id: str, execution_id: str, actor: str,
                  action: Abort | Pause | Resume | Approve | Intervene) -> Execution:
        """Apply a person's action; raises IllegalAction or NotFound saying why not."""
        name, step = _audit_name(action)

        def audit(ex: Execution) -> Audit:
            # A request may leave the step out when only one waits; record the one acted on.
            waiting = {Approve: Waiting.APPROVAL, Intervene: Waiting.INTERVENTION}.get(
                type(action))
            if waiting is not None and not step:
                names = [s.name for s, w in ex.waiting_for_input() if w is waiting]
                return Audit(actor, name, action.reason, names[0] if len(names) == 1 else "")
            return Audit(actor, name, action.reason, step)

        decision = await self._store.apply(
            execution_id, lambda ex: decide(ex, action, self._clock()), self._clock(),
            account_id=account_id, audit=audit)
        if decision is None:
            raise NotFound(f"execution_id: no execution {execution_id}")
        log.info("person acted", execution_id=execution_id, actor=actor, action=name,
                 reason=action.reason)
        return decision.execution

    async def _get(self, account_id: str, execution_id: str) -> Execution:
        ex = await self._store.get(account_id, execution_id)
        if ex is None:
            raise NotFound(f"execution_id: no execution {execution_id}")
        return ex

    async def get_execution(self, account_id: str, execution_id: str) -> Execution:
        return await self._get(account_id, execution_id)

    async def list_executions(self, account_id: str, f: ExecutionFilter, page_size: int,
                              page_token: str) -> tuple[list[Execution], str]:
        return await self._store.list(account_id, f, page_size, page_token)

    async def stats(self, account_id: str, start_at: datetime | None,
                    end_at: datetime | None) -> Stats:
        rows = await self._store.finished_between(account_id, start_at, end_at)
        finished = []
        for r in rows:
            state = json.loads(r["state"])
            failed = next((s["name"] for s, st in zip(state["stages"], state["stage_states"],
                                                       strict=True)
                           if st["status"] == "FAILED"), "")
            finished.append(Finished(r["status"], r["environment"], r["service"],
                                     r["created_at"], r["finished_at"], failed))
        return deployment_stats(finished)

    # ---- events ---------------------------------------------------------------------------

    async def on_event(self, env: Envelope) -> None:
        """Task results and verdicts from this version's topics; artifact triggers."""
        msg = env.message
        if isinstance(msg, artifact_pb2.ArtifactPublished):
            # Every version's orchestrator reads the public artifacts topic; the primary of
            # the event's time starts the executions (issue 4, docs/upgrades.md).
            acting = await self._store.version_acting_at(env.time)
            if acting is not None and acting != self._version:
                log.info("artifact left to the primary version", primary=acting,
                         event_id=env.id)
                return
            await self._on_artifact(env.id, msg)
            return
        event: Event
        if isinstance(msg, tasks_pb2.TaskSucceeded | tasks_pb2.TaskFailed):
            success = isinstance(msg, tasks_pb2.TaskSucceeded)
            event = TaskFinished(
                msg.task_id, msg.attempt, success,
                summary=msg.output.summary if success else "",
                error="" if success else msg.error,
                outputs=dict(msg.output.values) if success else {})
            execution_id, account_id = msg.execution_id, msg.account_id
        elif isinstance(msg, verification_pb2.VerificationCompleted):
            event = VerdictArrived(msg.ref.verification_id, Verdict(
                translate.ANALYSIS_NAMES.get(msg.analysis, "unknown"),
                translate.VERDICT_NAMES.get(msg.verdict, "ERROR"), msg.reason))
            execution_id, account_id = msg.ref.execution_id, msg.ref.account_id
        else:
            raise RejectedEvent(f"the orchestrator does not handle {env.type}")
        try:
            uuid.UUID(execution_id)
        except ValueError:
            raise RejectedEvent(f"execution_id {execution_id!r} is not a UUID") from None
        now = self._clock()
        decision = await self._store.apply(
            execution_id, lambda ex: decide(ex, event, now), now, consumer=self.consumer,
            event_id=env.id, account_id=account_id)
        for ev in decision.events if decision else []:
            log.info("execution progressed", execution_id=execution_id, kind=ev.kind,
                     step=ev.step.name if ev.step else ev.stage or None,
                     message=ev.message or None)

    async def _on_artifact(self, event_id: str, msg: artifact_pb2.ArtifactPublished) -> None:
        if not (msg.account_id and msg.service and msg.version):
            raise RejectedEvent("ArtifactPublished needs account_id, service and version")
        for row in await self._store.pipelines_triggered_by(msg.account_id, msg.service):
            spec = parse_pipeline(parse_yaml(row["yaml"]))
            for trigger in (t for t in spec.triggers if t.service == msg.service):
                artifact = {"service": msg.service, "version": msg.version, **msg.attributes}
                execution_id = await self.start_execution(
                    msg.account_id, spec.name, {trigger.input: msg.version},
                    f"artifact/{event_id}/{spec.name}", artifact)
                log.info("artifact triggered execution", pipeline=spec.name,
                         execution_id=execution_id, version=msg.version)

    async def sweep_timers(self) -> int:
        """Fire the durable timers that are due; returns how many executions were looked at."""
        now = self._clock()
        due = await self._store.due(self._version, now)
        for execution_id, trace in due:
            # no event causes a timer: the work continues the execution's own trace
            with tracing.use(trace):
                await self._store.apply(execution_id, lambda ex: decide(ex, TimerFired(), now),
                                        now)
        return len(due)


def _audit_name(action: Abort | Pause | Resume | Approve | Intervene) -> tuple[str, str]:
    if isinstance(action, Approve):
        return ("approve" if action.approved else "reject"), action.step
    if isinstance(action, Intervene):
        return f"intervene:{action.action.value}", action.step
    return type(action).__name__.lower(), ""


__all__ = ["Action", "Handlers", "NotFound", "parse_yaml"]
