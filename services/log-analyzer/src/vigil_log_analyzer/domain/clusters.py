"""Test-group clusters labelled against the control group: known, unknown, unexpected frequency.

Counting is per host and per minute, so groups of different sizes and windows of different
lengths compare fairly (issue 6: "significantly more frequent per host and minute than normal
variation explains"). The normal variation is measured on the control side: the variance of
the cluster's counts over the control (host, minute) cells, never less than Poisson's.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

FREQUENCY_MIN_COUNT = 5
"""A cluster needs at least this many test occurrences to be UNEXPECTED_FREQUENCY."""
FREQUENCY_FACTOR = 2.0
"""...a test rate per host-minute at least this many times the control rate..."""
FREQUENCY_Z = 3.0
"""...and an excess of at least this many standard deviations of normal variation."""

_ERROR_LEVELS = frozenset({"ERROR", "ERR", "FATAL", "CRITICAL", "CRIT", "SEVERE", "ALERT", "EMERG"})
_WARN_LEVELS = frozenset({"WARN", "WARNING"})
LEVEL_RANK = {"INFO": 0, "WARN": 1, "ERROR": 2}


@dataclass(frozen=True)
class LogEvent:
    """One log record as the analyzer sees it.

    Attributes:
        host: The host (node, pod) that wrote it; the service-instance identifier.
        level: Level as written (``INFO``, ``WARN``/``WARNING``, ``ERROR``, ``FATAL`` ...).
        message: The text; may span lines (a first line, then an exception and its frames).
        time: When it was logged (timezone-aware), or None when unknown; used for the
            per-minute counts.
    """

    host: str
    level: str
    message: str
    time: datetime | None = None


class ClusterLabel(enum.Enum):
    """What a test cluster is compared with the control side."""

    KNOWN = "KNOWN"  # seen in control now, or with a previous version of the service
    UNKNOWN = "UNKNOWN"  # new with this version
    UNEXPECTED_FREQUENCY = "UNEXPECTED_FREQUENCY"  # known, significantly more frequent


def normalize_level(level: str) -> str:
    """``ERROR``, ``WARN`` or ``INFO``: the three levels the rules know."""
    name = level.strip().upper()
    if name in _ERROR_LEVELS:
        return "ERROR"
    if name in _WARN_LEVELS:
        return "WARN"
    return "INFO"


@dataclass(frozen=True)
class Exposure:
    """How much a group was observed: hosts times minutes.

    Attributes:
        hosts: Distinct hosts with at least one record.
        minutes: Whole minutes between the group's first and last record (at least 1).
    """

    hosts: int
    minutes: int

    @property
    def host_minutes(self) -> int:
        """The number of (host, minute) cells."""
        return max(1, self.hosts * self.minutes)

    @classmethod
    def of(cls, events: Sequence[LogEvent]) -> Exposure:
        """The exposure of ``events`` (0 hosts when empty)."""
        times = [e.time for e in events if e.time is not None]
        minutes = 1
        if times:
            span = (max(times) - min(times)).total_seconds()
            minutes = max(1, math.ceil((span + 1) / 60))
        return cls(hosts=len({e.host for e in events}), minutes=minutes)


@dataclass(frozen=True)
class Frequency:
    """A cluster's rate in the test group against the control group.

    Attributes:
        control_rate: Control occurrences per host-minute.
        test_rate: Test occurrences per host-minute.
        ratio: ``test_rate / control_rate`` (control counted as half an occurrence when 0).
        z: Excess of the test count over its expectation, in standard deviations of the
            control's normal variation (over-dispersed Poisson).
    """

    control_rate: float
    test_rate: float
    ratio: float
    z: float

    @property
    def unexpected(self) -> bool:
        """Whether this is more than normal variation explains (see the module constants)."""
        return self.ratio >= FREQUENCY_FACTOR and self.z >= FREQUENCY_Z


def frequency(control_cells: Counter[tuple[str, int]], control: Exposure, test_total: int,
              test: Exposure) -> Frequency:
    """Compares a cluster's test count with its control rate.

    Args:
        control_cells: The cluster's control occurrences per (host, minute index).
        control: Exposure of the whole control group.
        test_total: The cluster's occurrences in the test group.
        test: Exposure of the whole test group.
    """
    cells = control.host_minutes
    control_total = sum(control_cells.values())
    mean = max(control_total, 0.5) / cells
    square = sum(n * n for n in control_cells.values()) / cells
    dispersion = max(1.0, (square - mean * mean) / mean, _host_dispersion(control_cells,
                                                                            control))
    expected = mean * test.host_minutes
    sd = math.sqrt(dispersion * expected * (1 + test.host_minutes / cells))
    test_rate = test_total / test.host_minutes
    return Frequency(control_rate=control_total / cells, test_rate=test_rate,
                     ratio=test_rate / mean, z=(test_total - expected) / sd)


def _host_dispersion(cells: Counter[tuple[str, int]], control: Exposure) -> float:
    """Variance over mean of the per-minute rate between control hosts, in cell units: how
    much more than Poisson the hosts differ from each other (host-to-host variation is normal
    variation too; a canary that logs like the busiest primary is not unexpected)."""
    if control.hosts < 2:
        return 1.0
    per_host: Counter[str] = Counter()
    for (host, _), n in cells.items():
        per_host[host] += n
    totals = [per_host.get(h, 0) for h in per_host] + [0] * (control.hosts - len(per_host))
    mean = sum(totals) / len(totals)
    if mean <= 0:
        return 1.0
    variance = sum((t - mean) ** 2 for t in totals) / (len(totals) - 1)
    return max(1.0, variance / mean)


@dataclass(frozen=True)
class Cluster:
    """One cluster as the verdict shows it.

    Attributes:
        id: Stable cluster id (the same statement keeps it across runs and versions).
        template: The cluster's template, variable tokens as ``<*>``.
        level: Most severe normalized level among its test records (ERROR, WARN or INFO).
        label: KNOWN, UNKNOWN or UNEXPECTED_FREQUENCY.
        example: First line of its first test record, as written.
        has_exception: Whether a test record carries an exception or stack trace.
        test_counts: Occurrences per test host.
        control_counts: Occurrences per control host (empty when not seen in control).
        test_minutes: Test occurrences per minute (``HH:MM`` UTC), when times are known.
        control_minutes: Control occurrences per minute.
        frequency: The rate comparison (for any cluster seen on both sides), else None.
    """

    id: str
    template: str
    level: str
    label: ClusterLabel
    example: str
    has_exception: bool
    test_counts: dict[str, int] = field(hash=False)
    control_counts: dict[str, int] = field(hash=False)
    test_minutes: dict[str, int] = field(hash=False, default_factory=dict)
    control_minutes: dict[str, int] = field(hash=False, default_factory=dict)
    frequency: Frequency | None = None

    @property
    def is_error(self) -> bool:
        """Whether the cluster is an error: ERROR level, or any record with an exception."""
        return self.level == "ERROR" or self.has_exception

    @property
    def test_total(self) -> int:
        """Occurrences in the whole test group."""
        return sum(self.test_counts.values())

    @property
    def control_total(self) -> int:
        """Occurrences in the whole control group."""
        return sum(self.control_counts.values())
