"""W3C trace context (https://www.w3.org/TR/trace-context/): one trace follows an execution
across services (issue 7).

Events carry the ``traceparent`` header (``00-<32 hex trace id>-<16 hex span id>-<2 hex
flags>``). A contextvar holds the trace of the work in progress: the consume loop sets it from
the incoming record while the handler runs, the API sets it for the call it serves, and
``outbox.add`` stamps a child span of it (or a new trace, when there is none) on every event it
stores. Only the context is propagated; no spans are recorded or exported.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

HEADER = "traceparent"
VERSION = "00"
SAMPLED = "01"

# version-traceid-parentid-flags, lower-case hex (the spec forbids upper case).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_HEX = {32: re.compile(r"[0-9a-f]{32}"), 16: re.compile(r"[0-9a-f]{16}"),
        2: re.compile(r"[0-9a-f]{2}")}


@dataclass(frozen=True)
class TraceContext:
    """One position in a trace: the trace it belongs to and the span that is the parent of
    whatever happens next.

    Attributes:
        trace_id: 32 lower-case hex digits, not all zero; the same across every service.
        span_id: 16 lower-case hex digits, not all zero (the spec's ``parent-id``).
        flags: 2 lower-case hex digits; ``01`` is "sampled".

    Raises:
        ValueError: a field is not valid by the spec.
    """

    trace_id: str
    span_id: str
    flags: str = SAMPLED

    def __post_init__(self) -> None:
        for name, value, size in (("trace_id", self.trace_id, 32),
                                  ("span_id", self.span_id, 16), ("flags", self.flags, 2)):
            if not isinstance(value, str) or not _HEX[size].fullmatch(value):
                raise ValueError(f"{name}: must be {size} lower-case hex digits, got {value!r}")
            if size > 2 and not value.strip("0"):
                raise ValueError(f"{name}: must not be all zeros")

    def child(self) -> TraceContext:
        """A new span in the same trace, keeping the flags (e.g. for each event sent)."""
        return TraceContext(self.trace_id, _random_hex(8), self.flags)

    def __str__(self) -> str:
        return format(self)


def new_trace() -> TraceContext:
    """The root of a new trace, sampled."""
    return TraceContext(_random_hex(16), _random_hex(8), SAMPLED)


def parse(value: str | bytes | None) -> TraceContext | None:
    """Parse a ``traceparent`` value; None when absent or malformed (never raises).

    Follows the spec's rules: version ``ff`` and all-zero ids are invalid; a version above
    ``00`` is read by its first four fields, which later versions keep.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str):
        return None
    value = value.strip()
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    rest = value[match.end():]
    if version == "ff" or (rest and (version == VERSION or not rest.startswith("-"))):
        return None
    try:
        return TraceContext(trace_id, span_id, flags)
    except ValueError:  # an all-zero id
        return None


def format(context: TraceContext) -> str:  # noqa: A001 - the spec's verb, module-qualified
    """The ``traceparent`` value of ``context`` (version 00)."""
    return f"{VERSION}-{context.trace_id}-{context.span_id}-{context.flags}"


_current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "vigil_trace", default=None)


def current() -> TraceContext | None:
    """The trace of the work in progress, or None outside any."""
    return _current.get()


@contextlib.contextmanager
def use(context: TraceContext | None) -> Iterator[TraceContext | None]:
    """Make ``context`` the current trace inside the ``with`` block, then restore the previous
    one. Log lines written inside carry its ``trace_id`` (see ``logs.configure``)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def _random_hex(size: int) -> str:
    # An all-zero id is invalid; with 64 or 128 random bits it never comes, but cheap to rule out.
    value = "0"
    while not value.strip("0"):
        value = secrets.token_hex(size)
    return value
