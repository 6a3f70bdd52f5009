"""Services greeter serves: the only code that imports the generated code in gen/.

- greeter: `Greeter`, greet.Greeter's business logic (and the stub and messages to call it);
- interop: `TestService`, grpc.testing.TestService for gRPC's interop test cases;
- reflection: grpc.reflection v1 and v1alpha over the descriptors gen/ embeds.
"""
