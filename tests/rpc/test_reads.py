"""The read methods of PROTOCOL 5.2 and the GET routes of 5.1, against a real validator."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_hash.auto import keccak

from chain.protocol.types import Transfer
from rpc.client import InferchainClient, RpcError, presign
from tests.helpers import LocalChain, local_chain
from tests.rpc.support import (
    CHAIN_ID,
    DEAD,
    DEV0,
    DEV1,
    DEV_BALANCE,
    NODE_STAKE,
    STRANGER,
    TRANSFER_FEE,
    VALIDATOR,
    VALIDATOR_STAKE,
    committed,
    post_json,
    request,
    rpc_error,
    task_params,
)

HASH = re.compile(r"^0x[0-9a-f]{64}$")
BLOCK_KEYS = {"height", "hash", "time", "proposer", "prevHash", "appHash", "txs", "lastCommit"}
TX_KEYS = {"signer", "tx_type", "associated_task", "payload", "blockHeight", "status"}
ACCOUNT_KEYS = {"address", "balance", "stake", "nonce", "jailed", "resourceNode"}
STATS_KEYS = {"total", "submitted", "processing", "completed", "verified", "failed"}


async def dev_transfer(client: InferchainClient, to: str, amount: int) -> str:
    result = await client.call(
        "transfer", {"sender": DEV0.address, "to": to, "amount": str(amount)}
    )
    tx_hash: str = result["txHash"]
    return tx_hash


# chainId, genesisHash, blockNumber, GET /health


async def test_chain_id_genesis_hash_and_health_agree(chain: LocalChain) -> None:
    client = chain.client
    chain_id = await client.call("chainId")
    assert chain_id == CHAIN_ID and type(chain_id) is int

    # PROTOCOL 2: keccak-256 of the canonical genesis JSON (sorted keys, no spaces, UTF-8).
    raw = chain.node.genesis.raw
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected_hash = "0x" + keccak(canonical.encode()).hex()
    assert await client.call("genesisHash") == expected_hash

    health = await client.health()
    assert health["status"] == "ok"
    assert health["chainId"] == CHAIN_ID
    assert health["genesisHash"] == expected_hash
    assert health["height"] == await client.block_number() == 0


async def test_block_number_follows_committed_blocks(chain: LocalChain) -> None:
    client = chain.client
    assert await client.call("blockNumber") == 0
    tx = await committed(chain, await dev_transfer(client, DEAD, 1))
    number = await client.call("blockNumber")
    assert type(number) is int and number >= tx["blockHeight"] >= 1
    assert (await client.health())["height"] == number


async def test_rpc_path_serves_the_same_api(chain: LocalChain, http: aiohttp.ClientSession) -> None:
    status, body = await post_json(http, chain.url, request("chainId", request_id=7), path="/rpc")
    assert status == 200
    assert body == {"jsonrpc": "2.0", "result": CHAIN_ID, "id": 7}


# getBlock


async def test_get_block_genesis_latest_and_tx_inclusion(chain: LocalChain) -> None:
    client = chain.client
    genesis = await client.call("getBlock", {"height": 0})
    assert set(genesis) >= BLOCK_KEYS
    assert genesis["height"] == 0 and genesis["txs"] == [] and genesis["lastCommit"] == []
    assert HASH.match(genesis["hash"]) and HASH.match(genesis["appHash"])
    assert genesis["time"] == 1767225600  # genesisTime 2026-01-01T00:00:00Z

    tx_hash = await dev_transfer(client, DEAD, 5)
    height = (await committed(chain, tx_hash))["blockHeight"]
    block = await client.call("getBlock", {"height": height})
    assert block["height"] == height and tx_hash in block["txs"]
    assert block["proposer"] == VALIDATOR.address
    assert isinstance(block["time"], int) and block["time"] >= genesis["time"]
    previous = await client.call("getBlock", [height - 1])  # positional, upstream order
    assert block["prevHash"] == previous["hash"] != block["hash"]

    head = await client.block_number()
    assert await client.call("getBlock", {"height": "latest"}) == await client.call(
        "getBlock", {"height": head}
    )
    assert (await client.call("getBlock"))["height"] == head  # height defaults to latest


@pytest.mark.parametrize("beyond", [1, 2, 1000, 2**62])
async def test_get_block_beyond_head_names_height(chain: LocalChain, beyond: int) -> None:
    head = await chain.client.block_number()
    error = await rpc_error(chain.client, "getBlock", {"height": head + beyond})
    assert error.code == -32602
    assert error.data is not None and error.data["param"] == "height"


# getTransaction and GET /tx/<hash>


async def test_get_transaction_and_get_tx_of_a_transfer(chain: LocalChain) -> None:
    client = chain.client
    tx_hash = await client.transfer(DEV1, DEAD, 123)
    tx = await committed(chain, tx_hash)
    assert set(tx) == TX_KEYS
    assert tx["signer"] == DEV1.address
    assert tx["tx_type"] == "transfer"
    assert tx["associated_task"] is None and tx["payload"] == {}
    assert isinstance(tx["blockHeight"], int) and tx["blockHeight"] >= 1

    full = await client.call("getTransaction", {"txHash": tx_hash})
    assert {k: full[k] for k in TX_KEYS} == tx
    params = full["params"]
    assert params["sender"] == DEV1.address and params["to"] == DEAD
    assert params["nonce"] == 0 and str(params["amount"]) == "123"
    assert re.fullmatch(r"0x[0-9a-f]{130}", params["signature"])
    # txHash = keccak256(digest || signature) (PROTOCOL 3): the signature is the one that
    # was sent, so the hash the node reports for these params is the one the client computed.
    assert (await client.call("getTransaction", [tx_hash]))["params"] == params


async def test_get_tx_of_a_task_names_the_task(chain: LocalChain) -> None:
    receipt = await chain.client.submit_task(DEV1, prompts="hi", target_count=2)
    tx = await committed(chain, receipt.tx_hash)
    assert tx["tx_type"] == "creation"
    assert tx["associated_task"] == receipt.task_hash
    assert tx["payload"] == {}


@pytest.mark.parametrize(
    "tx_hash", ["0x" + "12" * 32, "0x" + "00" * 32, "0x" + "AB" * 32], ids=["12", "zero", "upper"]
)
async def test_unknown_transaction(
    chain: LocalChain, http: aiohttp.ClientSession, tx_hash: str
) -> None:
    error = await rpc_error(chain.client, "getTransaction", {"txHash": tx_hash})
    assert error.code == -32602 and error.data is not None and error.data["param"] == "txHash"
    assert await chain.client.get_tx(tx_hash) is None
    async with http.get(f"{chain.url}/tx/{tx_hash}") as resp:
        assert resp.status == 404
        body = await resp.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]


@pytest.mark.parametrize(
    "path",
    ["0x12", "0x" + "12" * 31, "0x" + "12" * 33, "12" * 32, "0x" + "zz" * 32, "latest", "%20"],
)
async def test_get_tx_malformed_hash_is_400(
    chain: LocalChain, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(f"{chain.url}/tx/{path}") as resp:
        assert resp.status == 400
        body = await resp.json()
    assert isinstance(body.get("error"), str) and body["error"]


async def test_pending_transaction_is_reported_pending(tmp_path: Path) -> None:
    async with local_chain(tmp_path / "ledger", run=False) as chain:
        client = chain.client
        tx_hash = await client.transfer(DEV0, DEAD, 9)
        tx = await client.get_tx(tx_hash)
        assert tx is not None and tx["status"] == "pending" and tx["blockHeight"] is None
        account = await client.get_account(DEV0.address)
        assert account["nonce"] == 0 and account["pendingNonce"] == 1
        assert account["balance"] == str(DEV_BALANCE)

        chain.node.produce_block()
        tx = await client.get_tx(tx_hash)
        assert tx is not None and tx["status"] == "committed" and tx["blockHeight"] == 1
        account = await client.get_account(DEV0.address)
        assert account["nonce"] == 1 and account["pendingNonce"] == 1
        assert account["balance"] == str(DEV_BALANCE - 9 - TRANSFER_FEE)


# getAccount


async def test_get_account_now_and_at_a_past_height(chain: LocalChain) -> None:
    client = chain.client
    before = await client.call("getAccount", {"address": DEV0.address.lower()})
    assert set(before) >= ACCOUNT_KEYS
    assert before["address"] == DEV0.address  # EIP-55 on output
    assert before["balance"] == str(DEV_BALANCE) and before["stake"] == "0"
    assert before["nonce"] == 0 and before["pendingNonce"] == 0
    assert before["jailed"] is False and before["resourceNode"] is None

    first = await committed(chain, await dev_transfer(client, STRANGER.address, 1000))
    second = await committed(chain, await dev_transfer(client, STRANGER.address, 2000))
    now = await client.get_account(DEV0.address)
    assert now["balance"] == str(DEV_BALANCE - 3000 - 2 * TRANSFER_FEE) and now["nonce"] == 2

    at_genesis = await client.call("getAccount", {"address": DEV0.address, "blockHeight": 0})
    assert at_genesis["balance"] == str(DEV_BALANCE) and at_genesis["nonce"] == 0
    assert at_genesis["blockHeight"] == 0
    at_first = await client.call("getAccount", [DEV0.address, first["blockHeight"]])
    assert at_first["balance"] == str(DEV_BALANCE - 1000 - TRANSFER_FEE)
    assert at_first["nonce"] == 1
    at_second = await client.get_account(DEV0.address, second["blockHeight"])
    assert at_second["balance"] == now["balance"]
    stranger_then = await client.get_account(STRANGER.address, 0)
    assert stranger_then["balance"] == "0" and stranger_then["address"] == STRANGER.address
    latest = await client.call("getAccount", {"address": DEV0.address, "blockHeight": "latest"})
    assert latest["balance"] == now["balance"]

    head = await client.block_number()
    error = await rpc_error(
        client, "getAccount", {"address": DEV0.address, "blockHeight": head + 1000}
    )
    assert error.code == -32602 and error.data is not None
    assert error.data["param"] == "blockHeight"


async def test_get_account_of_a_staked_node_and_a_validator(chain: LocalChain) -> None:
    validator = await chain.client.get_account(VALIDATOR.address)
    assert validator["stake"] == str(VALIDATOR_STAKE) and validator["resourceNode"] is None
    node = await chain.client.get_account("0xCD5691EA878D262516be278cb46f2fd7fF132083")
    assert node["stake"] == str(NODE_STAKE)
    assert node["resourceNode"] == {"models": "*", "endpoint": "http://127.0.0.1:9100"}


# getValidators, getResourceNodes


async def test_get_validators(chain: LocalChain) -> None:
    validators = await chain.client.call("getValidators")
    raw = chain.node.genesis.raw["validators"]
    assert validators == [
        {
            "address": VALIDATOR.address,
            "consensusPubKey": raw[0]["consensusPubKey"],
            "stake": str(VALIDATOR_STAKE),
            "url": raw[0]["url"],
        }
    ]


async def test_get_resource_nodes_lists_genesis_and_new_nodes(chain: LocalChain) -> None:
    client = chain.client
    nodes = await client.call("getResourceNodes")
    expected = {
        item["address"]: {
            "address": item["address"],
            "stake": item["stake"],
            "models": item["models"],
            "endpoint": item["endpoint"],
            "jailed": False,
            # the genesis commitment of its chain of secrets (PROTOCOL 4.13), base 0
            "secrets": {
                "base": 0,
                "head": item["secretsHead"],
                "revealed": item["secretsHead"],
                "revealedHeight": 0,
            },
        }
        for item in chain.node.genesis.raw["resourceNodes"]
    }
    assert len(expected) == 3
    assert {n["address"]: n for n in nodes} == expected

    await committed(
        chain, await client.register_resource_node(DEV1, "llama-3,*", "https://n.example/x")
    )
    nodes = {n["address"]: n for n in await client.call("getResourceNodes")}
    assert nodes[DEV1.address] == {
        "address": DEV1.address,
        "stake": "0",
        "models": "llama-3,*",
        "endpoint": "https://n.example/x",
        "jailed": False,
        "secrets": None,
    }
    assert len(nodes) == 4


# taskStats


async def test_task_stats_count_submitted_tasks(chain: LocalChain) -> None:
    client = chain.client
    stats = await client.call("taskStats")
    assert stats == {key: 0 for key in STATS_KEYS}

    first = await client.call("submitTask", task_params(DEV0.address))
    await committed(chain, first["txHash"])
    assert await client.call("taskStats") == {**stats, "total": 1, "submitted": 1}

    receipts = [
        await client.submit_task(DEV1, prompts=f"p{i}", target_count=i + 1) for i in range(3)
    ]
    for receipt in receipts:
        await committed(chain, receipt.tx_hash)
    assert await client.call("taskStats") == {**stats, "total": 4, "submitted": 4}


def _no_bool_ints(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def test_health_shape(chain: LocalChain) -> None:
    health = await chain.client.health()
    assert health["status"] == "ok"
    assert _no_bool_ints(health["height"]) and _no_bool_ints(health["mempool"])
    assert HASH.match(health["genesisHash"])


async def test_hashes_are_read_in_either_case(chain: LocalChain) -> None:
    client = chain.client
    receipt = await client.submit_task(DEV0, prompts="case")
    tx = await committed(chain, receipt.tx_hash)
    upper_tx = "0x" + receipt.tx_hash[2:].upper()
    assert await client.get_tx(upper_tx) == tx
    assert (await client.get_transaction(upper_tx))["txHash"] == receipt.tx_hash
    task = await client.query_task("0x" + receipt.task_hash[2:].upper())
    assert task["taskHash"] == receipt.task_hash


async def test_query_task_while_the_task_waits_in_the_mempool(tmp_path: Path) -> None:
    async with local_chain(tmp_path / "ledger", run=False) as chain:
        client = chain.client
        params = task_params(DEV1.address, prompts="0xC0FFEE", targetCount=4)
        result = await client.call("submitTask", params)
        pending = await client.call("queryTask", {"requestHash": result["requestHash"]})
        assert pending["status"] == "submitted" and pending["fee"] == str(10**15 * 5)
        assert pending["prompts"] == "0xC0FFEE" and pending["txHash"] == result["txHash"]
        assert pending["createdHeight"] is None
        assert (await client.task_stats())["total"] == 0  # counted once in a block

        chain.node.produce_block()
        task = await client.query_task(result["taskHash"])
        assert task["status"] == "submitted" and task["createdHeight"] == 1
        assert {k: v for k, v in task.items() if k not in ("createdHeight", "createdAt")} == {
            k: v for k, v in pending.items() if k not in ("createdHeight", "createdAt")
        }
        assert (await client.task_stats())["submitted"] == 1


async def test_resource_node_record_at_a_past_height(chain: LocalChain) -> None:
    client = chain.client
    tx = await committed(
        chain, await client.register_resource_node(DEV1, "m1", "http://127.0.0.1:9500")
    )
    before = await client.get_account(DEV1.address, tx["blockHeight"] - 1)
    assert before["resourceNode"] is None and before["nonce"] == 0
    after = await client.get_account(DEV1.address, tx["blockHeight"])
    assert after["resourceNode"] == {"models": "m1", "endpoint": "http://127.0.0.1:9500"}


async def test_get_tasks_by_sender_lists_committed_tasks_by_nonce(chain: LocalChain) -> None:
    client = chain.client
    mine = [await client.submit_task(DEV1, prompts=f"task {i}") for i in range(4)]
    other = await client.submit_task(DEV0, prompts="someone else's")
    for receipt in [*mine, other]:
        await committed(chain, receipt.tx_hash)

    listed = await client.call("getTasksBySender", {"address": DEV1.address})
    assert [t["taskHash"] for t in listed] == [r.task_hash for r in mine]
    assert [t["nonce"] for t in listed] == [0, 1, 2, 3]
    assert listed[2] == await client.query_task(mine[2].task_hash)

    page = await client.get_tasks_by_sender(DEV1.address.lower(), from_nonce=1, limit=2)
    assert [t["taskHash"] for t in page] == [r.task_hash for r in mine[1:3]]
    assert await client.call("getTasksBySender", [STRANGER.address]) == []
    error = await rpc_error(client, "getTasksBySender", {"address": DEV1.address, "limit": 0})
    assert error.code == -32602
    assert error.data is not None and error.data["param"] == "limit"


async def test_latest_state_is_always_the_state_of_the_reported_head(chain: LocalChain) -> None:
    """While blocks are written (automine writes each in a thread while admission goes on),
    `getAccount` at "latest" answers the state of the height it reports, never the state of
    a block whose head is not yet published: its nonce equals the nonce recorded at that
    height."""
    client = chain.client
    chain_id = await client.chain_id()
    sent = 600
    txs = [
        presign(Transfer(DEV1.address, n, DEAD, 1), chain_id, DEV1.private_key) for n in range(sent)
    ]

    async def send() -> None:
        for i in range(0, sent, 20):
            results = await client.batch([(tx.method, tx.params) for tx in txs[i : i + 20]])
            assert not any(isinstance(r, RpcError) for r in results), results

    writer = asyncio.ensure_future(send())
    checks = 0
    async with InferchainClient(chain.url) as reader:
        while True:
            latest = await reader.get_account(DEV1.address)
            at = await reader.get_account(DEV1.address, latest["blockHeight"])
            assert at["nonce"] == latest["nonce"], (latest, at)
            checks += 1
            if writer.done() and latest["nonce"] == sent:
                break
    await writer
    assert checks > 3
