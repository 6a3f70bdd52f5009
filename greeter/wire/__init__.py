"""gRPC's wire rules, shared by the core and the tap: pure functions and small classes, no I/O.

- framing: the Length-Prefixed-Message of PROTOCOL-HTTP2.md (prefix, reassembly, size limit);
- compression: grpc-encoding gzip/deflate, with bounded decompression;
- metadata: grpc-timeout, grpc-message percent-encoding, custom metadata and ``-bin`` values;
- protowire: the protobuf wire format without a schema (strict check, field walker);
- codec: schema-aware strict decoding of betterproto2 messages, plain encoding;
- status_details: grpc-status-details-bin (a google.rpc.Status) encoded by hand;
- errors: the root of greeter's error tree; every error carries its gRPC status or HTTP/2 code.

Rule: stdlib, grpclib's constants and h2's error codes only; no asyncio, sockets or threads.
"""
