"""`vigil pipeline lint|plan|apply|list`: pipeline definitions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil_cli.client import add_connection_options, metadata, run


def register(sub: argparse._SubParsersAction) -> None:
    pipeline = sub.add_parser("pipeline", help="pipeline definitions")
    psub = pipeline.add_subparsers(dest="action", required=True)
    lint = psub.add_parser("lint", help="validate a pipeline file (no server needed)")
    lint.add_argument("file", type=Path)
    lint.set_defaults(func=_lint)
    plan = psub.add_parser("plan", help="show the resolved pipeline (no server needed)")
    plan.add_argument("file", type=Path)
    plan.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE")
    plan.set_defaults(func=_plan)
    apply = psub.add_parser("apply", help="create or replace a pipeline from a YAML file")
    apply.add_argument("file", type=Path)
    add_connection_options(apply)
    apply.set_defaults(func=lambda a: run(_apply(a)))
    lst = psub.add_parser("list", help="the account's pipelines")
    add_connection_options(lst)
    lst.set_defaults(func=lambda a: run(_list(a)))


def parse_inputs(items: list[str]) -> dict[str, str]:
    inputs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"error: --input {item!r}: expected NAME=VALUE")
        inputs[name] = value
    return inputs


def _load(file: Path):  # noqa: ANN202 - a PipelineSpec, or None after printing problems
    from vigil_orchestrator.domain import PipelineInvalid, parse_pipeline
    from vigil_orchestrator.handlers import parse_yaml

    try:
        return parse_pipeline(parse_yaml(file.read_text()))
    except PipelineInvalid as exc:
        for path, message in exc.problems:
            print(f"{file}: {path + ': ' if path else ''}{message}", file=sys.stderr)
        return None


def _lint(args: argparse.Namespace) -> int:
    spec = _load(args.file)
    if spec is None:
        return 2
    steps = sum(len(p.steps) for s in spec.stages for p in s.workflow.phases)
    print(f"{args.file}: ok ({spec.name}: {len(spec.stages)} stages, {steps} steps)")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from vigil_orchestrator.domain import PipelineInvalid, plan

    spec = _load(args.file)
    if spec is None:
        return 2
    try:
        resolved = plan(spec, parse_inputs(args.input), "<execution-id>")
    except PipelineInvalid as exc:
        for path, message in exc.problems:
            print(f"{args.file}: {path}: {message}", file=sys.stderr)
        return 2
    print(f"pipeline {spec.name}" + "".join(f"  {k}={v}" for k, v in (
        ("application", spec.application), ("service", spec.service),
        ("environment", spec.environment)) if v))
    for stage in resolved.stages:
        after = ", ".join(stage.depends_on) or "start"
        print(f"  stage {stage.name}  (after {after})")
        phase = None
        for step in (s for s in resolved.steps if s.stage == stage.name):
            if step.phase != phase:
                phase = step.phase
                print(f"    phase {phase}")
            policy = step.failure
            how = policy.action.value + (f"x{policy.retries}->{policy.then.value}"
                                         if policy.action.value == "retry" else "")
            print(f"      {step.name} [{step.type.value}] timeout {step.timeout_seconds:g}s, "
                  f"on failure {how}")
            print(f"        {json.dumps(step.params, sort_keys=True)}")
    return 0


async def _apply(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.api) as channel:
        reply = await api_pb2_grpc.PipelineServiceStub(channel).ApplyPipeline(
            api_pb2.ApplyPipelineRequest(yaml=args.file.read_text()), metadata=metadata(args))
    print(f"pipeline {reply.name} applied (revision {reply.revision})")
    return 0


async def _list(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.api) as channel:
        reply = await api_pb2_grpc.PipelineServiceStub(channel).ListPipelines(
            api_pb2.ListPipelinesRequest(), metadata=metadata(args))
    for p in reply.pipelines:
        print(f"{p.name}  revision {p.revision}  {p.application}/{p.service}/{p.environment}")
    return 0
