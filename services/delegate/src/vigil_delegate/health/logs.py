"""Reads application log records for log-based verification.

The format is the Java/logback-style layout the demo service writes::

    2026-11-22T02:37:07.123Z ERROR [http-exec-3] demo.orders - Unhandled exception ...
    \tat com.example.orders.OrderService.price(OrderService.java:88)

A line that starts with a timestamp header opens a record; any other line continues the open
one, so stack traces stay with the record that logged them.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_HEADER = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) "
    r"(?P<level>[A-Z]+) \[(?P<thread>[^\]]*)\] (?P<logger>\S+) - (?P<message>.*)$"
)


@dataclass(frozen=True)
class LogRecord:
    """One log record.

    Attributes:
        timestamp: When it was logged, timezone-aware UTC.
        level: Level as written: ``INFO``, ``WARN``, ``ERROR`` ...
        thread: Thread name from between the brackets.
        logger: Dotted logger name.
        message: The text after ``" - "``; continuation lines follow it, joined by ``"\\n"``
            and kept as written (stack-trace lines keep their leading tab).
    """

    timestamp: datetime
    level: str
    thread: str
    logger: str
    message: str


def parse_log_records(lines: Iterable[str], since: datetime, until: datetime) -> list[LogRecord]:
    """Parses log lines into records logged in ``[since, until)``, in file order.

    Lines before the first header (the tail of a record cut off by rotation) are skipped.

    Args:
        lines: Log lines, with or without trailing newlines.
        since: Inclusive lower bound; must be timezone-aware.
        until: Exclusive upper bound; must be timezone-aware.

    Raises:
        ValueError: ``since`` or ``until`` is naive.
    """
    _require_aware(since, "since")
    _require_aware(until, "until")
    records: list[LogRecord] = []
    header: re.Match[str] | None = None
    continuation: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        match = _HEADER.match(line)
        if match is None:
            if header is not None:
                continuation.append(line)
            continue
        if header is not None:
            _append_if_within(records, header, continuation, since, until)
        header, continuation = match, []
    if header is not None:
        _append_if_within(records, header, continuation, since, until)
    return records


def read_log_records(path: Path, since: datetime, until: datetime) -> list[LogRecord]:
    """Reads the records of the log file at ``path`` logged in ``[since, until)``.

    See :func:`parse_log_records`; undecodable bytes are replaced rather than failing the read.
    """
    with path.open(encoding="utf-8", errors="replace") as log_file:
        return parse_log_records(log_file, since, until)


def _append_if_within(
    records: list[LogRecord],
    header: re.Match[str],
    continuation: list[str],
    since: datetime,
    until: datetime,
) -> None:
    timestamp = datetime.strptime(header["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    if not since <= timestamp < until:
        return
    records.append(LogRecord(
        timestamp=timestamp,
        level=header["level"],
        thread=header["thread"],
        logger=header["logger"],
        message="\n".join([header["message"], *continuation]),
    ))


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")
