"""The parser on its own, fuzzed: any input is either refused with FormatError or parsed
into pieces that rebuild exactly the same bytes (nothing skipped, nothing invented)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botvault import FormatError
from botvault.crypto import CHEAPEST_TEST_ONLY, FLOOR, MAC_SIZE
from botvault.fileformat import HEADER_SIZE, Header, RawRecord, build, parse

_HEADER = Header(FLOOR, b"s" * 16, b"v" * 16, 7, b"n" * 24, b"w" * 48)


def _check(data: bytes) -> None:
    try:
        parsed = parse(data)
    except FormatError:
        return
    rebuilt = build(parsed.header, parsed.records) + parsed.tag
    assert rebuilt == data
    assert len(parsed.tag) == MAC_SIZE


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    _check(data)


records = st.lists(st.builds(RawRecord, st.binary(min_size=16, max_size=16),
                             st.binary(min_size=24, max_size=24),
                             st.binary(min_size=16, max_size=80)), max_size=4)


@settings(max_examples=300)
@given(records, st.binary(min_size=32, max_size=32), st.integers(0, 40),
       st.binary(max_size=8), st.integers(-3, 3))
def test_valid_files_round_trip_and_their_mutations_are_refused_or_exact(
        recs: list[RawRecord], tag: bytes, cut: int, insert: bytes, count_delta: int) -> None:
    data = build(_HEADER, recs) + tag
    parsed = parse(data)
    assert (parsed.header, list(parsed.records), parsed.tag) == (_HEADER, recs, tag)
    _check(data[:-cut] if cut else data)                  # truncated
    _check(data[:HEADER_SIZE] + insert + data[HEADER_SIZE:])  # bytes spliced in
    count = max(0, len(recs) + count_delta)
    _check(data[:HEADER_SIZE - 4] + struct.pack(">I", count) + data[HEADER_SIZE:])


def test_test_only_profile_is_out_of_range_for_the_parser() -> None:
    from botvault import crypto

    header = Header(CHEAPEST_TEST_ONLY, b"s" * 16, b"v" * 16, 0, b"n" * 24, b"w" * 48)
    data = build(header, []) + b"t" * 32
    previous = crypto._test_kdf_allowed
    crypto._test_kdf_allowed = False
    try:
        with pytest.raises(FormatError, match="out of range"):
            parse(data)
    finally:
        crypto._test_kdf_allowed = previous
