"""h2's state machines fed an input without h2's generic lookup where the transition only sets
the state.

h2's connection and stream state machines look every input up in a table keyed by (state,
input) pairs of Enums, whose `__hash__` is Python code, inside a method that checks the input's
type and wraps the transition in exception handlers; the frame reader and writer feed them
about a dozen inputs per unary call. Many transitions call no function (every connection
transition; a stream's SEND_DATA, and its SEND_END_STREAM while open): they set the target
state and report no event. `feed` does just that, from h2's own tables re-keyed by the members'
identities at import (Enum members are singletons), and hands every other input (transitions
with a function, invalid ones, which raise) to h2's `process_input`.
tests/core/test_state_inputs.py feeds every state and input of both machines both ways.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

import h2.stream
from h2.connection import ConnectionInputs, H2ConnectionStateMachine
from h2.stream import H2StreamStateMachine, StreamInputs

__all__ = ["feed"]

_QUIET = {
    (id(state), id(input_)): target
    for table in (H2ConnectionStateMachine._transitions, h2.stream._transitions)
    for (state, input_), (function, target) in table.items()
    if function is None
}
"""(id(state), id(input)) -> target state, for the transitions that call no function (the two
machines' Enums are distinct objects, so one table serves both)."""


@overload
def feed(machine: H2ConnectionStateMachine, input_: ConnectionInputs) -> Sequence[Any]: ...


@overload
def feed(machine: H2StreamStateMachine, input_: StreamInputs) -> Sequence[Any]: ...


def feed(machine: Any, input_: Any) -> Sequence[Any]:
    """`machine.process_input(input_)`: the same state, events and errors."""
    target = _QUIET.get((id(machine.state), id(input_)))
    if target is None:
        events: list[Any] = machine.process_input(input_)
        return events
    machine.state = target
    return ()
