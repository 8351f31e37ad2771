"""The ``elasticsearch`` health source: log records from an Elasticsearch/OpenSearch ``_search``.

One query per window: ``bool.filter`` of the time range on ``timestamp_field`` and a ``terms``
on ``host_field`` (the service instance identifier), plus the configured ``query_string``;
sorted by time and paged with ``search_after``, up to ``max_records``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from vigil.delegate.v1 import health_sources_pb2
from vigil_delegate.health.logs import LogRecord
from vigil_delegate.health.sources.base import (
    LOGS,
    Collected,
    HealthSourceError,
    Progress,
    Window,
    wait_until,
)
from vigil_delegate.health.sources.file_logs import parse_time

_PAGE = 1000


class SearchClient:
    """Minimal client of the ``<url>/<index>/_search`` API (synchronous; call from a thread)."""

    def __init__(self, url: str, headers: Mapping[str, str] | None = None,
                 timeout_s: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise HealthSourceError(f"elasticsearch.url: must be an http(s) URL, got {url!r}")
        self._url = url.rstrip("/")
        self._headers = dict(headers or {})
        self._timeout_s = timeout_s

    def search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """POSTs ``body`` to ``_search`` of ``index``; returns the decoded answer.

        Raises:
            HealthSourceError: Unreachable, or an error answer (with its reason).
        """
        url = f"{self._url}/{urllib.parse.quote(index, safe='*,-_.')}/_search"
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={**self._headers,
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                detail = error.read().decode(errors="replace")[:300]
            raise HealthSourceError(f"_search {url}: HTTP {error.code}: {detail}") from None
        except (OSError, ValueError) as error:
            raise HealthSourceError(f"_search {url}: {error}") from None


class SearchLogSource:
    """Reads the window's log records of the requested hosts from a search index."""

    kind = "elasticsearch"
    provides = frozenset({LOGS})

    def __init__(self, config: health_sources_pb2.SearchLogSource, client: SearchClient) -> None:
        if not config.index:
            raise HealthSourceError("elasticsearch.index: must be set")
        self._c = config
        self._client = client
        self._host = config.host_field or "host.name"
        self._time = config.timestamp_field or "@timestamp"

    def request(self, hosts: Sequence[str], window: Window,
                after: list[Any] | None) -> dict[str, Any]:
        """The ``_search`` body of one page (``after``: the previous page's last sort key)."""
        filters: list[dict[str, Any]] = [
            {"range": {self._time: {"gte": window.start.isoformat(),
                                    "lt": window.end.isoformat()}}},
            {"terms": {self._host: list(hosts)}},
        ]
        query: dict[str, Any] = {"bool": {"filter": filters}}
        if self._c.query:
            query["bool"]["must"] = [{"query_string": {"query": self._c.query}}]
        body: dict[str, Any] = {"size": _PAGE, "query": query,
                                "sort": [{self._time: {"order": "asc"}}]}
        if after is not None:
            body["search_after"] = after
        return body

    async def collect(self, hosts: Sequence[str], window: Window,
                      progress: Progress) -> Collected:
        await wait_until(window.end)
        limit = self._c.max_records or 10_000
        logs: dict[str, list[LogRecord]] = {h: [] for h in hosts}
        after: list[Any] | None = None
        read = 0
        while read < limit:
            answer = await asyncio.to_thread(self._client.search, self._c.index,
                                             self.request(hosts, window, after))
            hits = answer.get("hits", {}).get("hits", [])
            for hit in hits[: limit - read]:
                host, record = self._record(hit.get("_source", {}))
                if host in logs:
                    logs[host].append(record)
            read += len(hits)
            if len(hits) < _PAGE or "sort" not in hits[-1]:
                break
            after = hits[-1]["sort"]
        if read >= limit:
            progress(f"_search {self._c.index}: stopped at max_records={limit}")
        progress(f"_search {self._c.index}: {min(read, limit)} records for {len(hosts)} hosts")
        return Collected(logs=logs)

    def _record(self, source: dict[str, Any]) -> tuple[str, LogRecord]:
        stamp = _field(source, self._time)
        if not isinstance(stamp, str):
            raise HealthSourceError(f"_search hit without a {self._time} string: {source}")
        return str(_field(source, self._host) or ""), LogRecord(
            timestamp=parse_time(stamp),
            level=str(_field(source, self._c.level_field or "log.level") or "").upper(),
            thread="",
            logger=str(_field(source, self._c.logger_field or "log.logger") or ""),
            message=str(_field(source, self._c.message_field or "message") or ""))


def _field(source: dict[str, Any], path: str) -> Any:
    """A field by dotted path, trying the flat key first (``{"log.level": ...}``)."""
    if path in source:
        return source[path]
    value: Any = source
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
