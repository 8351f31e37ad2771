"""Log records grouped by template, and each test cluster labelled against the control side."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace

from vigil_log_analyzer.domain.templates import has_exception, template_id, template_of

FREQUENCY_FACTOR = 3.0
"""A known error cluster is UNEXPECTED_FREQUENCY above this many times its control rate..."""

FREQUENCY_MIN_COUNT = 5
"""...and with at least this many occurrences in the test group, so 1 -> 4 is not flagged."""

_ERROR_LEVELS = frozenset({"ERROR", "ERR", "FATAL", "CRITICAL", "CRIT", "SEVERE", "ALERT", "EMERG"})
_WARN_LEVELS = frozenset({"WARN", "WARNING"})
_LEVEL_RANK = {"INFO": 0, "WARN": 1, "ERROR": 2}


@dataclass(frozen=True)
class LogEvent:
    """One log record as the analyzer sees it.

    Attributes:
        host: The host (node, pod) that wrote it; the service-instance identifier.
        level: Level as written (``INFO``, ``WARN``/``WARNING``, ``ERROR``, ``FATAL`` ...).
        message: The text; may span lines (a first line, then an exception and its frames).
    """

    host: str
    level: str
    message: str


class ClusterLabel(enum.Enum):
    """What a test cluster is compared with the control side."""

    KNOWN = "KNOWN"  # seen in control, or listed as a known template
    UNKNOWN = "UNKNOWN"  # new with this version
    UNEXPECTED_FREQUENCY = "UNEXPECTED_FREQUENCY"  # a known error, now much more frequent


@dataclass(frozen=True)
class Cluster:
    """The records of one template in the test group, with the control side's counts.

    Attributes:
        id: :func:`template_id` of ``template``; stable across runs and releases.
        template: The template every record of the cluster has.
        level: Most severe level among the test records: ``ERROR`` (also FATAL, CRITICAL,
            SEVERE ...), ``WARN``, or ``INFO`` (also DEBUG, TRACE and unknown levels).
        label: KNOWN, UNKNOWN or UNEXPECTED_FREQUENCY.
        example: First line of the first test record, as written.
        has_exception: Whether a test record carries an exception or stack trace.
        test_counts: Occurrences per test host (hosts without any are left out).
        control_counts: Occurrences per control host (empty for a new template).
    """

    id: str
    template: str
    level: str
    label: ClusterLabel
    example: str
    has_exception: bool
    test_counts: dict[str, int] = field(hash=False)
    control_counts: dict[str, int] = field(hash=False)

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


def normalize_level(level: str) -> str:
    """``ERROR``, ``WARN`` or ``INFO``: the three levels the rules know (see :class:`Cluster`)."""
    name = level.strip().upper()
    if name in _ERROR_LEVELS:
        return "ERROR"
    if name in _WARN_LEVELS:
        return "WARN"
    return "INFO"


def rate_per_host(total: int, hosts: int) -> float:
    """Occurrences per host of a group; 0 for a group without hosts."""
    return total / hosts if hosts else 0.0


def cluster_events(
    control: Sequence[LogEvent],
    test: Sequence[LogEvent],
    known_templates: Collection[str] = frozenset(),
) -> tuple[Cluster, ...]:
    """Groups ``test`` by template and labels each group against ``control``.

    A cluster is KNOWN when its template occurs in ``control`` or its template or id is in
    ``known_templates``, else UNKNOWN. A known error cluster that also occurs in ``control``
    becomes UNEXPECTED_FREQUENCY when its rate per test host is above :data:`FREQUENCY_FACTOR`
    times the rate per control host and it occurs at least :data:`FREQUENCY_MIN_COUNT` times.
    Both groups are taken to cover windows of the same length, as in canary analysis where they
    run side by side. Templates only seen in control are not returned.

    Returns:
        The test clusters, most frequent first (ties by id), so the order is fixed.
    """
    control_by_id = _counts_by_id(control)
    known = frozenset(known_templates)
    test_groups: dict[str, list[LogEvent]] = {}
    templates: dict[str, str] = {}
    for event in test:
        template = template_of(event.message)
        key = template_id(template)
        templates[key] = template
        test_groups.setdefault(key, []).append(event)
    test_hosts = len({event.host for event in test})
    control_hosts = len({event.host for event in control})
    clusters = []
    for key, events in test_groups.items():
        level = max((normalize_level(event.level) for event in events), key=_LEVEL_RANK.__getitem__)
        cluster = Cluster(
            id=key,
            template=templates[key],
            level=level,
            label=ClusterLabel.UNKNOWN,
            example=_first_line(events[0].message),
            has_exception=any(has_exception(event.message) for event in events),
            test_counts=dict(sorted(Counter(event.host for event in events).items())),
            control_counts=dict(sorted(control_by_id.get(key, Counter()).items())),
        )
        is_known = key in control_by_id or bool({key, cluster.template} & known)
        clusters.append(_labelled(cluster, is_known, test_hosts, control_hosts))
    return tuple(sorted(clusters, key=lambda cluster: (-cluster.test_total, cluster.id)))


def _counts_by_id(events: Iterable[LogEvent]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for event in events:
        counts.setdefault(template_id(template_of(event.message)), Counter())[event.host] += 1
    return counts


def _labelled(cluster: Cluster, known: bool, test_hosts: int, control_hosts: int) -> Cluster:
    if not known:
        return cluster
    test_rate = rate_per_host(cluster.test_total, test_hosts)
    control_rate = rate_per_host(cluster.control_total, control_hosts)
    more_frequent = (
        cluster.is_error
        and cluster.control_total > 0
        and cluster.test_total >= FREQUENCY_MIN_COUNT
        and test_rate > FREQUENCY_FACTOR * control_rate
    )
    label = ClusterLabel.UNEXPECTED_FREQUENCY if more_frequent else ClusterLabel.KNOWN
    return replace(cluster, label=label)


def _first_line(message: str) -> str:
    for line in message.splitlines():
        if line.strip():
            return line.strip()
    return ""
