"""The demo service's log file format, a Java/logback-style layout.

One record::

    2026-11-22T02:37:07.123Z ERROR [http-exec-3] demo.orders - Unhandled exception ...
    \tjava.lang.NullPointerException: Cannot invoke "Order.getCustomer()" because ...
    \tat com.example.orders.OrderService.price(OrderService.java:88)

The timestamp is UTC with milliseconds. Every continuation line of a multi-line record starts
with a tab, so a reader can tell where a record ends without knowing its content.
"""

import logging
from datetime import UTC, datetime
from pathlib import Path

LOGGER_ROOT = "demo"
"""Every logger of the service lives under this name (``demo.http``, ``demo.cache`` ...)."""

_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def format_line(when: datetime, level: str, thread: str, logger: str, message: str) -> str:
    """Formats one record, without a trailing newline.

    Args:
        when: Timezone-aware time of the record; written in UTC with milliseconds.
        level: Level name as written (``INFO``, ``WARN``, ``ERROR``).
        thread: Name of the thread that logged.
        logger: Dotted logger name.
        message: Text; lines after the first become tab-indented continuation lines (a tab is
            added to those that do not already start with one).
    """
    utc = when.astimezone(UTC)
    stamp = f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"
    first, *rest = message.split("\n")
    lines = [f"{stamp} {level} [{thread}] {logger} - {first}"]
    lines.extend(line if line.startswith("\t") else f"\t{line}" for line in rest)
    return "\n".join(lines)


class DemoFormatter(logging.Formatter):
    """A :class:`logging.Formatter` writing :func:`format_line` records."""

    def format(self, record: logging.LogRecord) -> str:
        """Formats ``record``; Python's WARNING and CRITICAL are written WARN and FATAL."""
        return format_line(
            datetime.fromtimestamp(record.created, UTC),
            _LEVEL_NAMES.get(record.levelname, record.levelname),
            record.threadName or "unknown",
            record.name,
            record.getMessage(),
        )


def configure(log_file: Path) -> logging.Handler:
    """Sends every ``demo.*`` logger at INFO and above to ``log_file``, appending.

    Returns:
        The installed handler; the caller closes it on shutdown.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    handler.setFormatter(DemoFormatter())
    root = logging.getLogger(LOGGER_ROOT)
    root.setLevel(logging.INFO)
    root.propagate = False
    root.addHandler(handler)
    return handler
