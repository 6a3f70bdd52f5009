"""Protobuf descriptors as readable proto-like text, for `greeter call TARGET describe`.

The layout follows grpcurl's `describe`: a line naming the symbol and its kind, then its
definition as a .proto file would have it, with message and enum types fully qualified
(``.greet.HelloRequest``). Printed from the descriptor protos (``CopyToProto``), which carry
type names in that form; options and comments are left out (reflection rarely has comments).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor, descriptor_pb2  # type: ignore[import-untyped]

INDENT = "  "
_Field = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    _Field.TYPE_DOUBLE: "double",
    _Field.TYPE_FLOAT: "float",
    _Field.TYPE_INT64: "int64",
    _Field.TYPE_UINT64: "uint64",
    _Field.TYPE_INT32: "int32",
    _Field.TYPE_FIXED64: "fixed64",
    _Field.TYPE_FIXED32: "fixed32",
    _Field.TYPE_BOOL: "bool",
    _Field.TYPE_STRING: "string",
    _Field.TYPE_BYTES: "bytes",
    _Field.TYPE_UINT32: "uint32",
    _Field.TYPE_SFIXED32: "sfixed32",
    _Field.TYPE_SFIXED64: "sfixed64",
    _Field.TYPE_SINT32: "sint32",
    _Field.TYPE_SINT64: "sint64",
}
"""Scalar field types by their FieldDescriptorProto number (messages, enums and groups are named
by type_name instead)."""


def describe(symbol: Any) -> str:
    """``NAME is a KIND:`` and the definition of a service, method, message, enum or field."""
    kind, lines = _definition(symbol)
    return "\n".join([f"{symbol.full_name} is {kind}:", *lines])


def _definition(symbol: Any) -> tuple[str, list[str]]:
    if isinstance(symbol, descriptor.ServiceDescriptor):
        service = _copy(symbol, descriptor_pb2.ServiceDescriptorProto())
        return "a service", _block(f"service {service.name}", [_rpc(m) for m in service.method])
    if isinstance(symbol, descriptor.MethodDescriptor):
        return "a method", [_rpc(_copy(symbol, descriptor_pb2.MethodDescriptorProto()))]
    if isinstance(symbol, descriptor.Descriptor):
        return "a message", _message(_copy(symbol, descriptor_pb2.DescriptorProto()))
    if isinstance(symbol, descriptor.EnumDescriptor):
        return "an enum", _enum(_copy(symbol, descriptor_pb2.EnumDescriptorProto()))
    if isinstance(symbol, descriptor.FieldDescriptor):
        # A FieldDescriptor cannot copy itself: read the field from its message's proto.
        message = _copy(symbol.containing_type, descriptor_pb2.DescriptorProto())
        field = next(f for f in message.field if f.number == symbol.number)
        return "a field", [_field(field, _map_entries(message))]
    raise TypeError(f"cannot describe {type(symbol).__name__}")


def _copy(symbol: Any, proto: Any) -> Any:
    symbol.CopyToProto(proto)
    return proto


def _block(head: str, body: list[str]) -> list[str]:
    return [f"{head} {{", *(INDENT + line for line in body), "}"]


def _rpc(method: Any) -> str:
    request = f"stream {method.input_type}" if method.client_streaming else method.input_type
    reply = f"stream {method.output_type}" if method.server_streaming else method.output_type
    return f"rpc {method.name} ( {request} ) returns ( {reply} );"


def _message(proto: Any) -> list[str]:
    """Fields in order (a oneof's where its first field stands), then nested enums and messages;
    map entry messages become ``map<K, V>`` fields."""
    maps = _map_entries(proto)
    body: list[str] = []
    oneofs_done: set[int] = set()
    for field in proto.field:
        if field.HasField("oneof_index") and not field.proto3_optional:
            index = field.oneof_index
            if index not in oneofs_done:
                oneofs_done.add(index)
                members = [f for f in proto.field if f.HasField("oneof_index")]
                body += _block(
                    f"oneof {proto.oneof_decl[index].name}",
                    [_field(f, maps) for f in members if f.oneof_index == index],
                )
        else:
            body.append(_field(field, maps))
    for enum in proto.enum_type:
        body += _enum(enum)
    for nested in proto.nested_type:
        if nested.name not in maps:
            body += _message(nested)
    return _block(f"message {proto.name}", body)


def _enum(proto: Any) -> list[str]:
    return _block(f"enum {proto.name}", [f"{v.name} = {v.number};" for v in proto.value])


def _map_entries(message: Any) -> dict[str, Any]:
    """The nested messages protoc made for the map fields of `message`, by name."""
    return {nested.name: nested for nested in message.nested_type if nested.options.map_entry}


def _field(field: Any, maps: dict[str, Any]) -> str:
    entry = maps.get(field.type_name.rpartition(".")[2])
    if entry is not None and field.label == _Field.LABEL_REPEATED:
        key, value = entry.field
        return f"map<{_type(key)}, {_type(value)}> {field.name} = {field.number};"
    label = ""
    if field.label == _Field.LABEL_REPEATED:
        label = "repeated "
    elif field.proto3_optional:
        label = "optional "
    return f"{label}{_type(field)} {field.name} = {field.number};"


def _type(field: Any) -> str:
    return SCALARS.get(field.type) or field.type_name
