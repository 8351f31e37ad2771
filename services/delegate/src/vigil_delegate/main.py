"""Delegate entry point: wiring only."""

from __future__ import annotations

import os
import sys

from vigil_common import logs
from vigil_common.service import serve_until_sigterm
from vigil_delegate.agent import Agent, RegistrationRefused
from vigil_delegate.config import Settings

log = logs.get(__name__)


async def main() -> None:
    settings = Settings.from_env(os.environ)
    logs.configure(service="delegate", level=settings.log_level, version=settings.version)
    agent = Agent(settings)
    try:
        await serve_until_sigterm(agent.run_forever())
    except RegistrationRefused as exc:
        log.error("gateway refused this delegate", reason=str(exc))
        sys.exit(2)
    finally:
        await agent.close()
