"""delegate-gateway settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vigil_common.config import CommonSettings, ConfigError, get_float, get_int, get_str


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the gateway's server certificate (docs/delegates-operations.md)."""

    cert: Path  # GATEWAY_TLS_CERT: certificate chain, PEM
    key: Path  # GATEWAY_TLS_KEY: private key, PEM

    def credentials(self) -> tuple[bytes, bytes]:
        """(key, cert) bytes, read now; ConfigError naming the file when unreadable."""
        try:
            return self.key.read_bytes(), self.cert.read_bytes()
        except OSError as exc:
            raise ConfigError(f"GATEWAY_TLS_CERT/GATEWAY_TLS_KEY: {exc}") from exc


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    grpc_port: int  # GATEWAY_PORT, default 50061: where delegates connect
    host: str  # GATEWAY_HOST, default 127.0.0.1: interface to bind (0.0.0.0 for all)
    tls: TlsFiles | None  # GATEWAY_TLS_CERT + GATEWAY_TLS_KEY, default unset: plaintext
    # GATEWAY_TOKEN_RECHECK_SECONDS, default 5: live streams of a revoked token are closed
    # within this (at once when the revocation's NOTIFY arrives).
    token_recheck_seconds: float
    # GATEWAY_PROGRESS_FLUSH_SECONDS, default 1.0: progress lines are batched per task and
    # published at most once per this interval.
    progress_flush_seconds: float
    # GATEWAY_PROGRESS_MAX_LINES, default 100: lines per task per batch; more are counted as
    # dropped (the rate limit).
    progress_max_lines: int
    # GATEWAY_HEARTBEAT_SECONDS, default 5: how often this instance marks itself alive.
    heartbeat_seconds: float
    # GATEWAY_DEAD_AFTER_SECONDS, default 30: an instance of the same version silent this long
    # is taken for dead, and its sessions are closed (DelegateDisconnected).
    dead_after_seconds: float
    # VERIFICATION_DATA_RETENTION_DAYS, default 30: stored verification inputs (for
    # `vigil verify export`) older than this are deleted; 0 keeps them forever.
    verification_data_retention_days: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        cert, key = environ.get("GATEWAY_TLS_CERT", ""), environ.get("GATEWAY_TLS_KEY", "")
        if bool(cert) != bool(key):
            raise ConfigError("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY must be set together")
        if get_float(environ, "VERIFICATION_DATA_RETENTION_DAYS", 30.0) < 0:
            raise ConfigError("VERIFICATION_DATA_RETENTION_DAYS: must be 0 (keep) or more days")
        return cls(common=CommonSettings.from_env(environ, "delegate-gateway"),
                   grpc_port=get_int(environ, "GATEWAY_PORT", 50061),
                   host=get_str(environ, "GATEWAY_HOST", "127.0.0.1"),
                   tls=TlsFiles(Path(cert), Path(key)) if cert else None,
                   token_recheck_seconds=get_float(environ, "GATEWAY_TOKEN_RECHECK_SECONDS", 5.0),
                   progress_flush_seconds=get_float(environ, "GATEWAY_PROGRESS_FLUSH_SECONDS",
                                                    1.0),
                   progress_max_lines=get_int(environ, "GATEWAY_PROGRESS_MAX_LINES", 100),
                   heartbeat_seconds=get_float(environ, "GATEWAY_HEARTBEAT_SECONDS", 5.0),
                   dead_after_seconds=get_float(environ, "GATEWAY_DEAD_AFTER_SECONDS", 30.0),
                   verification_data_retention_days=get_float(
                       environ, "VERIFICATION_DATA_RETENTION_DAYS", 30.0))
