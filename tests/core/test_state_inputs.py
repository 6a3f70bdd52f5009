"""greeter.core.state_inputs: the same states, events and errors as h2's state machines."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from h2.connection import ConnectionInputs, ConnectionState, H2ConnectionStateMachine
from h2.exceptions import ProtocolError
from h2.stream import H2StreamStateMachine, StreamInputs, StreamState

from greeter.core.state_inputs import feed


def fresh(machine_type: type[Any], state: Any) -> Any:
    machine = machine_type() if machine_type is H2ConnectionStateMachine else machine_type(1)
    machine.state = state
    if machine_type is H2StreamStateMachine:
        machine.client = True  # what h2 records once headers went out or came in
        machine.headers_sent = machine.headers_received = True
    return machine


CASES = [
    *(
        (H2ConnectionStateMachine, s, i)
        for s, i in itertools.product(ConnectionState, ConnectionInputs)
    ),
    *((H2StreamStateMachine, s, i) for s, i in itertools.product(StreamState, StreamInputs)),
]


@pytest.mark.parametrize(("machine_type", "state", "input_"), CASES)
def test_every_state_and_input_as_h2(machine_type: type[Any], state: Any, input_: Any) -> None:
    ours, h2s = fresh(machine_type, state), fresh(machine_type, state)
    try:
        expected = [type(event) for event in h2s.process_input(input_)]
    except ProtocolError:
        with pytest.raises(ProtocolError):
            feed(ours, input_)
    else:
        assert [type(event) for event in feed(ours, input_)] == expected
    assert vars(ours) == vars(h2s)


def test_the_rpc_frames_inputs_skip_h2s_lookup() -> None:
    # What makes it worth having: the inputs fed for every RPC frame in the open states are
    # state-only transitions (an h2 release that attached a function to one of them would
    # still be right, through process_input, and fail here).
    from greeter.core import state_inputs  # noqa: PLC0415

    quiet = [
        (ConnectionState.CLIENT_OPEN, ConnectionInputs.SEND_HEADERS),
        (ConnectionState.SERVER_OPEN, ConnectionInputs.RECV_DATA),
        (StreamState.OPEN, StreamInputs.SEND_DATA),
        (StreamState.OPEN, StreamInputs.SEND_END_STREAM),
        (StreamState.HALF_CLOSED_REMOTE, StreamInputs.SEND_DATA),
    ]
    for state, input_ in quiet:
        assert (id(state), id(input_)) in state_inputs._QUIET
