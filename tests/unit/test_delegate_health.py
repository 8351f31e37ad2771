"""Metric delta math and log parsing of the delegate's health collection."""

from datetime import UTC, datetime

import pytest

from vigil_delegate.health import logs, metrics
from vigil_delegate.health.metrics import Totals

EXPOSITION = """\
# HELP http_request_duration_seconds Time spent serving a request, in seconds.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.025",route="/"} 30.0
http_request_duration_seconds_bucket{le="+Inf",route="/"} 40.0
http_request_duration_seconds_count{route="/"} 40.0
http_request_duration_seconds_sum{route="/"} 1.2
http_request_duration_seconds_created{route="/"} 1.7637789e+09
# HELP http_requests_total Requests served, by HTTP status.
# TYPE http_requests_total counter
http_requests_total{status="200"} 35.0
http_requests_total{status="500"} 4.0
http_requests_total{status="503"} 1.0
http_requests_created{status="200"} 1.7637789e+09
# HELP demo_build_info Version and node of this process.
# TYPE demo_build_info gauge
demo_build_info{node="node-1",version="v1"} 1.0
"""


def _at(second: int, millis: int = 0) -> datetime:
    return datetime(2026, 11, 22, 2, 37, second, millis * 1000, tzinfo=UTC)


def test_totals_sum_every_series_and_count_5xx_as_errors() -> None:
    assert metrics.parse_totals(EXPOSITION) == Totals(1.2, 40.0, 40.0, 5.0)


def test_an_exposition_without_the_metrics_reads_as_zero() -> None:
    assert metrics.parse_totals("# nothing served yet\n") == Totals(0.0, 0.0, 0.0, 0.0)


def test_garbage_is_not_an_exposition() -> None:
    with pytest.raises(ValueError):
        metrics.parse_totals("<html>502 Bad Gateway</html>")


def test_an_interval_is_the_difference_of_its_two_scrapes() -> None:
    values = metrics.interval_values(Totals(1.0, 40, 40, 2), Totals(1.5, 60, 60, 7))
    assert values == {
        "response_time_ms": pytest.approx(25.0),
        "requests_per_interval": 20,
        "error_rate_pct": pytest.approx(25.0),
    }


def test_an_interval_without_requests_has_no_latency_or_error_rate() -> None:
    same = Totals(1.0, 40, 40, 2)
    assert metrics.interval_values(same, same) == {
        "response_time_ms": None, "requests_per_interval": 0, "error_rate_pct": None,
    }


@pytest.mark.parametrize(("previous", "current"), [
    (None, Totals(1.0, 40, 40, 2)),
    (Totals(1.0, 40, 40, 2), None),
    (None, None),
])
def test_a_missing_scrape_gives_none_never_zero(
    previous: Totals | None, current: Totals | None
) -> None:
    assert metrics.interval_values(previous, current) == dict.fromkeys(metrics.METRIC_NAMES)


def test_after_a_restart_the_new_counters_are_the_interval() -> None:
    values = metrics.interval_values(Totals(9.0, 300, 300, 30), Totals(0.2, 10, 10, 1))
    assert values["response_time_ms"] == pytest.approx(20.0)
    assert values["requests_per_interval"] == 10
    assert values["error_rate_pct"] == pytest.approx(10.0)


def test_series_have_one_value_per_interval_per_host() -> None:
    scrapes = {
        "node-1": [Totals(0, 0, 0, 0), Totals(0.2, 10, 10, 0), Totals(0.5, 20, 20, 1)],
        "node-2": [Totals(0, 0, 0, 0), None, Totals(0.3, 10, 10, 0)],
    }
    series = metrics.build_series(scrapes)
    assert series["response_time_ms"] == {
        "node-1": [pytest.approx(20.0), pytest.approx(30.0)], "node-2": [None, None],
    }
    assert series["requests_per_interval"] == {"node-1": [10, 10], "node-2": [None, None]}
    assert series["error_rate_pct"] == {"node-1": [0.0, 10.0], "node-2": [None, None]}


LOG_TEXT = """\
\tat com.example.Orphan.line(Orphan.java:1)
2026-11-22T02:37:05.999Z INFO [http-exec-1] demo.http - GET / 200 in 21 ms request_id=a
2026-11-22T02:37:07.123Z ERROR [http-exec-2] demo.orders - Unhandled exception processing order 7
\tjava.lang.NullPointerException: Cannot invoke "Order.getCustomer()" because "order" is null
\tat com.example.orders.OrderService.price(OrderService.java:88)
2026-11-22T02:37:07.124Z WARN [Thread-3 (worker)] demo.main - Unknown version v9 - using v1
2026-11-22T02:37:09.000Z INFO [http-exec-3] demo.http - GET / 500 in 35 ms request_id=b
"""


def test_records_are_parsed_with_all_fields() -> None:
    records = logs.parse_log_records(LOG_TEXT.splitlines(), _at(0), _at(59))
    assert records[0] == logs.LogRecord(
        timestamp=_at(5, 999), level="INFO", thread="http-exec-1", logger="demo.http",
        message="GET / 200 in 21 ms request_id=a",
    )
    assert [r.level for r in records] == ["INFO", "ERROR", "WARN", "INFO"]


def test_a_stack_trace_stays_with_its_record() -> None:
    error = logs.parse_log_records(LOG_TEXT.splitlines(), _at(0), _at(59))[1]
    assert error.message == (
        "Unhandled exception processing order 7\n"
        '\tjava.lang.NullPointerException: Cannot invoke "Order.getCustomer()" because "order"'
        " is null\n"
        "\tat com.example.orders.OrderService.price(OrderService.java:88)"
    )


def test_thread_names_may_hold_spaces_and_messages_may_hold_dashes() -> None:
    warn = logs.parse_log_records(LOG_TEXT.splitlines(), _at(0), _at(59))[2]
    assert (warn.thread, warn.logger) == ("Thread-3 (worker)", "demo.main")
    assert warn.message == "Unknown version v9 - using v1"


def test_the_window_includes_since_and_excludes_until() -> None:
    records = logs.parse_log_records(LOG_TEXT.splitlines(), _at(7, 123), _at(9))
    assert [r.timestamp for r in records] == [_at(7, 123), _at(7, 124)]


def test_lines_before_the_first_record_are_skipped() -> None:
    records = logs.parse_log_records(LOG_TEXT.splitlines(), _at(0), _at(59))
    assert all("Orphan" not in r.message for r in records)


def test_a_naive_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="since must be timezone-aware"):
        logs.parse_log_records([], datetime(2026, 11, 22), _at(0))


def test_a_log_file_is_read_with_its_trailing_newlines_removed(tmp_path) -> None:
    path = tmp_path / "node-1.log"
    path.write_text(LOG_TEXT, encoding="utf-8")
    records = logs.read_log_records(path, _at(9), _at(10))
    assert [r.message for r in records] == ["GET / 500 in 35 ms request_id=b"]
