"""Structured JSON logs on stdout, one object per line, via structlog.

A line written while a trace is current (a consumed event's handler, an API call; see
``vigil_common.tracing``) carries its ``trace_id``, so one execution's lines can be found in
every service's logs (issue 7).
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import EventDict, WrappedLogger

from vigil_common import tracing


def configure(service: str, level: str = "INFO", version: str = "") -> None:
    """Send structlog and stdlib logging to stdout as JSON, tagged with service and version."""
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level, force=True)
    # aiokafka is chatty at INFO about group joins; keep its warnings.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service, version=version)


def add_trace_id(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """structlog processor: add ``trace_id`` of the current trace, if any (an explicit
    ``trace_id`` given to the log call wins)."""
    trace = tracing.current()
    if trace is not None:
        event.setdefault("trace_id", trace.trace_id)
    return event


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger named for its module."""
    return structlog.get_logger(module=name)
