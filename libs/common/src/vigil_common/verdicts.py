"""The closed verdict set every analyzer answers with, and how verdicts combine.

Analyzers map data to an :class:`AnalysisResult`: one overall :class:`Verdict` with a readable
reason, the :class:`Finding` behind it (one per metric and host, or per log cluster), and the
analyzer's versioned name, the way Kayenta stamps ``NetflixACAJudge-v1.0`` on its scores.
Everything here is plain data: no I/O, safe to use from any service.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    """Outcome of one check or of a whole analysis. The set is closed: nothing else exists."""

    PASS = "PASS"  # the test group behaves like the control group (or within its limits)
    FAIL = "FAIL"  # a regression was found
    INCONCLUSIVE = "INCONCLUSIVE"  # there was data but nothing could be decided from it
    NO_DATA = "NO_DATA"  # data that was needed is missing; never read as a pass
    ERROR = "ERROR"  # the analysis itself broke (bad input, unexpected failure)

    @property
    def blocks_release(self) -> bool:
        """Whether a deployment may not proceed on this verdict: anything but PASS blocks."""
        return self is not Verdict.PASS

    @property
    def rank(self) -> int:
        """Severity for :func:`combine`: PASS 0 < INCONCLUSIVE < NO_DATA < FAIL < ERROR 4."""
        return _RANK[self]


_RANK = {
    Verdict.PASS: 0,
    Verdict.INCONCLUSIVE: 1,
    Verdict.NO_DATA: 2,
    Verdict.FAIL: 3,
    Verdict.ERROR: 4,
}


class Sensitivity(enum.Enum):
    """How small a regression an analyzer reports, chosen per verify step by the user.

    HIGH reports the smallest changes (and risks false alarms); LOW only reports large ones.
    """

    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


@dataclass(frozen=True)
class Finding:
    """One decided check: a metric on one host, or one log cluster.

    Attributes:
        subject: What was checked: a metric name or a log cluster id.
        host: The test host the check is about, or ``"*"`` when it covers the whole group.
        verdict: The outcome of this check alone.
        reason: Readable explanation with the numbers behind it, e.g.
            ``"response_time_ms +62% vs control (31.2 ms vs 19.3 ms)"``.
        control_summary: Numbers describing the control side (e.g. ``median``, ``mean``,
            ``count``, or occurrences per host); empty when there was no control data.
        test_summary: The same numbers for the test side.
        rule: Name of the rule that decided the verdict (e.g. ``"median-change"``).
    """

    subject: str
    host: str
    verdict: Verdict
    reason: str
    control_summary: dict[str, float] = field(hash=False)
    test_summary: dict[str, float] = field(hash=False)
    rule: str


@dataclass(frozen=True)
class AnalysisResult:
    """What an analyzer concluded.

    Attributes:
        verdict: The worst verdict among ``findings`` (see :func:`combine`).
        reason: One sentence summarizing the outcome; names the worst finding(s).
        findings: Every check made, worst first.
        analyzer: Versioned analyzer name, e.g. ``"threshold-v1"``; a new decision logic gets
            a new version so stored results stay interpretable.
    """

    verdict: Verdict
    reason: str
    findings: tuple[Finding, ...]
    analyzer: str


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """The worst of ``verdicts``: ERROR > FAIL > NO_DATA > INCONCLUSIVE > PASS.

    An empty iterable gives NO_DATA: nothing was checked, which is never a pass.
    """
    return max(verdicts, key=_RANK.__getitem__, default=Verdict.NO_DATA)


def ordered(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """``findings`` worst first; the sort is stable, so equal verdicts keep their order."""
    return tuple(sorted(findings, key=lambda finding: -finding.verdict.rank))


def summarize(findings: Sequence[Finding]) -> tuple[Verdict, str]:
    """The combined verdict of ``findings`` and one sentence naming the worst of them.

    Returns:
        ``(verdict, reason)``; the reason quotes the first worst finding and counts the others
        with the same verdict, e.g. ``"FAIL: error_rate_pct ... (and 2 more failing checks)"``.
    """
    verdict = combine(finding.verdict for finding in findings)
    if not findings:
        return verdict, "NO_DATA: nothing was checked"
    worst = [finding for finding in findings if finding.verdict is verdict]
    if verdict is Verdict.PASS:
        return verdict, f"PASS: all {len(findings)} checks passed"
    reason = f"{verdict.value}: {worst[0].reason}"
    if len(worst) > 1:
        noun = "check" if len(worst) == 2 else "checks"
        reason += f" (and {len(worst) - 1} more {verdict.value} {noun})"
    return verdict, reason
