"""The client library's signing: pure tests, no server.

The EIP-712 vectors (tests/vectors/eip712.json, produced by ethers.js) pin every byte the
client signs. The client's bookkeeping against a validator (nonces, batches, errors,
notifications, GET /tx) is tested against the real server in tests/rpc/test_client.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.protocol import crypto, wire
from chain.protocol.genesis import DEV_MNEMONIC
from chain.protocol.types import MESSAGE_TYPES, SubmitTask
from rpc.client import (
    InferchainClient,
    RpcError,
    TransportError,
    Wallet,
    pending_tasks_message,
    pending_tasks_params,
    presign,
    sign_params,
    sign_pending_tasks_query,
)

VECTORS_FILE = Path(__file__).resolve().parents[1] / "vectors" / "eip712.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text())


def _vector_id(vector: dict[str, Any]) -> str:
    return str(vector["name"])


# Wallets


def test_dev_mnemonic_index_0_is_the_anvil_account() -> None:
    wallet = Wallet.from_mnemonic(DEV_MNEMONIC, 0)
    assert wallet.address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert Wallet.dev(0) == wallet


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_id)
def test_mnemonic_derivation_matches_vector_keys(vector: dict[str, Any]) -> None:
    wallet = Wallet.from_mnemonic(VECTORS["mnemonic"], vector["signerIndex"])
    assert wallet.address == vector["signer"]
    assert "0x" + wallet.private_key.hex() == vector["privateKey"]


def test_from_key_accepts_hex_with_or_without_prefix_and_bytes() -> None:
    key_hex = VECTORS["vectors"][0]["privateKey"]
    expected = VECTORS["vectors"][0]["signer"]
    assert Wallet.from_key(key_hex).address == expected
    assert Wallet.from_key(key_hex[2:]).address == expected
    assert Wallet.from_key(bytes.fromhex(key_hex[2:])).address == expected


@pytest.mark.parametrize("bad", ["0x1234", "zz" * 32, b"\x00" * 32, "0x" + "ff" * 32])
def test_from_key_rejects_bad_keys(bad: str | bytes) -> None:
    with pytest.raises(ValueError):
        Wallet.from_key(bad)


def test_wallet_repr_hides_the_private_key() -> None:
    wallet = Wallet.dev(1)
    assert wallet.private_key.hex() not in repr(wallet)
    assert wallet.address in repr(wallet)


# EIP-712 signing against the vectors


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=_vector_id)
def test_sign_params_reproduces_vector(vector: dict[str, Any]) -> None:
    cls = MESSAGE_TYPES[vector["type"]]
    msg = wire.message_from_params(cls, vector["message"])
    private_key = bytes.fromhex(vector["privateKey"][2:])

    params = sign_params(msg, vector["chainId"], private_key)
    assert params["signature"] == vector["signature"]
    assert {k: v for k, v in params.items() if k != "signature"} == vector["message"]

    tx = presign(msg, vector["chainId"], private_key)
    assert tx.params == params
    assert tx.tx_hash == vector["txHash"]
    assert tx.digest == vector["digest"]
    if cls is SubmitTask:
        assert tx.digest == vector["taskHash"]
    # What the server will do with these params: parse them and recover the signer.
    parsed = wire.message_from_params(cls, {k: v for k, v in params.items() if k != "signature"})
    signed = crypto.verify_message(
        parsed, vector["chainId"], wire.parse_signature(params["signature"])
    )
    assert signed.signer == vector["signer"]


def test_presign_method_names() -> None:
    methods = set()
    for vector in VECTORS["vectors"]:
        msg = wire.message_from_params(MESSAGE_TYPES[vector["type"]], vector["message"])
        methods.add(presign(msg, vector["chainId"], bytes.fromhex(vector["privateKey"][2:])).method)
    assert methods == {
        "submitTask",
        "submitInferenceResult",
        "submitVerification",
        "transfer",
        "stake",
        "unstake",
        "registerResourceNode",
        "commitSecrets",
        "revealSecret",
        "aoSpawn",
        "aoMessage",
        "aoDataItem",
        "aoTerminate",
    }


def test_signature_depends_on_chain_id() -> None:
    vector = VECTORS["vectors"][0]
    msg = wire.message_from_params(SubmitTask, vector["message"])
    key = bytes.fromhex(vector["privateKey"][2:])
    assert presign(msg, vector["chainId"] + 1, key).tx_hash != vector["txHash"]


# queryPendingTasks (EIP-191)


CHAIN_ID = 7331


def test_pending_tasks_signature_recovers_to_wallet() -> None:
    wallet = Wallet.dev(200)
    before = int(time.time())
    params = pending_tasks_params(wallet, limit=5, chain_id=CHAIN_ID)
    assert params["ResourceAddress"] == wallet.address
    assert before <= params["TimeStamp"] <= int(time.time())
    assert params["limit"] == 5

    text = f"queryPendingTasks:{CHAIN_ID}:{wallet.address}:{params['TimeStamp']}"
    assert pending_tasks_message(wallet.address.lower(), params["TimeStamp"], CHAIN_ID) == text
    signature = bytes.fromhex(params["Signature"][2:])
    assert len(signature) == 65
    assert crypto.recover_digest(crypto.personal_message_hash(text), signature) == wallet.address

    # The signature is bound to the timestamp and to the chain: another one of either
    # recovers to another address.
    stamp = params["TimeStamp"]
    for other in (
        f"queryPendingTasks:{CHAIN_ID}:{wallet.address}:{stamp + 1}",
        f"queryPendingTasks:{CHAIN_ID + 1}:{wallet.address}:{stamp}",
        f"queryPendingTasks:{wallet.address}:{stamp}",
    ):
        recovered = crypto.recover_digest(crypto.personal_message_hash(other), signature)
        assert recovered != wallet.address


def test_pending_tasks_signature_without_a_chain_is_the_deprecated_text() -> None:
    wallet = Wallet.dev(200)
    with pytest.warns(DeprecationWarning, match="chain_id"):
        params = pending_tasks_params(wallet, 1_700_000_000)
    text = f"queryPendingTasks:{wallet.address}:1700000000"
    signature = bytes.fromhex(params["Signature"][2:])
    assert crypto.recover_digest(crypto.personal_message_hash(text), signature) == wallet.address


@settings(max_examples=50, deadline=None)
@given(
    chain_id=st.integers(0, 2**63 - 1),
    other=st.integers(0, 2**63 - 1),
    stamp=st.integers(0, 2**63 - 1),
)
def test_a_pending_tasks_signature_holds_for_its_chain_only(
    chain_id: int, other: int, stamp: int
) -> None:
    wallet = Wallet.dev(201)
    signature = bytes.fromhex(sign_pending_tasks_query(wallet, stamp, chain_id)[2:])
    own = crypto.personal_message_hash(pending_tasks_message(wallet.address, stamp, chain_id))
    assert crypto.recover_digest(own, signature) == wallet.address
    if other != chain_id:
        foreign = pending_tasks_message(wallet.address, stamp, other)
        recovered = crypto.recover_digest(crypto.personal_message_hash(foreign), signature)
        assert recovered != wallet.address


def test_rpc_error_str_shows_code_message_and_data() -> None:
    error = RpcError(-32000, "Invalid nonce provided", {"expected": 3})
    text = str(error)
    assert "-32000" in text and "Invalid nonce provided" in text and "'expected': 3" in text


# Transport errors below JSON-RPC (nothing listens: no server involved)


async def test_transport_error_when_nothing_listens() -> None:
    async with InferchainClient("http://127.0.0.1:9/", timeout=2.0) as client:
        assert client.url == "http://127.0.0.1:9"
        with pytest.raises(TransportError) as info:
            await client.block_number()
    assert info.value.status is None
