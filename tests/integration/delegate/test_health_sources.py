"""Health sources against real data: Prometheus scraping a real demo process, log files, and
a ``_search`` stand-in server.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from search_standin import SearchStandIn

from vigil.delegate.v1 import health_sources_pb2, tasks_pb2
from vigil_delegate.health import sources
from vigil_delegate.health.sources import HealthSourceError, Window
from vigil_delegate.targets.processes import free_port

REPO = Path(__file__).resolve().parents[3]
DEADLINE_S = 30.0


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


def _wait_for(what: str, check, deadline_s: float = DEADLINE_S):  # noqa: ANN001
    deadline = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except OSError as exc:
            last = exc
        time.sleep(0.3)
    pytest.fail(f"{what} not ready after {deadline_s}s (last error: {last})")


@pytest.fixture
def demo_node(tmp_path: Path) -> Iterator[int]:
    """A real demo service process (node-1, v1) serving /metrics; yields its port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vigil_demo", "--node", "node-1", "--version", "v1",
         "--port", str(port), "--log-file", str(tmp_path / "node-1.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for("demo service", lambda: _get_json(f"http://127.0.0.1:{port}/healthz")
                  is not None)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def prometheus(tmp_path: Path, demo_node: int) -> Iterator[str]:
    """A real Prometheus scraping the demo node every second, labelled node="node-1"."""
    binary = shutil.which("prometheus")
    if binary is None:  # CI machines start bare: install it the way `make setup` does
        subprocess.run(["make", "-C", str(REPO), "prometheus"], check=False)
        binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed and `make prometheus` could not install it")
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "demo", "static_configs": [{
            "targets": [f"127.0.0.1:{demo_node}"], "labels": {"node": "node-1"}}]}],
    }))
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        # The first sample shows up ~6 s after start (RUNTIME.md): poll for it.
        _wait_for("first scraped sample", lambda: _get_json(
            f"{url}/api/v1/query?query=http_request_duration_seconds_count")["data"]["result"])
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _prometheus(url: str, **fields) -> sources.HealthSource:  # noqa: ANN003
    return sources.build(tasks_pb2.HealthSource(kind="prometheus", prometheus=(
        health_sources_pb2.PrometheusSource(url=url, host_label="node", **fields))), None)


async def test_prometheus_range_queries_map_the_node_label_to_hosts(prometheus: str) -> None:
    window = Window.starting(datetime.now(UTC), duration_s=6, interval_s=2)
    lines: list[str] = []
    per_host = _prometheus(prometheus)
    by_label = _prometheus(prometheus, queries=[health_sources_pb2.PrometheusQuery(
        metric="requests_per_interval",
        query="sum by (node) (increase(http_request_duration_seconds_count[{interval}]))")])
    default, grouped = await asyncio.gather(
        per_host.collect(["node-1", "node-9"], window, lines.append),
        by_label.collect(["node-1", "node-9"], window, lines.append))

    assert set(default.metrics) == {"response_time_ms", "requests_per_interval",
                                    "error_rate_pct"}
    latency = default.metrics["response_time_ms"]["node-1"]
    assert len(latency) == 3 and all(v is not None and 1 < v < 1000 for v in latency), latency
    assert all(v is not None and v >= 0 for v in default.metrics["error_rate_pct"]["node-1"])
    assert default.metrics["response_time_ms"]["node-9"] == [None, None, None]
    requests = grouped.metrics["requests_per_interval"]
    assert all(v is not None and v > 5 for v in requests["node-1"]), requests  # ~20 rps
    assert requests["node-9"] == [None, None, None]
    assert "prometheus response_time_ms: data for 1 of 2 hosts" in lines


async def test_a_prometheus_error_answer_fails_with_its_message(prometheus: str) -> None:
    source = _prometheus(prometheus, queries=[health_sources_pb2.PrometheusQuery(
        metric="broken", query="sum(rate(x[{interval}]")])
    window = Window.starting(datetime.now(UTC) - timedelta(seconds=10), 4, 2)
    with pytest.raises(HealthSourceError, match="bad_data"):
        await source.collect(["node-1"], window, print)


def _line(at: datetime, level: str, message: str) -> str:
    return f"{at.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z {level} [main] shop.api - {message}\n"


async def test_file_source_reads_a_directory_one_host_per_file(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    (tmp_path / "node-1.log").write_text(
        _line(now - timedelta(minutes=5), "INFO", "too early")
        + _line(now - timedelta(seconds=30), "ERROR", "boom")
        + "\tat com.example.Shop.price(Shop.java:42)\n"
        + _line(now - timedelta(seconds=20), "INFO", "ok"))
    (tmp_path / "weird-name.log").write_text(_line(now - timedelta(seconds=10), "WARN", "slow"))
    (tmp_path / "node-3.log").write_text(_line(now - timedelta(seconds=10), "INFO", "other"))
    source = sources.build(tasks_pb2.HealthSource(kind="file", file=(
        health_sources_pb2.FileLogSource(path=str(tmp_path),
                                         file_hosts={"weird-name.log": "node-2"}))), None)
    window = Window.starting(now - timedelta(minutes=1), 60, 30)
    found = await source.collect(["node-1", "node-2"], window, print)
    assert [(r.level, r.message) for r in found.logs["node-1"]] == [
        ("ERROR", "boom\n\tat com.example.Shop.price(Shop.java:42)"), ("INFO", "ok")]
    assert [r.message for r in found.logs["node-2"]] == ["slow"]
    assert "node-3" not in found.logs


async def test_file_source_takes_the_host_from_a_regex_group(tmp_path: Path) -> None:
    log = tmp_path / "all.json.log"
    log.write_text("".join(
        f"{t} pod={pod} level={lvl} msg={msg}\n" for t, pod, lvl, msg in [
            ("2025-03-14 10:00:01", "shop-7d9-a", "error", "db timeout"),
            ("2025-03-14 10:00:02", "shop-7d9-b", "info", "started"),
            ("2025-03-14 10:00:03", "shop-7d9-a", "info", "retry ok"),
        ]))
    source = sources.build(tasks_pb2.HealthSource(kind="file", file=(
        health_sources_pb2.FileLogSource(
            path=str(log), host_group="pod", timestamp_format="%Y-%m-%d %H:%M:%S",
            line_regex=r"(?P<timestamp>\S+ \S+) pod=(?P<pod>\S+) level=(?P<level>\w+) "
                       r"msg=(?P<message>.*)"))), None)
    window = Window(datetime(2025, 3, 14, 10, 0, tzinfo=UTC),
                    datetime(2025, 3, 14, 10, 1, tzinfo=UTC), 60)
    found = await source.collect(["shop-7d9-a"], window, print)
    assert [(r.level, r.message) for r in found.logs["shop-7d9-a"]] == [
        ("ERROR", "db timeout"), ("INFO", "retry ok")]
    with pytest.raises(HealthSourceError, match="missing named group"):
        sources.build(tasks_pb2.HealthSource(kind="file", file=health_sources_pb2.FileLogSource(
            path=str(log), line_regex=r"(?P<message>.*)")), None)


@pytest.fixture
async def search() -> AsyncIterator[SearchStandIn]:
    async with SearchStandIn() as server:
        yield server


async def test_search_source_queries_the_window_and_hosts_and_pages(
        search: SearchStandIn) -> None:
    base = datetime(2025, 3, 14, 10, 0, tzinfo=UTC)
    search.documents = [
        {"@timestamp": (base + timedelta(milliseconds=10 * i)).isoformat(),
         "kubernetes": {"pod": {"name": f"shop-{i % 3}"}}, "log.level": "error" if i == 7
         else "info", "message": f"event {i}"}
        for i in range(2500)] + [{"@timestamp": (base - timedelta(hours=1)).isoformat(),
                                  "kubernetes": {"pod": {"name": "shop-0"}}, "message": "old"}]
    source = sources.build(tasks_pb2.HealthSource(kind="elasticsearch", elasticsearch=(
        health_sources_pb2.SearchLogSource(url=search.url, index="logs-shop-*",
                                           host_field="kubernetes.pod.name"))), None)
    window = Window(base, base + timedelta(minutes=1), 30)
    found = await source.collect(["shop-1", "shop-2"], window, print)

    assert set(found.logs) == {"shop-1", "shop-2"}
    assert len(found.logs["shop-1"]) + len(found.logs["shop-2"]) == 1666
    assert [r.message for r in found.logs["shop-1"][:3]] == ["event 1", "event 4", "event 7"]
    assert found.logs["shop-1"][2].level == "ERROR"
    assert len(search.requests) == 2  # 1000 per page, then the rest
    first = search.requests[0]
    assert first["path"] == "/logs-shop-*/_search"
    assert {"terms": {"kubernetes.pod.name": ["shop-1", "shop-2"]}} in (
        first["body"]["query"]["bool"]["filter"])
    assert "search_after" in search.requests[1]["body"]
