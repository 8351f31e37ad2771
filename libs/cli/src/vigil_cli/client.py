"""Talking to the API from the CLI: address, API key, errors, and the execution tree."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from vigil.api.v1 import api_pb2
from vigil.events.v1 import execution_pb2

DEFAULT_API = "127.0.0.1:50051"


def add_connection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", default=os.environ.get("VIGIL_API", DEFAULT_API),
                   help="API address (env VIGIL_API, default %(default)s)")
    p.add_argument("--api-key", default=os.environ.get("VIGIL_API_KEY", ""),
                   help="API key (env VIGIL_API_KEY)")


def metadata(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {args.api_key}"),)


def run(coro: Awaitable[int]) -> int:
    """Run a command; an API error is printed with its field violations, exit code 2."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except grpc.aio.AioRpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        status = rpc_status.from_call(exc)
        for detail in status.details if status else []:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                for v in bad.field_violations:
                    print(f"  {v.field}: {v.description}", file=sys.stderr)
        return 2


def _name(enum: object, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix)  # type: ignore[attr-defined]


def render(ex: api_pb2.Execution) -> str:
    """A tree: execution, stages, then each stage's steps with status, duration, message."""
    status = _name(execution_pb2.ExecutionStatus, ex.status, "EXECUTION_STATUS_")
    flags = (" (rolled back)" if ex.rolled_back else "") + (" (paused)" if ex.paused else "")
    lines = [f"execution {ex.execution_id}  {ex.pipeline}  {status}{flags}"]
    for stage in ex.stages:
        st = _name(execution_pb2.StageStatus, stage.status, "STAGE_STATUS_")
        lines.append(f"  stage {stage.name}  {st}" + (f"  {stage.reason}" if stage.reason
                                                       and st != "FAILED" else ""))
        phase = None
        for s in (s for s in ex.steps if s.ref.stage == stage.name):
            if s.ref.phase != phase:
                phase = s.ref.phase
                lines.append(f"    phase {phase}")
            step_status = _name(execution_pb2.StepStatus, s.status, "STEP_STATUS_")
            took = ""
            if s.HasField("started_at") and s.HasField("finished_at"):
                seconds = (s.finished_at.ToDatetime() - s.started_at.ToDatetime()).total_seconds()
                took = f" {seconds:.1f}s"
            extra = f" (attempt {s.attempt})" if s.attempt > 1 else ""
            waiting = f" waiting for {s.waiting_for}" if s.waiting_for else ""
            lines.append(f"      {step_status:<9} {s.ref.step} [{s.ref.type}]{took}{extra}"
                         f"{waiting}" + (f"  {s.message}" if s.message else ""))
    if ex.reason:
        lines.append(f"  reason: {ex.reason}")
    return "\n".join(lines)


# `vigil wait` / `vigil run --wait` exit codes (docs/cli.md).
EXIT_SUCCEEDED, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_ABORTED, EXIT_ROLLED_BACK = range(6)


def exit_code(ex: api_pb2.Execution) -> int:
    if ex.status == execution_pb2.EXECUTION_STATUS_SUCCEEDED:
        return EXIT_SUCCEEDED
    if ex.status == execution_pb2.EXECUTION_STATUS_ABORTED:
        return EXIT_ABORTED
    return EXIT_ROLLED_BACK if ex.rolled_back else EXIT_FAILED
