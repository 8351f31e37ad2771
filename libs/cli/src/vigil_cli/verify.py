"""`vigil verify replay INPUT.json [--sensitivity high|medium|low]`: re-run a verification.

Runs the same analysis code as the services on a stored (or exported) verification and prints
the result as JSON, so a past verdict can be audited and the sensitivity re-tuned offline.
The input and output formats are in docs/metric-analysis.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

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
