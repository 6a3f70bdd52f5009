"""greet.Greeter and grpc.testing.TestService on grpc.aio with grpcio-reflection: the reference
peer of `greeter call` (tests/cli/test_call.py).

Not a test module. Run as `python tests/support/aio_reflection.py --port 0`; prints `listening on
127.0.0.1:PORT` once serving and exits 0 on SIGTERM/SIGINT. grpcio-reflection 1.85 serves only
grpc.reflection.v1alpha (v1 answers UNIMPLEMENTED), so a client must fall back to v1alpha; it
describes the services from gen/'s descriptor pool and sends each answer's file with its
transitive dependencies.

The services are tests/support/aio_greeter.py's and aio_testservice.py's, with one addition:
a UnaryCall asked for a status (`response_status`) also sends that EchoStatus as a rich error
detail (grpc-status-details-bin, a google.rpc.Status), so a client can show decoded details.
Reflection also describes tests/support/shapes.proto (compiled by grpc_tools' protoc at start-up)
and the google.protobuf.Timestamp it imports.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":  # run as a script: make `gen` and `tests` importable from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import grpc
import grpc_tools
from google.protobuf import any_pb2, descriptor_pb2
from google.rpc import status_pb2
from grpc import aio
from grpc_reflection.v1alpha import reflection
from grpc_tools import protoc

from gen.google_proto_descriptor_pool import default_google_proto_descriptor_pool
from gen.grpc.testing import SimpleRequest, SimpleResponse
from tests.support import aio_greeter, aio_testservice

SERVICES = ("greet.Greeter", aio_testservice.SERVICE)
DETAILS_KEY = "grpc-status-details-bin"
SHAPES = Path(__file__).with_name("shapes.proto")
WELL_KNOWN_PROTOS = Path(grpc_tools.__file__).with_name("_proto")


async def unary_call(request: SimpleRequest, context: aio.ServicerContext) -> SimpleResponse:
    echo = request.response_status
    if echo is not None and echo.code != 0:
        detail = any_pb2.Any(
            type_url="type.googleapis.com/grpc.testing.EchoStatus", value=bytes(echo)
        )
        status = status_pb2.Status(code=echo.code, message=echo.message, details=[detail])
        await context.abort(
            aio_testservice.CODES.get(echo.code, grpc.StatusCode.UNKNOWN),
            echo.message,
            trailing_metadata=((DETAILS_KEY, status.SerializeToString()),),
        )
    return await aio_testservice.unary_call(request, context)


def compile_shapes() -> list[descriptor_pb2.FileDescriptorProto]:
    """shapes.proto and its imports, as protoc describes them (dependencies first)."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "shapes.pb"
        status = protoc.main(
            [
                "protoc",
                f"-I{SHAPES.parent}",
                f"-I{WELL_KNOWN_PROTOS}",
                "--include_imports",
                f"--descriptor_set_out={out}",
                SHAPES.name,
            ]
        )
        if status != 0:
            raise SystemExit(f"protoc could not compile {SHAPES}")
        return list(descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file)


def add_services(server: aio.Server) -> None:
    with_details = grpc.method_handlers_generic_handler(
        aio_testservice.SERVICE,
        {
            "UnaryCall": grpc.unary_unary_rpc_method_handler(
                unary_call, request_deserializer=SimpleRequest.FromString, response_serializer=bytes
            )
        },
    )
    # The first handler that has a method serves it: UnaryCall here, the rest of TestService next.
    server.add_generic_rpc_handlers(
        (with_details, aio_testservice.handler(), aio_greeter.handler())
    )
    for proto in compile_shapes():
        default_google_proto_descriptor_pool.Add(proto)
    reflection.enable_server_reflection(SERVICES, server, pool=default_google_proto_descriptor_pool)


if __name__ == "__main__":
    aio_testservice.main(add_services)
