"""Generate docs/asyncapi.yaml, the AsyncAPI 3.0 document of Vigil's public topics (issue 7).

Message structure comes from the protobuf descriptors of the generated modules
(``vigil.events.v1.*_pb2``, made by ``make proto``), so the document cannot drift from
``proto/``; tests/unit/test_asyncapi.py fails when the committed file differs from this
script's output. Payload schemas are JSON Schema in the shape of the proto3 JSON mapping (with
the original field names, as ``preserving_proto_field_name`` writes them), with each field's
protobuf number and type in ``x-protobuf-field``; on the wire the record value is the binary
protobuf message.

    .venv/bin/python tools/asyncapi.py            # rewrite docs/asyncapi.yaml
    .venv/bin/python tools/asyncapi.py --check    # exit 1 when docs/asyncapi.yaml is stale
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import descriptor as pb_descriptor

from vigil.events.v1 import artifact_pb2, execution_pb2, verification_pb2, versions_pb2
from vigil_common import envelope, topics, tracing

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
KAFKA_BINDING = "0.5.0"
FD = pb_descriptor.FieldDescriptor


@dataclass(frozen=True)
class Channel:
    """One public topic: its messages, what keys it, and which way it flows for Vigil."""

    name: str
    address: str
    title: str
    description: str
    messages: list[pb_descriptor.Descriptor]
    key: str
    action: str  # AsyncAPI operation action from Vigil's side: send | receive
    operation: str


def _lifecycle_events() -> list[pb_descriptor.Descriptor]:
    # Every top-level message of execution.proto is a lifecycle event on the executions topic,
    # except the building blocks other messages use as field types (StepRef).
    file = execution_pb2.DESCRIPTOR
    used = {f.message_type.full_name for m in file.message_types_by_name.values()
            for f in m.fields if f.message_type is not None}
    return [m for m in file.message_types_by_name.values() if m.full_name not in used]


def channels() -> list[Channel]:
    """The public topics, in the order the document lists them."""
    return [
        Channel(
            "executions", topics.EXECUTIONS, "Execution lifecycle",
            "Lifecycle of pipeline executions, stages and steps, published by the orchestrator "
            "in the transaction that changes the execution. Exactly one ExecutionFinished per "
            "execution.", _lifecycle_events(),
            "execution id (`execution_id` of the payload): one execution's events stay in "
            "order on one partition", "send", "publishExecutionEvents"),
        Channel(
            "verifications", topics.VERIFICATIONS, "Verification verdicts",
            "One VerificationCompleted per analysis (metrics, logs) of a verify step, with its "
            "findings, published by the analyzer that judged it.",
            [verification_pb2.VerificationCompleted.DESCRIPTOR],
            "execution id (`ref.execution_id` of the payload)", "send",
            "publishVerificationVerdicts"),
        Channel(
            "artifacts", topics.ARTIFACTS, "Published artifacts",
            "CI publishes one ArtifactPublished when a build of a service is ready; the "
            "orchestrator starts the pipelines whose artifact trigger names that service.",
            [artifact_pb2.ArtifactPublished.DESCRIPTOR],
            "service (`service` of the payload)", "receive", "receiveArtifacts"),
        Channel(
            "versions", topics.VERSIONS, "Primary version of Vigil",
            "One PrimaryVersionChanged whenever the upgrade procedure switches or rolls back the "
            "version that takes new API calls and executions (docs/upgrades.md), published in "
            "the transaction that changes the primary record.",
            [versions_pb2.PrimaryVersionChanged.DESCRIPTOR],
            "the literal `primary`: every change on one partition, in order", "send",
            "publishPrimaryVersionChanges"),
    ]


_GUARANTEES = """\
Vigil's public, version-independent topics: a contract for other teams. What a consumer can
rely on (details in docs/consuming-events.md):

- Envelope: CloudEvents 1.0, Kafka protocol binding, binary content mode. The record value is
  the binary protobuf message named by the `ce_type` header; `content-type` is
  `application/protobuf`. Decode with `vigil_common.envelope.decode` or any protobuf runtime.
- Ordering: per record key. Events of one execution share a key (the execution id) and a
  partition, so they arrive in the order they happened; there is no order across keys.
- Delivery: at least once. A redelivered event has the same `ce_id`; drop duplicates by it.
- Tracing: events may carry a W3C `traceparent` header; one trace follows an execution across
  services. It is optional and may be absent.
- Schema evolution: fields are only added, with new numbers; removed fields are `reserved`.
  A breaking change is a new message (`vigil.events.v2.*`) published beside the v1 one, never
  a change to v1. `buf breaking` enforces this against the last release (git tag proto-v1).
- Consumers ignore event types they do not know: new event types may appear on a topic.
"""


def document() -> dict[str, Any]:
    """The whole AsyncAPI document as plain data, in a stable order."""
    chans = channels()
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for channel in chans:
        for message in channel.messages:
            _collect_message(message, schemas)
            messages[_key(message)] = _message(message, channel)
    schemas["CloudEventsHeaders"] = _headers_schema()
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Vigil public events",
            "version": "1.0.0",
            "description": _GUARANTEES,
        },
        "defaultContentType": envelope.CONTENT_TYPE,
        "channels": {c.name: _channel(c) for c in chans},
        "operations": {c.operation: _operation(c) for c in chans},
        "components": {
            "messages": messages,
            "schemas": dict(sorted(schemas.items())),
        },
    }


def _channel(channel: Channel) -> dict[str, Any]:
    return {
        "address": channel.address,
        "title": channel.title,
        "description": _wrap(channel.description) + "\n\n" + _wrap(
            f"Record key: {channel.key}."),
        "messages": {_key(m): {"$ref": f"#/components/messages/{_key(m)}"}
                     for m in channel.messages},
        "bindings": {"kafka": {"topic": channel.address, "bindingVersion": KAFKA_BINDING}},
    }


def _operation(channel: Channel) -> dict[str, Any]:
    who = "Vigil publishes" if channel.action == "send" else "Vigil consumes"
    return {
        "action": channel.action,
        "title": f"{who} {channel.address}",
        "channel": {"$ref": f"#/channels/{channel.name}"},
        "messages": [{"$ref": f"#/channels/{channel.name}/messages/{_key(m)}"}
                     for m in channel.messages],
    }


def _key(message: pb_descriptor.Descriptor) -> str:
    # Full names as component keys, so a v2 message can sit beside its v1 namesake.
    return message.full_name


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=96)


def _message(message: pb_descriptor.Descriptor, channel: Channel) -> dict[str, Any]:
    return {
        "name": message.full_name,
        "title": message.name,
        "summary": f"{message.full_name} on {channel.address}",
        "contentType": envelope.CONTENT_TYPE,
        "headers": {"allOf": [
            {"$ref": "#/components/schemas/CloudEventsHeaders"},
            {"type": "object", "properties": {"ce_type": {"const": message.full_name}}},
        ]},
        "payload": {"$ref": f"#/components/schemas/{message.full_name}"},
        "bindings": {"kafka": {
            "key": {"type": "string", "description": channel.key},
            "bindingVersion": KAFKA_BINDING,
        }},
        "x-protobuf-message": message.full_name,
        "x-protobuf-file": f"proto/{message.file.name}",
    }


def _headers_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "CloudEvents Kafka binding (binary mode) headers, UTF-8 values; built "
                       "and parsed only by vigil_common.envelope.",
        "required": ["ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion",
                     "content-type"],
        "properties": {
            "ce_id": {"type": "string", "description": "Unique id of the event, the same on "
                      "every redelivery: deduplicate by it."},
            "ce_type": {"type": "string", "description": "Full protobuf message name; picks "
                        "the decoder and carries the schema version.",
                        "examples": ["vigil.events.v1.StepSucceeded"]},
            "ce_source": {"type": "string", "description": "Producing service.",
                          "examples": ["orchestrator"]},
            "ce_time": {"type": "string", "format": "date-time",
                        "description": "RFC 3339 UTC time of the state change."},
            "ce_specversion": {"type": "string", "const": envelope.SPEC_VERSION},
            "content-type": {"type": "string", "const": envelope.CONTENT_TYPE},
            tracing.HEADER: {
                "type": "string",
                "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C trace context (optional); the trace id is shared by every "
                               "event of one execution's work.",
                "examples": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
            },
        },
    }


_SCALARS: dict[int, dict[str, Any]] = {
    FD.TYPE_STRING: {"type": "string"},
    FD.TYPE_BOOL: {"type": "boolean"},
    FD.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FD.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FD.TYPE_FLOAT: {"type": "number", "format": "float"},
    FD.TYPE_INT32: {"type": "integer", "format": "int32"},
    FD.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FD.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FD.TYPE_UINT32: {"type": "integer", "format": "uint32"},
    FD.TYPE_FIXED32: {"type": "integer", "format": "uint32"},
    # The proto3 JSON mapping writes 64-bit integers as strings.
    FD.TYPE_INT64: {"type": "string", "format": "int64"},
    FD.TYPE_SINT64: {"type": "string", "format": "int64"},
    FD.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FD.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FD.TYPE_FIXED64: {"type": "string", "format": "uint64"},
}
_PROTO_TYPE_NAMES = {v: k.removeprefix("TYPE_").lower()
                     for k, v in vars(FD).items() if k.startswith("TYPE_")}
_WELL_KNOWN = {"google.protobuf.Timestamp": {"type": "string", "format": "date-time"}}


def _collect_message(message: pb_descriptor.Descriptor, schemas: dict[str, Any]) -> None:
    if message.full_name in schemas or message.full_name in _WELL_KNOWN:
        return
    schemas[message.full_name] = {}  # placeholder: stops recursion on cyclic types
    properties = {}
    for field in sorted(message.fields, key=lambda f: f.number):
        properties[field.name] = _field(field, schemas)
    schema: dict[str, Any] = {
        "type": "object",
        "title": message.name,
        "x-protobuf-message": message.full_name,
        "properties": properties,
    }
    oneofs = [o for o in message.oneofs if not _synthetic(o)]
    if oneofs:
        schema["x-protobuf-oneofs"] = {o.name: [f.name for f in o.fields] for o in oneofs}
    schemas[message.full_name] = schema


def _field(field: pb_descriptor.FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    if _is_map(field):
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name[
            "value"]
        schema: dict[str, Any] = {"type": "object",
                                  "additionalProperties": _single(value, schemas)}
        proto_type = f"map<{_type_name(key)}, {_type_name(value)}>"
    elif _is_repeated(field):
        schema = {"type": "array", "items": _single(field, schemas)}
        proto_type = f"repeated {_type_name(field)}"
    else:
        schema = dict(_single(field, schemas))
        proto_type = _type_name(field)
        if field.containing_oneof is not None and _synthetic(field.containing_oneof):
            proto_type = f"optional {proto_type}"
    if "$ref" in schema:  # siblings of $ref are ignored by JSON Schema drafts before 2019-09
        schema = {"allOf": [schema]}
    schema["x-protobuf-field"] = {"number": field.number, "type": proto_type}
    return schema


def _single(field: pb_descriptor.FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    if field.message_type is not None:
        if field.message_type.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[field.message_type.full_name])
        _collect_message(field.message_type, schemas)
        return {"$ref": f"#/components/schemas/{field.message_type.full_name}"}
    if field.enum_type is not None:
        enum = field.enum_type
        schemas.setdefault(enum.full_name, {
            "type": "string",
            "title": enum.name,
            "x-protobuf-enum": enum.full_name,
            "enum": [v.name for v in enum.values],
            "x-protobuf-enum-numbers": {v.name: v.number for v in enum.values},
        })
        return {"$ref": f"#/components/schemas/{enum.full_name}"}
    return dict(_SCALARS[field.type])


def _type_name(field: pb_descriptor.FieldDescriptor) -> str:
    if field.message_type is not None:
        return field.message_type.full_name
    if field.enum_type is not None:
        return field.enum_type.full_name
    return _PROTO_TYPE_NAMES[field.type]


def _is_map(field: pb_descriptor.FieldDescriptor) -> bool:
    return (field.message_type is not None and field.message_type.GetOptions().map_entry)


def _is_repeated(field: pb_descriptor.FieldDescriptor) -> bool:
    return field.is_repeated


def _synthetic(oneof: pb_descriptor.OneofDescriptor) -> bool:
    # proto3 `optional` fields live in a synthetic one-field oneof named _<field>.
    return len(oneof.fields) == 1 and oneof.name == f"_{oneof.fields[0].name}"


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # no &id001 anchors: every node spelled out
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

_HEADER = """\
# GENERATED by tools/asyncapi.py from the protobuf descriptors (vigil.events.v1.*_pb2) - do not
# edit. Regenerate: `make asyncapi` (= .venv/bin/python tools/asyncapi.py) after `make proto`.
# tests/unit/test_asyncapi.py fails when this file and the generator's output differ.
"""


def render() -> str:
    """The document as YAML text, exactly as committed in docs/asyncapi.yaml."""
    return _HEADER + yaml.dump(document(), Dumper=_Dumper, sort_keys=False,
                               default_flow_style=False, allow_unicode=True, width=100)


def main(argv: list[str] | None = None) -> int:
    """Write docs/asyncapi.yaml, or with --check report whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the committed document differs from the output")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run `make asyncapi`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
