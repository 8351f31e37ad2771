"""Version profiles: how each release of the demo service behaves.

The demo pipeline deploys these versions and Vigil's verification has to tell them apart:
``v1`` is the healthy baseline, ``v2`` carries a real regression (slower, and a new exception
on a share of requests), ``v3`` is the fix and behaves like ``v1``. Behaviour is data, one row
per version, so adding a release is adding a row.
"""

import random
from dataclasses import dataclass

FALLBACK_VERSION = "v1"
"""Version whose behaviour an unknown version gets (the service logs a WARN once at start)."""


@dataclass(frozen=True)
class VersionProfile:
    """How one release behaves while serving ``GET /``.

    Attributes:
        base_latency_ms: Mean time one request spends "working", in milliseconds.
        jitter_ms: Half-width of the uniform noise added to each request's latency.
        cache_timeout_rate: Share of requests (0..1) that log the benign cache-timeout ERROR
            and still succeed; the same in every version, so it is not a regression signal.
        order_failure_rate: Share of requests (0..1) that hit the order bug: they log an
            ERROR with a Java stack trace and answer 500.
    """

    base_latency_ms: float
    jitter_ms: float
    cache_timeout_rate: float
    order_failure_rate: float

    def latency_ms(self, rng: random.Random) -> float:
        """Draws one request's latency in milliseconds, never below zero."""
        return max(0.0, self.base_latency_ms + rng.uniform(-self.jitter_ms, self.jitter_ms))


_CACHE_TIMEOUT_RATE = 1 / 40

PROFILES: dict[str, VersionProfile] = {
    "v1": VersionProfile(
        base_latency_ms=20.0, jitter_ms=4.0,
        cache_timeout_rate=_CACHE_TIMEOUT_RATE, order_failure_rate=0.0,
    ),
    # The regression: about +60% latency and a NullPointerException on 1 in 8 orders.
    "v2": VersionProfile(
        base_latency_ms=32.0, jitter_ms=4.0,
        cache_timeout_rate=_CACHE_TIMEOUT_RATE, order_failure_rate=1 / 8,
    ),
    "v3": VersionProfile(
        base_latency_ms=20.0, jitter_ms=4.0,
        cache_timeout_rate=_CACHE_TIMEOUT_RATE, order_failure_rate=0.0,
    ),
}


def is_known(version: str) -> bool:
    """Tells whether ``version`` has its own row in :data:`PROFILES`."""
    return version in PROFILES


def profile_for(version: str) -> VersionProfile:
    """Returns the profile of ``version``, or the ``v1`` profile for an unknown version."""
    return PROFILES.get(version, PROFILES[FALLBACK_VERSION])
