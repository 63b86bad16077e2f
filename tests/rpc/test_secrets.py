"""Chains of secrets and forced errors over JSON-RPC (PROTOCOL 4.12, 4.13): commitSecrets and
revealSecret with every refusal (code, data.param, message; nothing changed), their EIP-712
signatures against a digest computed here, and the settlement of a revealed forced error
(lazy verifiers slashed, the ones who caught it paid and given canaryBonus) and of a result
whose secret never came.

A real validator (tests.helpers.local_chain) whose blocks the tests produce (run=False). The
dev resource nodes commit `crypto.dev_secrets_head(key)` in the genesis (base 0); their
secrets are computed here (tests.helpers.dev_secret). Expected amounts follow PROTOCOL 4.8.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.protocol import crypto
from chain.protocol.types import CommitSecrets, RevealSecret
from rpc.client import Wallet, sign_params
from tests.helpers import (
    LocalChain,
    dev_secret,
    entry_of,
    local_chain,
    make_genesis,
    reveal_dev_secret,
    verify_with_assigned,
)
from tests.rpc.support import (
    CHAIN_ID,
    DEV0,
    DEV1,
    NODE0,
    NODE1,
    NODE2,
    NODE_STAKE,
    NODES,
    STRANGER,
    committed,
    mine,
    result_tx,
    rpc_error,
    snapshot,
    task_fee,
)

CDB = 3
VDB = 3
RDB = 3  # revealDeadlineBlocks
BPS = 10_000
CANARY_BONUS = 10**16
ZERO = "0x" + "00" * 32
WATCHED = (DEV0.address, DEV1.address, STRANGER.address, *(n.address for n in NODES))
MESSAGES = {-32000: "Invalid nonce provided", -32005: "Not eligible", -32602: "Invalid params"}
VERIFIED, REJECTED = 2, 3


def secrets_genesis(rate_bps: int) -> Any:
    return make_genesis(
        compute_deadline_blocks=CDB,
        verify_deadline_blocks=VDB,
        reveal_deadline_blocks=RDB,
        canary_rate_bps=rate_bps,
    )


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """The dev chain with forced errors at the default rate (canaryRateBps 100)."""
    async with local_chain(tmp_path / "ledger", secrets_genesis(100), run=False) as running:
        yield running


@pytest.fixture
async def always(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """canaryRateBps 10000: every result is a forced error, whatever the secret."""
    async with local_chain(tmp_path / "ledger", secrets_genesis(BPS), run=False) as running:
        yield running


async def nodes_by_address(chain: LocalChain) -> dict[str, dict[str, Any]]:
    return {n["address"]: n for n in await chain.client.get_resource_nodes()}


async def refused(chain: LocalChain, method: str, params: Any, code: int) -> dict[str, Any]:
    """`method` answers error `code` with the message of the table (PROTOCOL 5.3) and a data
    object, and changes nothing; returns the data."""
    before = await snapshot(chain.client, *WATCHED)
    error = await rpc_error(chain.client, method, params)
    assert error.code == code, error
    assert error.message == MESSAGES[code], error
    assert await snapshot(chain.client, *WATCHED) == before
    assert error.data is not None
    return error.data


def commit_params(wallet: Wallet, nonce: int, head: bytes) -> dict[str, Any]:
    """commitSecrets params signed by `wallet` (a key the node does not hold)."""
    return sign_params(CommitSecrets(wallet.address, nonce, head), CHAIN_ID, wallet.private_key)


def reveal_params(wallet: Wallet, height: int, secret: bytes) -> dict[str, Any]:
    msg = RevealSecret(wallet.address, height, secret)
    return sign_params(msg, CHAIN_ID, wallet.private_key)


async def open_task(chain: LocalChain, prompts: str = "What is 2 + 2?") -> str:
    receipt = await chain.client.submit_task(
        DEV0, prompts=prompts, target_count=1, model_options='{"model":"demo"}'
    )
    mine(chain)
    return receipt.task_hash


# commitSecrets


async def test_commit_secrets_starts_a_new_chain(manual: LocalChain) -> None:
    client = manual.client
    head = crypto.dev_secrets_head(NODE0.private_key, 1)
    before = await client.get_account(NODE0.address)
    tx_hash = await client.commit_secrets(NODE0, head)
    height = mine(manual)
    record = await committed(manual, tx_hash)
    assert record["blockHeight"] == height and record["signer"] == NODE0.address
    assert (await nodes_by_address(manual))[NODE0.address]["secrets"] == {
        "base": height,
        "head": "0x" + head.hex(),
        "revealed": "0x" + head.hex(),
        "revealedHeight": height,
    }
    after = await client.get_account(NODE0.address)
    assert after["nonce"] == before["nonce"] + 1 and after["balance"] == before["balance"]
    # the other nodes keep their genesis chains
    genesis_head = "0x" + crypto.dev_secrets_head(NODE1.private_key).hex()
    assert (await nodes_by_address(manual))[NODE1.address]["secrets"]["head"] == genesis_head

    # a secret of the new chain reveals against it; one of the old chain no longer does
    secret = dev_secret(NODE0.private_key, height + 1, base=height, epoch=1)
    old = dev_secret(NODE0.private_key, height + 1)
    data = await refused(manual, "revealSecret", reveal_params(NODE0, height + 1, old), -32602)
    assert data["param"] == "secret"
    await client.reveal_secret(NODE0, height + 1, secret)
    mine(manual)
    secrets = (await nodes_by_address(manual))[NODE0.address]["secrets"]
    assert secrets["revealedHeight"] == height + 1 and secrets["revealed"] == "0x" + secret.hex()


async def test_commit_secrets_refusals_change_nothing(manual: LocalChain) -> None:
    client = manual.client
    head = crypto.dev_secrets_head(NODE0.private_key, 1)
    # -32000: the nonce comes first, before any other check
    for nonce, secrets_head in ((1, head), (7, head), (3, bytes(32))):
        params = commit_params(NODE0, nonce, secrets_head)
        data = await refused(manual, "commitSecrets", params, -32000)
        assert data == {"address": NODE0.address, "expected": 0, "got": nonce}
    # -32602: the zero hash cannot head a chain
    data = await refused(manual, "commitSecrets", commit_params(NODE0, 0, bytes(32)), -32602)
    assert data["param"] == "head"
    dev = {"sender": DEV0.address, "head": ZERO}
    assert (await refused(manual, "commitSecrets", dev, -32602))["param"] == "head"
    # -32005: not a registered resource node (signed, and an unlocked dev account)
    data = await refused(manual, "commitSecrets", commit_params(STRANGER, 0, head), -32005)
    assert data["address"] == STRANGER.address
    dev = {"sender": DEV1.address, "head": "0x" + head.hex()}
    assert (await refused(manual, "commitSecrets", dev, -32005))["address"] == DEV1.address
    # -32005: a node with a result in an unsettled task
    task_hash = await open_task(manual)
    assert await client.send_presigned(result_tx(NODE0, task_hash, "4"))
    mine(manual)
    data = await refused(manual, "commitSecrets", commit_params(NODE0, 0, head), -32005)
    assert data["address"] == NODE0.address and "unsettled" in data["reason"]
    # ... and its verifiers, once they gave a verdict
    await verify_with_assigned(client, task_hash, NODE0.address, True)
    mine(manual)
    data = await refused(manual, "commitSecrets", commit_params(NODE1, 0, head), -32005)
    assert data["address"] == NODE1.address
    # the genesis chains are still there
    nodes = await nodes_by_address(manual)
    for node in NODES:
        assert nodes[node.address]["secrets"]["base"] == 0
        assert nodes[node.address]["secrets"]["revealedHeight"] == 0


# revealSecret


async def test_reveal_secret_refusals_change_nothing(manual: LocalChain) -> None:
    client = manual.client
    mine(manual, 3)
    head_height = manual.node.head.height  # the next block is head_height + 1
    good = dev_secret(NODE0.private_key, head_height)
    # -32005: not a registered node; registered without secrets
    data = await refused(manual, "revealSecret", reveal_params(STRANGER, 1, good), -32005)
    assert data["address"] == STRANGER.address
    await client.register_resource_node(DEV1, "*", "")
    mine(manual)
    unsigned = {"resourceNode": DEV1.address, "height": 1, "secret": "0x" + good.hex()}
    data = await refused(manual, "revealSecret", unsigned, -32005)
    assert data["address"] == DEV1.address and data["reason"] == "no secrets committed"
    # -32602 height: not above revealedHeight (0), beyond the block's height
    for height in (0, manual.node.head.height + 2, manual.node.head.height + 100):
        secret = dev_secret(NODE0.private_key, height)
        data = await refused(manual, "revealSecret", reveal_params(NODE0, height, secret), -32602)
        assert data["param"] == "height", (height, data)
    # -32602 secret: the secret of another height, of another node, of no chain
    height = manual.node.head.height
    for secret in (
        dev_secret(NODE0.private_key, height - 1),
        dev_secret(NODE0.private_key, height + 1),
        dev_secret(NODE1.private_key, height),
        bytes(32),
    ):
        data = await refused(manual, "revealSecret", reveal_params(NODE0, height, secret), -32602)
        assert data["param"] == "secret"
    # the good one: the node's revealedHeight moves, and that height cannot be revealed again
    secret = dev_secret(NODE0.private_key, height)
    tx_hash = await reveal_dev_secret(client, NODE0, height)
    mine(manual)
    await committed(manual, tx_hash)
    secrets = (await nodes_by_address(manual))[NODE0.address]["secrets"]
    assert secrets["revealedHeight"] == height and secrets["revealed"] == "0x" + secret.hex()
    assert keccak(secret) == dev_secret(NODE0.private_key, height - 1)  # the chain, hashed
    data = await refused(manual, "revealSecret", reveal_params(NODE0, height, secret), -32602)
    assert data["param"] == "height"
    earlier = dev_secret(NODE0.private_key, height - 1)
    data = await refused(manual, "revealSecret", reveal_params(NODE0, height - 1, earlier), -32602)
    assert data["param"] == "height"


@pytest.mark.long
@pytest.mark.skipif(
    os.environ.get("INFERCHAIN_LONG") != "1", reason="4097 blocks first: INFERCHAIN_LONG=1"
)
async def test_a_reveal_reaches_at_most_4096_heights(manual: LocalChain) -> None:
    mine(manual, 4097)
    far = 4097
    data = await refused(
        manual,
        "revealSecret",
        reveal_params(NODE0, far, dev_secret(NODE0.private_key, far)),
        -32602,
    )
    assert data["param"] == "height"
    await reveal_dev_secret(manual.client, NODE0, 4096)
    mine(manual)
    secrets = (await nodes_by_address(manual))[NODE0.address]["secrets"]
    assert secrets["revealedHeight"] == 4096


# EIP-712 of the two new types, computed here (PROTOCOL 3)


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _typed_digest(type_text: str, encoded: bytes) -> bytes:
    domain = keccak(
        keccak(b"EIP712Domain(string name,string version,uint256 chainId)")
        + keccak(b"AegisAI")
        + keccak(b"1")
        + _word(CHAIN_ID)
    )
    return keccak(b"\x19\x01" + domain + keccak(keccak(type_text.encode()) + encoded))


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


async def test_the_client_signs_both_types_over_the_eip712_digest(manual: LocalChain) -> None:
    client = manual.client
    head = crypto.dev_secrets_head(NODE2.private_key, 1)
    commit_hash = await client.commit_secrets(NODE2, head)
    mine(manual)
    sent = await client.get_transaction(commit_hash)
    assert sent["type"] == "CommitSecrets"
    params = sent["params"]
    assert params == {**params, "sender": NODE2.address, "nonce": 0, "head": "0x" + head.hex()}
    digest = _typed_digest(
        "CommitSecrets(address sender,uint64 nonce,bytes32 head)",
        _address_word(NODE2.address) + _word(0) + head,
    )
    signature = bytes.fromhex(params["signature"][2:])
    assert crypto.recover_digest(digest, signature) == NODE2.address
    assert "0x" + keccak(digest + signature).hex() == commit_hash

    base = manual.node.head.height
    height = base + 1
    secret = dev_secret(NODE2.private_key, height, base=base, epoch=1)
    reveal_hash = await client.reveal_secret(NODE2, height, secret)
    mine(manual)
    sent = await client.get_transaction(reveal_hash)
    assert sent["type"] == "RevealSecret"
    params = sent["params"]
    assert params == {
        **params,
        "resourceNode": NODE2.address,
        "height": height,
        "secret": "0x" + secret.hex(),
    }
    digest = _typed_digest(
        "RevealSecret(address resourceNode,uint64 height,bytes32 secret)",
        _address_word(NODE2.address) + _word(height) + secret,
    )
    signature = bytes.fromhex(params["signature"][2:])
    assert crypto.recover_digest(digest, signature) == NODE2.address
    assert "0x" + keccak(digest + signature).hex() == reveal_hash
    assert (await committed(manual, reveal_hash))["signer"] == NODE2.address


# Settlement of forced errors (PROTOCOL 4.8, 4.13)


def check_adds_up(settlement: dict[str, Any]) -> None:
    paid = sum(int(p["amount"]) for p in settlement["payouts"])
    slashed = sum(int(s["amount"]) for s in settlement["slashed"])
    incoming = int(settlement["fee"]) + int(settlement["networkReward"]) + slashed
    assert paid + int(settlement["refund"]) + int(settlement["burned"]) == incoming


def shares(pool: int, count: int) -> list[int]:
    weights = [BPS]
    while len(weights) < count:
        weights.append(weights[-1] * (BPS - 1000) // BPS)
    return [pool * w // sum(weights) for w in weights[:count]]


@pytest.mark.parametrize("valid", [True, False], ids=["lazy", "caught"])
async def test_a_revealed_forced_error(always: LocalChain, valid: bool) -> None:
    """Every result is a forced error here. Its verifiers who said `valid` are slashed as lazy;
    those who said invalid are the winning side and each gets canaryBonus, minted. The
    submitter is neither paid nor slashed, and the task fails (no valid result)."""
    client = always.client
    accounts = {n.address: await client.get_account(n.address) for n in NODES}
    sender_before = int((await client.get_account(DEV0.address))["balance"])
    task_hash = await open_task(always)
    created = always.node.head.height
    assert await client.send_presigned(result_tx(NODE0, task_hash, "deliberately wrong"))
    mine(always)
    verifiers = await verify_with_assigned(client, task_hash, NODE0.address, valid)
    decided = mine(always)
    task = await client.query_task(task_hash)
    entry = entry_of(task, NODE0.address)
    assert entry["status"] == (VERIFIED if valid else REJECTED)
    assert entry["forcedError"] is None  # not known before the reveal
    # waits for the secret (a rejected result frees its slot: processing)
    assert task["status"] == ("completed" if valid else "processing")
    assert task["settlement"] is None
    pending = {i["taskHash"]: i for i in await client.query_pending_tasks(NODE0)}
    assert pending[task_hash]["reveal"] is True

    await reveal_dev_secret(client, NODE0, created)
    height = mine(always)
    assert height > decided
    task = await client.query_task(task_hash)
    entry = entry_of(task, NODE0.address)
    assert entry["forcedError"] is True
    assert task["status"] == "failed" and task["response"] is None
    assert task["verificationCount"] == 0 and task["finishedHeight"] == height

    fee = task_fee(1)
    pool_c = fee * 7000 // BPS
    settlement = task["settlement"]
    if valid:
        lazy = NODE_STAKE * 500 // BPS
        assert settlement["slashed"] == [
            {"address": v, "amount": str(lazy), "reason": "lazy"} for v in verifiers
        ]
        assert settlement["payouts"] == []
        assert settlement == {
            **settlement,
            "networkReward": "0",
            "burned": str(2 * lazy),
            "refund": str(fee),
        }
        gains = dict.fromkeys(verifiers, 0)
        losses = dict.fromkeys(verifiers, lazy)
    else:
        pool_v = fee - pool_c
        verify = shares(pool_v, 2)
        assert settlement["slashed"] == []
        assert sorted(settlement["payouts"], key=lambda p: (p["role"], p["rank"])) == [
            *(
                {"address": v, "amount": str(CANARY_BONUS), "role": "canary", "rank": k + 1}
                for k, v in enumerate(verifiers)
            ),
            *(
                {"address": v, "amount": str(verify[k]), "role": "verify", "rank": k + 1}
                for k, v in enumerate(verifiers)
            ),
        ]
        refund = pool_c + pool_v - sum(verify)
        assert settlement == {
            **settlement,
            "networkReward": str(2 * CANARY_BONUS),
            "burned": "0",
            "refund": str(refund),
        }
        gains = {v: verify[k] + CANARY_BONUS for k, v in enumerate(verifiers)}
        losses = dict.fromkeys(verifiers, 0)
    check_adds_up(settlement)
    for node in NODES:
        account = await client.get_account(node.address)
        before = accounts[node.address]
        gain, loss = gains.get(node.address, 0), losses.get(node.address, 0)
        assert int(account["balance"]) == int(before["balance"]) + gain
        assert int(account["stake"]) == int(before["stake"]) - loss
    sender_after = int((await client.get_account(DEV0.address))["balance"])
    assert sender_after == sender_before - fee + int(settlement["refund"])


async def test_a_result_whose_secret_never_comes_is_treated_as_wrong(
    manual: LocalChain,
) -> None:
    """A verified result not revealed by the reveal deadline: neither paid nor the response,
    its submitter slashed as for a rejected result, its verdicts neither paid nor slashed."""
    client = manual.client
    task_hash = await open_task(manual)
    created = manual.node.head.height
    assert await client.send_presigned(result_tx(NODE0, task_hash, "4"))
    mine(manual)
    await verify_with_assigned(client, task_hash, NODE0.address, True)
    mine(manual)
    assert entry_of(await client.query_task(task_hash), NODE0.address)["status"] == VERIFIED
    stakes = {n.address: (await client.get_account(n.address))["stake"] for n in NODES}
    reveal_deadline = created + CDB + VDB + RDB
    mine(manual, reveal_deadline - 1 - manual.node.head.height)
    task = await client.query_task(task_hash)
    assert task["status"] == "completed" and task["settlement"] is None
    assert mine(manual) == reveal_deadline
    task = await client.query_task(task_hash)
    assert task["status"] == "failed" and task["finishedHeight"] == reveal_deadline
    assert task["response"] is None
    assert entry_of(task, NODE0.address)["forcedError"] is None
    fee = task_fee(1)
    slashed = NODE_STAKE * 1000 // BPS  # resultSlashBps
    settlement = task["settlement"]
    assert settlement["slashed"] == [
        {"address": NODE0.address, "amount": str(slashed), "reason": "result"}
    ]
    assert settlement["payouts"] == []
    assert settlement == {
        **settlement,
        "networkReward": "0",
        "burned": str(slashed),
        "refund": str(fee),
    }
    check_adds_up(settlement)
    for node in NODES:
        stake = int((await client.get_account(node.address))["stake"])
        lost = slashed if node == NODE0 else 0
        assert stake == int(stakes[node.address]) - lost
    # too late now: the task is settled
    late = reveal_params(NODE0, created, dev_secret(NODE0.private_key, created))
    assert await client.call("revealSecret", late)  # the secret itself is still good ...
    mine(manual)
    assert (await client.query_task(task_hash))["settlement"] == settlement  # ... and late


async def test_queryTask_shows_whether_a_revealed_result_was_a_forced_error(
    manual: LocalChain,
) -> None:
    """At canaryRateBps 100 the rule decides, computed here from the secret: forcedError is
    `is_forced_error(s_h, taskHash, 100)` once revealed, and the task's outcome follows it."""
    client = manual.client
    for k in range(3):
        task_hash = await open_task(manual, prompts=f"question {k}")
        created = manual.node.head.height
        assert await client.send_presigned(result_tx(NODE0, task_hash, "answer"))
        mine(manual)
        await verify_with_assigned(client, task_hash, NODE0.address, True)
        mine(manual)
        await reveal_dev_secret(client, NODE0, created)
        mine(manual)
        task = await client.query_task(task_hash)
        secret = dev_secret(NODE0.private_key, created)
        forced = crypto.is_forced_error(secret, bytes.fromhex(task_hash[2:]), 100)
        assert entry_of(task, NODE0.address)["forcedError"] is forced
        assert task["status"] == ("failed" if forced else "verified")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32),
       st.integers(0, BPS))  # fmt: skip
def test_is_forced_error_is_the_rule_of_4_13(secret: bytes, task: bytes, rate: int) -> None:
    """int(keccak256(s_h || taskHash)) * 10000 < canaryRateBps * 2^256, computed here."""
    draw = int.from_bytes(keccak(secret + task), "big")
    assert crypto.is_forced_error(secret, task, rate) is (draw * BPS < rate * 2**256)
    assert crypto.is_forced_error(secret, task, BPS) is True
    assert crypto.is_forced_error(secret, task, 0) is False


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 64), st.integers(0, 1000))
def test_a_dev_secret_hashes_to_the_head(steps: int, base: int) -> None:
    """The secret of height base + steps hashes `steps` times to the head (PROTOCOL 4.13),
    and once to the secret of the height below it."""
    key = NODE1.private_key
    secret = dev_secret(key, base + steps, base)
    assert crypto.hash_steps(secret, steps) == crypto.dev_secrets_head(key)
    assert keccak(secret) == dev_secret(key, base + steps - 1, base)
