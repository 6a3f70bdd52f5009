"""The Greeter service: business logic only, plus the generated stub and messages to call it.

Knows the generated messages and base class (gen.greet), nothing of any transport; the same
class runs on greeter's server and on grpclib's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from gen.greet import GreeterBase, GreeterStub, HelloReply, HelloRequest

__all__ = ["Greeter", "GreeterStub", "HelloReply", "HelloRequest"]


class Greeter(GreeterBase):
    """greet.Greeter: one RPC of each kind, with the replies the contract fixes."""

    async def say_hello(self, message: HelloRequest) -> HelloReply:
        return HelloReply(message=f"Hello {message.name}")

    async def lots_of_replies(self, message: HelloRequest) -> AsyncIterator[HelloReply]:
        for index in range(1, message.count + 1):
            yield HelloReply(message=f"Hello {message.name} #{index}")

    async def lots_of_greetings(self, messages: AsyncIterator[HelloRequest]) -> HelloReply:
        names = [request.name async for request in messages]
        return HelloReply(message="Hello " + ", ".join(names))

    async def bidi_hello(self, messages: AsyncIterator[HelloRequest]) -> AsyncIterator[HelloReply]:
        # Each reply is yielded (and sent) before the next request is read.
        async for request in messages:
            yield HelloReply(message=f"Hello {request.name}")
