"""Metric analysis domain (``sax-robust-v5``): policies, sensitivity, judge; no I/O.

Laid out like kayenta-judge: ``preprocessing/`` (arrays, robust statistics, SAX),
``detectors/`` (thresholds, the comparison of a test host with its control), ``classifiers/``
(rules per sensitivity), ``scorers/`` (early-decision alpha spending, the overall verdict).
"""

from vigil_common.verdicts import AnalysisResult, Finding, Sensitivity, Verdict, combine
from vigil_metric_analyzer.domain.judge import (
    GroupData,
    judge_metrics,
    judge_sensitivities,
    judge_thresholds_only,
)
from vigil_metric_analyzer.domain.policy import (
    Direction,
    MetricKind,
    MetricPolicy,
    Mode,
    PerSensitivity,
    VerificationPolicy,
    default_policies,
)
from vigil_metric_analyzer.domain.preprocessing.series import Series
from vigil_metric_analyzer.domain.scorers.looks import ALPHA, FINAL, Look
from vigil_metric_analyzer.domain.scorers.verdict import ANALYZER, early, regressions
from vigil_metric_analyzer.domain.sensitivity import LIMITS, Limits

__all__ = [
    "ALPHA",
    "ANALYZER",
    "FINAL",
    "LIMITS",
    "AnalysisResult",
    "Direction",
    "Finding",
    "GroupData",
    "Limits",
    "Look",
    "MetricKind",
    "MetricPolicy",
    "Mode",
    "PerSensitivity",
    "Sensitivity",
    "Series",
    "Verdict",
    "VerificationPolicy",
    "combine",
    "default_policies",
    "early",
    "judge_metrics",
    "judge_sensitivities",
    "judge_thresholds_only",
    "regressions",
]
