"""The metric part of ``vigil verify replay``: a stored verification in, verdicts out (pure).

The input format is documented in docs/metric-analysis.md (issue 5). The same judge as the
service runs, at each sensitivity, on data measured once; the output says per sensitivity the
verdict, which metrics regressed, and every finding's explanation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from vigil_common.verdicts import Sensitivity
from vigil_metric_analyzer.domain.judge import judge_sensitivities
from vigil_metric_analyzer.domain.policy import (
    NO_FLOOR,
    Direction,
    MetricKind,
    MetricPolicy,
    Mode,
    PerSensitivity,
    VerificationPolicy,
)
from vigil_metric_analyzer.domain.scorers.verdict import ANALYZER, regressions

DIRECTIONS = {"increase_is_bad": Direction.HIGHER_IS_WORSE,
              "decrease_is_bad": Direction.LOWER_IS_WORSE}
DEFAULT_DIRECTIONS = {MetricKind.THROUGHPUT: Direction.LOWER_IS_WORSE}


class ReplayError(ValueError):
    """The input does not follow the replay format; the message names the field."""


def policy_from(doc: Mapping[str, Any], sensitivity: Sensitivity) -> VerificationPolicy:
    """The verification policy a replay document describes (mode, windows, metrics)."""
    try:
        mode = Mode(doc.get("mode", "canary"))
    except ValueError as e:
        raise ReplayError(f"mode: must be one of {[m.value for m in Mode]}") from e
    metrics = {}
    for k, m in enumerate(doc.get("metrics") or []):
        metric = _metric(m, f"metrics[{k}]")
        metrics[metric.name] = metric
    return VerificationPolicy(sensitivity, metrics, mode=mode,
                              warmup_minutes=int(doc.get("warmup_minutes", 2)),
                              gap_minutes=_gap(doc.get("windows") or {}))


def replay_metrics(doc: Mapping[str, Any], sensitivities: Iterable[Sensitivity] = tuple(
        Sensitivity)) -> dict[str, Any]:
    """Judges a replay document's metrics at each of ``sensitivities``.

    Returns:
        ``{"analyzer", "verdict": {high|medium|low: VERDICT}, "reason": {...},
        "metrics": {sens: {name: "regression"|"no-regression"}}, "explanations":
        {sens: [finding...]}}``, each finding ``{metric, host, verdict, rule, reason,
        control, test}``. Deterministic; NaN never appears (JSON-safe).
    """
    sensitivities = list(sensitivities)
    policy = policy_from(doc, Sensitivity.MEDIUM)
    control = {m.name: (raw.get("control") or {}) for m, raw in zip(
        policy.metrics.values(), doc.get("metrics") or [], strict=True)}
    test = {m.name: (raw.get("test") or {}) for m, raw in zip(
        policy.metrics.values(), doc.get("metrics") or [], strict=True)}
    results = judge_sensitivities(control, test, policy, sensitivities)
    out: dict[str, Any] = {"analyzer": ANALYZER, "verdict": {}, "reason": {}, "metrics": {},
                           "explanations": {}}
    for s, result in results.items():
        key = s.value.lower()
        out["verdict"][key] = result.verdict.value
        out["reason"][key] = result.reason
        flags = regressions(result)
        out["metrics"][key] = {name: "regression" if flags.get(name) else "no-regression"
                               for name in policy.metrics}
        out["explanations"][key] = [
            {"metric": f.subject, "host": f.host, "verdict": f.verdict.value, "rule": f.rule,
             "reason": f.reason, "control": _finite(f.control_summary),
             "test": _finite(f.test_summary)} for f in result.findings]
    return out


def _metric(m: Mapping[str, Any], where: str) -> MetricPolicy:
    name = m.get("name")
    if not name:
        raise ReplayError(f"{where}.name: required")
    try:
        kind = MetricKind(m.get("kind", "other"))
    except ValueError as e:
        raise ReplayError(f"{where}.kind: must be one of {[k.value for k in MetricKind]}") from e
    direction = m.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        raise ReplayError(f"{where}.direction: must be increase_is_bad or decrease_is_bad")
    thresholds = m.get("thresholds") or {}
    unit = m.get("unit") or ("%" if kind is MetricKind.ERROR_RATE else "")
    return MetricPolicy(
        name=str(name),
        direction=DIRECTIONS[direction] if direction else DEFAULT_DIRECTIONS.get(
            kind, Direction.HIGHER_IS_WORSE),
        kind=kind, unit=str(unit), critical=bool(m.get("critical", False)),
        fail_fast_above=_number(thresholds.get("fail_fast_above"), f"{where}.thresholds"),
        fail_fast_minutes=thresholds.get("fail_fast_minutes"),
        ignore_below=_number(thresholds.get("ignore_below"), f"{where}.thresholds"),
        absolute_floor=_floor(m.get("absolute_floor"), f"{where}.absolute_floor"))


def _floor(value: Any, where: str) -> PerSensitivity:
    """A metric's ``absolute_floor``: ``{high, medium, low}`` in the metric's unit (as
    ``vigil verify export`` writes it; a missing sensitivity has no floor), or one number for
    all three; absent: no floor."""
    if value is None:
        return NO_FLOOR
    if isinstance(value, int | float) and not isinstance(value, bool):
        return PerSensitivity(high=float(value), medium=float(value), low=float(value))
    if not isinstance(value, Mapping):
        raise ReplayError(f"{where}: must be a number or {{high, medium, low}}, got {value!r}")
    unknown = set(value) - {"high", "medium", "low"}
    if unknown:
        raise ReplayError(f"{where}: unknown sensitivity {sorted(unknown)[0]!r}")
    floors = {}
    for key in ("high", "medium", "low"):
        number = value.get(key, 0.0)
        if not isinstance(number, int | float) or isinstance(number, bool) or number < 0:
            raise ReplayError(f"{where}.{key}: must be a number >= 0, got {number!r}")
        floors[key] = float(number)
    return PerSensitivity(**floors)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float):
        raise ReplayError(f"{where}: thresholds must be numbers, got {value!r}")
    return float(value)


def _gap(windows: Mapping[str, Any]) -> float | None:
    """Minutes from the control window's start to the test window's, when both are given."""
    try:
        control = datetime.fromisoformat(str(windows["control"]["start"]).replace("Z", "+00:00"))
        test = datetime.fromisoformat(str(windows["test"]["start"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return None
    return (test - control).total_seconds() / 60.0


def _finite(summary: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in summary.items() if math.isfinite(v)}
