"""The health source interface: what every metric and log source of a verification provides.

One interface, one module per source, one factory (:func:`vigil_delegate.health.sources.build`),
each source taking its client in the constructor, as argo-rollouts' metric providers do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from vigil_delegate.health.logs import LogRecord
from vigil_delegate.health.metrics import Series

Progress = Callable[[str], None]
METRICS, LOGS = "metrics", "logs"


class HealthSourceError(Exception):
    """A source could not be read (bad config, unreachable, an error answer); says why."""


@dataclass(frozen=True)
class Window:
    """A verification window ``[start, end)`` cut into intervals.

    Attributes:
        start: Timezone-aware start.
        end: Timezone-aware end.
        interval_s: Length of one interval (one analysis point), in seconds.
    """

    start: datetime
    end: datetime
    interval_s: float

    @classmethod
    def starting(cls, start: datetime, duration_s: float, interval_s: float) -> Window:
        """The window of ``duration_s`` from ``start``; rejects non-positive lengths."""
        if interval_s <= 0 or duration_s <= 0:
            raise ValueError(f"duration_seconds and interval_seconds must be positive, got "
                             f"{duration_s:g} and {interval_s:g}")
        return cls(start, start + timedelta(seconds=duration_s), interval_s)

    @property
    def intervals(self) -> int:
        """Number of intervals (points per series), at least one."""
        return max(1, round((self.end - self.start).total_seconds() / self.interval_s))

    def part(self, first: int, count: int) -> Window:
        """The intervals ``first`` .. ``first + count - 1`` of this window (a batch)."""
        step = timedelta(seconds=self.interval_s)
        return Window(self.start + step * first, self.start + step * (first + count),
                      self.interval_s)

    def interval_ends(self) -> list[datetime]:
        """End of each interval, in order."""
        step = timedelta(seconds=self.interval_s)
        return [self.start + step * k for k in range(1, self.intervals + 1)]


@dataclass
class Collected:
    """What a source read for some hosts over one window.

    Attributes:
        metrics: ``{metric: {host: [value per interval, None where unknown]}}``.
        logs: Host -> its records in the window, in time order.
    """

    metrics: Series = field(default_factory=dict)
    logs: dict[str, list[LogRecord]] = field(default_factory=dict)


class HealthSource(Protocol):
    """A place the delegate reads a service's health data from."""

    kind: str
    """The HealthSource.kind this implements, e.g. ``"prometheus"``."""
    provides: frozenset[str]
    """Which of :data:`METRICS` and :data:`LOGS` it returns."""

    async def collect(self, hosts: Sequence[str], window: Window,
                      progress: Progress) -> Collected:
        """Reads ``hosts``' data for ``window``; returns once the window has passed.

        A host without data is absent from the result (or has None values), never zeros.

        Raises:
            HealthSourceError: The source could not be read.
        """
        ...


async def wait_until(moment: datetime, grace_s: float = 1.0) -> None:
    """Sleeps until ``moment`` plus ``grace_s`` (for late scrapes and log flushes)."""
    delay = (moment - datetime.now(UTC)).total_seconds() + grace_s
    if delay > 0:
        await asyncio.sleep(delay)
