"""Tools built on the tap and grpclib's client: the inspecting proxy and trace replay.

- proxy: a byte-faithful h2c relay with a wire tap on each connection;
- replay: re-send the client messages of a JSON Lines trace and compare the replies.
"""
