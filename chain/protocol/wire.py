"""Wire encodings (PROTOCOL 1): parsing what clients send, rendering what they read.

Every parser raises `InvalidParams` naming the parameter, so a bad value never reaches the
rules. Amounts are decimal strings on the wire (JSON integers are accepted on input), bytes
fields are strings that are hex when `0x`-prefixed valid hex and UTF-8 text otherwise.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from functools import lru_cache
from itertools import accumulate
from typing import Any

import orjson
import sha3  # safe-pysha3: C keccak, about 4x faster than eth-hash's pycryptodome backend

from chain.protocol.errors import InvalidParams, InvalidSignature
from chain.protocol.types import MESSAGE_TYPES, Message, SignedTx

HEX_BYTES = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
HEX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
DECIMAL = re.compile(r"0|[1-9][0-9]*")


def ascii_digits(text: str) -> bool:
    """Whether `text` is one or more of the ASCII digits 0-9: what `int` reads as a decimal.
    `str.isdigit` alone is not that: it is true of digits `int` refuses (superscripts)."""
    return text.isascii() and text.isdigit()


MAX_DECIMAL_DIGITS = 78  # 2**256 has 78 digits


# A JSON number orjson would not read exactly (it gives a float): 20 digits or more (beyond 64
# bits unsigned), or 19 after a minus sign (below -2**63). A number starts the text or follows
# one of `[ : , -` or whitespace; the digits of a hex string (a zero SID is 64 of them) follow
# `x` or a hex digit and do not count.
LONG_NUMBER = re.compile(rb"(?:^|[\[:,\s-])\d{20}|-\d{19}")

# LONG_NUMBER without the regex engine (about 1 ms on a 50 KB batch, 50 us this way): each byte
# mapped to its class (a digit to `d`, a minus sign to `m`, another byte that may come before a
# number to `s`, any other to `o`) by one `bytes.translate`, then substring searches in C.
_NUMBER_CLASSES = bytes(
    ord("d")
    if b in b"0123456789"
    else ord("m")
    if b == ord("-")
    else ord("s")
    if b in b"[:,\t\n\v\f\r "
    else ord("o")
    for b in range(256)
)
_LONG_RUN = b"d" * 20
_LONG_RUNS_AFTER = (b"s" + _LONG_RUN, b"m" + b"d" * 19)


def has_long_number(body: bytes) -> bool:
    """Whether LONG_NUMBER occurs in `body` (the same answer, 20 times faster or more)."""
    classes = body.translate(_NUMBER_CLASSES)
    return classes.startswith(_LONG_RUN) or any(run in classes for run in _LONG_RUNS_AFTER)


# The deepest nesting of arrays and objects any JSON text may have: orjson's own limit, and
# the one rule for every parser here (PROTOCOL 1). The standard library's parser recurses in C
# once per level, as deep as the interpreter's recursion limit, which a dependency may raise
# (py_ecc sets 100,000): far past what the C stack holds. So the depth is checked on the bytes
# before any parser sees them.
MAX_JSON_DEPTH = 1024

# json_depth's tables: every byte but a quote or a bracket deleted, brackets made `(` and `)`,
# and the step of the running depth per byte of that shape.
_NOT_SKELETON = bytes(b for b in range(256) if b not in b'"[]{}')
_SHAPES = bytes.maketrans(b"[]{}", b"()()")
_NOT_OPENING = bytes(b for b in range(256) if b not in b"[{")
_DEPTH_STEPS = tuple(1 if b == ord("(") else -1 if b == ord(")") else 0 for b in range(256))
_PEEL_PASSES = 16  # a JSON-RPC body nests 3 or 4 deep: peeled to nothing, never summed


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in the JSON text `body` (0 for a scalar),
    brackets inside strings left out: exact for valid JSON; for any other bytes at least as
    deep as a parser gets before it fails. Never raises."""
    return _skeleton_depth(_skeleton(body))


def _skeleton(body: bytes) -> bytes:
    """The quotes and brackets of `body` (brackets as `(` and `)`), escaped backslashes and
    quotes dropped first: one pass of C over the bytes."""
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    return body.translate(_SHAPES, _NOT_SKELETON)


def _skeleton_depth(skeleton: bytes, above: int | None = None) -> int:
    """Adjacent quotes dropped in pairs (which keeps whether a bracket is inside a string: the
    parity of the quotes before it); if quotes are still left (brackets inside strings), what
    lies between them dropped; the depth of the brackets left, those outside strings (with
    `above`, any depth past it may be answered as soon as it is seen)."""
    skeleton = skeleton.replace(b'""', b"")
    if b'"' in skeleton:
        skeleton = b"".join(skeleton.split(b'"')[::2])
    return _bracket_depth(skeleton, above)


def _bracket_depth(shape: bytes, above: int | None = None) -> int:
    """The highest running sum of `shape` (+1 per `(`, -1 per `)`), or more for an unbalanced
    one. Each pass drops every innermost pair `()`, which lowers a balanced shape's depth by
    exactly one (an unbalanced one's by at most one); what a few passes leave is summed.

    With `above`, a run of more than `above` opening brackets ends the count at once (a
    depth past `above` is answered, not the exact one): a body nested 100,000 deep is
    refused after a substring search, not after summing 200,000 steps."""
    run = None if above is None else b"(" * (above + 1)
    peeled = 0
    while shape and peeled < _PEEL_PASSES:
        if run is not None and run in shape:
            return peeled + len(run)
        inner = shape.replace(b"()", b"")
        if len(inner) == len(shape):
            break
        shape = inner
        peeled += 1
    if not shape:
        return peeled
    if run is not None and run in shape:
        return peeled + len(run)
    return peeled + max(0, max(accumulate(map(_DEPTH_STEPS.__getitem__, shape))))


def check_json_depth(body: bytes) -> None:
    """ValueError naming the limit when `body` nests deeper than MAX_JSON_DEPTH. A text with
    no more opening brackets than that (any JSON-RPC body of up to about 500 calls) cannot
    nest deeper, and is let through on the count alone, strings and escapes not looked at."""
    if len(body.translate(None, _NOT_OPENING)) <= MAX_JSON_DEPTH:
        return
    depth = _skeleton_depth(_skeleton(body), above=MAX_JSON_DEPTH)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(
            f"arrays and objects nested {depth} deep or more, at most {MAX_JSON_DEPTH} are allowed"
        )


def parse_json(body: bytes) -> Any:
    """JSON text as values, integers exact at any size (a JSON-RPC id must come back as sent,
    and a uint256 may be a JSON number): orjson, or the standard library when the text holds
    a number orjson would not read exactly (LONG_NUMBER). Nesting deeper than MAX_JSON_DEPTH
    is refused naming the limit, and the standard library's parser never sees it. Raises
    ValueError.

    orjson refuses nesting past MAX_JSON_DEPTH by itself, so the depth is scanned only for a
    text orjson refuses (to say why) or leaves to the standard library: on an 80 KB answer
    the scan cost a third as much as the parse."""
    if not has_long_number(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            check_json_depth(body)  # too deep: said so, as for the other parser
            raise
    check_json_depth(body)
    # The standard library's parser counts each level against the recursion limit (1000 by
    # default, less the frames below this one): room for the MAX_JSON_DEPTH levels the scan
    # let through, and only for this call.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + MAX_JSON_DEPTH)
    try:
        return json.loads(body)
    finally:
        sys.setrecursionlimit(limit)


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def decode_bytes_field(value: str) -> bytes:
    """The bytes a bytes field stands for: hex when `0x`-prefixed valid hex, else UTF-8."""
    if HEX_BYTES.fullmatch(value):
        return bytes.fromhex(value[2:])
    return value.encode("utf-8", errors="surrogatepass")


def checksum(address_bytes: bytes) -> str:
    """EIP-55 form of a 20-byte address."""
    return _eip55(address_bytes.hex())


@lru_cache(maxsize=65536)
def _eip55(body: str) -> str:
    """EIP-55 of 40 lowercase hex digits: a letter is upper case where the nibble of
    keccak256(the lowercase hex text) at its position is 8 or more."""
    hashed = sha3.keccak_256(body.encode()).hexdigest()
    return "0x" + "".join(
        c.upper() if c > "9" and h >= "8" else c for c, h in zip(body, hashed, strict=False)
    )


def parse_address(value: Any, param: str) -> str:
    if not isinstance(value, str) or not HEX_ADDRESS.fullmatch(value):
        raise InvalidParams(param, "expected an address: 0x followed by 40 hex digits")
    body = value[2:]
    canonical = _eip55(body.lower())
    if body != body.lower() and body != body.upper() and canonical != value:
        raise InvalidParams(param, f"mixed-case address with a wrong EIP-55 checksum: {value}")
    return canonical


def parse_hash(value: Any, param: str) -> bytes:
    if not isinstance(value, str) or not HEX_HASH.fullmatch(value):
        raise InvalidParams(param, "expected a hash: 0x followed by 64 hex digits")
    return bytes.fromhex(value[2:])


def parse_uint(value: Any, param: str, bits: int = 256) -> int:
    """A non-negative integer given as a JSON integer or a decimal string."""
    if isinstance(value, bool):
        raise InvalidParams(param, "expected an integer, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        if len(value) > MAX_DECIMAL_DIGITS or not DECIMAL.fullmatch(value):
            raise InvalidParams(param, 'expected a decimal integer string such as "1000"')
        number = int(value)
    elif isinstance(value, float) and value.is_integer() and abs(value) >= 2**63:
        raise InvalidParams(param, "too large for a JSON number: send it as a decimal string")
    else:
        raise InvalidParams(param, f"expected an integer, got {type(value).__name__}")
    if number < 0:
        raise InvalidParams(param, "must not be negative")
    if number >= 1 << bits:
        raise InvalidParams(param, f"does not fit in uint{bits}")
    return number


def parse_int(value: Any, param: str, low: int, high: int) -> int:
    """A JSON integer within [low, high] (heights, limits, timestamps)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(param, f"expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidParams(param, f"must be between {low} and {high}")
    return value


def parse_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidParams(param, f"expected true or false, got {type(value).__name__}")
    return value


def parse_string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise InvalidParams(param, f"expected a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidParams(param, "not valid Unicode text") from exc
    return value


def parse_signature(value: Any) -> bytes:
    if not isinstance(value, str) or not HEX_BYTES.fullmatch(value):
        raise InvalidSignature("signature must be a 0x-prefixed hex string of 65 bytes")
    raw = bytes.fromhex(value[2:])
    if len(raw) != 65:
        raise InvalidSignature(f"signature must be 65 bytes, got {len(raw)}")
    return raw


_PARSERS = {
    "address": parse_address,
    "uint64": lambda v, p: parse_uint(v, p, 64),
    "uint256": parse_uint,
    "bytes": parse_string,
    "string": parse_string,
    "bytes32": parse_hash,
    "bool": parse_bool,
}

OPTIONAL_DEFAULTS: dict[str, Any] = {
    "SID": "0x" + "00" * 32,
    "feeParams": "",
    "proof": "",
    # AO (PROTOCOL 8.2)
    "cronInterval": "",
    "tags": "[]",
    "data": "",
    "fromProcess": "",
}


_MISSING = object()


FieldTable = tuple[frozenset[str], tuple[tuple[str, str, Callable[[Any, str], Any], Any], ...]]


def _field_table(cls: type[Message]) -> FieldTable:
    """A message type's wire names, and (name, attribute, parser, default) per field."""
    fields = tuple(
        (name, attr, _PARSERS[abi], OPTIONAL_DEFAULTS.get(name, _MISSING))
        for name, attr, abi in cls.FIELDS
    )
    return frozenset(name for name, _a, _p, _d in fields), fields


_FIELD_TABLES: dict[type[Message], FieldTable] = {
    cls: _field_table(cls) for cls in MESSAGE_TYPES.values()
}


def message_from_params(cls: type[Message], params: dict[str, Any]) -> Message:
    """Build a message from wire params; unknown or missing params are InvalidParams."""
    names, fields = _FIELD_TABLES.get(cls) or _field_table(cls)
    for key in params:
        if key not in names:
            raise InvalidParams(key, f"unknown parameter for {cls.TYPE}")
    values: dict[str, Any] = {}
    for name, attr, parse, default in fields:
        raw = params.get(name, default)
        if raw is _MISSING:
            raise InvalidParams(name, "missing")
        values[attr] = parse(raw, name)
    return cls(**values)


AMOUNT_FIELDS = frozenset({"amount"})


def render_field(name: str, abi: str, value: Any) -> Any:
    """Wire form of a message field: amounts as decimal strings, bytes32 as hex."""
    if abi == "bytes32":
        return hex0x(value)
    if name in AMOUNT_FIELDS:
        return str(value)
    return value


def message_to_params(msg: Message) -> dict[str, Any]:
    return {name: render_field(name, abi, getattr(msg, attr)) for name, attr, abi in msg.FIELDS}


def signed_tx_to_json(tx: SignedTx) -> dict[str, Any]:
    return {
        "type": tx.message.TYPE,
        "message": message_to_params(tx.message),
        "signature": hex0x(tx.signature),
        "signer": tx.signer,
        "digest": hex0x(tx.digest),
        "hash": hex0x(tx.hash),
    }


def signed_tx_from_json(obj: dict[str, Any]) -> SignedTx:
    """Rebuild a stored transaction without recovering its signature again."""
    cls = MESSAGE_TYPES[obj["type"]]
    return SignedTx(
        message=message_from_params(cls, obj["message"]),
        signature=bytes.fromhex(obj["signature"][2:]),
        digest=bytes.fromhex(obj["digest"][2:]),
        hash=bytes.fromhex(obj["hash"][2:]),
        signer=obj["signer"],
    )
