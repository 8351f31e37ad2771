"""The event envelope: CloudEvents' Kafka binding around a protobuf payload.

Only this module builds or parses envelopes. Headers (binary content mode):
``ce_id``, ``ce_type`` (full protobuf message name, which picks the decoder and carries the
schema version, e.g. ``vigil.events.v1.StepSucceeded``), ``ce_source``, ``ce_time`` (RFC 3339),
``ce_specversion`` ("1.0"), ``content-type`` ("application/protobuf"), and optionally the W3C
``traceparent`` (see ``vigil_common.tracing``; issue 7). The record value is the serialized
message; the record key is chosen by the caller (the execution id for execution traffic, so one
execution stays in order).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import message as pb_message
from google.protobuf import symbol_database

# Importing the generated modules registers every Vigil message with the default pool.
from vigil.delegate.v1 import delegate_pb2  # noqa: F401
from vigil.events.v1 import artifact_pb2, execution_pb2, tasks_pb2, verification_pb2  # noqa: F401
from vigil_common import tracing

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"

Headers = list[tuple[str, bytes]]


class UndecodableEvent(ValueError):
    """A record that is not a valid Vigil event; the message says what is wrong."""


@dataclass(frozen=True)
class Envelope:
    """A decoded event: CloudEvents attributes plus the protobuf payload."""

    id: str
    type: str
    source: str
    time: datetime
    message: pb_message.Message
    # The W3C traceparent the producer sent, normalized; None when absent or malformed.
    traceparent: str | None = None


def encode(
    message: pb_message.Message,
    *,
    source: str,
    event_id: str | None = None,
    time: datetime | None = None,
    traceparent: str | tracing.TraceContext | None = None,
) -> tuple[Headers, bytes]:
    """Wrap ``message`` for Kafka: returns (headers, value).

    ``event_id`` should be deterministic when the same logical event may be produced twice
    (e.g. re-decided after a crash), so consumers can drop the duplicate by ``ce_id``.
    ``traceparent`` (a W3C value or a TraceContext) becomes the ``traceparent`` header.

    Raises:
        ValueError: ``traceparent`` is given but malformed.
    """
    when = (time or datetime.now(UTC)).astimezone(UTC)
    headers: Headers = [
        ("ce_id", (event_id or str(uuid.uuid4())).encode()),
        ("ce_type", message.DESCRIPTOR.full_name.encode()),
        ("ce_source", source.encode()),
        ("ce_time", when.isoformat().replace("+00:00", "Z").encode()),
        ("ce_specversion", SPEC_VERSION.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if traceparent is not None:
        trace = (traceparent if isinstance(traceparent, tracing.TraceContext)
                 else tracing.parse(traceparent))
        if trace is None:
            raise ValueError(f"traceparent: not a W3C traceparent: {traceparent!r}")
        headers.append((tracing.HEADER, tracing.format(trace).encode()))
    return headers, message.SerializeToString()


def decode(headers: Headers | None, value: bytes | None) -> Envelope:
    """Parse a record into an Envelope, or raise UndecodableEvent naming the problem.

    The ``traceparent`` header is optional: absent or malformed, the envelope's traceparent is
    None and the event is decoded all the same (tracing never costs an event).
    """
    found = {k: v for k, v in (headers or [])}
    missing = [h for h in ("ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion")
               if h not in found]
    if missing:
        raise UndecodableEvent(f"missing CloudEvents header(s): {', '.join(missing)}")
    try:
        attrs = {k: found[k].decode() for k in ("ce_id", "ce_type", "ce_source", "ce_time",
                                                "ce_specversion")}
    except UnicodeDecodeError as exc:
        raise UndecodableEvent(f"header is not UTF-8: {exc}") from exc
    if attrs["ce_specversion"] != SPEC_VERSION:
        raise UndecodableEvent(f"unsupported ce_specversion {attrs['ce_specversion']!r}")
    try:
        cls = symbol_database.Default().GetSymbol(attrs["ce_type"])
    except KeyError:
        raise UndecodableEvent(f"unknown ce_type {attrs['ce_type']!r}") from None
    try:
        time = datetime.fromisoformat(attrs["ce_time"].replace("Z", "+00:00"))
    except ValueError:
        raise UndecodableEvent(f"ce_time is not RFC 3339: {attrs['ce_time']!r}") from None
    if value is None:
        raise UndecodableEvent("record has no value")
    message = cls()
    try:
        message.ParseFromString(value)
    except pb_message.DecodeError as exc:
        raise UndecodableEvent(f"payload is not a valid {attrs['ce_type']}: {exc}") from exc
    trace = tracing.parse(found.get(tracing.HEADER))
    return Envelope(attrs["ce_id"], attrs["ce_type"], attrs["ce_source"], time, message,
                    tracing.format(trace) if trace else None)


def type_name(message_class: type[pb_message.Message]) -> str:
    """The ce_type of a message class, e.g. ``vigil.events.v1.TaskSucceeded``."""
    return message_class.DESCRIPTOR.full_name
