"""The client side as it is today: grpclib Channels with greeter's additions.

- propagation: `PropagatingChannel`, whose calls inside a handler inherit its deadline;
- tapped_channel: `TappedChannel`, whose connections the wire tap observes.
"""

from __future__ import annotations

from greeter.client.propagation import PropagatingChannel, inherited_deadline
from greeter.client.tapped_channel import TappedChannel

__all__ = ["PropagatingChannel", "TappedChannel", "inherited_deadline"]
