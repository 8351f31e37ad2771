"""Structured JSON logs on stdout, one object per line, via structlog."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(service: str, level: str = "INFO", version: str = "") -> None:
    """Send structlog and stdlib logging to stdout as JSON, tagged with service and version."""
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=level, force=True)
    # aiokafka is chatty at INFO about group joins; keep its warnings.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
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


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger named for its module."""
    return structlog.get_logger(module=name)
