"""greeter.core.connection_input: the same states, events and errors as h2's state machine."""

from __future__ import annotations

import itertools

import pytest
from h2.connection import ConnectionInputs, ConnectionState, H2ConnectionStateMachine
from h2.exceptions import ProtocolError

from greeter.core.connection_input import RPC_FRAME_INPUTS, feed_connection


@pytest.mark.parametrize(
    ("state", "input_"), list(itertools.product(ConnectionState, RPC_FRAME_INPUTS))
)
def test_every_state_ends_as_h2_leaves_it(state: ConnectionState, input_: ConnectionInputs) -> None:
    ours, h2s = H2ConnectionStateMachine(), H2ConnectionStateMachine()
    ours.state = h2s.state = state
    try:
        expected = list(h2s.process_input(input_))
    except ProtocolError:
        with pytest.raises(ProtocolError):
            feed_connection(ours, input_)
    else:
        assert list(feed_connection(ours, input_)) == expected
    assert ours.state == h2s.state


def test_h2s_table_does_nothing_in_the_open_states() -> None:
    # What feed_connection relies on: an h2 release that attached a function or another state
    # to one of these transitions would fail here.
    for state in (ConnectionState.CLIENT_OPEN, ConnectionState.SERVER_OPEN):
        for input_ in RPC_FRAME_INPUTS:
            assert H2ConnectionStateMachine._transitions[(state, input_)] == (None, state)
