"""The HTTP check task: call a URL from the delegate's network and check the answer.

Each attempt sends the request once; it passes when the status is expected and the body
contains the expected text. A failed attempt (connection error, timeout, wrong status or
body) is retried after ``retry_interval_seconds`` up to ``retries`` times; the task fails
with the last attempt's reason.
"""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from vigil.delegate.v1 import http_pb2

Progress = Callable[[str], None]
_SECRET_HEADER = re.compile(r"(AUTHORIZATION|TOKEN|SECRET|API[-_]?KEY|COOKIE)", re.I)
_BODY_LIMIT = 1 << 20  # bytes read from a response: enough for any body check


class HttpCheckFailed(Exception):
    """Every attempt failed; the message is the last attempt's reason."""


@dataclass(frozen=True)
class _Answer:
    status: int
    body: str


async def run(check: http_pb2.HttpCheck, progress: Progress) -> str:
    """Runs the check; returns a summary such as ``"GET http://x/healthz: 200 (attempt 1/3)"``.

    Raises:
        ValueError: The spec is invalid (URL scheme, retries out of range).
        HttpCheckFailed: No attempt passed.
    """
    if not check.url.startswith(("http://", "https://")):
        raise ValueError(f"url: must start with http:// or https://, got {check.url!r}")
    if check.retries > 20:
        raise ValueError(f"retries: at most 20, got {check.retries}")
    method = (check.method or "GET").upper()
    expected = set(check.expected_status)
    timeout = check.timeout_seconds or 10.0
    attempts = check.retries + 1
    secrets = [v for k, v in check.headers.items() if _SECRET_HEADER.search(k)]
    reason = ""
    for attempt in range(1, attempts + 1):
        try:
            answer = await asyncio.to_thread(_send, check, method, timeout)
            reason = _judge(answer, expected, check.body_contains)
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
            reason = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        line = f"{method} {check.url}: {reason or 'ok'} (attempt {attempt}/{attempts})"
        progress(_mask(line, secrets))
        if not reason:
            return line
        if attempt < attempts:
            await asyncio.sleep(check.retry_interval_seconds or 1.0)
    raise HttpCheckFailed(_mask(f"{method} {check.url}: {reason} after {attempts} attempt(s)",
                                secrets))


def _judge(answer: _Answer, expected: set[int], body_contains: str) -> str:
    """'' when the answer passes, else why not."""
    ok = answer.status in expected if expected else 200 <= answer.status < 300
    if not ok:
        wanted = ", ".join(map(str, sorted(expected))) if expected else "2xx"
        return f"status {answer.status}, expected {wanted}"
    if body_contains and body_contains not in answer.body:
        return f"status {answer.status}, body does not contain {body_contains!r}"
    return ""


def _send(check: http_pb2.HttpCheck, method: str, timeout: float) -> _Answer:
    data = check.body.encode() if check.body else None
    request = urllib.request.Request(check.url, data=data, method=method,
                                     headers=dict(check.headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return _Answer(response.status, response.read(_BODY_LIMIT).decode(errors="replace"))
    except urllib.error.HTTPError as error:  # a non-2xx answer is still an answer
        with error:
            return _Answer(error.code, error.read(_BODY_LIMIT).decode(errors="replace"))


def _mask(line: str, secrets: list[str]) -> str:
    for value in secrets:
        if len(value) >= 4:
            line = line.replace(value, "***")
    return line
