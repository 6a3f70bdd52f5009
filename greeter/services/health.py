"""grpc.health.v1.Health that knows every served service and the server's shutdown.

grpclib's `Health` answers only for the services it is given, and with no checks only for the
overall ``""``: a probe naming ``greet.Greeter`` gets NOT_FOUND. `ServingHealth` gives each
served service a status (SERVING from the start), the overall ``""`` the combination of them all
(NOT_SERVING as soon as one is), `set_serving(name, bool)` for the application, and
`draining()`, which the server calls when a graceful stop begins (greeter.server.listeners), so
load balancers and Kubernetes readiness probes see NOT_SERVING for everything before the
GOAWAY (the drain delay, `ServerConfig.drain_delay`, gives them time to notice)::

    greeter = Greeter()
    health = ServingHealth([greeter])
    server = Server([greeter, health])
    health.set_serving("greet.Greeter", False)   # e.g. its database went away

`Check` and `Watch` are grpclib's (Watch streams every change).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from grpclib.health.check import ServiceStatus
from grpclib.health.service import OVERALL, Health

from greeter.server.listeners import Service

__all__ = ["ServingHealth", "with_health"]


class _Named:
    """A service as grpclib's Health keys it: by the name in its method paths."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __mapping__(self) -> dict[str, None]:
        return {f"/{self.name}/_": None}  # grpclib reads only the service name


class ServingHealth(Health):
    """Health for `services` (and itself): SERVING until told otherwise or until draining."""

    def __init__(self, services: Iterable[Service]) -> None:
        names = {path.split("/")[1] for service in services for path in service.__mapping__()}
        names.add("grpc.health.v1.Health")
        self._statuses: dict[str, ServiceStatus] = {}
        for name in sorted(names):
            status = ServiceStatus()
            status.set(True)
            self._statuses[name] = status
        checks: dict[Any, list[ServiceStatus]] = {
            _Named(name): [status] for name, status in self._statuses.items()
        }
        checks[OVERALL] = list(self._statuses.values())
        super().__init__(checks)

    @property
    def service_names(self) -> list[str]:
        return list(self._statuses)

    def set_serving(self, service: str, serving: bool) -> None:
        """Report `service` SERVING or NOT_SERVING (Watch streams see it at once); ValueError
        naming the known services for one this health does not know (a typo must not pass)."""
        try:
            status = self._statuses[service]
        except KeyError:
            known = ", ".join(self._statuses)
            raise ValueError(
                f"set_serving: no service {service!r} in this health service (known: {known})"
            ) from None
        status.set(serving)

    def draining(self) -> None:
        """The server is stopping: every service, and so the overall "", is NOT_SERVING."""
        for status in self._statuses.values():
            status.set(False)


def with_health(services: Iterable[Service]) -> list[Service]:
    """`services` and a `ServingHealth` for all of them (itself included)."""
    served = list(services)
    return [*served, ServingHealth(served)]
