"""docs/asyncapi.yaml is exactly what tools/asyncapi.py makes from the protobuf descriptors, its
references resolve, and its payload schemas accept real messages (issue 7)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import json_format, message, symbol_database, timestamp_pb2

from vigil_common import envelope, topics, tracing

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("vigil_tools_asyncapi",
                                                  ROOT / "tools" / "asyncapi.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


asyncapi = _generator()
DOCUMENT = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
MESSAGES = sorted(DOCUMENT["components"]["messages"])


def test_the_committed_document_is_the_generators_output():
    assert (ROOT / "docs" / "asyncapi.yaml").read_text() == asyncapi.render(), (
        "docs/asyncapi.yaml is stale: run `make asyncapi` and commit the result")


def test_it_describes_exactly_the_public_topics():
    assert DOCUMENT["asyncapi"] == "3.0.0"
    assert sorted(c["address"] for c in DOCUMENT["channels"].values()) == sorted(
        [topics.EXECUTIONS, topics.VERIFICATIONS, topics.ARTIFACTS, topics.VERSIONS])


def test_the_executions_channel_carries_every_lifecycle_event_but_not_its_building_blocks():
    names = set(DOCUMENT["channels"]["executions"]["messages"])
    assert {"vigil.events.v1.ExecutionStarted", "vigil.events.v1.StepFailed",
            "vigil.events.v1.StageFinished", "vigil.events.v1.ExecutionFinished"} <= names
    assert "vigil.events.v1.StepRef" not in names


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for k, v in node.items() if k != "$ref" for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves():
    for ref in _refs(DOCUMENT):
        node: Any = DOCUMENT
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]


def _validator(ref: str) -> jsonschema.Draft202012Validator:
    # The document is the root, so '#/components/schemas/...' references resolve inside it.
    return jsonschema.Draft202012Validator({**DOCUMENT, "$ref": ref})


@pytest.mark.parametrize("name", MESSAGES)
def test_each_payload_schema_names_the_messages_fields_and_accepts_a_real_one(name):
    message = DOCUMENT["components"]["messages"][name]
    cls = symbol_database.Default().GetSymbol(message["x-protobuf-message"])
    schema = DOCUMENT["components"]["schemas"][name]
    assert {k: v["x-protobuf-field"]["number"] for k, v in schema["properties"].items()} == {
        f.name: f.number for f in cls.DESCRIPTOR.fields}

    for sample in (cls(), _filled(cls())):
        as_json = json_format.MessageToDict(sample, preserving_proto_field_name=True,
                                            always_print_fields_with_no_presence=True)
        _validator(message["payload"]["$ref"]).validate(as_json)


_FD = pb_descriptor.FieldDescriptor


def _filled(msg: message.Message, depth: int = 0) -> message.Message:
    """``msg`` with every field set (one item per list and map, the first set field of each
    oneof), so nested, enum, map and 64-bit schemas are all exercised."""
    for field in msg.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None and len(oneof.fields) > 1 and msg.WhichOneof(oneof.name):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            target = getattr(msg, field.name)
            if value_field.message_type is not None:
                _filled(target[_scalar(field.message_type.fields_by_name["key"])], depth + 1)
            else:
                target[_scalar(field.message_type.fields_by_name["key"])] = _scalar(value_field)
        elif field.message_type is not None:
            if field.message_type.full_name == timestamp_pb2.Timestamp.DESCRIPTOR.full_name:
                child = (getattr(msg, field.name).add() if field.is_repeated
                         else getattr(msg, field.name))
                child.FromSeconds(1_700_000_000)
            elif depth < 4:
                child = (getattr(msg, field.name).add() if field.is_repeated
                         else getattr(msg, field.name))
                _filled(child, depth + 1)
        elif field.is_repeated:
            getattr(msg, field.name).append(_scalar(field))
        else:
            setattr(msg, field.name, _scalar(field))
    return msg


def _scalar(field: pb_descriptor.FieldDescriptor) -> Any:
    if field.enum_type is not None:
        return field.enum_type.values[-1].number
    return {_FD.TYPE_STRING: "x", _FD.TYPE_BOOL: True, _FD.TYPE_BYTES: b"x",
            _FD.TYPE_DOUBLE: 1.5, _FD.TYPE_FLOAT: 1.5}.get(field.type, 7)


@pytest.mark.parametrize("name", MESSAGES)
def test_each_messages_headers_schema_accepts_the_envelopes_headers(name):
    cls = symbol_database.Default().GetSymbol(name)
    headers, _ = envelope.encode(cls(), source="test", traceparent=tracing.new_trace())
    _validator(f"#/components/messages/{name}/headers").validate(
        {k: v.decode() for k, v in headers})
    with pytest.raises(jsonschema.ValidationError):
        _validator(f"#/components/messages/{name}/headers").validate(
            {k: (b"vigil.events.v1.Other" if k == "ce_type" else v).decode()
             for k, v in headers})
