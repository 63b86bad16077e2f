"""The chain methods of PROTOCOL 5.2: reads (chainId, genesisHash, blockNumber, getBlock,
getTransaction, getAccount, getValidators, getResourceNodes, taskStats), the account
transactions (transfer, stake, unstake, registerResourceNode -> {txHash}), named and
positional, with the encodings of PROTOCOL 1; and the getTasksBySender, getBlockEvents and
rpc.discover extensions when the target serves them.

The chain is shared with every other test and may be old: values are compared before and
after, never against a fresh genesis.
"""

from __future__ import annotations

from typing import Any

import pytest

from chain.protocol.types import RegisterResourceNode, Stake, Transfer, Unstake
from rpc.client import Wallet, presign
from tests.conformance.support import (
    ACCOUNT_KEYS,
    ADDRESS,
    BLOCK_KEYS,
    HASH,
    REGISTER_ORDER,
    RESOURCE_NODE_KEYS,
    STAKE_ORDER,
    STATS_KEYS,
    TRANSFER_ORDER,
    TX_KEYS,
    VALIDATOR_KEYS,
    Api,
    check_task_object,
    fresh_wallet,
    is_amount,
    is_height,
    positional,
)
from tests.rpc.support import request


async def signed(api: Api, wallet: Wallet, cls: Any, **fields: Any) -> Any:
    nonce = await api.client.next_nonce(wallet.address)
    msg = cls(sender=wallet.address, nonce=nonce, **fields)
    return presign(msg, await api.chain_id(), wallet.private_key)


# chainId, genesisHash, blockNumber


async def test_chain_id_genesis_hash_and_block_number(api: Api) -> None:
    chain_id = await api.result("chainId")
    assert type(chain_id) is int and chain_id > 0
    assert await api.result("chainId", []) == chain_id
    genesis_hash = await api.result("genesisHash")
    assert isinstance(genesis_hash, str) and HASH.match(genesis_hash)
    first = await api.result("blockNumber")
    assert is_height(first)
    assert await api.result("blockNumber") >= first


# getBlock


def check_block(block: Any, height: int) -> None:
    assert isinstance(block, dict) and set(block) >= BLOCK_KEYS, block
    assert block["height"] == height
    for key in ("hash", "prevHash", "appHash"):
        assert HASH.match(block[key]), (key, block[key])
    assert ADDRESS.match(block["proposer"]) and type(block["time"]) is int
    assert isinstance(block["txs"], list) and all(HASH.match(t) for t in block["txs"])
    assert isinstance(block["lastCommit"], list)


async def test_get_block(api: Api, sender: Wallet) -> None:
    genesis = await api.result("getBlock", {"height": 0})
    check_block(genesis, 0)
    assert genesis["hash"] == await api.result("genesisHash")  # block 0 is the genesis block
    assert await api.result("getBlock", [0]) == genesis

    tx = await signed(api, sender, Transfer, to=fresh_wallet().address, amount=1)
    await api.client.send_presigned(tx)
    height = (await api.committed(tx.tx_hash))["blockHeight"]
    block = await api.result("getBlock", {"height": height})
    check_block(block, height)
    assert tx.tx_hash in block["txs"]
    previous = await api.result("getBlock", [height - 1])
    assert block["prevHash"] == previous["hash"] != block["hash"]
    assert block["time"] >= previous["time"]
    if height >= 2:  # PROTOCOL 6: the precommits that committed the previous block
        assert block["lastCommit"], block
        for vote in block["lastCommit"]:
            assert vote.get("blockHash", block["prevHash"]) == block["prevHash"], vote

    head = await api.result("blockNumber")
    latest = await api.result("getBlock", {"height": "latest"})
    assert latest["height"] >= head >= height
    assert latest == await api.result("getBlock", [latest["height"]])


# getTransaction


async def test_get_transaction_is_the_tx_object_plus_its_signed_params(
    api: Api, sender: Wallet
) -> None:
    tx = await signed(api, sender, Transfer, to=fresh_wallet().address, amount=3)
    await api.client.send_presigned(tx)
    record = await api.committed(tx.tx_hash)
    for params in ({"txHash": tx.tx_hash}, [tx.tx_hash]):
        full = await api.result("getTransaction", params)
        assert set(full) >= TX_KEYS
        assert {k: full[k] for k in TX_KEYS} == {k: record[k] for k in TX_KEYS}
        signed_params = full.get("params", full)  # nested or merged, both keep every field
        for name, value in tx.params.items():
            assert signed_params.get(name) == value, (name, full)


# getAccount


def check_account(account: Any, address: str) -> None:
    assert isinstance(account, dict) and set(account) >= ACCOUNT_KEYS, account
    assert account["address"] == address
    assert is_amount(account["balance"]) and is_amount(account["stake"])
    assert type(account["nonce"]) is int and type(account["jailed"]) is bool


async def test_get_account_at_a_height(api: Api, sender: Wallet) -> None:
    recipient = fresh_wallet().address
    empty = await api.result("getAccount", {"address": recipient})
    check_account(empty, recipient)
    assert (empty["balance"], empty["stake"], empty["nonce"]) == ("0", "0", 0)
    assert empty["resourceNode"] is None and empty["jailed"] is False

    tx = await signed(api, sender, Transfer, to=recipient, amount=12345)
    await api.client.send_presigned(tx)
    height = (await api.committed(tx.tx_hash))["blockHeight"]
    now = await api.result("getAccount", [recipient])
    assert now["balance"] == "12345"
    at = await api.result("getAccount", {"address": recipient, "blockHeight": height})
    assert at["balance"] == "12345"
    before = await api.result("getAccount", [recipient, height - 1])
    assert before["balance"] == "0"

    # PROTOCOL 1: any case in, EIP-55 out.
    for spelling in (recipient.lower(), "0x" + recipient[2:].upper()):
        assert (await api.result("getAccount", [spelling]))["address"] == recipient


# getValidators, getResourceNodes, taskStats


async def test_get_validators(api: Api) -> None:
    validators = await api.result("getValidators")
    assert isinstance(validators, list) and validators
    for item in validators:
        assert set(item) >= VALIDATOR_KEYS, item
        assert ADDRESS.match(item["address"]) and is_amount(item["stake"])
        assert isinstance(item["consensusPubKey"], str) and item["consensusPubKey"]
        assert isinstance(item["url"], str)


async def test_get_resource_nodes(api: Api) -> None:
    nodes = await api.result("getResourceNodes")
    assert isinstance(nodes, list)
    for item in nodes:
        assert set(item) >= RESOURCE_NODE_KEYS, item
        assert ADDRESS.match(item["address"]) and is_amount(item["stake"])
        assert isinstance(item["models"], str) and isinstance(item["endpoint"], str)
        assert type(item["jailed"]) is bool


async def test_task_stats(api: Api, sender: Wallet) -> None:
    before = await api.result("taskStats")
    assert isinstance(before, dict) and set(before) >= STATS_KEYS, before
    assert all(type(before[k]) is int and before[k] >= 0 for k in STATS_KEYS)
    assert before["total"] == sum(before[k] for k in STATS_KEYS - {"total"})
    await api.open_task(sender, label="stats")
    after = await api.result("taskStats")
    assert after["total"] == before["total"] + 1  # tasks are never removed
    assert after["total"] == sum(after[k] for k in STATS_KEYS - {"total"})


# transfer, stake, unstake, registerResourceNode


async def test_transfer_named_and_positional(api: Api, sender: Wallet) -> None:
    recipient = fresh_wallet().address
    start = int((await api.client.get_account(sender.address))["balance"])
    named = await signed(api, sender, Transfer, to=recipient, amount=7)
    assert await api.result("transfer", named.params) == {"txHash": named.tx_hash}
    by_position = await signed(api, sender, Transfer, to=recipient, amount=8)
    params = positional(by_position.params, TRANSFER_ORDER)
    assert await api.result("transfer", params) == {"txHash": by_position.tx_hash}
    for tx in (named, by_position):
        record = await api.committed(tx.tx_hash)
        assert record["tx_type"] == "transfer" and record["signer"] == sender.address
        assert record["associated_task"] is None and record["payload"] == {}
    assert (await api.client.get_account(recipient))["balance"] == "15"
    # the sender pays the amounts and, on a chain with a transfer fee (inferchain's
    # transferFee, PROTOCOL 4.12), the same fee for each transfer: read from the deltas
    fees = start - 15 - int((await api.client.get_account(sender.address))["balance"])
    assert fees >= 0 and fees % 2 == 0, fees


async def test_stake_and_unstake(api: Api, sender: Wallet) -> None:
    before = await api.client.get_account(sender.address)
    stake = await signed(api, sender, Stake, amount=5)
    assert await api.result("stake", stake.params) == {"txHash": stake.tx_hash}
    unstake = await signed(api, sender, Unstake, amount=2)
    params = positional(unstake.params, STAKE_ORDER)
    assert await api.result("unstake", params) == {"txHash": unstake.tx_hash}
    for tx, tx_type in ((stake, "stake"), (unstake, "unstake")):
        record = await api.committed(tx.tx_hash)
        assert record["tx_type"] == tx_type and record["signer"] == sender.address
    after = await api.client.get_account(sender.address)
    assert int(after["stake"]) == int(before["stake"]) + 3
    assert int(after["balance"]) == int(before["balance"]) - 3
    assert after["nonce"] == before["nonce"] + 2


async def test_register_resource_node(api: Api) -> None:
    """Registration needs no funds: a new key registers, by name and then by position
    (the second registration updates the first)."""
    node = fresh_wallet()
    first = await signed(
        api, node, RegisterResourceNode, models="m1,m2", endpoint="http://127.0.0.1:9"
    )
    assert await api.result("registerResourceNode", first.params) == {"txHash": first.tx_hash}
    record = await api.committed(first.tx_hash)
    assert record["tx_type"] == "register" and record["signer"] == node.address
    account = await api.result("getAccount", [node.address])
    assert account["resourceNode"]["models"] == "m1,m2"
    assert account["resourceNode"]["endpoint"] == "http://127.0.0.1:9"
    listed = [n for n in await api.result("getResourceNodes") if n["address"] == node.address]
    assert [(n["models"], n["endpoint"], n["stake"]) for n in listed] == [
        ("m1,m2", "http://127.0.0.1:9", "0")
    ]

    second = await signed(api, node, RegisterResourceNode, models="*", endpoint="")
    params = positional(second.params, REGISTER_ORDER)
    assert await api.result("registerResourceNode", params) == {"txHash": second.tx_hash}
    await api.committed(second.tx_hash)
    assert (await api.result("getAccount", [node.address]))["resourceNode"]["models"] == "*"


# getTasksBySender (an extension of this API)


async def test_get_tasks_by_sender(api: Api, sender: Wallet, tasks_by_sender: None) -> None:
    """A sender's committed tasks by nonce, as queryTask objects (the sender is new: its
    tasks are the ones made here)."""
    first = await api.open_task(sender, label="by sender 0")
    second = await api.open_task(sender, label="by sender 1")
    found = await api.result("getTasksBySender", {"address": sender.address})
    assert [item["taskHash"] for item in found] == [first.task_hash, second.task_hash]
    for item in found:
        check_task_object(item)
        assert item == await api.client.query_task(item["taskHash"])
    assert await api.result("getTasksBySender", [sender.address, 1, 5]) == found[1:]
    limited = {"address": sender.address, "fromNonce": 0, "limit": 1}
    assert await api.result("getTasksBySender", limited) == found[:1]
    assert await api.result("getTasksBySender", [fresh_wallet().address]) == []


# getBlockEvents (an extension of this API: what a block changed, PROTOCOL 5.2)


async def test_get_block_events_are_what_the_block_changed(api: Api, sender: Wallet) -> None:
    """The events of the block that took a task: the block itself (as getBlock has it), the
    SubmitTask transaction naming the task, and the task's `submitted`; named and
    positional; a height above the head, or not a height, is -32602 naming `height`."""
    status, answer = await api.raw(request("getBlockEvents", [0]))
    if status == 200 and answer.get("error", {}).get("code") == -32601:
        pytest.skip("the target does not serve getBlockEvents (-32601)")
    receipt = await api.open_task(sender, label="block events")
    height = (await api.committed(receipt.tx_hash))["blockHeight"]
    changed = await api.result("getBlockEvents", {"height": height})
    assert changed == await api.result("getBlockEvents", [height])
    assert changed["height"] == height
    block = await api.result("getBlock", [height])
    first, *rest = changed["events"]
    assert first == {
        "topic": "newBlocks",
        "height": height,
        "hash": block["hash"],
        "time": block["time"],
        "proposer": block["proposer"],
        "txs": len(block["txs"]),
        "appHash": block["appHash"],
    }
    txs = [event for event in rest if event["topic"] == "tx"]
    assert [event["txHash"] for event in txs] == block["txs"]
    (ours,) = [event for event in txs if event["txHash"] == receipt.tx_hash]
    assert ours["type"] == "SubmitTask" and ours["taskHash"] == receipt.task_hash
    assert ours["sender"] == sender.address and ours["status"] == "committed"
    submitted = [e for e in rest if e["topic"] == "task" and e["taskHash"] == receipt.task_hash]
    assert submitted[0]["event"] == "submitted" and submitted[0]["sender"] == sender.address
    assert all(event["height"] == height for event in changed["events"])
    genesis = await api.result("getBlockEvents", [0])
    assert [event["topic"] for event in genesis["events"]] == ["newBlocks"]

    head = await api.client.block_number()
    for bad in (head + 1000, -1, "x", 1.5):
        await api.error("getBlockEvents", {"height": bad}, -32602, mentions=("height",))
    await api.error("getBlockEvents", {"height": 0, "bogus": 1}, -32602, mentions=("bogus",))


# rpc.discover (an extension of this API: OpenRPC's service discovery, PROTOCOL 5.8)


async def test_rpc_discover_lists_methods_the_target_serves(api: Api) -> None:
    """The OpenRPC document names each method once, rpc.discover among them, each with its
    params and result; every method it names is served (a param it does not take is -32602,
    never -32601, and changes nothing)."""
    status, answer = await api.raw(request("rpc.discover"))
    if status == 200 and answer.get("error", {}).get("code") == -32601:
        pytest.skip("the target does not serve rpc.discover (-32601)")
    doc = await api.result("rpc.discover")
    assert doc["openrpc"].startswith("1.") and doc["info"]["title"] and doc["info"]["version"]
    names = [method["name"] for method in doc["methods"]]
    assert len(names) == len(set(names)) and {"rpc.discover", "chainId", "queryTask"} <= set(names)
    for method in doc["methods"]:
        assert isinstance(method["params"], list) and "schema" in method["result"], method
        await api.error(method["name"], {"notAParam": 1}, -32602, mentions=("notAParam",))
    await api.error("rpc.discover", [1], -32602)
