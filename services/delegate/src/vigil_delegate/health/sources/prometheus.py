"""The ``prometheus`` health source: metrics from a Prometheus server's range queries.

One ``/api/v1/query_range`` per metric (and per host when the query holds ``{host}``), from the
end of the first interval to the window's end, one step per interval: each point describes the
interval that ends at its timestamp, so queries use ``increase(...[{interval}])`` or
``rate(...[{interval}])``. The host is the value of the ``host_label`` label, the service
instance identifier (``pod``, ``node``, ``instance`` ...).
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from vigil.delegate.v1 import health_sources_pb2
from vigil_delegate.health.sources.base import (
    METRICS,
    Collected,
    HealthSourceError,
    Progress,
    Window,
    wait_until,
)


def default_queries(label: str) -> dict[str, str]:
    """The queries used when none are configured: the demo's HTTP metrics, by ``label``."""

    def increase(metric: str, extra: str = "") -> str:
        return f'sum(increase({metric}{{{label}="{{host}}"{extra}}}[{{interval}}]))'

    duration_sum = increase("http_request_duration_seconds_sum")
    duration_count = increase("http_request_duration_seconds_count")
    errors = increase("http_requests_total", ',status=~"5.."')
    requests = increase("http_requests_total")
    return {
        "response_time_ms": f"1000 * {duration_sum} / {duration_count}",
        "requests_per_interval": duration_count,
        "error_rate_pct": f"100 * ({errors} or vector(0)) / {requests}",
    }


Matrix = list[tuple[dict[str, str], list[tuple[float, float]]]]
"""Result series of a range query: (labels, [(unix time, value)])."""


class PrometheusClient:
    """Minimal client of Prometheus' HTTP API (synchronous; call it from a thread)."""

    def __init__(self, url: str, headers: Mapping[str, str] | None = None,
                 timeout_s: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise HealthSourceError(f"prometheus.url: must be an http(s) URL, got {url!r}")
        self._url = url.rstrip("/")
        self._headers = dict(headers or {})
        self._timeout_s = timeout_s

    def query_range(self, query: str, start: datetime, end: datetime, step_s: float) -> Matrix:
        """Runs ``query`` over ``[start, end]`` every ``step_s`` seconds.

        Raises:
            HealthSourceError: Unreachable, or Prometheus answered an error (its message).
        """
        form = urllib.parse.urlencode({"query": query, "start": f"{start.timestamp():.3f}",
                                       "end": f"{end.timestamp():.3f}", "step": f"{step_s:g}"})
        request = urllib.request.Request(
            f"{self._url}/api/v1/query_range", data=form.encode(), method="POST",
            headers={**self._headers, "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                answer = _json_or_none(error.read()) or {"error": f"HTTP {error.code}"}
        except (OSError, ValueError) as error:
            raise HealthSourceError(f"prometheus {self._url}: {error}") from None
        if answer.get("status") != "success":
            raise HealthSourceError(f"prometheus {self._url}: query {query!r} failed: "
                                    f"{answer.get('errorType', '')} {answer.get('error')}".strip())
        return [(series.get("metric", {}), [(float(t), _number(v)) for t, v in series["values"]])
                for series in answer["data"]["result"]]


class PrometheusSource:
    """Metrics of the configured queries, one series per metric and host."""

    kind = "prometheus"
    provides = frozenset({METRICS})

    def __init__(self, config: health_sources_pb2.PrometheusSource,
                 client: PrometheusClient) -> None:
        self._label = config.host_label or "instance"
        self._queries = ({q.metric: q.query for q in config.queries} or
                         default_queries(self._label))
        if any(not metric or not query for metric, query in self._queries.items()):
            raise HealthSourceError("prometheus.queries: every query needs a metric and a query")
        self._client = client

    async def collect(self, hosts: Sequence[str], window: Window,
                      progress: Progress) -> Collected:
        await wait_until(window.end)
        ends = window.interval_ends()
        interval = f"{window.interval_s:g}s"
        metrics: dict[str, dict[str, list[float | None]]] = {}
        for metric, template in self._queries.items():
            query = template.replace("{interval}", interval)
            if "{host}" in query:
                per_host = await asyncio.gather(*(self._range(
                    query.replace("{host}", host), ends, window) for host in hosts))
                by_host = {h: _points(m[0][1], ends, window) if m else [None] * len(ends)
                           for h, m in zip(hosts, per_host, strict=True)}
            else:
                by_host = self._split(await self._range(query, ends, window), hosts, ends, window)
            metrics[metric] = by_host
            found = sum(1 for values in by_host.values() if any(v is not None for v in values))
            progress(f"prometheus {metric}: data for {found} of {len(hosts)} hosts")
        return Collected(metrics=metrics)

    async def _range(self, query: str, ends: list[datetime], window: Window) -> Matrix:
        return await asyncio.to_thread(self._client.query_range, query, ends[0], ends[-1],
                                       window.interval_s)

    def _split(self, matrix: Matrix, hosts: Sequence[str], ends: list[datetime],
               window: Window) -> dict[str, list[float | None]]:
        by_host: dict[str, list[float | None]] = {h: [None] * len(ends) for h in hosts}
        for labels, values in matrix:
            host = labels.get(self._label)
            if host in by_host:
                by_host[host] = _points(values, ends, window)
        return by_host


def _points(values: list[tuple[float, float]], ends: list[datetime],
            window: Window) -> list[float | None]:
    """One value per interval end; a sample further than half a step away does not count."""
    tolerance = window.interval_s / 2
    out: list[float | None] = []
    for end in ends:
        at = end.timestamp()
        near = [v for t, v in values if abs(t - at) <= tolerance and math.isfinite(v)]
        out.append(near[0] if near else None)
    return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _json_or_none(raw: bytes) -> dict[str, Any] | None:
    try:
        return json.loads(raw)
    except ValueError:
        return None
