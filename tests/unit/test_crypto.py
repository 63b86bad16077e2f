"""crypto against the ethers.js vectors, the invalid-signature vectors and eth-account.

tests/vectors/eip712.json (produced by ethers.js) fixes digests, signatures and hashes for every
transaction type of PROTOCOL 3; tests/vectors/invalid.json derives signatures from them that must
be refused. Random messages of every type are cross-checked against eth-account, an independent
EIP-712 implementation, with bytes fields decoded by the test's own reading of PROTOCOL 1.
"""

from __future__ import annotations

import json
import string
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from Crypto.Hash import keccak as pycryptodome_keccak
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account as EthAccount
from eth_account.messages import (
    SignableMessage,
    _hash_eip191_message,
    encode_defunct,
    encode_typed_data,
)
from eth_keys import KeyAPI
from eth_keys.constants import SECPK1_N
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.protocol import crypto, wire
from chain.protocol.errors import InvalidSignature
from chain.protocol.types import MESSAGE_TYPES, Message, Transfer, signer_of
from tests.strategies import wire_params

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"
ROOT = Path(__file__).resolve().parents[2]
EIP712 = json.loads((VECTORS_DIR / "eip712.json").read_text(encoding="utf-8"))
VECTORS = {vector["name"]: vector for vector in EIP712["vectors"]}
INVALID = json.loads((VECTORS_DIR / "invalid.json").read_text(encoding="utf-8"))
SHIPPED_GENESIS = json.loads((ROOT / "genesis.json").read_text(encoding="utf-8"))

EthAccount.enable_unaudited_hdwallet_features()

by_vector = pytest.mark.parametrize("vector", list(VECTORS.values()), ids=list(VECTORS))
by_type = pytest.mark.parametrize("type_name", sorted(MESSAGE_TYPES))


def unhex(text: str) -> bytes:
    assert text.startswith("0x")
    return bytes.fromhex(text[2:])


def reference_keccak(data: bytes) -> bytes:
    return pycryptodome_keccak.new(digest_bits=256, data=data).digest()


def is_protocol_hex(text: str) -> bool:
    """PROTOCOL 1, read independently of wire: `0x` then an even number of hex digits."""
    body = text[2:]
    return text.startswith("0x") and len(body) % 2 == 0 and all(c in string.hexdigits for c in body)


def protocol_bytes(text: str) -> bytes:
    return bytes.fromhex(text[2:]) if is_protocol_hex(text) else text.encode("utf-8")


def eth_account_signable(type_name: str, params: dict[str, Any], chain_id: int) -> SignableMessage:
    """The message as eth-account encodes it, typed by the ethers.js type table of the vectors."""
    fields = EIP712["types"][type_name]
    message: dict[str, Any] = {}
    for field in fields:
        name, abi, value = field["name"], field["type"], params[field["name"]]
        if abi == "bytes":
            message[name] = protocol_bytes(value)
        elif abi == "bytes32":
            message[name] = unhex(value)
        elif abi.startswith("uint"):
            message[name] = int(value)
        elif abi == "address":
            message[name] = to_checksum_address(value)
        else:
            message[name] = value
    domain = {**EIP712["domain"], "chainId": chain_id}
    return encode_typed_data(domain, {type_name: fields}, message)


def vector_message(vector: dict[str, Any]) -> Message:
    return wire.message_from_params(MESSAGE_TYPES[vector["type"]], vector["message"])


def signer_param(cls: type[Message]) -> str:
    return next(name for name, attr, _abi in cls.FIELDS if attr == cls.SIGNER)


@cache
def mnemonic_key(index: int) -> bytes:
    """A dev key as eth-account derives it (m/44'/60'/0'/0/index)."""
    path = f"m/44'/60'/0'/0/{index}"
    return bytes(EthAccount.from_mnemonic(EIP712["mnemonic"], account_path=path).key)


# --- the ethers.js vectors -----------------------------------------------------------------


def test_vector_type_tables_are_the_protocol_field_order() -> None:
    assert set(EIP712["types"]) == set(MESSAGE_TYPES)
    for type_name, fields in EIP712["types"].items():
        ours = [(name, abi) for name, _attr, abi in MESSAGE_TYPES[type_name].FIELDS]
        assert ours == [(field["name"], field["type"]) for field in fields], type_name


def test_every_message_type_has_a_vector() -> None:
    assert {vector["type"] for vector in VECTORS.values()} == set(MESSAGE_TYPES)


@by_vector
def test_digest_matches_vector(vector: dict[str, Any]) -> None:
    assert crypto.digest(vector_message(vector), vector["chainId"]) == unhex(vector["digest"])


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS.values() if v["type"] == "SubmitTask"],
    ids=[name for name, v in VECTORS.items() if v["type"] == "SubmitTask"],
)
def test_task_hash_is_the_submit_task_digest(vector: dict[str, Any]) -> None:
    assert crypto.digest(vector_message(vector), vector["chainId"]) == unhex(vector["taskHash"])


@by_vector
def test_tx_hash_matches_vector(vector: dict[str, Any]) -> None:
    got = crypto.tx_hash(unhex(vector["digest"]), unhex(vector["signature"]))
    assert got == unhex(vector["txHash"])


@by_vector
def test_verify_message_recovers_the_vector_signer(vector: dict[str, Any]) -> None:
    msg = vector_message(vector)
    signature = wire.parse_signature(vector["signature"])
    tx = crypto.verify_message(msg, vector["chainId"], signature)
    assert tx.signer == vector["signer"] == signer_of(msg)
    assert tx.message == msg
    assert tx.signature == signature
    assert tx.digest == unhex(vector["digest"])
    assert tx.hash == unhex(vector["txHash"])


@by_vector
def test_sign_message_reproduces_the_vector_signature(vector: dict[str, Any]) -> None:
    msg = vector_message(vector)
    tx = crypto.sign_message(msg, vector["chainId"], unhex(vector["privateKey"]))
    assert tx.signature == unhex(vector["signature"])
    assert tx.digest == unhex(vector["digest"])
    assert tx.hash == unhex(vector["txHash"])
    assert tx.signer == vector["signer"]


@by_vector
def test_dev_private_key_derives_the_vector_key(vector: dict[str, Any]) -> None:
    key = crypto.dev_private_key(EIP712["mnemonic"], vector["signerIndex"])
    assert key == unhex(vector["privateKey"])
    assert crypto.address_of_private_key(key) == vector["signer"]


@by_vector
def test_vector_digest_matches_eth_account(vector: dict[str, Any]) -> None:
    signable = eth_account_signable(vector["type"], vector["message"], vector["chainId"])
    assert crypto.digest(vector_message(vector), vector["chainId"]) == _hash_eip191_message(
        signable
    )


@by_vector
def test_vector_signer_matches_eth_account(vector: dict[str, Any]) -> None:
    signature = unhex(vector["signature"])
    signable = eth_account_signable(vector["type"], vector["message"], vector["chainId"])
    tx = crypto.verify_message(vector_message(vector), vector["chainId"], signature)
    assert tx.signer == EthAccount.recover_message(signable, signature=signature)


def test_hex_and_text_spellings_of_the_same_bytes_have_one_digest() -> None:
    # PROTOCOL 1: a bytes field stands for bytes, so "0x516d58" and "QmX" sign the same message.
    vector = VECTORS["submitTask, hex bytes fields and a SID"]
    as_text = {**vector["message"], "schema": unhex(vector["message"]["schema"]).decode()}
    assert as_text["schema"] != vector["message"]["schema"]
    msg = wire.message_from_params(MESSAGE_TYPES["SubmitTask"], as_text)
    tx = crypto.verify_message(msg, vector["chainId"], unhex(vector["signature"]))
    assert tx.digest == unhex(vector["digest"])
    assert tx.signer == vector["signer"]


def test_hex_then_newline_is_text_in_the_digest() -> None:
    vector = VECTORS["submitTask, hex bytes fields and a SID"]
    params = {**vector["message"], "schema": vector["message"]["schema"] + "\n"}
    msg = wire.message_from_params(MESSAGE_TYPES["SubmitTask"], params)
    signable = eth_account_signable("SubmitTask", params, vector["chainId"])
    assert crypto.digest(msg, vector["chainId"]) == _hash_eip191_message(signable)
    assert crypto.digest(msg, vector["chainId"]) != unhex(vector["digest"])


def test_a_signature_from_another_key_names_both_addresses() -> None:
    vector = VECTORS["transfer"]
    other_key = mnemonic_key(5)
    msg = vector_message(vector)
    with pytest.raises(ValueError, match="does not belong to the signer"):
        crypto.sign_message(msg, vector["chainId"], other_key)
    signature = crypto.sign_digest(crypto.digest(msg, vector["chainId"]), other_key)
    with pytest.raises(InvalidSignature) as info:
        crypto.verify_message(msg, vector["chainId"], signature)
    assert info.value.expected == vector["signer"]
    assert info.value.recovered == EthAccount.from_key(other_key).address


# --- tests/vectors/invalid.json ------------------------------------------------------------

EXPECTATIONS = {"wrong-signer", "rejected", "malformed"}
REQUIRED_MUTATIONS = {"field", "chainId", "v", "length", "r", "s", "high-s", "signature"}


def mutate_signature(signature: str, mutation: dict[str, Any]) -> Any:
    kind = mutation["kind"]
    if kind == "signature":
        return mutation["value"]
    raw = bytearray(unhex(signature))
    if kind == "v":
        raw[64] = mutation["value"]
    elif kind == "v-flip":
        raw[64] = 55 - raw[64]
    elif kind == "r":
        raw[:32] = int(mutation["value"]).to_bytes(32, "big")
    elif kind == "s":
        raw[32:64] = int(mutation["value"]).to_bytes(32, "big")
    elif kind == "high-s":
        s = int.from_bytes(raw[32:64], "big")
        raw[32:64] = (SECPK1_N - s).to_bytes(32, "big")
        raw[64] = 55 - raw[64]
    elif kind == "length":
        raw = (raw + bytes(mutation["value"]))[: mutation["value"]]
    else:
        raise AssertionError(f"unknown mutation {kind}")
    return "0x" + bytes(raw).hex()


def apply_mutation(case: dict[str, Any]) -> tuple[Message, int, Any]:
    """The base vector's message, chainId and wire signature after the case's mutation."""
    base = VECTORS[case["base"]]
    params, chain_id, signature = dict(base["message"]), base["chainId"], base["signature"]
    mutation = case["mutation"]
    if mutation["kind"] == "field":
        assert params[mutation["field"]] != mutation["value"]
        params[mutation["field"]] = mutation["value"]
    elif mutation["kind"] == "chainId":
        assert mutation["value"] != chain_id
        chain_id = mutation["value"]
    else:
        signature = mutate_signature(signature, mutation)
        assert signature != base["signature"]
    return wire.message_from_params(MESSAGE_TYPES[base["type"]], params), chain_id, signature


def test_invalid_vectors_are_well_formed() -> None:
    names = [case["name"] for case in INVALID]
    assert len(names) == len(set(names))
    for case in INVALID:
        assert set(case) == {"name", "base", "mutation", "expect"}, case["name"]
        assert case["base"] in VECTORS, case["name"]
        assert case["expect"] in EXPECTATIONS, case["name"]
    assert {case["mutation"]["kind"] for case in INVALID} >= REQUIRED_MUTATIONS


@pytest.mark.parametrize("case", INVALID, ids=[case["name"] for case in INVALID])
def test_invalid_signature_is_rejected(case: dict[str, Any]) -> None:
    msg, chain_id, signature = apply_mutation(case)
    if case["expect"] == "malformed":
        with pytest.raises(InvalidSignature) as info:
            wire.parse_signature(signature)
        assert info.value.recovered is None
        return
    raw = wire.parse_signature(signature)
    with pytest.raises(InvalidSignature) as info:
        crypto.verify_message(msg, chain_id, raw)
    if case["expect"] == "wrong-signer":
        assert info.value.expected == signer_of(msg)
        assert info.value.recovered is not None
        assert info.value.recovered != info.value.expected
        signable = eth_account_signable(msg.TYPE, wire.message_to_params(msg), chain_id)
        assert info.value.recovered == EthAccount.recover_message(signable, signature=raw)
    else:
        assert info.value.recovered is None


@pytest.mark.parametrize(
    "case",
    [case for case in INVALID if case["mutation"]["kind"] == "high-s"],
    ids=[case["name"] for case in INVALID if case["mutation"]["kind"] == "high-s"],
)
def test_high_s_cases_are_true_malleations(case: dict[str, Any]) -> None:
    # The refused form still recovers to the signer elsewhere: only the low-s rule stops it.
    msg, chain_id, signature = apply_mutation(case)
    raw = unhex(signature)
    s = int.from_bytes(raw[32:64], "big")
    assert s > SECPK1_N // 2
    sig = KeyAPI.Signature(vrs=(raw[64] - 27, int.from_bytes(raw[:32], "big"), s))
    recovered = sig.recover_public_key_from_msg_hash(crypto.digest(msg, chain_id))
    assert recovered.to_checksum_address() == VECTORS[case["base"]]["signer"]


# --- random messages against eth-account ----------------------------------------------------

PRIVATE_KEYS = st.integers(min_value=1, max_value=SECPK1_N - 1).map(lambda k: k.to_bytes(32, "big"))
CHAIN_IDS = st.integers(min_value=1, max_value=2**53)


@by_type
@settings(deadline=None)
@given(data=st.data())
def test_random_messages_match_eth_account(type_name: str, data: st.DataObject) -> None:
    cls = MESSAGE_TYPES[type_name]
    params = data.draw(wire_params(cls))
    key = data.draw(PRIVATE_KEYS)
    chain_id = data.draw(CHAIN_IDS)
    params[signer_param(cls)] = EthAccount.from_key(key).address
    msg = wire.message_from_params(cls, params)
    signable = eth_account_signable(type_name, params, chain_id)

    assert crypto.digest(msg, chain_id) == _hash_eip191_message(signable)
    tx = crypto.sign_message(msg, chain_id, key)
    assert tx.signature == bytes(EthAccount.sign_message(signable, key).signature)
    assert tx.hash == reference_keccak(tx.digest + tx.signature)
    verified = crypto.verify_message(msg, chain_id, tx.signature)
    assert verified == tx
    assert verified.signer == EthAccount.recover_message(signable, signature=tx.signature)


@by_type
@settings(deadline=None, max_examples=30)
@given(data=st.data())
def test_random_message_signed_by_another_key_is_wrong_signer(
    type_name: str, data: st.DataObject
) -> None:
    cls = MESSAGE_TYPES[type_name]
    msg = wire.message_from_params(cls, data.draw(wire_params(cls)))
    key = data.draw(PRIVATE_KEYS)
    chain_id = data.draw(CHAIN_IDS)
    key_address = EthAccount.from_key(key).address
    if key_address == signer_of(msg):  # pragma: no cover - a 2**-160 coincidence
        return
    signature = crypto.sign_digest(crypto.digest(msg, chain_id), key)
    with pytest.raises(InvalidSignature) as info:
        crypto.verify_message(msg, chain_id, signature)
    assert info.value.expected == signer_of(msg)
    assert info.value.recovered == key_address


@given(digest=st.binary(min_size=32, max_size=32), key=PRIVATE_KEYS)
def test_signatures_are_low_s_and_the_malleated_form_is_refused(digest: bytes, key: bytes) -> None:
    signature = crypto.sign_digest(digest, key)
    address = EthAccount.from_key(key).address
    assert len(signature) == 65
    assert signature[64] in (27, 28)
    s = int.from_bytes(signature[32:64], "big")
    assert 0 < s <= SECPK1_N // 2
    assert crypto.recover_digest(digest, signature) == address
    malleated = signature[:32] + (SECPK1_N - s).to_bytes(32, "big") + bytes([55 - signature[64]])
    with pytest.raises(InvalidSignature):
        crypto.recover_digest(digest, malleated)


@given(key=PRIVATE_KEYS)
def test_address_of_private_key_matches_eth_account(key: bytes) -> None:
    assert crypto.address_of_private_key(key) == EthAccount.from_key(key).address


@given(data=st.binary(max_size=300))
def test_keccak_matches_pycryptodome(data: bytes) -> None:
    assert crypto.keccak(data) == reference_keccak(data)


@given(text=st.text())
def test_personal_message_hash_matches_eth_account(text: str) -> None:
    assert crypto.personal_message_hash(text) == _hash_eip191_message(encode_defunct(text=text))


# --- Ed25519 consensus keys -----------------------------------------------------------------

VALIDATOR_DEV_INDEX = 100


def test_validator_zero_consensus_key_matches_genesis() -> None:
    validator = SHIPPED_GENESIS["validators"][0]
    account_key = crypto.dev_private_key(SHIPPED_GENESIS["dev"]["mnemonic"], VALIDATOR_DEV_INDEX)
    assert account_key == mnemonic_key(VALIDATOR_DEV_INDEX)
    assert crypto.address_of_private_key(account_key) == validator["address"]
    seed = crypto.consensus_seed(account_key)
    assert seed == reference_keccak(account_key)
    public = crypto.ed25519_public_bytes(crypto.ed25519_private_key(seed))
    assert public == bytes.fromhex(validator["consensusPubKey"])


def _consensus_key() -> tuple[Ed25519PrivateKey, bytes]:
    key = crypto.ed25519_private_key(crypto.consensus_seed(mnemonic_key(VALIDATOR_DEV_INDEX)))
    return key, crypto.ed25519_public_bytes(key)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@given(data=st.binary(max_size=200), bit=st.integers(min_value=0, max_value=511))
def test_ed25519_verify_rejects_a_flipped_signature_bit(data: bytes, bit: int) -> None:
    key, public = _consensus_key()
    signature = key.sign(data)
    assert crypto.ed25519_verify(public, signature, data)
    assert not crypto.ed25519_verify(public, _flip(signature, bit), data)


@given(data=st.binary(min_size=1, max_size=200), position=st.integers(min_value=0))
def test_ed25519_verify_rejects_a_flipped_data_bit(data: bytes, position: int) -> None:
    key, public = _consensus_key()
    signature = key.sign(data)
    assert not crypto.ed25519_verify(public, signature, _flip(data, position % (len(data) * 8)))


def test_ed25519_verify_rejects_another_key_and_malformed_input() -> None:
    key, public = _consensus_key()
    other = crypto.ed25519_public_bytes(crypto.ed25519_private_key(bytes(32)))
    signature = key.sign(b"vote")
    assert crypto.ed25519_verify(public, signature, b"vote")
    assert not crypto.ed25519_verify(other, signature, b"vote")
    assert not crypto.ed25519_verify(public[:31], signature, b"vote")
    assert not crypto.ed25519_verify(public, signature[:63], b"vote")
    assert not crypto.ed25519_verify(public, b"", b"vote")


# The transactions verified last (crypto.verify_message's cache)


@settings(max_examples=60, deadline=None)
@given(amount=st.integers(1, 10**30), other=st.integers(1, 10**30), chain=st.integers(1, 10**6))
def test_a_verified_signature_is_remembered_only_for_its_own_message_and_chain(
    amount: int, other: int, chain: int
) -> None:
    key = bytes.fromhex("11" * 32)
    sender = crypto.address_of_private_key(key)
    message = Transfer(sender, 0, "0x" + "22" * 20, amount)
    signed = crypto.sign_message(message, 31337, key)
    first = crypto.verify_message(message, 31337, signed.signature)
    assert crypto.verify_message(message, 31337, signed.signature) == first == signed
    if other != amount:  # the same signature over another message: checked, and refused
        with pytest.raises(InvalidSignature):
            crypto.verify_message(
                Transfer(sender, 0, "0x" + "22" * 20, other), 31337, signed.signature
            )
    if chain != 31337:  # ... or for another chain
        with pytest.raises(InvalidSignature):
            crypto.verify_message(message, chain, signed.signature)


def test_the_verified_transactions_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto, "VERIFIED_CACHE", 8)
    key = bytes.fromhex("33" * 32)
    sender = crypto.address_of_private_key(key)
    for nonce in range(20):
        signed = crypto.sign_message(Transfer(sender, nonce, sender, 1), 7, key)
        crypto.verify_message(signed.message, 7, signed.signature)
        assert crypto.verified_cache_len() <= 8
