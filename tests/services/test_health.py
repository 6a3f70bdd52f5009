"""greeter.services.health.ServingHealth: every served service answers Check and Watch, the
application sets a service's status, and a graceful stop (`stop()`, or SIGTERM to `greeter
serve --drain-delay`) turns everything NOT_SERVING first, while the server still serves for the
drain delay."""

from __future__ import annotations

import asyncio
import signal

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from gen.greet import GreeterStub, HelloRequest
from greeter.client import Channel
from greeter.server import Server, ServerConfig
from greeter.services.greeter import Greeter
from greeter.services.health import ServingHealth, with_health
from tests.support.peers import spawn_greeter_server

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(20)]

SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING
STEP = 5.0


async def check(health: HealthStub, service: str) -> int:
    reply = await asyncio.wait_for(health.Check(HealthCheckRequest(service=service)), STEP)
    return int(reply.status)


async def test_every_served_service_and_the_overall_status_are_serving() -> None:
    services = with_health([Greeter()])
    async with Server(services, port=0) as server, Channel(f"127.0.0.1:{server.port}") as ch:
        health = HealthStub(ch)
        for name in ("", "greet.Greeter", "grpc.health.v1.Health"):
            assert await check(health, name) == SERVING, name
        with pytest.raises(GRPCError) as caught:
            await check(health, "no.Such")
        assert caught.value.status is Status.NOT_FOUND


async def test_the_application_sets_a_service_s_status_and_watchers_see_it() -> None:
    greeter = Greeter()
    health_service = ServingHealth([greeter])
    async with (
        Server([greeter, health_service], port=0) as server,
        Channel(f"127.0.0.1:{server.port}") as ch,
    ):
        health = HealthStub(ch)
        async with health.Watch.open() as watch:
            await watch.send_message(HealthCheckRequest(service="greet.Greeter"), end=True)
            first = await asyncio.wait_for(watch.recv_message(), STEP)
            assert first is not None and first.status == SERVING
            health_service.set_serving("greet.Greeter", False)
            changed = await asyncio.wait_for(watch.recv_message(), STEP)
            assert changed is not None and changed.status == NOT_SERVING
            await watch.cancel()
        assert await check(health, "greet.Greeter") == NOT_SERVING
        assert await check(health, "") == NOT_SERVING  # the overall status: one is down
        health_service.set_serving("greet.Greeter", True)
        assert await check(health, "") == SERVING


async def test_setting_an_unknown_service_is_an_error_at_the_call_site() -> None:
    health = ServingHealth([Greeter()])
    with pytest.raises(ValueError, match=r"no service 'greet\.Greter'.*known: greet\.Greeter"):
        health.set_serving("greet.Greter", False)


async def test_a_graceful_stop_reports_not_serving_and_keeps_serving_for_the_drain_delay() -> None:
    config = ServerConfig(drain_delay=1.0, grace_period=1.0)
    server = Server(with_health([Greeter()]), port=0, config=config)
    await server.start()
    async with Channel(f"127.0.0.1:{server.port}") as ch:
        health, greeter = HealthStub(ch), GreeterStub(ch)
        assert await check(health, "") == SERVING
        loop = asyncio.get_running_loop()
        began = loop.time()
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0)  # the stop begins: the health turns at once
        for name in ("", "greet.Greeter"):
            assert await check(health, name) == NOT_SERVING
        # Still serving on the same connection and still accepting new ones during the delay.
        assert (await greeter.say_hello(HelloRequest(name="d"))).message == "Hello d"
        async with Channel(f"127.0.0.1:{server.port}") as late:
            assert await check(HealthStub(late), "") == NOT_SERVING
        assert not stopping.done()
        await asyncio.wait_for(stopping, STEP)
        assert loop.time() - began >= 1.0  # GOAWAY came only after the drain delay


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sigterm_to_serve_turns_health_and_serves_through_the_drain_delay(
    workers: str,
) -> None:
    # With --workers 2 the parent goes on accepting (and handing over) through the delay too.
    delay = 2.0
    extra = ("--drain-delay", str(delay), "--grace", "1", "--workers", workers)
    with spawn_greeter_server(*extra) as server:
        async with Channel(server.target) as ch:
            health, greeter = HealthStub(ch), GreeterStub(ch)
            async with health.Watch.open() as watch:
                await watch.send_message(HealthCheckRequest(service=""), end=True)
                first = await asyncio.wait_for(watch.recv_message(), STEP)
                assert first is not None and first.status == SERVING
                loop = asyncio.get_running_loop()
                signalled = loop.time()
                server.proc.send_signal(signal.SIGTERM)
                changed = await asyncio.wait_for(watch.recv_message(), STEP)
                assert changed is not None and changed.status == NOT_SERVING
                await watch.cancel()
            # Still serving through the delay, on this connection and on a new one.
            assert (await greeter.say_hello(HelloRequest(name="d"))).message == "Hello d"
            async with Channel(server.target) as late:
                reply = await GreeterStub(late).say_hello(HelloRequest(name="n"))
                assert reply.message == "Hello n"
        code = await asyncio.to_thread(server.proc.wait, STEP + delay)
        assert loop.time() - signalled >= delay  # the GOAWAY and the exit came after the delay
    assert code == 0, "\n".join(server.lines())
