"""Partial MetricsCollected batches -> one window and the look it represents (pure).

A delegate may send a verification's window in batches (``partial`` true on all but the last,
``first_interval`` placing each batch, ``planned_intervals`` the whole window). The analyzer
judges the minutes received so far at each batch; the look's ``fraction`` is the share of the
planned window covered, ``previous`` the share covered before this batch, so the early-decision
alpha spending (:mod:`vigil_metric_analyzer.domain.scorers.looks`) stays valid however batches
are cut or ordered.

Statistical early looks stop at :data:`STATISTICAL_LOOKS_UNTIL` of the window: the final look
tests at ``ALPHA - spent(last early look)``, so a delegate sending every interval (looks at
9/10 of the window) would leave the final look a third of ALPHA. Later partial batches are
still judged, with a negligible alpha (:class:`ThresholdLook`): fail-fast thresholds can fail
them, rank tests cannot. So the final look keeps at least ``ALPHA - spent(0.5)``, 97% of ALPHA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vigil.events.v1 import verification_pb2
from vigil_metric_analyzer.domain import FINAL, Look

STATISTICAL_LOOKS_UNTIL = 0.5
"""Share of the planned window after which early looks stop spending alpha."""
NEGLIGIBLE_ALPHA = 1e-12
"""The alpha of a :class:`ThresholdLook` (a p-value under it cannot come from these tests)."""


@dataclass(frozen=True)
class ThresholdLook(Look):
    """An early look past :data:`STATISTICAL_LOOKS_UNTIL`: only fail-fast thresholds decide."""

    @property
    def alpha(self) -> float:
        return NEGLIGIBLE_ALPHA


Window = dict[int, dict[str, dict[str, list[float | None]]]]
"""``{group: {metric: {host: values}}}`` over the whole window received so far."""


def merge(batches: Sequence[verification_pb2.MetricsCollected]) -> Window:
    """Places every batch's points at their interval in the window; gaps are ``None``."""
    window: Window = {}
    for batch in batches:
        for s in batch.series:
            values = window.setdefault(s.group, {}).setdefault(s.metric, {}).setdefault(
                s.host, [])
            end = batch.first_interval + len(s.points)
            values.extend([None] * max(0, end - len(values)))
            for k, p in enumerate(s.points):
                values[batch.first_interval + k] = p.value if p.present else None
    return window


def covered(batches: Sequence[verification_pb2.MetricsCollected]) -> int:
    """Intervals of the window covered by ``batches``."""
    seen: set[int] = set()
    for batch in batches:
        width = max((len(s.points) for s in batch.series), default=0)
        seen.update(range(batch.first_interval, batch.first_interval + width))
    return len(seen)


def look(batches: Sequence[verification_pb2.MetricsCollected],
         latest: verification_pb2.MetricsCollected) -> Look | None:
    """The look ``latest`` gives, or None when it cannot be judged early (planned size unknown,
    or it adds nothing new)."""
    cap = STATISTICAL_LOOKS_UNTIL
    if not latest.partial:
        before = [b for b in batches if b.first_interval != latest.first_interval]
        planned = latest.planned_intervals or covered(batches)
        previous = min(covered(before) / planned, cap) if planned and before else 0.0
        return Look(fraction=1.0, previous=previous) if previous > 0 else FINAL
    planned = latest.planned_intervals
    if planned <= 0:
        return None
    before = [b for b in batches if b.first_interval != latest.first_interval]
    now, previous = covered(batches) / planned, covered(before) / planned
    if now <= previous:
        return None
    if now > cap:
        return ThresholdLook(fraction=min(now, 0.999), previous=min(previous, 0.998))
    return Look(fraction=now, previous=previous)
