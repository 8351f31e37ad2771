"""W3C trace context (vigil_common.tracing) and how the envelope, the consume loop, the outbox
and the logs carry it (issue 7). No network: the consume loop and the outbox get fakes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from vigil.events.v1 import execution_pb2
from vigil_common import envelope, kafka, logs, outbox, tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


def _started() -> execution_pb2.StepStarted:
    return execution_pb2.StepStarted(execution_id="ex-1",
                                     step=execution_pb2.StepRef(path="steps[0]"))


def _record(headers: list[tuple[str, bytes]], value: bytes) -> ConsumerRecord:
    return ConsumerRecord(topic="t", partition=0, offset=0, timestamp=0, timestamp_type=0,
                          key=b"ex-1", value=value, checksum=None, serialized_key_size=4,
                          serialized_value_size=len(value), headers=headers)


# --- parse / format ------------------------------------------------------------------------

def test_the_spec_example_parses_into_its_fields_and_formats_back_unchanged():
    trace = tracing.parse(TRACEPARENT)
    assert trace == tracing.TraceContext(TRACE_ID, SPAN_ID, "01")
    assert tracing.format(trace) == str(trace) == TRACEPARENT


def test_bytes_and_surrounding_whitespace_are_accepted():
    assert tracing.parse(f" {TRACEPARENT} ".encode()) == tracing.parse(TRACEPARENT)


@pytest.mark.parametrize("value", [
    None,
    "",
    "garbage",
    f"00-{TRACE_ID}-{SPAN_ID}",                          # no flags
    f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",               # upper case is invalid
    f"00-{'0' * 32}-{SPAN_ID}-01",                       # all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",                      # all-zero span id
    f"ff-{TRACE_ID}-{SPAN_ID}-01",                       # version ff is forbidden
    f"00-{TRACE_ID}-{SPAN_ID}-01-extra",                 # version 00 has exactly four fields
    f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",                  # short trace id
    f"00-{TRACE_ID}-{SPAN_ID}-1",                        # short flags
    f"01-{TRACE_ID}-{SPAN_ID}-01x",                      # future version, bad separator
    b"\xff\xfe",                                         # not ASCII
])
def test_a_malformed_traceparent_parses_to_none_without_raising(value):
    assert tracing.parse(value) is None


def test_a_future_version_is_read_by_its_first_four_fields():
    trace = tracing.parse(f"01-{TRACE_ID}-{SPAN_ID}-01-something-new")
    assert trace == tracing.TraceContext(TRACE_ID, SPAN_ID, "01")
    assert tracing.format(trace) == TRACEPARENT  # we speak version 00


@pytest.mark.parametrize(("trace_id", "span_id", "flags"), [
    ("xyz", SPAN_ID, "01"), (TRACE_ID, "0" * 16, "01"), (TRACE_ID, SPAN_ID, "1"),
])
def test_an_invalid_trace_context_cannot_be_built(trace_id, span_id, flags):
    with pytest.raises(ValueError):
        tracing.TraceContext(trace_id, span_id, flags)


# --- new trace, child span, current --------------------------------------------------------

def test_new_traces_are_valid_sampled_and_distinct():
    traces = [tracing.new_trace() for _ in range(50)]
    assert all(tracing.parse(str(t)) == t and t.flags == "01" for t in traces)
    assert len({t.trace_id for t in traces}) == 50


def test_a_child_span_keeps_trace_id_and_flags_with_a_new_span_id():
    parent = tracing.TraceContext(TRACE_ID, SPAN_ID, "00")
    child = parent.child()
    assert (child.trace_id, child.flags) == (TRACE_ID, "00")
    assert child.span_id != SPAN_ID and tracing.parse(str(child)) == child


def test_use_sets_the_current_trace_inside_the_block_and_restores_the_outer_one():
    outer, inner = tracing.new_trace(), tracing.new_trace()
    assert tracing.current() is None
    with tracing.use(outer):
        with tracing.use(inner):
            assert tracing.current() == inner
        assert tracing.current() == outer
    assert tracing.current() is None


async def test_concurrent_tasks_each_see_their_own_trace():
    async def work(trace: tracing.TraceContext) -> tracing.TraceContext | None:
        with tracing.use(trace):
            await asyncio.sleep(0.001)
            return tracing.current()
    traces = [tracing.new_trace() for _ in range(5)]
    assert await asyncio.gather(*(work(t) for t in traces)) == traces


# --- envelope ------------------------------------------------------------------------------

def test_encode_adds_the_traceparent_header_and_decode_returns_it():
    headers, value = envelope.encode(_started(), source="test", traceparent=TRACEPARENT)
    assert (tracing.HEADER, TRACEPARENT.encode()) in headers
    assert envelope.decode(headers, value).traceparent == TRACEPARENT


def test_encode_takes_a_trace_context_as_well_as_a_string():
    trace = tracing.new_trace()
    headers, value = envelope.encode(_started(), source="test", traceparent=trace)
    assert envelope.decode(headers, value).traceparent == str(trace)


def test_encode_without_a_traceparent_adds_no_header_and_decode_tolerates_its_absence():
    headers, value = envelope.encode(_started(), source="test")
    assert tracing.HEADER not in dict(headers)
    event = envelope.decode(headers, value)
    assert event.traceparent is None and event.message == _started()


def test_decode_ignores_a_malformed_traceparent_and_still_decodes_the_event():
    headers, value = envelope.encode(_started(), source="test", event_id="e-1")
    event = envelope.decode(headers + [(tracing.HEADER, b"00-not-a-trace\xff")], value)
    assert (event.id, event.traceparent, event.message) == ("e-1", None, _started())


def test_encode_refuses_a_malformed_traceparent():
    with pytest.raises(ValueError, match="traceparent"):
        envelope.encode(_started(), source="test", traceparent="00-nope")


# --- consume loop, outbox, logs ------------------------------------------------------------

async def _seen_by_handler(headers: list[tuple[str, bytes]], value: bytes):
    seen: list[tracing.TraceContext | None] = []

    async def handler(_event: envelope.Envelope) -> None:
        seen.append(tracing.current())

    await kafka._handle(_record(headers, value), handler, prod=None)  # type: ignore[arg-type]
    assert tracing.current() is None  # restored once the handler returned
    return seen[0]


async def test_the_consume_loop_runs_the_handler_inside_the_records_trace():
    headers, value = envelope.encode(_started(), source="test", traceparent=TRACEPARENT)
    assert await _seen_by_handler(headers, value) == tracing.parse(TRACEPARENT)


async def test_the_consume_loop_starts_a_new_trace_for_a_record_without_one():
    headers, value = envelope.encode(_started(), source="test")
    trace = await _seen_by_handler(headers, value)
    assert trace is not None and trace.trace_id != TRACE_ID


class _FakeConnection:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    async def execute(self, query: str, *args: Any) -> None:
        if query.startswith("INSERT INTO outbox"):
            self.rows.append(args)

    async def executemany(self, query: str, rows: list[tuple[Any, ...]]) -> None:
        if query.startswith("INSERT INTO outbox"):
            self.rows.extend(rows)

    def traceparent(self, n: int) -> str:
        _producer, _topic, _key, names, values, _value = self.rows[n]
        return dict(zip(names, values, strict=True))[tracing.HEADER]


async def test_outbox_add_stamps_a_child_span_of_the_current_trace():
    conn = _FakeConnection()
    with tracing.use(tracing.parse(TRACEPARENT)):
        for _ in range(2):
            await outbox.add(conn, "test", "t", "ex-1", _started())  # type: ignore[arg-type]
    stamped = [tracing.parse(conn.traceparent(n)) for n in range(2)]
    assert [t.trace_id for t in stamped] == [TRACE_ID, TRACE_ID]
    assert len({SPAN_ID, stamped[0].span_id, stamped[1].span_id}) == 3


async def test_outbox_add_outside_any_trace_starts_a_new_one_per_event():
    conn = _FakeConnection()
    for _ in range(2):
        await outbox.add(conn, "test", "t", "ex-1", _started())  # type: ignore[arg-type]
    stamped = [tracing.parse(conn.traceparent(n)) for n in range(2)]
    assert all(stamped) and stamped[0].trace_id != stamped[1].trace_id


def test_log_lines_written_inside_a_trace_carry_its_trace_id():
    with tracing.use(tracing.parse(TRACEPARENT)):
        inside = logs.add_trace_id(None, "info", {"event": "x"})
        explicit = logs.add_trace_id(None, "info", {"event": "x", "trace_id": "given"})
    outside = logs.add_trace_id(None, "info", {"event": "x"})
    assert inside == {"event": "x", "trace_id": TRACE_ID}
    assert explicit["trace_id"] == "given"
    assert "trace_id" not in outside
