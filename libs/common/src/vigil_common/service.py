"""Running a service: its tasks until SIGTERM/SIGINT, then a clean shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

from vigil_common import logs

log = logs.get(__name__)


async def serve_until_sigterm(*tasks: Coroutine[Any, Any, Any]) -> None:
    """Run ``tasks`` until a signal arrives or one of them ends.

    A task ending (or failing) on its own is a fault: the others are cancelled and the
    failure propagates, so the process exits non-zero and its supervisor notices.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = [asyncio.ensure_future(t) for t in tasks]
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([*running, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            log.info("shutting down on signal")
            return
        for t in done:
            if t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        raise RuntimeError("a service task ended unexpectedly")
    finally:
        for t in [*running, stopper]:
            t.cancel()
        await asyncio.gather(*running, stopper, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
