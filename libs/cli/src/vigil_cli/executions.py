"""`vigil run|get|wait|list|approve|reject|abort|pause|resume|intervene|rollback|audit|stats`.

Exit codes of `vigil wait` and `vigil run --wait`: 0 succeeded, 1 failed, 2 usage or API
error, 3 timed out waiting, 4 aborted, 5 failed and rolled back.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import grpc

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil.events.v1 import execution_pb2
from vigil_cli.client import (
    EXIT_TIMEOUT,
    add_connection_options,
    exit_code,
    metadata,
    render,
    run,
)
from vigil_cli.pipelines import parse_inputs

ACTIONS = {"abort": "AbortExecution", "pause": "PauseExecution", "resume": "ResumeExecution"}
INTERVENTIONS = {"retry": api_pb2.INTERVENTION_ACTION_RETRY,
                 "abort": api_pb2.INTERVENTION_ACTION_ABORT,
                 "rollback": api_pb2.INTERVENTION_ACTION_ROLLBACK,
                 "ignore": api_pb2.INTERVENTION_ACTION_IGNORE}


def _cmd(sub: argparse._SubParsersAction, name: str, help_text: str,
         func, *, execution: bool = True, reason: bool = False) -> argparse.ArgumentParser:  # noqa: ANN001
    p = sub.add_parser(name, help=help_text)
    if execution:
        p.add_argument("execution_id")
    if reason:
        p.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    add_connection_options(p)
    p.set_defaults(func=lambda a: run(func(a)))
    return p


def register(sub: argparse._SubParsersAction) -> None:
    p = _cmd(sub, "run", "start an execution of a pipeline", _start, execution=False)
    p.add_argument("pipeline")
    p.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--idempotency-key", default="")
    p.add_argument("--wait", action="store_true", help="follow it to the end; exit by outcome")
    p.add_argument("--timeout", type=float, default=3600.0)

    get = sub.add_parser("get", help="show an object")
    gsub = get.add_subparsers(dest="kind", required=True)
    p = _cmd(gsub, "execution", "an execution's stages and steps", _get)
    p.add_argument("--watch", action="store_true", help="redraw on every change until done")

    p = _cmd(sub, "wait", "wait for an execution to finish; exit by outcome (CI gates)", _wait)
    p.add_argument("--timeout", type=float, default=3600.0)

    p = _cmd(sub, "list", "executions, newest first", _list, execution=False)
    for f in ("pipeline", "application", "service", "environment"):
        p.add_argument(f"--{f}", default="")
    p.add_argument("--status", choices=["running", "succeeded", "failed", "aborted"])
    p.add_argument("--limit", type=int, default=20)

    for name in ACTIONS:
        _cmd(sub, name, f"{name} an execution", _action(name), reason=True)
    for name, approved in (("approve", True), ("reject", False)):
        p = _cmd(sub, name, f"{name} a step waiting for approval", _approve(approved),
                 reason=True)
        p.add_argument("--step", default="", help="step name (when several wait)")
    p = _cmd(sub, "intervene", "choose what a failed step waiting for a person does",
             _intervene, reason=True)
    p.add_argument("--action", required=True, choices=sorted(INTERVENTIONS))
    p.add_argument("--step", default="")
    _cmd(sub, "rollback", "roll a finished deployment back to the previous version",
         _rollback, reason=True)
    p = _cmd(sub, "audit", "who did what, when and why", _audit, execution=False)
    p.add_argument("--execution", default="")
    _cmd(sub, "stats", "deployments per day, success rate, failures by stage", _stats,
         execution=False)


def _stub(channel: grpc.aio.Channel) -> api_pb2_grpc.ExecutionServiceStub:
    return api_pb2_grpc.ExecutionServiceStub(channel)


async def _start(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.api) as channel:
        reply = await _stub(channel).StartExecution(api_pb2.StartExecutionRequest(
            pipeline=args.pipeline, inputs=parse_inputs(args.input),
            idempotency_key=args.idempotency_key or str(uuid.uuid4())), metadata=metadata(args))
    print(reply.execution_id, flush=True)
    if not args.wait:
        return 0
    args.execution_id = reply.execution_id
    return await _wait(args)


async def _fetch(args: argparse.Namespace, channel: grpc.aio.Channel) -> api_pb2.Execution:
    return await _stub(channel).GetExecution(api_pb2.GetExecutionRequest(
        execution_id=args.execution_id), metadata=metadata(args))


async def _get(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.api) as channel:
        if not args.watch:
            print(render(await _fetch(args, channel)))
            return 0
        stream = _stub(channel).WatchExecution(api_pb2.GetExecutionRequest(
            execution_id=args.execution_id), metadata=metadata(args))
        async for ex in stream:
            if sys.stdout.isatty():
                print("\033[2J\033[H", end="")
            print(render(ex), flush=True)
            if not sys.stdout.isatty():
                print()
    return 0


async def _wait(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    async with grpc.aio.insecure_channel(args.api) as channel:
        stream = _stub(channel).WatchExecution(api_pb2.GetExecutionRequest(
            execution_id=args.execution_id), metadata=metadata(args))
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                async for ex in stream:
                    if ex.status != execution_pb2.EXECUTION_STATUS_RUNNING:
                        print(render(ex))
                        return exit_code(ex)
        except TimeoutError:
            pass
    print(f"error: still running after {args.timeout:g}s", file=sys.stderr)
    return EXIT_TIMEOUT


async def _list(args: argparse.Namespace) -> int:
    status = (execution_pb2.ExecutionStatus.Value(f"EXECUTION_STATUS_{args.status.upper()}")
              if args.status else 0)
    async with grpc.aio.insecure_channel(args.api) as channel:
        reply = await _stub(channel).ListExecutions(api_pb2.ListExecutionsRequest(
            pipeline=args.pipeline, application=args.application, service=args.service,
            environment=args.environment, status=status, page_size=args.limit),
            metadata=metadata(args))
    for ex in reply.executions:
        st = execution_pb2.ExecutionStatus.Name(ex.status).removeprefix("EXECUTION_STATUS_")
        print(f"{ex.execution_id}  {ex.created_at.ToDatetime():%Y-%m-%d %H:%M:%S}  "
              f"{ex.pipeline:<24} {st:<9} {ex.reason[:80]}")
    return 0


def _action(name: str):  # noqa: ANN202
    async def act(args: argparse.Namespace) -> int:
        async with grpc.aio.insecure_channel(args.api) as channel:
            ex = await getattr(_stub(channel), ACTIONS[name])(api_pb2.ExecutionActionRequest(
                execution_id=args.execution_id, reason=args.reason), metadata=metadata(args))
        print(render(ex))
        return 0
    return act


def _approve(approved: bool):  # noqa: ANN202
    async def act(args: argparse.Namespace) -> int:
        async with grpc.aio.insecure_channel(args.api) as channel:
            ex = await _stub(channel).ApproveStep(api_pb2.ApproveStepRequest(
                execution_id=args.execution_id, step=args.step, approved=approved,
                reason=args.reason), metadata=metadata(args))
        print(render(ex))
        return 0
    return act


async def _intervene(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.api) as channel:
        ex = await _stub(channel).ChooseIntervention(api_pb2.ChooseInterventionRequest(
            execution_id=args.execution_id, step=args.step, action=INTERVENTIONS[args.action],
            reason=args.reason), metadata=metadata(args))
    print(render(ex))
    return 0


async def _rollback(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.api) as channel:
        reply = await _stub(channel).RollbackExecution(api_pb2.ExecutionActionRequest(
            execution_id=args.execution_id, reason=args.reason), metadata=metadata(args))
    print(reply.execution_id)
    return 0


async def _audit(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.api) as channel:
        reply = await _stub(channel).ListAuditEvents(api_pb2.ListAuditEventsRequest(
            execution_id=args.execution), metadata=metadata(args))
    for e in reply.events:
        print(f"{e.at.ToDatetime():%Y-%m-%d %H:%M:%S}  {e.actor:<16} {e.action:<18} "
              f"{e.execution_id}  {e.step}  {e.reason}")
    return 0


async def _stats(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.api) as channel:
        s = await _stub(channel).GetDeploymentStats(api_pb2.GetDeploymentStatsRequest(),
                                                    metadata=metadata(args))
    print(f"{s.total} deployments, {s.succeeded} succeeded, success rate {s.success_rate:.1%}")
    for d in s.days:
        print(f"  {d.day}  {d.environment or '-':<8} {d.service or '-':<12} ok {d.succeeded}  "
              f"failed {d.failed}  aborted {d.aborted}  mean {d.mean_duration_seconds:.0f}s")
    for f in s.failures_by_stage:
        print(f"  failures in stage {f.stage}: {f.failures}")
    return 0
