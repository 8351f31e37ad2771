"""The demo service's version profiles, simulated work and log line format."""

import logging
import random
from datetime import UTC, datetime, timedelta, timezone
from statistics import mean

import pytest

from vigil_demo import logformat, profiles, work


def _mean_latency(version: str) -> float:
    rng = random.Random(7)
    return mean(profiles.profile_for(version).latency_ms(rng) for _ in range(2000))


def _statuses(version: str, requests: int) -> list[int]:
    rng = random.Random(11)
    profile = profiles.profile_for(version)
    return [work.perform(profile, rng, sleep=lambda _s: None) for _ in range(requests)]


def test_the_table_holds_the_three_demo_releases() -> None:
    assert set(profiles.PROFILES) == {"v1", "v2", "v3"}


def test_v1_works_about_twenty_milliseconds() -> None:
    assert _mean_latency("v1") == pytest.approx(20, abs=1)


def test_v2_is_about_sixty_percent_slower_than_v1() -> None:
    assert _mean_latency("v2") / _mean_latency("v1") == pytest.approx(1.6, abs=0.1)


def test_v3_behaves_like_v1() -> None:
    assert profiles.PROFILES["v3"] == profiles.PROFILES["v1"]


def test_only_v2_has_the_order_bug() -> None:
    rates = {v: p.order_failure_rate for v, p in profiles.PROFILES.items()}
    assert rates == {"v1": 0.0, "v2": 1 / 8, "v3": 0.0}


def test_every_version_has_the_same_benign_cache_timeouts() -> None:
    assert {p.cache_timeout_rate for p in profiles.PROFILES.values()} == {1 / 40}


def test_an_unknown_version_behaves_like_v1() -> None:
    assert not profiles.is_known("v9")
    assert profiles.profile_for("v9") == profiles.PROFILES["v1"]


def test_latency_is_never_negative() -> None:
    profile = profiles.VersionProfile(1.0, 5.0, 0.0, 0.0)
    rng = random.Random(3)
    assert min(profile.latency_ms(rng) for _ in range(500)) >= 0.0


def test_v1_requests_all_succeed() -> None:
    assert set(_statuses("v1", 800)) == {200}


def test_about_one_in_eight_v2_requests_fails_with_500() -> None:
    statuses = _statuses("v2", 4000)
    assert statuses.count(500) / len(statuses) == pytest.approx(1 / 8, abs=0.02)


def test_the_v2_bug_logs_a_null_pointer_stack_trace(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="demo"):
        _statuses("v2", 200)
    orders = [r.getMessage() for r in caplog.records if r.name == "demo.orders"]
    assert orders
    assert orders[0].startswith("Unhandled exception processing order ")
    assert "java.lang.NullPointerException" in orders[0]
    assert "\tat com.example.orders.OrderService.price(OrderService.java:88)" in orders[0]


def test_cache_timeouts_log_an_error_with_varying_keys(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="demo"):
        _statuses("v1", 800)
    cache = [r.getMessage() for r in caplog.records if r.name == "demo.cache"]
    assert 5 <= len(cache) <= 40
    assert all(m.startswith("Cache lookup timed out after 250 ms for key user:") for m in cache)
    assert len(set(cache)) > 1


def test_a_log_line_has_utc_millis_level_thread_logger_and_message() -> None:
    when = datetime(2026, 11, 22, 3, 37, 7, 123456, tzinfo=timezone(timedelta(hours=1)))
    line = logformat.format_line(when, "INFO", "http-exec-3", "demo.http", "GET / 200 in 23 ms")
    assert line == "2026-11-22T02:37:07.123Z INFO [http-exec-3] demo.http - GET / 200 in 23 ms"


def test_continuation_lines_of_a_multi_line_record_start_with_a_tab() -> None:
    when = datetime(2026, 11, 22, 2, 37, 7, tzinfo=UTC)
    message = ("Unhandled exception processing order 7\n"
               "java.lang.NullPointerException: x\n\tat a.B.c")
    lines = logformat.format_line(when, "ERROR", "t", "demo.orders", message).split("\n")
    assert lines == [
        "2026-11-22T02:37:07.000Z ERROR [t] demo.orders - Unhandled exception processing order 7",
        "\tjava.lang.NullPointerException: x",
        "\tat a.B.c",
    ]


def test_the_formatter_writes_python_warnings_as_warn() -> None:
    record = logging.LogRecord("demo.main", logging.WARNING, __file__, 1, "Unknown %s", ("v9",),
                               None)
    record.created = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC).timestamp()
    record.threadName = "main"
    formatted = logformat.DemoFormatter().format(record)
    assert formatted == "2026-01-02T03:04:05.678Z WARN [main] demo.main - Unknown v9"
