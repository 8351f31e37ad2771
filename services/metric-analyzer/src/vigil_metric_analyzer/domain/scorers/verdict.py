"""The verdict of a whole verification from its findings, and what early looks may decide."""

from __future__ import annotations

from collections.abc import Iterable

from vigil_common.verdicts import AnalysisResult, Finding, Verdict, ordered, summarize
from vigil_metric_analyzer.domain.scorers.looks import Look

ANALYZER = "sax-robust-v2"
"""Versioned name stamped on every result; a new decision logic gets a new version."""
ALL_HOSTS = "*"


def result_of(findings: Iterable[Finding]) -> AnalysisResult:
    """Findings worst first; the verdict is the worst of them: any regressing metric fails the
    verification, whatever its weight, and missing data is never a silent pass."""
    worst_first = ordered(findings)
    verdict, reason = summarize(worst_first)
    return AnalysisResult(verdict=verdict, reason=reason, findings=worst_first,
                          analyzer=ANALYZER)


def early(result: AnalysisResult, look: Look) -> AnalysisResult | None:
    """What to publish after ``look``: the result when final or failing, else None (wait)."""
    if look.final or result.verdict is Verdict.FAIL:
        return result
    return None


def regressions(result: AnalysisResult) -> dict[str, bool]:
    """Per metric: whether any of its findings failed (``*`` notes are not metrics)."""
    out: dict[str, bool] = {}
    for f in result.findings:
        if f.subject != ALL_HOSTS:
            out[f.subject] = out.get(f.subject, False) or f.verdict is Verdict.FAIL
    return out
