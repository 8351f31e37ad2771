"""Sensitivity as a product definition: how large and how clear a regression must be to fail.

A change in the bad direction fails when it is both *practically large* and *statistically
clear* (issue 5):

============  ==================  ===============  ===============  ================
sensitivity   relative change     error rate       noise SDs        spread (SD ratio)
============  ==================  ===============  ===============  ================
high          >= 5%               >= 0.5 pp        >= 2             >= 2
medium        >= 10%              >= 1 pp          >= 3             >= 3
low           >= 20%              >= 2 pp          >= 5             >= 5
============  ==================  ===============  ===============  ================

"Statistically clear" also needs the change's one-sided p-value under the early-decision
alpha of the look (see :mod:`vigil_metric_analyzer.domain.scorers.looks`).
"""

from __future__ import annotations

from dataclasses import dataclass

from vigil_common.verdicts import Sensitivity


@dataclass(frozen=True)
class Limits:
    """The thresholds of one sensitivity.

    Attributes:
        relative: Smallest bad change relative to the control level (0.10 = 10%).
        error_points: Smallest bad change of an error rate, in percentage points.
        sds: Smallest bad change in noise standard deviations (the SAX deviation).
        sd_ratio: Smallest test/control noise SD ratio that counts as a spread increase.
    """

    relative: float
    error_points: float
    sds: float
    sd_ratio: float


LIMITS: dict[Sensitivity, Limits] = {
    Sensitivity.HIGH: Limits(relative=0.05, error_points=0.5, sds=2.0, sd_ratio=2.0),
    Sensitivity.MEDIUM: Limits(relative=0.10, error_points=1.0, sds=3.0, sd_ratio=3.0),
    Sensitivity.LOW: Limits(relative=0.20, error_points=2.0, sds=5.0, sd_ratio=5.0),
}
"""The product table above; HIGH is the loosest gate, so it bounds the others."""

LOOSEST = LIMITS[Sensitivity.HIGH]
"""Gates of the most sensitive level: a change below them cannot fail at any sensitivity."""


def limits(sensitivity: Sensitivity) -> Limits:
    """The :class:`Limits` of ``sensitivity``."""
    return LIMITS[sensitivity]
