"""Helpers shared by the test suites; no tests here, and test modules import only from here.

h2peer (the raw HTTP/2 test peer) with its transports core_pair, rawclient and attacker;
core_link (the client and server roles of the core joined in memory); abuse
and abuse_serve (the abuse suite's server subprocesses); peers (subprocesses, the greeter CLI,
grpcio and grpc-js); transports (TLS and Unix-socket helpers); probe and inprocess (test-only
services); aio_testservice and aio_greeter (grpc.aio reference servers) and aio_reflection (both
with grpcio-reflection, describing shapes.proto too); canned and records (tap data).
"""
