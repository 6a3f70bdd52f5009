"""The request-head cache of greeter.core.headers: valid lists parsed once, invalid ones always."""

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
    for millis in range(3 * headers.MAX_CACHED_REQUEST_HEADS):
        head = headers.parse_request([*REQUEST, (b"grpc-timeout", f"{millis + 1}m".encode())])
        assert head.timeout == pytest.approx((millis + 1) / 1000)
    assert 0 < len(headers._request_heads) <= headers.MAX_CACHED_REQUEST_HEADS
