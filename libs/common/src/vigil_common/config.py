"""Reading configuration from the environment, once, into frozen settings.

Every service declares one frozen ``Settings`` dataclass with ``from_env(environ)``; the
fields shared by all services live in ``CommonSettings`` here. Each field names its variable
and default in a comment; docs/configuration.md lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/vigil"


class ConfigError(ValueError):
    """An environment variable has a value we cannot use; the message names it."""


def get_str(environ: Mapping[str, str], name: str, default: str) -> str:
    """The variable's value, or ``default`` when unset or empty."""
    value = environ.get(name, "")
    return value if value != "" else default


def get_int(environ: Mapping[str, str], name: str, default: int) -> int:
    """The variable as an integer; ConfigError naming it when it is not one."""
    raw = environ.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: must be an integer") from None


def get_float(environ: Mapping[str, str], name: str, default: float) -> float:
    """The variable as a float; ConfigError naming it when it is not one."""
    raw = environ.get(name, "")
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: must be a number") from None


@dataclass(frozen=True)
class KafkaSettings:
    """How a service talks to the Kafka-protocol broker."""

    bootstrap: str  # KAFKA_BOOTSTRAP, default 127.0.0.1:9092
    # KAFKA_FETCH_MAX_WAIT_MS, default 25: the embedded broker answers an idle fetch after
    # about half of this, so it bounds consume latency (RUNTIME.md).
    fetch_max_wait_ms: int
    session_timeout_ms: int  # KAFKA_SESSION_TIMEOUT_MS, default 6000
    heartbeat_interval_ms: int  # KAFKA_HEARTBEAT_INTERVAL_MS, default 600

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> KafkaSettings:
        return cls(
            bootstrap=get_str(environ, "KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            fetch_max_wait_ms=get_int(environ, "KAFKA_FETCH_MAX_WAIT_MS", 25),
            session_timeout_ms=get_int(environ, "KAFKA_SESSION_TIMEOUT_MS", 6000),
            heartbeat_interval_ms=get_int(environ, "KAFKA_HEARTBEAT_INTERVAL_MS", 600),
        )


@dataclass(frozen=True)
class CommonSettings:
    """Settings every service reads."""

    version: str  # VIGIL_VERSION, default "v1": the version label of this process's topics
    database_url: str  # DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/vigil
    kafka: KafkaSettings
    log_level: str  # LOG_LEVEL, default INFO
    metrics_port: int  # METRICS_PORT, default 0 (a free port, logged at start)
    instance_id: str  # INSTANCE_ID, default "<service>-1": names this process in events

    @classmethod
    def from_env(cls, environ: Mapping[str, str], service: str) -> CommonSettings:
        version = get_str(environ, "VIGIL_VERSION", "v1")
        if not version.replace("-", "").replace(".", "").isalnum():
            raise ConfigError(f"VIGIL_VERSION={version!r}: letters, digits, '.' and '-' only")
        return cls(
            version=version,
            database_url=get_str(environ, "DATABASE_URL", DEFAULT_DATABASE_URL),
            kafka=KafkaSettings.from_env(environ),
            log_level=get_str(environ, "LOG_LEVEL", "INFO").upper(),
            metrics_port=get_int(environ, "METRICS_PORT", 0),
            instance_id=get_str(environ, "INSTANCE_ID", f"{service}-1"),
        )
