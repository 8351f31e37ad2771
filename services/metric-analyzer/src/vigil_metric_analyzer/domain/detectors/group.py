"""The test group as a whole against its control: the version's effect on one metric.

Every test host runs the new version, so a regression of the version is an effect *shared* by
the test hosts. Judged host by host, a moderate regression hides in each host's own noise and
level (a canary is compared with the spread of whole hosts, which no number of minutes
shrinks); judged over the group, that host-to-host spread averages out over the test hosts,
as it does for a human reading the dashboards of all canaries at once. :func:`measure_group`
combines the per-host :class:`~.comparison.Comparison` s of one metric (at least
:data:`MIN_HOSTS` of them) into one estimate per rule with a standard error and a one-sided
p-value:

- level shift and drift: the mean over test hosts of their bad-signed change (or change at the
  window's end), t with Welch-Satterthwaite degrees of freedom (``m - 1`` when paired).
  The standard error is the
  spread of the hosts' changes over ``sqrt(m)`` - which holds the minute noise and the hosts'
  own differences - but never less than the minute noise alone allows, plus what every test
  host shares: the control group's level error (its between-host SD over ``sqrt(k)``, unless
  each host is compared with its own earlier window) and a carried trend's error.
- spread: the geometric mean over test hosts of the SD ratio, t on the log ratios, with the
  control hosts' own spread of noise SDs as the shared error.

A single deviating host barely moves the mean and widens the spread of changes, so the group
rule does not fail a version for one bad host; that stays the host rule's (and
``host-outlier``'s) business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as t_dist

from vigil_metric_analyzer.domain.detectors.comparison import Baseline, Comparison, log_sd_var
from vigil_metric_analyzer.domain.preprocessing import robust

MIN_HOSTS = 3
"""Fewest compared test hosts for a group estimate: with 2 the t-test has one degree of
freedom and could not tell anything the host rules do not already say."""


@dataclass(frozen=True)
class GroupComparison:
    """One metric's test group against its control (bad-signed: positive is worse).

    Each estimate comes with its standard error and the degrees of freedom of its t
    distribution, so a classifier can test it against zero or against a practical size
    (:func:`t_upper`).

    Attributes:
        hosts: Test hosts compared.
        control_hosts: Control hosts with data.
        paired: Each test host was compared with its own earlier window.
        control_level: Median of the hosts' control levels.
        change, change_se, change_df: Mean change over the test hosts, its standard error and
            degrees of freedom.
        drift_end, drift_se, drift_df: The same for the change at the window's end.
        slope, slope_se, slope_df: Mean slope per minute of the hosts' differences (a drift
            needs them to rise).
        log_ratio, spread_se, spread_df: Mean log SD ratio over the test hosts.
        tail_change: Median over test hosts of the bad-tail change (p90 up, or p10 down).
        deviating: Test hosts whose own change is worse than control (for the reason).
    """

    hosts: int
    control_hosts: int
    paired: bool
    control_level: float
    change: float
    change_se: float
    change_df: float
    drift_end: float
    drift_se: float
    drift_df: float
    slope: float
    slope_se: float
    slope_df: float
    log_ratio: float
    spread_se: float
    spread_df: float
    tail_change: float
    deviating: int

    def relative_of(self, amount: float) -> float:
        """``amount`` relative to the control level (inf/NaN from a 0 level)."""
        if self.control_level != 0:
            return amount / abs(self.control_level)
        return math.inf if amount > 0 else (0.0 if amount == 0 else -math.inf)

    @property
    def change_z(self) -> float:
        """The mean change in its standard errors."""
        return _over(self.change, self.change_se)

    @property
    def change_p(self) -> float:
        """One-sided t p-value that the mean change is above 0."""
        return t_upper(self.change, self.change_se, self.change_df)

    @property
    def drift_z(self) -> float:
        """The mean change at the window's end in its standard errors."""
        return _over(self.drift_end, self.drift_se)

    @property
    def drift_p(self) -> float:
        """One-sided t p-value that the hosts' slopes rise."""
        return t_upper(self.slope, self.slope_se, self.slope_df)

    @property
    def sd_ratio(self) -> float:
        """Geometric-mean SD ratio over the test hosts (1 when not computed)."""
        return math.exp(self.log_ratio)

    @property
    def spread_p(self) -> float:
        """One-sided t p-value that the SD ratio is above 1 (NaN when not computed)."""
        if math.isnan(self.spread_df):
            return math.nan
        return t_upper(self.log_ratio, self.spread_se, self.spread_df)


def t_upper(estimate: float, se: float, df: float, null: float = 0.0) -> float:
    """One-sided p-value that the quantity ``estimate`` estimates is above ``null``:
    ``P(T_df > (estimate - null) / se)``; 0 or 1 when the standard error is 0."""
    if not se > 0:
        return 0.0 if estimate > null else 1.0
    return float(t_dist.sf((estimate - null) / se, df))


def measure_group(comparisons: Sequence[Comparison], base: Baseline, paired: bool
                  ) -> GroupComparison | None:
    """Combines the comparisons of one metric's test hosts (None with fewer than
    :data:`MIN_HOSTS`). ``paired``: each test host was compared with its own earlier window
    (pre/post with persistent host names), so the control group's between-host spread is not
    in the changes; otherwise every host shares the control group's level and its error."""
    m = len(comparisons)
    if m < MIN_HOSTS:
        return None
    k = len(base.hosts)
    shared_level = shared_slope = 0.0
    minutes = max(c.test_minutes for c in comparisons)
    if not paired:
        # Every test host is measured against the same control level (and, time-aligned, the
        # same control minutes): its error is common to all hosts, so it is not in the
        # spread of their changes and is added here.
        counts = sum(len(v) for _, v in base.hosts)
        inflation = base.inflation if base.inflation is not None else 1.0
        noise_var = robust.HL_EFFICIENCY * inflation * base.noise**2
        shared_level = base.between_raw**2 / max(k, 1) + noise_var / max(counts, 1)
        times = np.arange(minutes, dtype=float)
        sxx = float(np.sum((times - times.mean()) ** 2))
        if sxx > 0:
            shared_slope = noise_var / (max(k, 1) * sxx)
        # Control hosts that wander apart (each its own slope) move the control envelope's
        # slope as much as its minute noise does.
        shared_slope = max(shared_slope, base.slope_var / max(k, 1))
    end_offset = (minutes - 1) / 2.0
    changes = np.array([c.change for c in comparisons])
    shared_df = max(k - 1, 1) if not paired else None
    change, change_se, change_df = _t_mean(
        changes, [c.within_se for c in comparisons],
        shared_level + _mean_sq([c.trend_sd for c in comparisons]), shared_df)
    ends = np.array([c.drift_end for c in comparisons])
    drift_end, drift_se, drift_df = _t_mean(
        ends, [c.drift_line_se for c in comparisons],
        shared_level + shared_slope * end_offset**2
        + _mean_sq([c.drift_trend_sd for c in comparisons]), shared_df)
    slopes = np.array([c.drift_slope for c in comparisons])
    slope, slope_se, slope_df = _t_mean(slopes, [c.drift_slope_se for c in comparisons],
                                        shared_slope, shared_df)
    log_ratio, spread_se, spread_df = _spread(comparisons, base, paired)
    return GroupComparison(
        hosts=m, control_hosts=k, paired=paired,
        control_level=float(np.median([c.control_level for c in comparisons])),
        change=change, change_se=change_se, change_df=change_df, drift_end=drift_end,
        drift_se=drift_se, drift_df=drift_df, slope=slope, slope_se=slope_se,
        slope_df=slope_df, log_ratio=log_ratio, spread_se=spread_se, spread_df=spread_df,
        tail_change=float(np.median([c.tail_change for c in comparisons])),
        deviating=int(np.sum(changes > 0)))


def _t_mean(values: np.ndarray, within_ses: Sequence[float], shared_var: float,
            shared_df: int | None = None) -> tuple[float, float, float]:
    """``(mean, standard error, degrees of freedom)`` of ``values`` (one per test host).

    The standard error is the empirical one (SD over sqrt(m)), floored by the minute noise
    alone (``within_ses``: a chance agreement of five hosts must not look more certain than
    their minutes allow), plus ``shared_var``, the error every host shares. When that is
    itself estimated from ``shared_df + 1`` control hosts, the degrees of freedom are
    Welch-Satterthwaite's for the sum of the two estimated variances (Welch's two-sample t),
    never more than the two sides' together."""
    m = len(values)
    mean = float(np.mean(values))
    empirical = float(np.var(values, ddof=1)) / m
    model = _mean_sq(within_ses) / m
    own = max(empirical, model)
    se = math.sqrt(own + shared_var)
    df = float(m - 1)
    if shared_df is not None and shared_var > 0 and se > 0:
        satterthwaite = (own + shared_var) ** 2 / (own**2 / (m - 1) + shared_var**2 / shared_df)
        df = min(satterthwaite, df + shared_df)
    return mean, se, df


def _spread(comparisons: Sequence[Comparison], base: Baseline, paired: bool
            ) -> tuple[float, float, float]:
    """``(mean log SD ratio, standard error, degrees of freedom)`` over the test hosts;
    ``(0, 0, NaN)`` when fewer than :data:`MIN_HOSTS` have the minutes for it."""
    usable = [c for c in comparisons
              if c.test_noise > 0 and c.control_noise > 0 and c.test_count >= 5]
    if len(usable) < MIN_HOSTS:
        return 0.0, 0.0, math.nan
    logs = np.array([math.log(c.test_noise / c.control_noise) for c in usable])
    per_host_points = max(sum(len(v) for _, v in base.hosts) / max(len(base.hosts), 1), 1.0)
    inflation = base.inflation if base.inflation is not None else 1.0
    within = [math.sqrt(log_sd_var(c.test_count, inflation)
                        + log_sd_var(per_host_points, inflation)) for c in usable]
    shared = 0.0
    noises = [n for n in base.host_noises if n > 0]
    if not paired and len(noises) >= 2:
        shared = float(np.var(np.log(noises), ddof=1)) / len(noises)
    return _t_mean(logs, within, shared, len(noises) - 1 if shared > 0 else None)


def _mean_sq(values: Sequence[float]) -> float:
    return float(np.mean(np.square(values))) if len(values) else 0.0


def _over(amount: float, sd: float) -> float:
    if sd > 0:
        return amount / sd
    return math.inf if amount > 0 else (0.0 if amount == 0 else -math.inf)
