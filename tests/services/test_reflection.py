"""Server reflection on the CLI servers, read by grpcio's reflection client.

`greeter serve` and `greeter interop-server` both serve grpc.reflection.v1 and v1alpha, fed by
the descriptors betterproto2 embeds in gen/ (google_protobuf_descriptors) and, for Health,
protobuf's default pool. grpcio-reflection's ProtoReflectionDescriptorDatabase speaks v1alpha;
v1 is exercised with raw grpcio calls and grpclib's v1 messages.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpclib.reflection.v1 import reflection_pb2 as v1

from tests.support.peers import ServerProcess, spawn_interop_server

TIMEOUT = 10
OPTIONS = [("grpc.enable_http_proxy", 0)]


@pytest.fixture(scope="module")
def interop_target() -> Iterator[str]:
    process: ServerProcess
    with spawn_interop_server() as process:
        yield process.target
    assert process.proc.returncode == 0
    assert not [line for line in process.lines() if "Traceback" in line]


@pytest.fixture
def greeter_db(greeter_target: str) -> Iterator[ProtoReflectionDescriptorDatabase]:
    with grpc.insecure_channel(greeter_target, options=OPTIONS) as channel:
        yield ProtoReflectionDescriptorDatabase(channel)


@pytest.fixture
def interop_db(interop_target: str) -> Iterator[ProtoReflectionDescriptorDatabase]:
    with grpc.insecure_channel(interop_target, options=OPTIONS) as channel:
        yield ProtoReflectionDescriptorDatabase(channel)


# grpclib's ServerReflection lists the application's services, not itself.
def test_serve_lists_its_services(greeter_db: ProtoReflectionDescriptorDatabase) -> None:
    assert sorted(greeter_db.get_services()) == sorted(["greet.Greeter", "grpc.health.v1.Health"])


def test_interop_server_lists_its_services(interop_db: ProtoReflectionDescriptorDatabase) -> None:
    assert sorted(interop_db.get_services()) == sorted(
        ["grpc.testing.TestService", "grpc.health.v1.Health"]
    )


def test_greeter_described_by_symbol(greeter_db: ProtoReflectionDescriptorDatabase) -> None:
    pool = DescriptorPool(greeter_db)
    service = pool.FindServiceByName("greet.Greeter")
    assert [m.name for m in service.methods] == [
        "SayHello",
        "LotsOfReplies",
        "LotsOfGreetings",
        "BidiHello",
    ]
    say_hello = service.methods_by_name["SayHello"]
    assert say_hello.input_type.full_name == "greet.HelloRequest"
    assert [f.name for f in say_hello.input_type.fields] == ["name", "count"]
    assert service.methods_by_name["BidiHello"].client_streaming
    health = pool.FindServiceByName("grpc.health.v1.Health")
    assert health.file.name == "grpclib/health/v1/health.proto"  # grpclib's copy of it
    assert [m.name for m in health.methods] == ["Check", "Watch"]


def test_test_service_with_its_dependencies(interop_db: ProtoReflectionDescriptorDatabase) -> None:
    pool = DescriptorPool(interop_db)
    service = pool.FindServiceByName("grpc.testing.TestService")
    assert service.file.name == "grpc/testing/test.proto"
    assert "UnimplementedCall" in service.methods_by_name
    unary = service.methods_by_name["UnaryCall"]
    assert unary.input_type.file.name == "grpc/testing/messages.proto"
    assert service.methods_by_name["EmptyCall"].input_type.full_name == "grpc.testing.Empty"


def test_file_by_name(interop_db: ProtoReflectionDescriptorDatabase) -> None:
    proto = interop_db.FindFileByName("grpc/testing/messages.proto")
    assert proto.package == "grpc.testing"
    assert "SimpleRequest" in [m.name for m in proto.message_type]
    with pytest.raises(KeyError):
        interop_db.FindFileByName("no/such.proto")


def v1_call(
    target: str, *requests: v1.ServerReflectionRequest
) -> list[v1.ServerReflectionResponse]:
    with grpc.insecure_channel(target, options=OPTIONS) as channel:
        method = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=v1.ServerReflectionRequest.SerializeToString,
            response_deserializer=v1.ServerReflectionResponse.FromString,
        )
        return list(method(iter(requests), timeout=TIMEOUT))


def test_v1_lists_and_describes(greeter_target: str) -> None:
    listed, by_symbol, by_name, missing = v1_call(
        greeter_target,
        v1.ServerReflectionRequest(list_services=""),
        v1.ServerReflectionRequest(file_containing_symbol="greet.HelloReply"),
        v1.ServerReflectionRequest(file_by_filename="greet.proto"),
        v1.ServerReflectionRequest(file_containing_symbol="no.Such"),
    )
    names = [service.name for service in listed.list_services_response.service]
    assert "greet.Greeter" in names
    for response in (by_symbol, by_name):
        (raw,) = response.file_descriptor_response.file_descriptor_proto
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        assert proto.name == "greet.proto"
        assert [s.name for s in proto.service] == ["Greeter"]
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
