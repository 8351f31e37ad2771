"""What is verified per metric: kind, bad direction, thresholds; and the verification's mode.

How large and how clear a change must be to fail comes from the sensitivity
(:mod:`.sensitivity`), the same for every metric; a metric policy only adds what is specific
to the metric: which way is bad, whether it is an error rate (judged in percentage points),
an optional absolute floor, and the user's fail-fast and ignore thresholds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from vigil_common.verdicts import Sensitivity


class Direction(enum.Enum):
    """Which way a metric gets worse."""

    HIGHER_IS_WORSE = "HIGHER_IS_WORSE"  # latency, error rate, cpu, memory
    LOWER_IS_WORSE = "LOWER_IS_WORSE"  # throughput

    @property
    def sign(self) -> float:
        """+1 when an increase is bad, -1 when a decrease is: ``sign * change`` > 0 is worse."""
        return 1.0 if self is Direction.HIGHER_IS_WORSE else -1.0


class MetricKind(enum.Enum):
    """What a metric measures; error rates are judged in percentage points, not relatively."""

    LATENCY = "latency"
    ERROR_RATE = "error_rate"
    THROUGHPUT = "throughput"
    CPU = "cpu"
    MEMORY = "memory"
    OTHER = "other"


class Mode(enum.Enum):
    """How control and test data relate (issue 5, "Inputs").

    - CANARY: test hosts against control hosts over the same window, minute by minute.
    - ROLLING / BLUE_GREEN: the pre-deployment window against the post-deployment window, host
      by host where host names persist, else group against group.
    - LOAD_TEST: the service against its last passed verification; warm-up minutes dropped.
    """

    CANARY = "canary"
    ROLLING = "rolling"
    BLUE_GREEN = "blue_green"
    LOAD_TEST = "load_test"

    @property
    def time_aligned(self) -> bool:
        """Whether control and test minutes are the same wall-clock minutes."""
        return self is Mode.CANARY


@dataclass(frozen=True)
class PerSensitivity:
    """One number for each :class:`Sensitivity`; HIGH is normally the smallest."""

    high: float
    medium: float
    low: float

    def at(self, sensitivity: Sensitivity) -> float:
        """The number for ``sensitivity``."""
        if sensitivity is Sensitivity.HIGH:
            return self.high
        if sensitivity is Sensitivity.MEDIUM:
            return self.medium
        return self.low


NO_FLOOR = PerSensitivity(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class MetricPolicy:
    """How one metric is judged.

    Attributes:
        name: Metric name as the health source reports it, e.g. ``"response_time_ms"``.
        direction: Which way the metric gets worse; a change the other way never fails.
        kind: What it measures; ``ERROR_RATE`` is judged in percentage points.
        unit: For readable reasons: ``"ms"``, ``"%"`` (error rates in percent), ``"ratio"``
            (error rates as 0..1, limits scaled by 1/100), ``"req"``; empty when unitless.
        absolute_floor: Optional extra gate: the bad change must also exceed this (in the
            metric's unit) per sensitivity, so +20% of a 1 ms endpoint does not fail.
        fail_fast_above: A test host whose mean is above it fails at once, without analysis;
            the only check of threshold-only verification.
        fail_fast_minutes: When set, ``fail_fast_minutes`` consecutive test minutes above
            ``fail_fast_above`` also fail at once ("ART above 10 s for 5 minutes").
        ignore_below: Values below it are left out of the analysis on both sides; a test host
            whose values are all below it passes without analysis.
        min_points: Fewest present values needed on each side; fewer gives NO_DATA, never a
            silent pass.
        critical: Shown in findings; any regressing metric fails the verification anyway.
    """

    name: str
    direction: Direction
    kind: MetricKind = MetricKind.OTHER
    unit: str = ""
    absolute_floor: PerSensitivity = NO_FLOOR
    fail_fast_above: float | None = None
    fail_fast_minutes: int | None = None
    ignore_below: float | None = None
    min_points: int = 3
    critical: bool = False

    def __post_init__(self) -> None:
        if self.min_points < 1:
            raise ValueError(f"{self.name}.min_points: must be at least 1, got {self.min_points}")
        if self.fail_fast_minutes is not None and self.fail_fast_minutes < 1:
            raise ValueError(f"{self.name}.fail_fast_minutes: must be at least 1, "
                             f"got {self.fail_fast_minutes}")

    @property
    def points_scale(self) -> float:
        """Size of one percentage point in the metric's unit (error rates only)."""
        return 0.01 if self.unit in ("ratio", "fraction") else 1.0


@dataclass(frozen=True)
class VerificationPolicy:
    """The metrics one verify step judges, how sensitively, and in which mode.

    Attributes:
        sensitivity: Picks the limits of :data:`.sensitivity.LIMITS`.
        metrics: Metric policies by metric name; metrics in the data but not here are not
            judged (the policy, not the health source, decides what is verified).
        mode: How control and test data relate; canary by default.
        warmup_minutes: Leading minutes left out of both sides in LOAD_TEST mode.
        gap_minutes: Minutes from the start of the control window to the start of the test
            window (pre/post modes), used to carry a control trend forward; None = adjacent.
    """

    sensitivity: Sensitivity
    metrics: dict[str, MetricPolicy] = field(hash=False)
    mode: Mode = Mode.CANARY
    warmup_minutes: int = 2
    gap_minutes: float | None = None


def default_policies() -> dict[str, MetricPolicy]:
    """Policies for the demo metrics, by name.

    - ``response_time_ms``: latency, worse when higher; floors 2/5/10 ms, so a sub-millisecond
      service is not failed for +20% of nothing; fails fast above 1 s mean.
    - ``error_rate_pct``: error rate in percent, judged in percentage points; fails fast above
      10% errors.
    - ``requests_per_interval``: throughput, worse when lower; floors 2/5/10 requests.
    """
    policies = [
        MetricPolicy(
            name="response_time_ms",
            direction=Direction.HIGHER_IS_WORSE,
            kind=MetricKind.LATENCY,
            unit="ms",
            absolute_floor=PerSensitivity(high=2.0, medium=5.0, low=10.0),
            fail_fast_above=1000.0,
        ),
        MetricPolicy(
            name="error_rate_pct",
            direction=Direction.HIGHER_IS_WORSE,
            kind=MetricKind.ERROR_RATE,
            unit="%",
            fail_fast_above=10.0,
        ),
        MetricPolicy(
            name="requests_per_interval",
            direction=Direction.LOWER_IS_WORSE,
            kind=MetricKind.THROUGHPUT,
            unit="req",
            absolute_floor=PerSensitivity(high=2.0, medium=5.0, low=10.0),
        ),
    ]
    return {policy.name: policy for policy in policies}
