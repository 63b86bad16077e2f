"""`wire.has_long_number`, the check that sends a body to the standard library JSON parser,
gives exactly the answer of the LONG_NUMBER regex it replaces, on any bytes."""

from __future__ import annotations

import json
import sys

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chain.protocol import wire
from chain.protocol.schema import postprocess

# Bytes that matter to the check (digits, the bytes a number may follow, hex letters, `x`,
# quotes), often in runs, and now and then any byte at all.
PIECES = st.one_of(
    st.sampled_from([b"0", b"7", b"9", b"x", b"a", b"F", b'"', b"[", b":", b",", b"-", b" "]),
    st.sampled_from([b"\t", b"\n", b"\v", b"\f", b"\r", b"{", b"}", b"]", b".", b"e", b"+"]),
    st.integers(min_value=1, max_value=30).map(lambda n: b"1" * n),
    st.integers(min_value=10**17, max_value=10**25).map(lambda n: str(n).encode()),
    st.sampled_from([b"0x" + b"0" * 64, b'"0x' + b"12" * 20 + b'"', b'"' + b"5" * 25 + b'"']),
    st.binary(max_size=3),
)
BODIES = st.lists(PIECES, max_size=40).map(b"".join)


@given(body=BODIES)
@example(body=b"1" * 20)
@example(body=b"1" * 19)
@example(body=b"-" + b"1" * 20)
@example(body=b'"x' + b"1" * 20)
@example(body=b"0x" + b"0" * 64)
@example(body=b"")
def test_fast_check_is_the_regex(body: bytes) -> None:
    assert wire.has_long_number(body) == bool(wire.LONG_NUMBER.search(body))


@given(body=st.binary(max_size=200))
def test_fast_check_is_the_regex_on_any_bytes(body: bytes) -> None:
    assert wire.has_long_number(body) == bool(wire.LONG_NUMBER.search(body))


@pytest.mark.parametrize("before", [bytes([b]) for b in range(256)])
def test_every_byte_before_a_run_of_digits(before: bytes) -> None:
    """The class of every byte value, as what comes right before 19, 20 and 21 digits."""
    for digits in (19, 20, 21):
        for body in (before + b"4" * digits, b'{"a":"z' + before + b"4" * digits + b'"}'):
            assert wire.has_long_number(body) == bool(wire.LONG_NUMBER.search(body)), body


@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**80), max_value=2**80)
        | st.text(alphabet="0123456789abcx -:,[", max_size=30),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=5), children, max_size=4)
        ),
        max_leaves=12,
    ),
    indent=st.sampled_from([None, 1]),
)
def test_parse_json_reads_integers_exactly(value: object, indent: int | None) -> None:
    body = json.dumps(value, indent=indent).encode()
    parsed = wire.parse_json(body)
    assert parsed == value
    assert json.dumps(parsed) == json.dumps(value)  # no integer became a float
    if not wire.has_long_number(body):
        assert parsed == orjson.loads(body)


def test_a_negative_integer_below_int64_is_read_exactly() -> None:
    """19 digits after a minus sign may reach below -2**63, which orjson reads as a float."""
    assert wire.parse_json(b"[-9223372036854775809]") == [-(2**63) - 1]


@pytest.mark.parametrize("long_number", [False, True])
def test_a_result_nested_as_deep_as_orjson_allows_is_postprocessed(long_number: bool) -> None:
    """A JSON result nested 1,000 deep (orjson takes up to 1,024) is read as a value, also
    with an integer beyond 64 bits and the interpreter's default recursion limit."""
    number = "1" * 30 if long_number else "1"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        result = postprocess("json", "[" * 1000 + number + "]" * 1000)
    finally:
        sys.setrecursionlimit(limit)
    assert result.error is None
    value = result.value
    for _ in range(1000):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == int(number)
