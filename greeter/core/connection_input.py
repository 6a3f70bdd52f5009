"""h2's connection state machine fed the inputs of an RPC's frames, skipped where it does nothing.

The frame reader and writer feed h2's `H2ConnectionStateMachine` every HEADERS and DATA frame's
input (SEND_HEADERS, SEND_DATA, RECV_HEADERS, RECV_DATA), as h2's own methods do: five per unary
call on the client, as many on the server. In the open states (CLIENT_OPEN, SERVER_OPEN) h2's
transition table maps each of those inputs to the same state and no function, so the machine
does nothing; yet each input cost a table lookup keyed by two Enums, whose `__hash__` is Python
code. `feed_connection` does nothing there too, and hands every other state to h2.
tests/core/test_connection_input.py checks h2's table still says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from h2.connection import ConnectionInputs, ConnectionState, H2ConnectionStateMachine

__all__ = ["RPC_FRAME_INPUTS", "feed_connection"]

_CLIENT_OPEN, _SERVER_OPEN = ConnectionState.CLIENT_OPEN, ConnectionState.SERVER_OPEN
RPC_FRAME_INPUTS = (
    ConnectionInputs.SEND_HEADERS,
    ConnectionInputs.SEND_DATA,
    ConnectionInputs.RECV_HEADERS,
    ConnectionInputs.RECV_DATA,
)
"""The inputs `feed_connection` takes (the frames of an RPC)."""


def feed_connection(machine: H2ConnectionStateMachine, input_: ConnectionInputs) -> Sequence[Any]:
    """`machine.process_input(input_)` for one of RPC_FRAME_INPUTS (its events: none in the
    open states, which it keeps)."""
    state = machine.state
    if state is _CLIENT_OPEN or state is _SERVER_OPEN:
        return ()
    events: list[Any] = machine.process_input(input_)
    return events
