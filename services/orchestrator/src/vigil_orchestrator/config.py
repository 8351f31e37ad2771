"""Orchestrator settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vigil_common.config import CommonSettings, get_float, get_int


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    api_port: int  # API_PORT, default 50051: the public gRPC API
    deadline_sweep_seconds: float  # DEADLINE_SWEEP_SECONDS, default 1.0: durable timer period

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            common=CommonSettings.from_env(environ, "orchestrator"),
            api_port=get_int(environ, "API_PORT", 50051),
            deadline_sweep_seconds=get_float(environ, "DEADLINE_SWEEP_SECONDS", 1.0),
        )
