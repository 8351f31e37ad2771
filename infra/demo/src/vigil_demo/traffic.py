"""Self-generated load: the service calls its own ``GET /`` so metrics and logs accumulate."""

import logging
import threading
import time
import urllib.error
import urllib.request

_log = logging.getLogger("demo.traffic")


class TrafficGenerator(threading.Thread):
    """Sends ``rps`` requests per second to ``url`` until ``stop`` is set.

    Requests are sent one after another on a fixed schedule; when a slow response makes it fall
    behind, it skips ahead instead of bursting, so the rate never exceeds ``rps``. Error statuses
    are expected (the ``v2`` bug answers 500) and are not logged here.
    """

    def __init__(self, url: str, rps: float, stop: threading.Event) -> None:
        super().__init__(name="traffic", daemon=True)
        self._url = url
        self._period = 1.0 / rps if rps > 0 else None
        self._stop_event = stop

    def run(self) -> None:
        """Runs the request loop; returns once ``stop`` is set (or at once when rps is 0)."""
        if self._period is None:
            return
        next_at = time.monotonic()
        while not self._stop_event.wait(max(0.0, next_at - time.monotonic())):
            self._send_one()
            next_at = max(next_at + self._period, time.monotonic())

    def _send_one(self) -> None:
        try:
            with urllib.request.urlopen(self._url, timeout=5) as response:
                response.read()
        except urllib.error.HTTPError as error:
            error.read()
            error.close()
        except OSError as error:
            if not self._stop_event.is_set():
                _log.warning("Self-traffic request failed: %s", error)
