"""log-analyzer settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vigil_common.config import CommonSettings, get_int


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    api_port: int  # API_PORT, default 50071: the LogFeedbackService gRPC API
    max_signatures: int  # LOG_MAX_SIGNATURES, default 20000: signatures kept per service

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            common=CommonSettings.from_env(environ, "log-analyzer"),
            api_port=get_int(environ, "API_PORT", 50071),
            max_signatures=get_int(environ, "LOG_MAX_SIGNATURES", 20_000),
        )
