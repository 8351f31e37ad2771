"""User feedback on a log cluster, and how it overrides the label rules (issue 6).

    risk       effect on a cluster seen in the test group
    HIGH       fails at every sensitivity, even when known
    MEDIUM     fails only at HIGH sensitivity
    NO_RISK    never counts
    IGNORE     suppressed, and so is any future cluster whose template is similar
               (token Jaccard >= SIMILAR_JACCARD with the same token count +/- 2)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vigil_log_analyzer.domain.tokens import WILDCARD

SIMILAR_JACCARD = 0.7
"""Token Jaccard similarity from which a cluster counts as similar to an ignored one."""


class Risk(enum.Enum):
    """The risk a user gave a cluster."""

    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    NO_RISK = "NO_RISK"
    IGNORE = "IGNORE"


@dataclass(frozen=True)
class Feedback:
    """Feedback on one cluster of one service.

    Attributes:
        cluster_id: The cluster it is about.
        risk: What the user said.
        reason: Why, as the user wrote it (shown in verdicts).
        template: The cluster's template when the feedback was given (for IGNORE similarity).
    """

    cluster_id: str
    risk: Risk
    reason: str = ""
    template: str = ""


def similarity(first: Sequence[str], second: Sequence[str]) -> float:
    """Jaccard similarity of two templates' constant tokens (``<*>`` left out)."""
    a = {t for t in first if t != WILDCARD}
    b = {t for t in second if t != WILDCARD}
    if not a and not b:
        return 1.0 if len(first) == len(second) else 0.0
    return len(a & b) / len(a | b)


def feedback_for(cluster_id: str, template: str, feedback: Iterable[Feedback]
                 ) -> tuple[Feedback, bool] | None:
    """The feedback that applies to a cluster, and whether it applies only by similarity.

    Feedback on the cluster itself wins; otherwise the most similar IGNORE feedback whose
    template is similar enough (see :data:`SIMILAR_JACCARD`).
    """
    entries = list(feedback)
    for entry in entries:
        if entry.cluster_id == cluster_id:
            return entry, False
    tokens = template.split()
    best: tuple[float, Feedback] | None = None
    for entry in entries:
        if entry.risk is not Risk.IGNORE or not entry.template:
            continue
        other = entry.template.split()
        if abs(len(other) - len(tokens)) > 2:
            continue
        score = similarity(tokens, other)
        if score >= SIMILAR_JACCARD and (best is None or score > best[0]):
            best = (score, entry)
    return (best[1], True) if best else None
