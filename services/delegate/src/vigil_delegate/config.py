"""Delegate settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vigil_common.config import ConfigError, get_float, get_int, get_str


@dataclass(frozen=True)
class Settings:
    gateway: str  # DELEGATE_GATEWAY, default 127.0.0.1:50061: gateway address (host:port)
    account_id: str  # DELEGATE_ACCOUNT, required: the account this delegate serves
    token: str  # DELEGATE_TOKEN, required: the account's delegate token
    name: str  # DELEGATE_NAME, default "delegate-1": unique within the account
    version: str  # VIGIL_VERSION, default "v1": sent as the vigil-version header
    capabilities: tuple[str, ...]  # DELEGATE_CAPABILITIES, default "local-process,shell"
    workdir: Path  # DELEGATE_WORKDIR, default ./var/delegate
    max_tasks: int  # DELEGATE_MAX_TASKS, default 4: tasks run at once
    heartbeat_seconds: float  # DELEGATE_HEARTBEAT_SECONDS, default 10
    log_level: str  # LOG_LEVEL, default INFO

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        account, token = environ.get("DELEGATE_ACCOUNT", ""), environ.get("DELEGATE_TOKEN", "")
        if not account or not token:
            raise ConfigError("DELEGATE_ACCOUNT and DELEGATE_TOKEN must be set")
        return cls(
            gateway=get_str(environ, "DELEGATE_GATEWAY", "127.0.0.1:50061"),
            account_id=account, token=token,
            name=get_str(environ, "DELEGATE_NAME", "delegate-1"),
            version=get_str(environ, "VIGIL_VERSION", "v1"),
            capabilities=tuple(c.strip() for c in get_str(
                environ, "DELEGATE_CAPABILITIES", "local-process,shell").split(",") if c.strip()),
            workdir=Path(get_str(environ, "DELEGATE_WORKDIR", "var/delegate")).resolve(),
            max_tasks=get_int(environ, "DELEGATE_MAX_TASKS", 4),
            heartbeat_seconds=get_float(environ, "DELEGATE_HEARTBEAT_SECONDS", 10.0),
            log_level=get_str(environ, "LOG_LEVEL", "INFO").upper(),
        )
