"""metric-analyzer settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vigil_common.config import CommonSettings


@dataclass(frozen=True)
class Settings:
    common: CommonSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(common=CommonSettings.from_env(environ, "metric-analyzer"))
