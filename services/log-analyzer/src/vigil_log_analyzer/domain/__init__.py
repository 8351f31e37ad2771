"""Log analysis domain: parsing, clustering with stable ids, labels and the verdict (no I/O)."""

from vigil_common.verdicts import AnalysisResult, Finding, Sensitivity, Verdict, combine
from vigil_log_analyzer.domain.clusterer import Clusterer, ClusterInfo, cluster_id_of
from vigil_log_analyzer.domain.clusters import (
    FREQUENCY_FACTOR,
    FREQUENCY_MIN_COUNT,
    FREQUENCY_Z,
    Cluster,
    ClusterLabel,
    Exposure,
    Frequency,
    LogEvent,
    frequency,
    normalize_level,
)
from vigil_log_analyzer.domain.feedback import Feedback, Risk, feedback_for, similarity
from vigil_log_analyzer.domain.grouping import group_signatures, template_of_group
from vigil_log_analyzer.domain.judge import (
    ANALYZER,
    LOW_SENSITIVITY_FACTOR,
    ClusterVerdict,
    LogAnalysisResult,
    judge_logs,
)
from vigil_log_analyzer.domain.records import (
    ParsedRecord,
    parse_records,
    signature_of,
    split_header,
)
from vigil_log_analyzer.domain.replay import replay_logs
from vigil_log_analyzer.domain.templates import has_exception, template_id, template_of
from vigil_log_analyzer.domain.tokens import WILDCARD, tokens_of

__all__ = [
    "ANALYZER",
    "FREQUENCY_FACTOR",
    "FREQUENCY_MIN_COUNT",
    "FREQUENCY_Z",
    "LOW_SENSITIVITY_FACTOR",
    "WILDCARD",
    "AnalysisResult",
    "Cluster",
    "ClusterInfo",
    "ClusterLabel",
    "ClusterVerdict",
    "Clusterer",
    "Exposure",
    "Feedback",
    "Finding",
    "Frequency",
    "LogAnalysisResult",
    "LogEvent",
    "ParsedRecord",
    "Risk",
    "Sensitivity",
    "Verdict",
    "cluster_id_of",
    "combine",
    "feedback_for",
    "frequency",
    "group_signatures",
    "has_exception",
    "judge_logs",
    "normalize_level",
    "parse_records",
    "replay_logs",
    "signature_of",
    "similarity",
    "split_header",
    "template_id",
    "template_of",
    "template_of_group",
    "tokens_of",
]
