"""Metric analysis domain: policies and the plain threshold judge (no I/O)."""

from vigil_common.verdicts import AnalysisResult, Finding, Sensitivity, Verdict, combine
from vigil_metric_analyzer.domain.judge import (
    ANALYZER,
    GroupData,
    Series,
    judge_metrics,
    judge_thresholds_only,
)
from vigil_metric_analyzer.domain.policy import (
    DEFAULT_RELATIVE_TOLERANCE,
    Direction,
    MetricPolicy,
    PerSensitivity,
    VerificationPolicy,
    default_policies,
)
from vigil_metric_analyzer.domain.summary import Summary

__all__ = [
    "ANALYZER",
    "DEFAULT_RELATIVE_TOLERANCE",
    "AnalysisResult",
    "Direction",
    "Finding",
    "GroupData",
    "MetricPolicy",
    "PerSensitivity",
    "Sensitivity",
    "Series",
    "Summary",
    "Verdict",
    "VerificationPolicy",
    "combine",
    "default_policies",
    "judge_metrics",
    "judge_thresholds_only",
]
