"""Health data the delegate collects for deployment verification: metrics and log records."""

from vigil_delegate.health.logs import LogRecord, parse_log_records, read_log_records
from vigil_delegate.health.metrics import (
    ERROR_RATE_PCT,
    METRIC_NAMES,
    REQUESTS_PER_INTERVAL,
    RESPONSE_TIME_MS,
    Totals,
    build_series,
    collect_metrics,
    interval_values,
    parse_totals,
)

__all__ = [
    "ERROR_RATE_PCT",
    "METRIC_NAMES",
    "REQUESTS_PER_INTERVAL",
    "RESPONSE_TIME_MS",
    "LogRecord",
    "Totals",
    "build_series",
    "collect_metrics",
    "interval_values",
    "parse_log_records",
    "parse_totals",
    "read_log_records",
]
