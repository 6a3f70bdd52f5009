"""HPACK without repeated work: header fields encoded once per process, blocks decoded once.

gRPC sends the same header fields on every call (``:method POST``, ``content-type``, the path,
``grpc-status: 0``, ...), and hpack encodes and decodes them field by field, Huffman code by
Huffman code, each time. This module is the one place the core reaches into h2's HPACK objects:
h2 4.x builds an ``hpack.Encoder`` and ``hpack.Decoder`` per connection, calls only
``encode(headers)`` and ``decode(block, raw=True)`` on them and sets their size attributes when
SETTINGS change; `install` swaps in the subclasses below. tests/core/test_hpack_cache.py fails
if h2 or hpack stop working that way.

**Encoding.** Each field goes out as an index into the static table when it is in it
(RFC 7541 §6.1) and otherwise as a literal *without indexing* (§6.2.2). Such a representation
neither depends on nor changes either side's dynamic table, so its bytes are the same on every
connection and one process-wide cache holds them: a header block is a join of cached byte
strings. The price is the dynamic table's compression of repeated fields (a unary request's
block is about 100 bytes instead of about 20 once the table is warm), which buys no speed on
the links gRPC mostly runs on. Fields marked never-indexed (hpack's NeverIndexedHeaderTuple)
keep that representation (§6.2.3) and are not cached; a pending table size update (§4.2) still
leads the block. A client sends the same fields for every call of a method, and passes them as
one tuple (greeter.core.headers.plain_request_headers): an encoder keeps the block of each
tuple it encoded (by identity, holding the tuple), so such a block is not even re-joined.

**Decoding.** A block made only of indexed fields and literals without indexing (what greeter
sends, and what C-core and grpc-go send once their table is warm) leaves the decoder's table as
it found it, so while the table does not change the same bytes decode to the same list. A
per-connection cache maps such blocks to their fields; any block that changes the table
(an insertion, an eviction, a size update) empties it. The header-list size limit was checked
when the block was first decoded, and a new limit (or table size allowance) empties the cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import h2.connection
from hpack import Decoder, Encoder, HeaderTuple
from hpack.hpack import INDEX_NONE
from hpack.table import HeaderTable

__all__ = ["CachingDecoder", "CachingEncoder", "install"]

MAX_CACHED_FIELDS = 4096
"""Distinct fields the process-wide encoding cache keeps before it starts over (values that
change per call, such as grpc-timeout, would otherwise grow it without end)."""
MAX_CACHED_BLOCKS = 32
"""Distinct blocks a connection's decoding cache (and its encoder's tuple cache) keeps before
it starts over."""
MAX_CACHED_BLOCK_SIZE = 1024
"""Longer blocks (large custom metadata) are decoded every time, to keep connections small."""

_STATIC = HeaderTable.STATIC_TABLE_MAPPING
_encoded_fields: dict[tuple[bytes, bytes], bytes] = {}


class CachingEncoder(Encoder):
    """An hpack Encoder whose fields never touch the dynamic table, each encoded once."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[int, tuple[tuple[Any, ...], bytes]] = {}
        """Blocks of header tuples encoded before, by the tuple's identity (the tuple is kept,
        so its id cannot be reused)."""

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        if not huffman or isinstance(headers, dict):
            return super().encode(headers, huffman)
        resized = self.header_table.resized
        blocks = self._blocks
        if headers.__class__ is tuple and not resized:
            # A tuple cannot change: the same tuple (a client's request fields for a method)
            # is the same block every time.
            known = blocks.get(id(headers))
            if known is not None and known[0] is headers:
                return known[1]
        parts: list[bytes] = []
        if resized:  # RFC 7541 §4.2: the update starts the next block
            parts.append(self._encode_table_size_change())
            self.header_table.resized = False
        cache = _encoded_fields
        plain = True
        for field in headers:
            if field.__class__ is not tuple:  # a HeaderTuple may be marked never-indexed
                parts.append(self._encode_marked(field))
                plain = False
                continue
            encoded = cache.get(field)
            if encoded is None:
                encoded = self._encode_unindexed(field)
                if len(cache) >= MAX_CACHED_FIELDS:
                    cache.clear()
                cache[field] = encoded
            parts.append(encoded)
        block = b"".join(parts)
        if headers.__class__ is tuple and plain and not resized:
            if len(blocks) >= MAX_CACHED_BLOCKS:
                blocks.clear()
            blocks[id(headers)] = (headers, block)
        return block

    def _encode_unindexed(self, field: tuple[bytes, bytes]) -> bytes:
        name, value = field
        static = _STATIC.get(name)
        if static is None:
            return self._encode_literal(name, value, INDEX_NONE, huffman=True)
        name_index, values = static
        value_index = values.get(value)
        if value_index is not None:
            return self._encode_indexed(value_index)
        return self._encode_indexed_literal(name_index, value, INDEX_NONE, huffman=True)

    def _encode_marked(self, field: Any) -> bytes:
        name, value = field[0], field[1]
        if isinstance(field, HeaderTuple) and not field.indexable:
            return self.add((name, value), sensitive=True, huffman=True)
        return self._encode_unindexed((name, value))


class CachingDecoder(Decoder):
    """An hpack Decoder that remembers the blocks that left its dynamic table unchanged."""

    def __init__(self) -> None:
        self._blocks: dict[bytes, tuple[Any, ...]] | None = None
        super().__init__()

    @property
    def max_header_list_size(self) -> int:
        return self._max_header_list_size

    @max_header_list_size.setter
    def max_header_list_size(self, value: int) -> None:
        self._max_header_list_size = value
        self._blocks = None  # cached blocks were checked against the old limit

    @property
    def max_allowed_table_size(self) -> int:
        return self._max_allowed_table_size

    @max_allowed_table_size.setter
    def max_allowed_table_size(self, value: int) -> None:
        self._max_allowed_table_size = value
        self._blocks = None  # a size update in a cached block was checked against the old one

    def decode(self, data: bytes, raw: bool = False) -> Iterable[Any]:
        blocks = self._blocks
        if blocks is not None and raw:
            cached = blocks.get(data)
            if cached is not None:
                return list(cached)
        table = self.header_table
        entries = table.dynamic_entries
        before = (table.maxsize, len(entries), entries[0] if entries else None)
        headers = super().decode(data, raw)
        newest = entries[0] if entries else None
        if table.maxsize != before[0] or len(entries) != before[1] or newest is not before[2]:
            self._blocks = None  # the table changed: blocks may now decode differently
        elif raw and data.__class__ is bytes and len(data) <= MAX_CACHED_BLOCK_SIZE:
            if blocks is None or len(blocks) >= MAX_CACHED_BLOCKS:
                self._blocks = blocks = {}
            blocks[data] = tuple(headers)
        return headers


def install(connection: h2.connection.H2Connection) -> None:
    """Give a new H2Connection (nothing encoded or decoded yet) the caching coders."""
    decoder = CachingDecoder()
    decoder.max_header_list_size = connection.decoder.max_header_list_size
    connection.encoder = CachingEncoder()
    connection.decoder = decoder
