"""Log analysis domain: templates, clusters and the new-template judge (no I/O)."""

from vigil_common.verdicts import AnalysisResult, Finding, Sensitivity, Verdict, combine
from vigil_log_analyzer.domain.clusters import (
    FREQUENCY_FACTOR,
    FREQUENCY_MIN_COUNT,
    Cluster,
    ClusterLabel,
    LogEvent,
    cluster_events,
    normalize_level,
)
from vigil_log_analyzer.domain.judge import ANALYZER, LogAnalysisResult, judge_logs
from vigil_log_analyzer.domain.templates import has_exception, template_id, template_of

__all__ = [
    "ANALYZER",
    "FREQUENCY_FACTOR",
    "FREQUENCY_MIN_COUNT",
    "AnalysisResult",
    "Cluster",
    "ClusterLabel",
    "Finding",
    "LogAnalysisResult",
    "LogEvent",
    "Sensitivity",
    "Verdict",
    "cluster_events",
    "combine",
    "has_exception",
    "judge_logs",
    "normalize_level",
    "template_id",
    "template_of",
]
