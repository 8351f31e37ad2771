"""`vigil verify replay INPUT.json [--sensitivity high|medium|low]`: re-run a verification.

Runs the same analysis code as the services on a stored (or exported) verification and prints
the result as JSON, so a past verdict can be audited and the sensitivity re-tuned offline.
The input and output formats are in docs/metric-analysis.md.

`vigil verify export EXECUTION_ID [--step NAME] [-o FILE]`: a verify step's stored input
data, in that format, through the API (``ExecutionService/ExportVerification``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import grpc

from vigil.api.v1 import api_pb2, api_pb2_grpc
from vigil_cli.client import add_connection_options, metadata, run
from vigil_common.verdicts import Sensitivity, Verdict, combine
from vigil_metric_analyzer.domain.replay import ReplayError, replay_metrics

SENSITIVITIES = {s.value.lower(): s for s in Sensitivity}


def register(subparsers: argparse._SubParsersAction) -> None:
    verify = subparsers.add_parser("verify", help="offline verification tools")
    sub = verify.add_subparsers(dest="verify_command", required=True)
    replay = sub.add_parser("replay", help="re-run the analysis of a stored verification")
    replay.add_argument("input", help="verification in the replay format (JSON), - for stdin")
    replay.add_argument("--sensitivity", choices=list(SENSITIVITIES),
                        help="judge at one sensitivity only (default: all three)")
    replay.set_defaults(func=_replay)
    export = sub.add_parser("export", help="a past verification's input data, in the replay "
                                           "format (for vigil verify replay)")
    export.add_argument("execution_id")
    export.add_argument("--step", default="",
                        help="the verify step's name or path (needed when there are several)")
    export.add_argument("--verification-id", default="",
                        help="one verification (step attempt) of the execution")
    export.add_argument("-o", "--output", default="-", help="file to write, - for stdout")
    add_connection_options(export)
    export.set_defaults(func=lambda args: run(_export(args)))


def replay(doc: dict[str, Any], sensitivities: list[Sensitivity]) -> dict[str, Any]:
    """The replay output for ``doc`` (metric and log parts, combined verdicts)."""
    metrics = replay_metrics(doc, sensitivities)
    logs = _replay_logs(doc, sensitivities)
    has_logs = bool((doc.get("logs") or {}).get("control") or (doc.get("logs") or {}).get("test"))
    keys = [s.value.lower() for s in sensitivities]
    verdict = {}
    for key in keys:
        parts = [Verdict(metrics["verdict"][key])]
        if has_logs:
            parts.append(Verdict(logs["verdict"][key]))
        verdict[key] = combine(parts).value
    return {
        "id": doc.get("id"),
        "verdict": verdict,
        "metrics": metrics["metrics"],
        "verdict_metrics": metrics["verdict"],
        "verdict_logs": logs["verdict"],
        "logs": {"line_clusters": logs["line_clusters"], "cluster_labels": logs["cluster_labels"]},
        "explanations": {"metrics": {"analyzer": metrics["analyzer"], "reason": metrics["reason"],
                                     "findings": metrics["explanations"]},
                         "logs": logs["explanations"]},
    }


def _replay_logs(doc: dict[str, Any], sensitivities: list[Sensitivity]) -> dict[str, Any]:
    """The log part from the log analyzer's pure ``replay_logs``; NO_DATA when it is absent."""
    logs = doc.get("logs") or {}
    try:
        from vigil_log_analyzer.domain import replay_logs
    except ImportError:
        return {"verdict": {s.value.lower(): Verdict.NO_DATA.value for s in sensitivities},
                "line_clusters": {}, "cluster_labels": {},
                "explanations": {"reason": "the log analyzer's replay is not installed"}}
    out: dict[str, Any] = {"verdict": {}, "line_clusters": {}, "cluster_labels": {},
                           "explanations": {}}
    for s in sensitivities:
        part = replay_logs(logs.get("control") or [], logs.get("test") or [], s)
        key = s.value.lower()
        out["verdict"][key] = part["verdict"]
        out["line_clusters"], out["cluster_labels"] = part["line_clusters"], part["cluster_labels"]
        out["explanations"][key] = {"analyzer": part["analyzer"], "reason": part["reason"],
                                    "clusters": part["explanations"]}
    return out


def _replay(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.input == "-" else Path(args.input).read_text()
        doc = json.loads(text)
    except (OSError, json.JSONDecodeError) as e:
        print(f"vigil verify replay: cannot read {args.input}: {e}", file=sys.stderr)
        return 2
    sensitivities = ([SENSITIVITIES[args.sensitivity]] if args.sensitivity
                     else [Sensitivity.HIGH, Sensitivity.MEDIUM, Sensitivity.LOW])
    try:
        out = replay(doc, sensitivities)
    except ReplayError as e:
        print(f"vigil verify replay: {args.input}: {e}", file=sys.stderr)
        return 2
    json.dump(out, sys.stdout, indent=2, allow_nan=False)
    print()
    return 0


async def _export(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.api) as channel:
        reply = await api_pb2_grpc.ExecutionServiceStub(channel).ExportVerification(
            api_pb2.ExportVerificationRequest(
                execution_id=args.execution_id, step=args.step,
                verification_id=args.verification_id), metadata=metadata(args))
    text = reply.document_json.rstrip("\n") + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    print(f"verification {reply.verification_id} of {reply.step} (attempt {reply.attempt}): "
          f"{', '.join(reply.present) or 'nothing'}"
          + (f"; missing: {'; '.join(reply.missing)}" if reply.missing else "")
          + ("" if args.output == "-" else f" -> {args.output}"), file=sys.stderr)
    return 0
