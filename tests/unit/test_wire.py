"""wire: the encodings of PROTOCOL 1 and the params <-> message mapping of PROTOCOL 3.

Every parser must refuse a bad value with `InvalidParams` naming the parameter (never another
exception type, which the RPC layer would turn into an internal error).
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import pytest
from eth_keys.constants import SECPK1_N
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.protocol import crypto, wire
from chain.protocol.errors import InvalidParams, InvalidSignature
from chain.protocol.types import MESSAGE_TYPES, SubmitInferenceResult, SubmitTask
from tests.strategies import RAW_ADDRESSES, wire_params

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"
EIP712 = json.loads((VECTORS_DIR / "eip712.json").read_text(encoding="utf-8"))
VECTORS = {vector["name"]: vector for vector in EIP712["vectors"]}
ONE_VECTOR_PER_TYPE = {vector["type"]: vector for vector in reversed(EIP712["vectors"])}

by_vector = pytest.mark.parametrize("vector", list(VECTORS.values()), ids=list(VECTORS))
by_type = pytest.mark.parametrize("type_name", sorted(MESSAGE_TYPES))


def is_protocol_hex(text: str) -> bool:
    """PROTOCOL 1, read independently of wire: `0x` then an even number of hex digits."""
    body = text[2:]
    return text.startswith("0x") and len(body) % 2 == 0 and all(c in string.hexdigits for c in body)


def flip_case(text: str, index: int) -> str:
    return text[:index] + text[index].swapcase() + text[index + 1 :]


# --- addresses ------------------------------------------------------------------------------


@given(raw=RAW_ADDRESSES)
def test_address_in_any_single_case_is_returned_checksummed(raw: bytes) -> None:
    checksummed = to_checksum_address(raw)
    for text in ("0x" + raw.hex(), "0x" + raw.hex().upper(), checksummed):
        assert wire.parse_address(text, "to") == checksummed


@given(raw=RAW_ADDRESSES, data=st.data())
def test_address_with_one_letter_case_flipped_is_rejected(raw: bytes, data: st.DataObject) -> None:
    checksummed = to_checksum_address(raw)
    letters = [i for i, c in enumerate(checksummed) if i >= 2 and c.isalpha()]
    if not letters:
        return  # an all-digit address has no case to get wrong
    broken = flip_case(checksummed, data.draw(st.sampled_from(letters)))
    body = broken[2:]
    if body in (body.lower(), body.upper()):
        return  # a single-case spelling carries no checksum and is valid
    with pytest.raises(InvalidParams) as info:
        wire.parse_address(broken, "resourceNode")
    assert info.value.param == "resourceNode"
    assert info.value.data()["param"] == "resourceNode"


VALID_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.mark.parametrize(
    "value",
    [
        VALID_ADDRESS[:-1],  # 39 hex digits
        VALID_ADDRESS + "8",  # 41 hex digits
        VALID_ADDRESS + "c8",  # 21 bytes
        VALID_ADDRESS[2:],  # no 0x
        "0X" + VALID_ADDRESS[2:],
        "0x" + "g" + VALID_ADDRESS[3:],
        " " + VALID_ADDRESS,
        "0x",
        "",
        None,
        0x70997970C51812DC3A010C7D01B50E0D17DC79C8,
        bytes.fromhex(VALID_ADDRESS[2:]),
        [VALID_ADDRESS],
        True,
    ],
    ids=repr,
)
def test_malformed_address_is_rejected_naming_the_param(value: Any) -> None:
    with pytest.raises(InvalidParams) as info:
        wire.parse_address(value, "sender")
    assert info.value.param == "sender"


def test_address_with_trailing_newline_is_invalid_params() -> None:
    with pytest.raises(InvalidParams) as info:
        wire.parse_address(VALID_ADDRESS.lower() + "\n", "sender")
    assert info.value.param == "sender"


# --- hashes ---------------------------------------------------------------------------------


@given(raw=st.binary(min_size=32, max_size=32))
def test_hash_in_either_case_is_parsed(raw: bytes) -> None:
    assert wire.parse_hash("0x" + raw.hex(), "taskHash") == raw
    assert wire.parse_hash("0x" + raw.hex().upper(), "taskHash") == raw


HASH = "0x63d64bfcc103ecea0983a4347b166c62b08891a83d6a2bed9f7abfb757709b47"


@pytest.mark.parametrize(
    "value",
    [HASH[:-1], HASH + "0", HASH[:-2], HASH + "00", HASH[2:], "0x" + "z" + HASH[3:], "0x", "",
     None, 1, bytes.fromhex(HASH[2:]), [HASH]],
    ids=repr,
)  # fmt: skip
def test_malformed_hash_is_rejected_naming_the_param(value: Any) -> None:
    with pytest.raises(InvalidParams) as info:
        wire.parse_hash(value, "requestHash")
    assert info.value.param == "requestHash"


def test_hash_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(InvalidParams):
        wire.parse_hash(HASH + "\n", "taskHash")


# --- unsigned integers ----------------------------------------------------------------------


@given(number=st.integers(min_value=0, max_value=2**256 - 1))
def test_uint256_from_json_int_or_decimal_string(number: int) -> None:
    assert wire.parse_uint(number, "amount") == number
    assert wire.parse_uint(str(number), "amount") == number


@given(number=st.integers(min_value=0, max_value=2**64 - 1))
def test_uint64_accepts_its_range(number: int) -> None:
    assert wire.parse_uint(number, "nonce", 64) == number
    assert wire.parse_uint(str(number), "nonce", 64) == number


@given(number=st.integers(min_value=2**64, max_value=2**256 - 1))
def test_uint64_rejects_larger_numbers(number: int) -> None:
    for value in (number, str(number)):
        with pytest.raises(InvalidParams) as info:
            wire.parse_uint(value, "nonce", 64)
        assert info.value.param == "nonce"


@given(number=st.integers(min_value=2**256, max_value=2**300))
def test_uint256_rejects_larger_numbers(number: int) -> None:
    for value in (number, str(number)):
        with pytest.raises(InvalidParams) as info:
            wire.parse_uint(value, "amount")
        assert info.value.param == "amount"


@given(number=st.integers(max_value=-1))
def test_negative_integers_are_rejected(number: int) -> None:
    for value in (number, str(number)):
        with pytest.raises(InvalidParams) as info:
            wire.parse_uint(value, "amount")
        assert info.value.param == "amount"


@pytest.mark.parametrize(
    "value",
    [
        "01",
        "00",
        "0" * 78 + "1",
        "+1",
        "-0",
        "1.0",
        "1e3",
        "0x10",
        "1_000",
        " 1",
        "1 ",
        "",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: int() would take it
        "1" + "0" * 78,  # 79 digits
        "9" * 79,
        str(2**256),  # 78 digits, one too many
        1.0,
        0.5,
        float("nan"),
        True,
        False,
        None,
        [1],
        {"value": 1},
    ],
    ids=repr,
)
def test_malformed_uint_is_rejected_naming_the_param(value: Any) -> None:
    with pytest.raises(InvalidParams) as info:
        wire.parse_uint(value, "targetCount")
    assert info.value.param == "targetCount"


def test_decimal_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(InvalidParams):
        wire.parse_uint("5\n", "amount")


# --- booleans -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_bool_accepts_true_and_false(value: bool) -> None:
    assert wire.parse_bool(value, "valid") is value


@pytest.mark.parametrize("value", ["true", "false", 1, 0, None, "", [True]], ids=repr)
def test_non_bool_is_rejected_naming_the_param(value: Any) -> None:
    with pytest.raises(InvalidParams) as info:
        wire.parse_bool(value, "valid")
    assert info.value.param == "valid"


# --- bytes fields (PROTOCOL 1) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0x", b""),
        ("0xdeadbeef", bytes.fromhex("deadbeef")),
        ("0xDEADbeef", bytes.fromhex("deadbeef")),
        ("0xabc", b"0xabc"),  # odd length: text
        ("0xzz", b"0xzz"),  # not hex: text
        ("0x de", b"0x de"),
        ("0X00", b"0X00"),  # only a lowercase 0x prefix marks hex
        ("hello", b"hello"),
        ("", b""),
        ("¿Qué es? — 漢字 🚀", "¿Qué es? — 漢字 🚀".encode()),
    ],
    ids=repr,
)
def test_decode_bytes_field(text: str, expected: bytes) -> None:
    assert wire.decode_bytes_field(text) == expected


@given(raw=st.binary())
def test_hex_bytes_field_decodes_to_its_bytes(raw: bytes) -> None:
    assert wire.decode_bytes_field("0x" + raw.hex()) == raw
    assert wire.decode_bytes_field("0x" + raw.hex().upper()) == raw


@given(text=st.text().filter(lambda t: not is_protocol_hex(t)))
def test_other_bytes_field_is_its_utf8(text: str) -> None:
    assert wire.decode_bytes_field(text) == text.encode("utf-8")


def test_hex_then_newline_bytes_field_is_text() -> None:
    assert wire.decode_bytes_field("0xdeadbeef\n") == b"0xdeadbeef\n"


# --- signatures -----------------------------------------------------------------------------


@given(raw=st.binary(min_size=65, max_size=65))
def test_parse_signature_accepts_65_bytes_of_hex(raw: bytes) -> None:
    assert wire.parse_signature("0x" + raw.hex()) == raw
    assert wire.parse_signature("0x" + raw.hex().upper()) == raw


@given(raw=st.binary(max_size=100).filter(lambda b: len(b) != 65))
def test_parse_signature_rejects_other_lengths(raw: bytes) -> None:
    with pytest.raises(InvalidSignature):
        wire.parse_signature("0x" + raw.hex())


def test_signature_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(InvalidSignature):
        wire.parse_signature("0x" + "11" * 65 + "\n")


# --- message_from_params --------------------------------------------------------------------


def vector_params(type_name: str) -> dict[str, Any]:
    return dict(ONE_VECTOR_PER_TYPE[type_name]["message"])


@by_type
def test_unknown_param_is_rejected_naming_it(type_name: str) -> None:
    params = {**vector_params(type_name), "extraField": "1"}
    with pytest.raises(InvalidParams) as info:
        wire.message_from_params(MESSAGE_TYPES[type_name], params)
    assert info.value.param == "extraField"


REQUIRED = [
    (cls.TYPE, name)
    for cls in MESSAGE_TYPES.values()
    for name, _attr, _abi in cls.FIELDS
    if name not in wire.OPTIONAL_DEFAULTS
]


@pytest.mark.parametrize(("type_name", "name"), REQUIRED, ids=[f"{t}.{n}" for t, n in REQUIRED])
def test_missing_param_is_named(type_name: str, name: str) -> None:
    params = vector_params(type_name)
    del params[name]
    with pytest.raises(InvalidParams) as info:
        wire.message_from_params(MESSAGE_TYPES[type_name], params)
    assert info.value.param == name


def test_submit_task_defaults_sid_and_fee_params() -> None:
    params = vector_params("SubmitTask")
    del params["SID"], params["feeParams"]
    msg = wire.message_from_params(SubmitTask, params)
    assert isinstance(msg, SubmitTask)
    assert msg.sid == bytes(32)
    assert msg.fee_params == ""
    explicit = {**params, "SID": "0x" + "00" * 32, "feeParams": ""}
    assert msg == wire.message_from_params(SubmitTask, explicit)


def test_inference_result_defaults_proof() -> None:
    params = vector_params("SubmitInferenceResult")
    del params["proof"]
    msg = wire.message_from_params(SubmitInferenceResult, params)
    assert isinstance(msg, SubmitInferenceResult)
    assert msg.proof == ""
    assert msg == wire.message_from_params(SubmitInferenceResult, {**params, "proof": ""})


BAD_VALUES = [
    ("Transfer", "sender", "0x123"),
    ("Transfer", "to", "0x70997970c51812dc3A010C7d01b50e0d17dc79C8"),  # checksum broken
    ("Transfer", "nonce", "one"),
    ("Transfer", "nonce", 2**64),
    ("Transfer", "amount", -1),
    ("Stake", "amount", 1.5),
    ("SubmitTask", "targetCount", True),
    ("SubmitTask", "schema", None),
    ("SubmitTask", "prompts", 7),
    ("SubmitTask", "SID", "0x00"),
    ("SubmitInferenceResult", "taskHash", "0x1234"),
    ("SubmitInferenceResult", "result", {"text": "hi"}),
    ("SubmitVerification", "valid", "true"),
    ("SubmitVerification", "submitter", 0),
    ("RegisterResourceNode", "models", ["*"]),
    ("RegisterResourceNode", "endpoint", "\ud800"),  # a lone surrogate is not text
]


@pytest.mark.parametrize(
    ("type_name", "name", "value"), BAD_VALUES, ids=[f"{t}.{n}={v!r}" for t, n, v in BAD_VALUES]
)
def test_bad_value_is_rejected_naming_the_param(type_name: str, name: str, value: Any) -> None:
    params = {**vector_params(type_name), name: value}
    with pytest.raises(InvalidParams) as info:
        wire.message_from_params(MESSAGE_TYPES[type_name], params)
    assert info.value.param == name


@by_vector
def test_vector_params_are_already_canonical(vector: dict[str, Any]) -> None:
    msg = wire.message_from_params(MESSAGE_TYPES[vector["type"]], vector["message"])
    assert wire.message_to_params(msg) == vector["message"]


# --- round trips ----------------------------------------------------------------------------


@by_type
@given(data=st.data())
def test_message_params_round_trip(type_name: str, data: st.DataObject) -> None:
    cls = MESSAGE_TYPES[type_name]
    params = data.draw(wire_params(cls))
    msg = wire.message_from_params(cls, params)
    rendered = wire.message_to_params(msg)
    assert json.loads(json.dumps(rendered)) == rendered
    assert wire.message_from_params(cls, rendered) == msg
    assert wire.message_to_params(wire.message_from_params(cls, rendered)) == rendered
    for name, _attr, abi in cls.FIELDS:
        if abi == "address":
            assert rendered[name] == to_checksum_address(params[name])
        elif name == "amount":  # PROTOCOL 1: amounts travel as decimal strings
            assert rendered[name] == str(int(params[name]))
        elif abi.startswith("uint"):
            assert int(rendered[name]) == int(params[name])
        elif abi in ("bytes", "string"):  # stored as given and echoed unchanged
            assert rendered[name] == params[name]


@by_type
@settings(deadline=None, max_examples=50)
@given(data=st.data())
def test_signed_tx_json_round_trip(type_name: str, data: st.DataObject) -> None:
    cls = MESSAGE_TYPES[type_name]
    key = data.draw(st.integers(min_value=1, max_value=SECPK1_N - 1)).to_bytes(32, "big")
    params = data.draw(wire_params(cls))
    params[next(n for n, attr, _t in cls.FIELDS if attr == cls.SIGNER)] = (
        crypto.address_of_private_key(key)
    )
    msg = wire.message_from_params(cls, params)
    tx = crypto.sign_message(msg, data.draw(st.integers(min_value=1, max_value=2**53)), key)
    stored = json.loads(json.dumps(wire.signed_tx_to_json(tx)))
    assert stored["type"] == type_name
    assert wire.signed_tx_from_json(stored) == tx


@by_vector
def test_vector_signed_tx_json(vector: dict[str, Any]) -> None:
    msg = wire.message_from_params(MESSAGE_TYPES[vector["type"]], vector["message"])
    tx = crypto.verify_message(msg, vector["chainId"], wire.parse_signature(vector["signature"]))
    stored = wire.signed_tx_to_json(tx)
    assert stored == {
        "type": vector["type"],
        "message": vector["message"],
        "signature": vector["signature"],
        "signer": vector["signer"],
        "digest": vector["digest"],
        "hash": vector["txHash"],
    }
    assert wire.signed_tx_from_json(stored) == tx


@pytest.mark.parametrize(
    "text",
    [
        b'{"id": 123456789012345678901234}',
        b"[1,123456789012345678901]",
        b'{"a":-123456789012345678901}',
        b"123456789012345678901",
        b'{"a":\n123456789012345678901}',
    ],
)
def test_parse_json_keeps_long_integers_exact(text: bytes) -> None:
    assert wire.LONG_NUMBER.search(text)
    assert wire.parse_json(text) == json.loads(text)


def test_the_digits_of_a_hex_string_are_not_a_long_number() -> None:
    """A zero SID is 64 zeros in a string: it must not send every submitTask to the slow
    parser (and nothing there needs it)."""
    text = b'{"SID":"0x' + b"0" * 64 + b'","sig":"0xab12345678901234567890123"}'
    assert not wire.LONG_NUMBER.search(text)
    assert wire.parse_json(text) == json.loads(text)
