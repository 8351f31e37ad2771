"""What counts as a metric regression: direction, tolerances and thresholds per metric.

A comparison fails only when the change in the bad direction is above *both* the relative
tolerance and the absolute floor for the chosen sensitivity. The relative tolerance alone
would fail 1.0 ms -> 1.2 ms (+20%, nobody cares); the floor alone would ignore 2 s -> 2.5 s on a
slow endpoint only at a large floor. Requiring both keeps tiny and noisy metrics quiet.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from vigil_common.verdicts import Sensitivity


class Direction(enum.Enum):
    """Which way a metric gets worse."""

    HIGHER_IS_WORSE = "HIGHER_IS_WORSE"  # latency, error rate
    LOWER_IS_WORSE = "LOWER_IS_WORSE"  # throughput


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


DEFAULT_RELATIVE_TOLERANCE = PerSensitivity(high=0.05, medium=0.10, low=0.20)
"""Allowed change relative to control: 5% at HIGH, 10% at MEDIUM, 20% at LOW."""


@dataclass(frozen=True)
class MetricPolicy:
    """How one metric is judged.

    Attributes:
        name: Metric name as the health source reports it, e.g. ``"response_time_ms"``.
        direction: Which way the metric gets worse; a change the other way never fails.
        absolute_floor: Change (in the metric's unit) that must also be exceeded to fail, per
            sensitivity; for percentage metrics these are percentage points.
        relative_tolerance: Change relative to the control value that must be exceeded to
            fail, per sensitivity, as a fraction (0.10 = 10%).
        unit: Unit for readable reasons: ``"ms"``, ``"%"`` (changes are then written in
            percentage points), ``"req"``; empty for unitless.
        fail_fast_above: When set, a test host whose mean is above it fails at once, without
            comparing with control. This is also the only check of threshold-only verification.
        ignore_below: When set, test values below it are left out of the comparison; a host
            whose values are all below it passes without analysis.
        min_points: Fewest present (non-missing) values needed on each side; fewer gives
            NO_DATA for that metric and host, never a silent pass.
    """

    name: str
    direction: Direction
    absolute_floor: PerSensitivity
    relative_tolerance: PerSensitivity = DEFAULT_RELATIVE_TOLERANCE
    unit: str = ""
    fail_fast_above: float | None = None
    ignore_below: float | None = None
    min_points: int = 3

    def __post_init__(self) -> None:
        if self.min_points < 1:
            raise ValueError(f"{self.name}.min_points: must be at least 1, got {self.min_points}")


@dataclass(frozen=True)
class VerificationPolicy:
    """The metrics one verify step judges and how sensitively.

    Attributes:
        sensitivity: Picks the tolerance and floor of every metric.
        metrics: Metric policies by metric name; metrics in the data but not here are not
            judged (the policy, not the health source, decides what is verified).
    """

    sensitivity: Sensitivity
    metrics: dict[str, MetricPolicy] = field(hash=False)


def default_policies() -> dict[str, MetricPolicy]:
    """Policies for the demo metrics, by name.

    - ``response_time_ms``: worse when higher; floors 2/5/10 ms, so a sub-millisecond service
      is not failed for +20% of nothing; fails fast above 1 s mean.
    - ``error_rate_pct``: worse when higher, in percentage points; floors 0.5/1/2 pp, so going
      from 0.1% to 0.2% (+100%) does not fail; fails fast above 10% errors.
    - ``requests_per_interval``: throughput, worse when lower; floors 2/5/10 requests.
    """
    policies = [
        MetricPolicy(
            name="response_time_ms",
            direction=Direction.HIGHER_IS_WORSE,
            absolute_floor=PerSensitivity(high=2.0, medium=5.0, low=10.0),
            unit="ms",
            fail_fast_above=1000.0,
        ),
        MetricPolicy(
            name="error_rate_pct",
            direction=Direction.HIGHER_IS_WORSE,
            absolute_floor=PerSensitivity(high=0.5, medium=1.0, low=2.0),
            unit="%",
            fail_fast_above=10.0,
        ),
        MetricPolicy(
            name="requests_per_interval",
            direction=Direction.LOWER_IS_WORSE,
            absolute_floor=PerSensitivity(high=2.0, medium=5.0, low=10.0),
            unit="req",
        ),
    ]
    return {policy.name: policy for policy in policies}
