"""Early decision: how much false-fail probability each look at a growing window may spend.

The analyzer re-judges as minutes arrive. Testing again at every look with the same alpha
would fail healthy releases far more often than alpha (each look is another chance for noise
to cross the line). Instead each comparison has a total one-sided budget :data:`ALPHA`, spent
across looks with the Lan-DeMets O'Brien-Fleming-type spending function

    spent(t) = 2 - 2 * Phi(z_{1 - ALPHA/2} / sqrt(t)),   t = minutes seen / minutes planned,

and a look at fraction t after a look at fraction s tests at ``spent(t) - spent(s)``. By the
union bound the chance that any look fails a healthy comparison stays below ALPHA, whatever the
number and timing of the looks. Early looks get tiny alphas (at t = 0.3 about 3e-6), so only
a large, clear regression fails early; the last look keeps almost all of ALPHA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vigil_metric_analyzer.domain.preprocessing.robust import upper_quantile, upper_tail

ALPHA = 0.01
"""Total one-sided false-fail budget of one rule on one metric and host."""


def spent(fraction: float, alpha: float = ALPHA) -> float:
    """Alpha spent by the time ``fraction`` of the window has been seen (0 at 0, alpha at 1)."""
    if fraction <= 0:
        return 0.0
    t = min(fraction, 1.0)
    return 2.0 * upper_tail(upper_quantile(alpha / 2.0) / math.sqrt(t))


@dataclass(frozen=True)
class Look:
    """One look at the window.

    Attributes:
        fraction: Share of the planned window seen so far, in (0, 1]; 1 is the final look.
        previous: ``fraction`` of the last look already taken (0 if none).
    """

    fraction: float = 1.0
    previous: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1 or not 0 <= self.previous < self.fraction:
            raise ValueError(f"look: need 0 <= previous < fraction <= 1, got {self}")

    @property
    def final(self) -> bool:
        """Whether this is the last look (the whole window): only it may PASS."""
        return self.fraction >= 1.0

    @property
    def alpha(self) -> float:
        """The p-value a change must be under at this look."""
        return spent(self.fraction) - spent(self.previous)


FINAL = Look()
"""The single look at a complete window (replay, or a delegate sending one batch)."""
