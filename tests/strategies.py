"""Hypothesis strategies for wire values (PROTOCOL 1), shared by the codec and crypto tests."""

from __future__ import annotations

from typing import Any

from eth_utils import to_checksum_address
from hypothesis import strategies as st

from chain.protocol.types import Message

RAW_ADDRESSES = st.binary(min_size=20, max_size=20)
# Any case of an address is valid input: checksummed, all lower, all upper.
ADDRESSES = RAW_ADDRESSES.flatmap(
    lambda raw: st.sampled_from(
        [to_checksum_address(raw), "0x" + raw.hex(), "0x" + raw.hex().upper()]
    )
)
# Text, valid hex in either case, and hex-looking text that is not valid hex.
BYTES_FIELDS = st.one_of(
    st.text(),
    st.binary().map(lambda b: "0x" + b.hex()),
    st.binary().map(lambda b: "0x" + b.hex().upper()),
    st.tuples(st.binary(), st.sampled_from(["0", "g", " ", "x", "é"])).map(
        lambda pair: "0x" + pair[0].hex() + pair[1]
    ),
)


def uints(bits: int) -> st.SearchStrategy[Any]:
    """Integers of `bits` bits, as a JSON integer or a decimal string."""
    return st.integers(min_value=0, max_value=2**bits - 1).flatmap(
        lambda n: st.sampled_from([n, str(n)])
    )


WIRE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "address": ADDRESSES,
    "uint64": uints(64),
    "uint256": uints(256),
    "bytes": BYTES_FIELDS,
    "string": BYTES_FIELDS,  # a string that looks like hex is still text
    "bytes32": st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
    "bool": st.booleans(),
}


def wire_params(cls: type[Message]) -> st.SearchStrategy[dict[str, Any]]:
    """Valid wire params of every field of a message type."""
    return st.fixed_dictionaries({name: WIRE_VALUES[abi] for name, _attr, abi in cls.FIELDS})


def scanned_json_depth(text: str) -> int:
    """The reference depth of JSON text: a character-by-character scan that tracks strings and
    escapes; for a prefix of valid JSON, the deepest nesting a parser has opened reading it."""
    deepest = level = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            level += 1
            deepest = max(deepest, level)
        elif char in "]}":
            level -= 1
    return deepest
