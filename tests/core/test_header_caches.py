"""The header caches of greeter.core.headers: valid lists parsed once, invalid ones always.

Request heads (the server), response heads and trailers (the client).
"""

from __future__ import annotations

import pytest
from grpclib.const import Status

from greeter.core import headers
from greeter.wire.errors import MalformedHeadersError, RejectedRequestError
from tests.support.h2peer import request_headers

REQUEST = [
    (name.encode(), value.encode())
    for name, value in request_headers(metadata=[("x-user", "alice")])
]


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    headers._request_heads.clear()
    headers._response_heads.clear()
    headers._trailers.clear()


def test_the_same_list_is_parsed_once_and_described_the_same() -> None:
    first = headers.parse_request(list(REQUEST))
    second = headers.parse_request(list(REQUEST))
    assert second is first
    assert (first.path, first.authority, first.metadata) == (
        "/greet.Greeter/SayHello",
        "localhost",
        (("x-user", "alice"),),
    )


def test_an_invalid_list_is_refused_every_time() -> None:
    bad_type = [(n.encode(), v.encode()) for n, v in request_headers(content_type="text/html")]
    for _ in range(2):
        with pytest.raises(RejectedRequestError) as caught:
            headers.parse_request(bad_type)
        assert caught.value.status == Status.INTERNAL
    assert headers._request_heads == {}


def test_the_same_fields_in_a_malformed_order_are_not_taken_from_the_cache() -> None:
    headers.parse_request(list(REQUEST))
    pseudo_last = [*REQUEST[4:], *REQUEST[:4]]  # RFC 9113 §8.3: pseudo-headers come first
    with pytest.raises(MalformedHeadersError):
        headers.parse_request(pseudo_last)


def test_lists_that_differ_per_call_keep_the_cache_bounded() -> None:
    for millis in range(3 * headers.MAX_CACHED_HEADS):
        head = headers.parse_request([*REQUEST, (b"grpc-timeout", f"{millis + 1}m".encode())])
        assert head.timeout == pytest.approx((millis + 1) / 1000)
    assert 0 < len(headers._request_heads) <= headers.MAX_CACHED_HEADS


RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc"), (b"x-a", b"1")]
TRAILERS = [(b"grpc-status", b"0"), (b"x-t", b"2")]


def test_response_heads_and_trailers_are_parsed_once() -> None:
    head = headers.parse_response(list(RESPONSE), ends_stream=False)
    assert headers.parse_response(list(RESPONSE), ends_stream=False) is head
    assert (head.end, head.metadata) == (None, (("x-a", "1"),))
    end = headers.parse_trailers(list(TRAILERS))
    assert headers.parse_trailers(list(TRAILERS)) is end
    assert (end.status, end.metadata) == (Status.OK, (("x-t", "2"),))


def test_a_response_head_that_ends_the_stream_is_another_entry() -> None:
    """The same block without grpc-status means "go on" or "ended without a status"."""
    assert headers.parse_response(list(RESPONSE), ends_stream=False).end is None
    ended = headers.parse_response(list(RESPONSE), ends_stream=True).end
    assert ended is not None and ended.status == Status.UNKNOWN


def test_malformed_responses_and_trailers_are_refused_every_time() -> None:
    upper = [(b":status", b"200"), (b"Content-Type", b"application/grpc")]
    pseudo = [(b":status", b"200"), *TRAILERS]
    for _ in range(2):
        with pytest.raises(MalformedHeadersError):
            headers.parse_response(upper, ends_stream=False)
        with pytest.raises(MalformedHeadersError, match="malformed trailers"):
            headers.parse_trailers([(b"X-Upper", b"1")])
        with pytest.raises(MalformedHeadersError, match="pseudo-header"):
            headers.parse_trailers(pseudo)
    assert headers._response_heads == {} and headers._trailers == {}


def test_trailers_that_differ_per_call_keep_the_cache_bounded() -> None:
    for number in range(3 * headers.MAX_CACHED_HEADS):
        end = headers.parse_trailers([*TRAILERS, (b"x-n", str(number).encode())])
        assert end.metadata[-1] == ("x-n", str(number))
    assert 0 < len(headers._trailers) <= headers.MAX_CACHED_HEADS
