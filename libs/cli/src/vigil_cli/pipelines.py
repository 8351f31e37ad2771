"""`vigil pipeline apply|lint`, `vigil run`, `vigil get execution`: the API for humans and CI.

Exit codes of `vigil run --wait`: 0 succeeded, 1 failed, 3 timed out waiting; 2 is a usage or
API error (as for every command).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

import grpc

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil.events.v1 import execution_pb2

DEFAULT_API = "127.0.0.1:50051"


def register(sub: argparse._SubParsersAction) -> None:
    pipeline = sub.add_parser("pipeline", help="pipeline definitions")
    psub = pipeline.add_subparsers(dest="action", required=True)
    apply = psub.add_parser("apply", help="create or replace a pipeline from a YAML file")
    apply.add_argument("file", type=Path)
    _common(apply)
    apply.set_defaults(func=lambda a: _run(_apply(a)))
    lint = psub.add_parser("lint", help="validate a pipeline file (no server needed)")
    lint.add_argument("file", type=Path)
    lint.set_defaults(func=_lint)

    run = sub.add_parser("run", help="start an execution of a pipeline")
    run.add_argument("pipeline")
    run.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--idempotency-key", default="")
    run.add_argument("--wait", action="store_true", help="follow it to the end; exit by outcome")
    run.add_argument("--timeout", type=float, default=3600.0)
    _common(run)
    run.set_defaults(func=lambda a: _run(_start(a)))

    get = sub.add_parser("get", help="show an object")
    gsub = get.add_subparsers(dest="kind", required=True)
    execution = gsub.add_parser("execution", help="an execution and its steps")
    execution.add_argument("execution_id")
    _common(execution)
    execution.set_defaults(func=lambda a: _run(_get(a)))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", default=os.environ.get("VIGIL_API", DEFAULT_API),
                   help="API address (env VIGIL_API, default %(default)s)")
    p.add_argument("--account", default=os.environ.get("VIGIL_ACCOUNT", "demo"),
                   help="account id (env VIGIL_ACCOUNT, default %(default)s)")


def _run(coro) -> int:  # noqa: ANN001 - a coroutine returning the exit code
    try:
        return asyncio.run(coro)
    except grpc.aio.AioRpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2


def _lint(args: argparse.Namespace) -> int:
    from vigil_orchestrator.domain import PipelineInvalid, parse_pipeline
    from vigil_orchestrator.handlers import parse_yaml

    try:
        spec = parse_pipeline(parse_yaml(args.file.read_text()))
    except PipelineInvalid as exc:
        for path, message in exc.problems:
            print(f"{args.file}: {path + ': ' if path else ''}{message}", file=sys.stderr)
        return 2
    steps = sum(len(p.steps) for s in spec.stages for p in s.workflow.phases)
    print(f"{args.file}: ok ({spec.name}: {len(spec.stages)} stages, {steps} steps)")
    return 0


async def _apply(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.api) as channel:
        reply = await api_pb2_grpc.PipelineServiceStub(channel).ApplyPipeline(
            api_pb2.ApplyPipelineRequest(account_id=args.account, yaml=args.file.read_text()))
    print(f"pipeline {reply.name} applied (revision {reply.revision})")
    return 0


async def _start(args: argparse.Namespace) -> int:
    inputs = {}
    for item in args.input:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"error: --input {item!r}: expected NAME=VALUE", file=sys.stderr)
            return 2
        inputs[name] = value
    async with grpc.aio.insecure_channel(args.api) as channel:
        api = api_pb2_grpc.PipelineServiceStub(channel)
        reply = await api.StartExecution(api_pb2.StartExecutionRequest(
            account_id=args.account, pipeline=args.pipeline, inputs=inputs,
            idempotency_key=args.idempotency_key or str(uuid.uuid4())))
        print(reply.execution_id, flush=True)
        if not args.wait:
            return 0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            ex = await api.GetExecution(api_pb2.GetExecutionRequest(
                account_id=args.account, execution_id=reply.execution_id))
            if ex.status != execution_pb2.EXECUTION_STATUS_RUNNING:
                print(render(ex))
                return 0 if ex.status == execution_pb2.EXECUTION_STATUS_SUCCEEDED else 1
            await asyncio.sleep(1.0)
    print(f"error: still running after {args.timeout:g}s", file=sys.stderr)
    return 3


async def _get(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.api) as channel:
        ex = await api_pb2_grpc.PipelineServiceStub(channel).GetExecution(
            api_pb2.GetExecutionRequest(account_id=args.account, execution_id=args.execution_id))
    print(render(ex))
    return 0


def _name(enum: type, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix)  # type: ignore[attr-defined]


def render(ex: api_pb2.Execution) -> str:
    """A readable tree: execution, then one line per step with status and message."""
    status = _name(execution_pb2.ExecutionStatus, ex.status, "EXECUTION_STATUS_")
    lines = [f"execution {ex.execution_id}  {ex.pipeline}  {status}"
             + ("  (rolled back)" if ex.rolled_back else "")]
    for s in ex.steps:
        st = _name(execution_pb2.StepStatus, s.status, "STEP_STATUS_")
        took = ""
        if s.HasField("started_at") and s.HasField("finished_at"):
            seconds = (s.finished_at.ToDatetime() - s.started_at.ToDatetime()).total_seconds()
            took = f" {seconds:.1f}s"
        lines.append(f"  {st:<9} {s.ref.stage}/{s.ref.phase}/{s.ref.step} [{s.ref.type}]{took}"
                     + (f"  {s.message}" if s.message else ""))
    if ex.reason:
        lines.append(f"  reason: {ex.reason}")
    return "\n".join(lines)
