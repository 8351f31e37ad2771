"""delegate-gateway settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vigil_common.config import CommonSettings, get_int


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    grpc_port: int  # GATEWAY_PORT, default 50061: where delegates connect

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(common=CommonSettings.from_env(environ, "delegate-gateway"),
                   grpc_port=get_int(environ, "GATEWAY_PORT", 50061))
