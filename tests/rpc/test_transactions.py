"""Account transactions over JSON-RPC (PROTOCOL 3, 5.1, 5.2, 5.4): the EIP-712 vectors as
upstream-shaped requests, their effects once committed, queryTask, and dev mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chain.protocol.types import SubmitTask, Transfer
from rpc.client import presign
from tests.helpers import LocalChain, local_chain, make_genesis
from tests.rpc.support import (
    CHAIN_ID,
    DEAD,
    DEV0,
    DEV1,
    DEV_BALANCE,
    MAX_TARGET_COUNT,
    NODE_BALANCE,
    NODE_STAKE,
    TRANSFER_FEE,
    ZERO_SID,
    Wallet,
    committed,
    task_fee,
    task_params,
    vector,
)

UTF8_TASK = "submitTask, utf-8 fields as in the upstream example"
HEX_TASK = "submitTask, hex bytes fields and a SID"
TASK_FIELDS = ("sender", "nonce", "schema", "targetCount", "prompts", "modelOptions", "SID")
SUBMIT_TASK_ORDER = (*TASK_FIELDS, "feeParams", "signature")


def signed_params(item: dict[str, Any]) -> dict[str, Any]:
    return {**item["message"], "signature": item["signature"]}


def assert_task_echoes(task: dict[str, Any], message: dict[str, Any]) -> None:
    """queryTask returns every SubmitTask field exactly as it was sent (PROTOCOL 1)."""
    for key in ("sender", "schema", "prompts", "modelOptions", "SID", "feeParams"):
        assert task[key] == message[key], key
    assert task["nonce"] == int(message["nonce"])
    assert int(task["targetCount"]) == int(message["targetCount"])


# The EIP-712 vectors, sent as the upstream API shapes them


@pytest.mark.parametrize("shape", ["named", "positional", "submitRequest"])
async def test_upstream_task_vector_is_accepted_with_its_hashes(
    chain: LocalChain, shape: str
) -> None:
    item = vector(UTF8_TASK)
    assert item["chainId"] == CHAIN_ID and item["signer"] == DEV0.address
    params: Any = signed_params(item)
    method = "submitTask"
    if shape == "positional":
        params = [params[name] for name in SUBMIT_TASK_ORDER]
    elif shape == "submitRequest":
        method = "submitRequest"

    result = await chain.client.call(method, params)
    assert result == {
        "txHash": item["txHash"],
        "taskHash": item["taskHash"],
        "requestHash": item["taskHash"],
    }
    tx = await committed(chain, item["txHash"])
    assert tx["signer"] == item["signer"] and tx["associated_task"] == item["taskHash"]

    for query in ({"taskHash": item["taskHash"]}, {"requestHash": item["taskHash"]}):
        task = await chain.client.call("queryTask", query)
        assert task["status"] == "submitted"
        assert task["taskHash"] == item["taskHash"] and task["txHash"] == item["txHash"]
        assert_task_echoes(task, item["message"])
        assert task["fee"] == str(task_fee(3))
        assert task["createdHeight"] == tx["blockHeight"]
        assert task["response"] is None and task["verificationCount"] == 0
        assert task["executionInfo"] == [] and task["settlement"] is None
        assert task["finishedHeight"] is None and task["finishedAt"] is None
    assert await chain.client.call("queryTask", [item["taskHash"]]) == task

    account = await chain.client.get_account(DEV0.address)
    assert account["balance"] == str(DEV_BALANCE - task_fee(3)) and account["nonce"] == 1


async def test_account_vectors_are_accepted_and_take_effect(chain: LocalChain) -> None:
    """transfer (dev 3), stake then unstake (resource node 0), registerResourceNode (node 2):
    each vector, on a fresh chain, is accepted with the vector's txHash."""
    client = chain.client
    results = {}
    for name, method in [
        ("transfer", "transfer"),
        ("stake", "stake"),
        ("unstake", "unstake"),
        ("registerResourceNode", "registerResourceNode"),
    ]:
        item = vector(name)
        assert item["chainId"] == CHAIN_ID
        results[name] = await client.call(method, signed_params(item))
        assert results[name] == {"txHash": item["txHash"]}, name
    for name in results:
        await committed(chain, vector(name)["txHash"])

    sender = await client.get_account(vector("transfer")["signer"])
    assert sender["balance"] == str(DEV_BALANCE - 10**18 - TRANSFER_FEE) and sender["nonce"] == 1
    assert (await client.get_account(DEAD))["balance"] == str(10**18)

    node = await client.get_account(vector("stake")["signer"])
    staked = 1000 * 10**18
    assert node["stake"] == str(NODE_STAKE + staked - 5)
    assert node["balance"] == str(NODE_BALANCE - staked + 5)
    assert node["nonce"] == 2

    registered = vector("registerResourceNode")
    account = await client.get_account(registered["signer"])
    assert account["resourceNode"] == {
        "models": registered["message"]["models"],
        "endpoint": registered["message"]["endpoint"],
    }
    listed = {n["address"]: n for n in await client.get_resource_nodes()}
    assert listed[registered["signer"]]["models"] == registered["message"]["models"]
    assert listed[registered["signer"]]["endpoint"] == registered["message"]["endpoint"]


async def test_hex_task_vector_after_41_dev_mode_calls(chain: LocalChain) -> None:
    """The vector of dev account 1 has nonce 41: a batch of 41 dev-mode transfers first, then
    the vector with its hex fields, its SID and a feeParams maxFee above the fee."""
    client = chain.client
    item = vector(HEX_TASK)
    assert item["signer"] == DEV1.address and item["message"]["nonce"] == 41
    calls: list[tuple[str, Any]] = [
        ("transfer", {"sender": DEV1.address, "to": DEAD, "amount": "1"}) for _ in range(41)
    ]
    answers = await client.batch(calls)
    assert all(isinstance(a, dict) and "txHash" in a for a in answers), answers
    assert (await client.get_account(DEV1.address))["pendingNonce"] == 41

    result = await client.call("submitTask", signed_params(item))
    assert result["txHash"] == item["txHash"] and result["taskHash"] == item["taskHash"]
    await committed(chain, item["txHash"])
    task = await client.query_task(item["taskHash"])
    assert_task_echoes(task, item["message"])
    assert task["fee"] == str(task_fee(1))


# queryTask echoes bytes fields unchanged


ECHO_CASES = {
    "hex lower": {"prompts": "0xdeadbeef", "schema": "0x516d58"},
    "hex upper stays upper": {"prompts": "0xDEADBEEF", "modelOptions": "0xAbCd"},
    "empty hex": {"prompts": "0x", "modelOptions": "0x", "schema": "0x"},
    "odd hex is text": {"prompts": "0xabc", "schema": "0x0"},
    "not hex is text": {"prompts": "0xzz", "feeParams": "0xnope"},
    "unicode": {"prompts": '{"prompt":"¿Qué es Arweave? — 漢字 🚀"}', "schema": "ünï"},
    "whitespace and controls": {"prompts": "  a\nb\tc  ", "modelOptions": " "},
    "empty strings": {"prompts": "", "schema": "", "modelOptions": ""},
    "json modelOptions": {"modelOptions": '{"model":"m","temperature":2,"top_p":0,"max_tokens":1}'},
    "sid": {"SID": "0x" + "ab" * 32},
    "upper sid": {"SID": "0x" + "AB" * 32},
}


@pytest.mark.parametrize("fields", list(ECHO_CASES.values()), ids=list(ECHO_CASES))
async def test_query_task_echoes_fields_unchanged(
    chain: LocalChain, fields: dict[str, str]
) -> None:
    client = chain.client
    params = task_params(DEV0.address, **{"SID": ZERO_SID, "feeParams": "", **fields})
    result = await client.call("submitTask", params)
    assert result["requestHash"] == result["taskHash"]
    await committed(chain, result["txHash"])
    task = await client.query_task(result["taskHash"])
    expected = {**params, "nonce": 0}
    if "SID" in fields:
        expected["SID"] = fields["SID"].lower()  # bytes32: a hash, rendered lowercase
    assert_task_echoes(task, expected)
    assert task["status"] == "submitted"
    full = await client.get_transaction(result["txHash"])
    for key, value in fields.items():
        if key != "SID":
            assert full["params"][key] == value


@pytest.mark.parametrize("target_count", [1, 2, 7, MAX_TARGET_COUNT])
async def test_fee_is_base_plus_per_node_times_target_count(
    chain: LocalChain, target_count: int
) -> None:
    client = chain.client
    receipt = await client.submit_task(DEV1, prompts="fee", target_count=target_count)
    await committed(chain, receipt.tx_hash)
    fee = task_fee(target_count)
    task = await client.query_task(receipt.task_hash)
    assert task["fee"] == str(fee) and int(task["targetCount"]) == target_count
    assert (await client.get_account(DEV1.address))["balance"] == str(DEV_BALANCE - fee)


# Effects of account transactions


async def test_transfer_stake_unstake_register_effects(chain: LocalChain) -> None:
    client = chain.client
    newcomer = Wallet.from_key("0x" + "77" * 32)
    tx = await client.transfer(DEV0, newcomer.address, 50 * 10**18)
    await committed(chain, tx)
    assert (await client.get_account(newcomer.address))["balance"] == str(50 * 10**18)
    spent = 50 * 10**18 + TRANSFER_FEE
    assert (await client.get_account(DEV0.address))["balance"] == str(DEV_BALANCE - spent)

    await committed(chain, await client.stake(newcomer, 30 * 10**18))
    account = await client.get_account(newcomer.address)
    assert (account["balance"], account["stake"]) == (str(20 * 10**18), str(30 * 10**18))

    await committed(chain, await client.unstake(newcomer, 10 * 10**18))
    account = await client.get_account(newcomer.address)
    assert (account["balance"], account["stake"]) == (str(30 * 10**18), str(20 * 10**18))

    await committed(
        chain, await client.register_resource_node(newcomer, "llama-3", "http://127.0.0.1:9400")
    )
    account = await client.get_account(newcomer.address)
    assert account["resourceNode"] == {"models": "llama-3", "endpoint": "http://127.0.0.1:9400"}
    assert account["nonce"] == 3 and account["jailed"] is False
    listed = {n["address"]: n for n in await client.get_resource_nodes()}
    assert listed[newcomer.address]["stake"] == str(20 * 10**18)


# Dev mode (PROTOCOL 5.4)


async def test_dev_mode_fills_nonce_and_signs(chain: LocalChain) -> None:
    client = chain.client
    first = await client.call("transfer", {"sender": DEV0.address, "to": DEAD, "amount": "3"})
    # The node signs like an unlocked account: deterministic RFC 6979 signatures, so the same
    # message signed locally with the dev key gives the same txHash.
    expected = presign(Transfer(DEV0.address, 0, DEAD, 3), CHAIN_ID, DEV0.private_key)
    assert first == {"txHash": expected.tx_hash}
    second = await client.call(
        "submitTask", task_params(DEV0.address.lower(), SID=ZERO_SID, feeParams="")
    )
    task = SubmitTask(DEV0.address, 1, "text", 1, '{"prompt":"hello"}', '{"model":"demo"}')
    assert second["taskHash"] == presign(task, CHAIN_ID, DEV0.private_key).digest
    await committed(chain, second["txHash"])
    full = await client.get_transaction(second["txHash"])
    assert full["params"]["nonce"] == 1 and full["signer"] == DEV0.address


async def test_dev_mode_positional_params(chain: LocalChain) -> None:
    """Positional, upstream order, signature null: a dev account is signed for by the node."""
    client = chain.client
    task = [DEV0.address, 0, "text", 2, "positional", "", ZERO_SID, "", None]
    result = await client.call("submitTask", task)
    transfer = await client.call("transfer", [DEV0.address, 1, DEAD, "9"])
    await committed(chain, result["txHash"])
    await committed(chain, transfer["txHash"])
    assert (await client.query_task(result["taskHash"]))["prompts"] == "positional"
    assert (await client.get_account(DEAD))["balance"] == "9"


async def test_dev_mode_batch_fills_nonces_in_order(chain: LocalChain) -> None:
    client = chain.client
    calls: list[tuple[str, Any]] = [
        ("transfer", {"sender": DEV0.address, "to": DEAD, "amount": "1"}),
        ("submitTask", task_params(DEV0.address, prompts="a")),
        ("stake", {"sender": DEV0.address, "amount": "5"}),
        ("submitRequest", task_params(DEV0.address, prompts="b")),
        ("registerResourceNode", {"sender": DEV0.address, "models": "*", "endpoint": ""}),
        ("unstake", {"sender": DEV0.address, "amount": "2"}),
    ]
    answers = await client.batch(calls)
    nonces = []
    for answer in answers:
        assert isinstance(answer, dict), answer
        tx = await committed(chain, answer["txHash"])
        assert tx["signer"] == DEV0.address
        nonces.append((await client.get_transaction(answer["txHash"]))["params"]["nonce"])
    assert nonces == list(range(len(calls)))
    account = await client.get_account(DEV0.address)
    assert account["nonce"] == len(calls) and account["stake"] == "3"
    assert account["resourceNode"] == {"models": "*", "endpoint": ""}


async def test_dev_mode_with_explicit_nonces_in_a_batch(chain: LocalChain) -> None:
    client = chain.client
    calls: list[tuple[str, Any]] = [
        ("submitTask", task_params(DEV1.address, nonce=n, prompts=f"task {n}")) for n in range(5)
    ]
    answers = await client.batch(calls)
    for n, answer in enumerate(answers):
        assert isinstance(answer, dict), answer
        await committed(chain, answer["txHash"])
        task = await client.query_task(answer["taskHash"])
        assert task["nonce"] == n and task["prompts"] == f"task {n}"
    stats = await client.task_stats()
    assert stats["total"] == stats["submitted"] == 5


async def test_transfer_to_self_changes_only_the_nonce_and_pays_the_fee(chain: LocalChain) -> None:
    tx_hash = await chain.client.transfer(DEV1, DEV1.address, 10**18)
    await committed(chain, tx_hash)
    account = await chain.client.get_account(DEV1.address)
    assert account["balance"] == str(DEV_BALANCE - TRANSFER_FEE) and account["nonce"] == 1


async def test_max_block_txs_bounds_a_block_and_the_rest_waits(tmp_path: Path) -> None:
    genesis = make_genesis(max_block_txs=2)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        client = chain.client
        calls: list[tuple[str, Any]] = [
            ("transfer", {"sender": DEV0.address, "to": DEAD, "amount": str(n + 1)})
            for n in range(5)
        ]
        hashes = [answer["txHash"] for answer in await client.batch(calls)]
        assert (await client.health())["mempool"] == 5
        for height, expected in [(1, hashes[:2]), (2, hashes[2:4]), (3, hashes[4:])]:
            chain.node.produce_block()
            assert (await client.get_block(height))["txs"] == expected
        assert (await client.health())["mempool"] == 0
        assert (await client.get_account(DEAD))["balance"] == str(1 + 2 + 3 + 4 + 5)
        statuses = {(await client.get_tx(h) or {}).get("status") for h in hashes}
        assert statuses == {"committed"}
