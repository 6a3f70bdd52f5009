"""greeter.core.hpack_cache: cached HPACK coders that decode and encode exactly as hpack's do.

The caching coders are checked against hpack's own: whatever sequence of header lists a plain
hpack Encoder turns into blocks, the caching decoder returns what a plain Decoder returns, block
by block (the cache must never outlive a change of the dynamic table); whatever the caching
encoder emits, a plain Decoder reads back unchanged. Then the h2 seam: a core connection really
uses them, so an h2 release that stops calling them fails here.
"""

from __future__ import annotations

import h2.connection
import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple, OversizedHeaderListError
from hypothesis import given, settings
from hypothesis import strategies as st

from greeter.core import hpack_cache
from greeter.core.config import CoreConfig, new_h2_connection
from greeter.core.hpack_cache import CachingDecoder, CachingEncoder

NAMES = [b":path", b"content-type", b"grpc-status", b"x-a", b"x-b", b"te", b"user-agent"]
VALUES = [b"", b"0", b"1", b"application/grpc", b"trailers", b"/greet.Greeter/SayHello", b"x" * 40]
fields = st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES))
header_lists = st.lists(st.lists(fields, min_size=1, max_size=6), min_size=1, max_size=30)


def _outcome(decoder: Decoder, block: bytes) -> object:
    """What decoding returns, or the class of what it raises."""
    try:
        return decoder.decode(block, raw=True)
    except Exception as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(header_lists, st.sampled_from([64, 256, 4096]), st.lists(st.booleans(), min_size=30))
def test_the_caching_decoder_decodes_every_block_as_hpack_does(
    lists: list[list[tuple[bytes, bytes]]], table_size: int, repeats: list[bool]
) -> None:
    """Blocks from a plain encoder with a small table (insertions, evictions, references to
    entries that moved), some decoded twice: a hit when the block left the table alone, else
    decoded anew (re-inserting, so later references may move or fail: both decoders agree)."""
    encoder, plain, caching = Encoder(), Decoder(), CachingDecoder()
    encoder.header_table_size = table_size
    for headers, repeat in zip(lists, repeats, strict=False):
        block = encoder.encode(headers)
        for _ in range(1 + repeat):
            assert _outcome(caching, block) == _outcome(plain, block)


def test_a_cached_block_is_not_reused_after_the_table_changed() -> None:
    encoder, decoder = Encoder(), CachingDecoder()
    decoder.decode(encoder.encode([(b"x-a", b"1")]), raw=True)  # x-a: 1 is dynamic entry 62
    reference = encoder.encode([(b"x-a", b"1")])
    assert reference == b"\xbe"
    assert decoder.decode(reference, raw=True) == [(b"x-a", b"1")]
    assert decoder.decode(reference, raw=True) == [(b"x-a", b"1")]  # now from the cache
    decoder.decode(encoder.encode([(b"x-b", b"2")]), raw=True)  # entry 62 is now x-b: 2
    assert decoder.decode(reference, raw=True) == [(b"x-b", b"2")]


def test_an_eviction_that_keeps_the_table_length_empties_the_cache() -> None:
    """A full table that takes an entry equal to its newest one evicts the oldest: same length,
    equal newest entry, yet index 63 now names something else."""
    encoder, decoder = Encoder(), CachingDecoder()
    for coder in (encoder, decoder):
        coder.header_table_size = 2 * (32 + 4)  # room for two 4-byte fields
    decoder.decode(encoder.encode([(b"x-a", b"1"), (b"x-b", b"2")]), raw=True)
    second = b"\xbf"  # index 63: the older entry, x-a: 1
    assert decoder.decode(second, raw=True) == [(b"x-a", b"1")]
    assert decoder.decode(second, raw=True) == [(b"x-a", b"1")]
    again = Encoder().encode([(b"x-b", b"2")])  # a fresh encoder inserts x-b: 2 again
    assert decoder.decode(again, raw=True) == [(b"x-b", b"2")]
    assert decoder.decode(second, raw=True) == [(b"x-b", b"2")]


def test_a_lower_header_list_limit_applies_to_cached_blocks() -> None:
    decoder = CachingDecoder()
    block = CachingEncoder().encode([(b"x-big", b"v" * 100)])  # cacheable: no indexing
    for _ in range(2):
        assert decoder.decode(block, raw=True) == [(b"x-big", b"v" * 100)]
    decoder.max_header_list_size = 64
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(block, raw=True)


@settings(max_examples=200, deadline=None)
@given(header_lists)
def test_the_caching_encoder_round_trips_and_leaves_every_table_empty(
    lists: list[list[tuple[bytes, bytes]]],
) -> None:
    encoder, decoder = CachingEncoder(), Decoder()
    for headers in lists:
        block = encoder.encode(headers)
        assert decoder.decode(block, raw=True) == headers
        assert encoder.encode(headers) == block  # the same bytes every time
    assert not encoder.header_table.dynamic_entries
    assert not decoder.header_table.dynamic_entries


def test_static_fields_are_indexed_and_never_indexed_fields_stay_so() -> None:
    encoder = CachingEncoder()
    assert encoder.encode([(b":method", b"POST")]) == b"\x83"  # static index 3 (RFC 7541 App. A)
    # §6.2.2 literal without indexing, name from static index 31 (4-bit prefix: 15, then 16).
    assert encoder.encode([(b"content-type", b"application/grpc")])[:2] == b"\x0f\x10"
    assert encoder.encode([(b"te", b"trailers")])[:2] == b"\x00\x82"  # new name, Huffman, 2
    secret = encoder.encode([NeverIndexedHeaderTuple(b"authorization", b"s3cret")])
    assert secret[0] & 0xF0 == 0x10  # §6.2.3: never indexed
    assert Decoder().decode(secret, raw=True) == [(b"authorization", b"s3cret")]


def test_a_table_size_change_leads_the_next_block_once() -> None:
    encoder = CachingEncoder()
    encoder.header_table_size = 1024
    first = encoder.encode([(b":method", b"POST")])
    assert first[0] & 0xE0 == 0x20  # §6.3 dynamic table size update
    assert encoder.encode([(b":method", b"POST")]) == b"\x83"
    decoder = Decoder()
    assert decoder.decode(first, raw=True) == [(b":method", b"POST")]
    assert decoder.header_table_size == 1024


def test_a_tuple_of_fields_is_encoded_once_and_a_size_update_still_leads() -> None:
    request = ((b":method", b"POST"), (b":path", b"/greet.Greeter/SayHello"), (b"te", b"trailers"))
    encoder = CachingEncoder()
    block = encoder.encode(request)
    assert encoder.encode(request) is block  # the same tuple: the same block, not re-joined
    assert encoder.encode(list(request)) == block and encoder.encode(list(request)) is not block
    encoder.header_table_size = 1024
    updated = encoder.encode(request)
    assert updated[0] & 0xE0 == 0x20 and updated.endswith(block)  # §6.3 update first
    assert encoder.encode(request) is block
    assert Decoder().decode(block, raw=True) == list(request)


def test_tuples_with_never_indexed_fields_are_not_kept() -> None:
    marked = ((b":method", b"POST"), NeverIndexedHeaderTuple(b"authorization", b"s3cret"))
    encoder = CachingEncoder()
    first = encoder.encode(marked)
    assert encoder.encode(marked) == first and encoder.encode(marked) is not first


def test_the_tuple_block_cache_is_bounded() -> None:
    encoder = CachingEncoder()
    kept = [((b":path", f"/s/M{n}".encode()),) for n in range(hpack_cache.MAX_CACHED_BLOCKS * 3)]
    for fields in kept:
        encoder.encode(fields)
    assert 0 < len(encoder._blocks) <= hpack_cache.MAX_CACHED_BLOCKS


def test_the_field_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hpack_cache, "_encoded_fields", {})
    encoder = CachingEncoder()
    for timeout in range(hpack_cache.MAX_CACHED_FIELDS + 10):
        encoder.encode([(b"grpc-timeout", f"{timeout}m".encode())])
    assert len(hpack_cache._encoded_fields) <= hpack_cache.MAX_CACHED_FIELDS


def test_core_connections_encode_and_decode_through_the_caches() -> None:
    """The h2 seam: h2 encodes a request with our encoder and decodes it with our decoder."""
    client = new_h2_connection(CoreConfig(), client_side=True)
    server = new_h2_connection(CoreConfig())
    assert isinstance(client.encoder, CachingEncoder)
    assert isinstance(server.decoder, CachingDecoder)
    assert server.decoder.max_header_list_size == CoreConfig().max_header_list_size
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    request = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/greet.Greeter/SayHello"),
        (b":authority", b"localhost"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    received = []
    for stream_id in (1, 3):
        client.send_headers(stream_id, request, end_stream=True)
        events = server.receive_data(client.data_to_send())
        received += [e.headers for e in events if isinstance(e, h2.events.RequestReceived)]
    assert received == [request, request]
    assert not client.encoder.header_table.dynamic_entries
    assert server.decoder._blocks  # the second request's block came from the cache
