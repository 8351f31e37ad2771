"""Collects per-interval service metrics from Prometheus-format ``/metrics`` endpoints.

Every host is scraped once at the start and then once per interval; each interval's values
are the differences between consecutive scrapes. The demo pipeline treats one interval as one
"minute bucket" of the verification window.

Metrics (the keys of the result):

- ``response_time_ms``: mean latency, Δ``http_request_duration_seconds_sum`` /
  Δ``http_request_duration_seconds_count`` × 1000; None when the interval had no requests.
- ``requests_per_interval``: Δ``http_request_duration_seconds_count``.
- ``error_rate_pct``: 100 × Δ``http_requests_total{status=~"5.."}`` / Δ``http_requests_total``;
  None when the interval had no requests.

A failed scrape makes that host's values None for the interval it ends and the one it starts:
a missing sample is never reported as a zero.
"""

import asyncio
import itertools
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

RESPONSE_TIME_MS = "response_time_ms"
REQUESTS_PER_INTERVAL = "requests_per_interval"
ERROR_RATE_PCT = "error_rate_pct"
METRIC_NAMES = (RESPONSE_TIME_MS, REQUESTS_PER_INTERVAL, ERROR_RATE_PCT)

_DURATION = "http_request_duration_seconds"
_REQUESTS = "http_requests_total"

Series = dict[str, dict[str, list[float | None]]]
"""``{metric_name: {host: [one value per interval, None where unknown]}}``."""


@dataclass(frozen=True)
class Totals:
    """Cumulative counters read from one scrape, summed over all label sets.

    Attributes:
        duration_sum_s: Sum of ``http_request_duration_seconds_sum``, in seconds.
        duration_count: Sum of ``http_request_duration_seconds_count``.
        requests: Sum of ``http_requests_total`` over every status.
        server_errors: Sum of ``http_requests_total`` over 5xx statuses.
    """

    duration_sum_s: float
    duration_count: float
    requests: float
    server_errors: float


def parse_totals(exposition: str) -> Totals:
    """Reads the counters this module needs from Prometheus text-format ``exposition``.

    Absent metrics count as zero (a process that has served nothing yet exports none).

    Raises:
        ValueError: The text is not valid Prometheus exposition format.
    """
    duration_sum = duration_count = requests = errors = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == f"{_DURATION}_sum":
                duration_sum += sample.value
            elif sample.name == f"{_DURATION}_count":
                duration_count += sample.value
            elif sample.name == _REQUESTS:
                requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    errors += sample.value
    return Totals(duration_sum, duration_count, requests, errors)


def interval_values(previous: Totals | None, current: Totals | None) -> dict[str, float | None]:
    """Computes one interval's metrics from the scrapes at its start and end.

    Either scrape missing gives None for every metric. A counter that went down means the
    process restarted; as Prometheus' ``increase()`` does, the current value is then the delta.
    """
    if previous is None or current is None:
        return dict.fromkeys(METRIC_NAMES)
    restarted = current.duration_count < previous.duration_count
    base = Totals(0.0, 0.0, 0.0, 0.0) if restarted else previous
    count = current.duration_count - base.duration_count
    requests = _increase(previous.requests, current.requests)
    errors = _increase(previous.server_errors, current.server_errors)
    return {
        RESPONSE_TIME_MS: (
            (current.duration_sum_s - base.duration_sum_s) / count * 1000 if count > 0 else None
        ),
        REQUESTS_PER_INTERVAL: count,
        ERROR_RATE_PCT: 100 * errors / requests if requests > 0 else None,
    }


def build_series(scrapes: dict[str, list[Totals | None]]) -> Series:
    """Turns each host's consecutive scrapes into per-interval metric series.

    Args:
        scrapes: Host -> scrapes in time order (None for a failed scrape); n scrapes give
            n - 1 intervals.
    """
    series: Series = {name: {} for name in METRIC_NAMES}
    for host, totals in scrapes.items():
        intervals = [interval_values(a, b) for a, b in itertools.pairwise(totals)]
        for name in METRIC_NAMES:
            series[name][host] = [values[name] for values in intervals]
    return series


async def collect_metrics(
    endpoints: dict[str, str],
    duration_s: float,
    interval_s: float,
    on_progress: Callable[[str], None],
) -> Series:
    """Scrapes every endpoint each interval for ``duration_s`` and returns the metric series.

    Args:
        endpoints: Host name -> URL of its Prometheus-format ``/metrics``.
        duration_s: Length of the collection window, in seconds; it is cut into
            ``round(duration_s / interval_s)`` intervals (at least one).
        interval_s: Seconds between scrapes, one interval per value in the result.
        on_progress: Called with a short human-readable line after each round of scrapes.

    Returns:
        ``{metric_name: {host: [value per interval]}}`` for the metrics in :data:`METRIC_NAMES`.
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be positive, got {interval_s}")
    intervals = max(1, round(duration_s / interval_s))
    timeout_s = min(max(interval_s * 0.8, 0.2), 10.0)
    scrapes: dict[str, list[Totals | None]] = {host: [] for host in endpoints}
    started = time.monotonic()
    for round_number in range(intervals + 1):
        await asyncio.sleep(max(0.0, started + round_number * interval_s - time.monotonic()))
        results = await asyncio.gather(
            *(_scrape(url, timeout_s) for url in endpoints.values())
        )
        failures = []
        for (host, url), (totals, error) in zip(endpoints.items(), results, strict=True):
            scrapes[host].append(totals)
            if error is not None:
                failures.append(f"{host} ({url}): {error}")
        summary = f"scrape {round_number}/{intervals}: {len(endpoints) - len(failures)} ok"
        if failures:
            summary += f", {len(failures)} failed: " + "; ".join(failures)
        on_progress(summary)
    return build_series(scrapes)


async def _scrape(url: str, timeout_s: float) -> tuple[Totals | None, str | None]:
    try:
        text = await asyncio.to_thread(_fetch, url, timeout_s)
        return parse_totals(text), None
    except (OSError, ValueError) as error:
        return None, f"{type(error).__name__}: {error}"


def _fetch(url: str, timeout_s: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read().decode("utf-8")


def _increase(previous: float, current: float) -> float:
    return current - previous if current >= previous else current
