"""task-dispatch settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vigil_common.config import CommonSettings, get_float


@dataclass(frozen=True)
class Timeouts:
    """The lifecycle's clocks (docs/delegates-operations.md, "Lifecycle and timeouts")."""

    # DISPATCH_VALIDITY_SECONDS, default 300: a task no delegate took within this (unless the
    # DispatchTask says otherwise) fails as EXPIRED with the reason.
    validity_seconds: float = 300.0
    # DISPATCH_REQUEUE_AFTER_SECONDS, default 30: a delegate disconnected this long has its
    # assigned and running tasks re-queued (same attempt) for another delegate.
    requeue_after_seconds: float = 30.0
    # DISPATCH_RESULT_GRACE_SECONDS, default 60: an assigned task with no result after its
    # timeout plus this fails as EXPIRED.
    result_grace_seconds: float = 60.0


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    timeouts: Timeouts
    sweep_seconds: float  # DISPATCH_SWEEP_SECONDS, default 1.0: period of the timeout sweeper

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            common=CommonSettings.from_env(environ, "task-dispatch"),
            timeouts=Timeouts(
                validity_seconds=get_float(environ, "DISPATCH_VALIDITY_SECONDS", 300.0),
                requeue_after_seconds=get_float(environ, "DISPATCH_REQUEUE_AFTER_SECONDS", 30.0),
                result_grace_seconds=get_float(environ, "DISPATCH_RESULT_GRACE_SECONDS", 60.0)),
            sweep_seconds=get_float(environ, "DISPATCH_SWEEP_SECONDS", 1.0),
        )
