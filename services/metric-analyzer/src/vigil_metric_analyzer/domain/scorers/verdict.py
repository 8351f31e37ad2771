"""The verdict of a whole verification from its findings, and what early looks may decide."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import replace

from vigil_common.verdicts import AnalysisResult, Finding, Verdict, ordered, summarize
from vigil_metric_analyzer.domain.scorers.looks import Look

ANALYZER = "sax-robust-v5"
"""Versioned name stamped on every result; a new decision logic gets a new version."""
ALL_HOSTS = "*"


def result_of(findings: Iterable[Finding]) -> AnalysisResult:
    """Findings worst first; the verdict is the worst of them: any regressing metric fails the
    verification, whatever its weight, and missing data is never a silent pass."""
    worst_first = ordered(findings)
    verdict, reason = summarize(worst_first)
    return AnalysisResult(verdict=verdict, reason=reason, findings=worst_first,
                          analyzer=ANALYZER)


COMPARISON_RULES = frozenset({"level-shift", "drift", "spread-increase"})


def consistent(findings: list[Finding], confirmed: Collection[str] = frozenset()
               ) -> list[Finding]:
    """Keeps comparison FAILs and INCONCLUSIVEs of a metric only when at least half of its
    compared test hosts deviate (FAIL or not yet clear): every test host runs the new version,
    so a regression of the version shows on most of them. A deviation on fewer hosts is a
    difference of those hosts, reported as PASS with rule ``host-outlier`` and the numbers. One
    test host (a single canary) is its own majority. Fail-fast FAILs are never touched, nor
    are the findings of ``confirmed`` metrics, whose test group as a whole failed: there the
    deviating hosts are the version's regression showing, not a difference of theirs."""
    compared: dict[str, int] = {}
    deviating: dict[str, int] = {}
    for f in findings:
        if f.rule in COMPARISON_RULES or f.rule == "not-clear":
            compared[f.subject] = compared.get(f.subject, 0) + 1
            if f.verdict is not Verdict.PASS:
                deviating[f.subject] = deviating.get(f.subject, 0) + 1
    out = []
    for f in findings:
        n, k = compared.get(f.subject, 0), deviating.get(f.subject, 0)
        if (f.verdict is not Verdict.PASS and f.subject not in confirmed
                and (f.rule in COMPARISON_RULES or f.rule == "not-clear") and 2 * k < n):
            f = replace(f, verdict=Verdict.PASS, rule="host-outlier",
                        reason=f"{f.reason}; but only {k} of {n} test hosts deviate: a "
                        "difference of this host, not of the new version")
        out.append(f)
    return out


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
