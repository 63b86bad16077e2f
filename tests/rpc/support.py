"""Shared pieces of the RPC suite: wallets, the EIP-712 vectors, raw HTTP for the request
shapes the client library cannot produce, and a snapshot of the state a rejected call must not
change (PROTOCOL 5.3: "A rejected call changes nothing").

Everything here talks to a real validator (tests/helpers.local_chain) on loopback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_hash.auto import keccak

from chain.protocol.types import SubmitInferenceResult, SubmitVerification
from rpc.client import InferchainClient, PresignedTx, RpcError, Wallet, presign
from tests.helpers import LocalChain

VECTORS_FILE = Path(__file__).resolve().parents[1] / "vectors" / "eip712.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text())

CHAIN_ID = 7331
E18 = 10**18
# Genesis of tests.helpers.make_genesis (chain.protocol.genesis.dev_genesis with default Params).
DEV_BALANCE = 10_000 * E18
NODE_BALANCE = 1_000 * E18
NODE_STAKE = 2_000 * E18
VALIDATOR_STAKE = 10_000 * E18
MIN_VALIDATOR_STAKE = 10_000 * E18
TASK_BASE_FEE = 10**15
TASK_FEE_PER_NODE = 10**15
TRANSFER_FEE = 10**12  # paid by the sender of every Transfer, burned (PROTOCOL 4.12)
MAX_TARGET_COUNT = 16
ZERO_SID = "0x" + "00" * 32

DEV0 = Wallet.dev(0)  # an unlocked dev account (PROTOCOL 5.4)
DEV1 = Wallet.dev(1)
VALIDATOR = Wallet.dev(100)  # validator 0: staked, not unlocked
NODE0 = Wallet.dev(200)  # resource node 0: funded and staked, not unlocked
NODE1 = Wallet.dev(201)
NODE2 = Wallet.dev(202)
NODES = (NODE0, NODE1, NODE2)
STRANGER = Wallet.from_key("0x" + "42" * 32)  # no balance, no stake, not unlocked
DEAD = "0x000000000000000000000000000000000000dEaD"


def vector(name: str) -> dict[str, Any]:
    for item in VECTORS["vectors"]:
        if item["name"] == name:
            return dict(item)
    raise KeyError(name)


def task_fee(target_count: int) -> int:
    return TASK_BASE_FEE + TASK_FEE_PER_NODE * target_count


def task_params(sender: str, **fields: Any) -> dict[str, Any]:
    """submitTask params in dev mode (no nonce, no signature) unless `fields` add them."""
    params: dict[str, Any] = {
        "sender": sender,
        "schema": "text",
        "targetCount": 1,
        "prompts": '{"prompt":"hello"}',
        "modelOptions": '{"model":"demo"}',
    }
    params.update(fields)
    return params


def wrong_checksum(address: str) -> str:
    """`address` in mixed case with the case of its letters flipped: a wrong EIP-55 checksum."""
    flipped = "".join(c.lower() if c.isupper() else c.upper() for c in address[2:])
    assert flipped != flipped.lower() and flipped != flipped.upper(), "needs mixed case"
    return "0x" + flipped


async def rpc_error(client: InferchainClient, method: str, params: Any = None) -> RpcError:
    """Call `method` and return the JSON-RPC error it must answer, checked for shape."""
    with pytest.raises(RpcError) as info:
        await client.call(method, params)
    assert_error_shape(info.value)
    return info.value


def assert_error_shape(error: RpcError) -> None:
    """PROTOCOL 5.3: every error has code, message and a data object; -32603 is a bug."""
    assert isinstance(error, RpcError), error
    assert error.code != -32603, f"internal error for bad input: {error}"
    assert isinstance(error.message, str) and error.message
    assert isinstance(error.data, dict) and error.data, f"data must be an object: {error}"


async def snapshot(client: InferchainClient, *addresses: str) -> dict[str, Any]:
    """What a rejected call must leave unchanged: the accounts (with pendingNonce), the
    resource nodes, the task counters and the mempool size."""
    accounts = {}
    for address in addresses:
        account = await client.get_account(address)
        accounts[address] = {k: v for k, v in account.items() if k != "blockHeight"}
    health = await client.health()
    return {
        "accounts": accounts,
        "resourceNodes": await client.get_resource_nodes(),
        "taskStats": await client.task_stats(),
        "mempool": health["mempool"],
    }


async def post_raw(
    session: aiohttp.ClientSession, url: str, body: bytes | str, path: str = "/"
) -> tuple[int, Any]:
    """POST a raw body; (HTTP status, parsed JSON body or None when empty)."""
    async with session.post(
        url + path, data=body, headers={"Content-Type": "application/json"}
    ) as resp:
        raw = await resp.read()
        return resp.status, (json.loads(raw) if raw else None)


async def post_json(
    session: aiohttp.ClientSession, url: str, payload: Any, path: str = "/"
) -> tuple[int, Any]:
    return await post_raw(session, url, json.dumps(payload), path)


def request(method: Any, params: Any = None, request_id: Any = 1) -> dict[str, Any]:
    """A JSON-RPC request object; `request_id=None` gives a notification (no id member)."""
    item: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        item["params"] = params
    if request_id is not None:
        item["id"] = request_id
    return item


async def committed(chain: LocalChain, tx_hash: str) -> dict[str, Any]:
    """Wait until the transaction is in a block and check that it took effect."""
    tx = await chain.client.wait_for_tx(tx_hash)
    assert tx["status"] == "committed", tx
    return tx


# Results and verdicts (PROTOCOL 4)


def result_tx(wallet: Wallet, task_hash: str, result: str, proof: str = "") -> PresignedTx:
    """A SubmitInferenceResult signed by `wallet`; its `tx_hash` is the executionInfo txHash."""
    msg = SubmitInferenceResult(bytes.fromhex(task_hash[2:]), wallet.address, result, proof)
    return presign(msg, CHAIN_ID, wallet.private_key)


def verdict_tx(wallet: Wallet, task_hash: str, submitter: str, valid: bool) -> PresignedTx:
    msg = SubmitVerification(bytes.fromhex(task_hash[2:]), wallet.address, submitter, valid)
    return presign(msg, CHAIN_ID, wallet.private_key)


def node_seed(task_hash: str, address: str) -> int:
    """PROTOCOL 4.4, computed here: int(keccak256(taskHash || nodeAddress)[:8]), big-endian."""
    return int.from_bytes(keccak(bytes.fromhex(task_hash[2:] + address[2:]))[:8], "big")


def privilege_key(address: str, task_hash: str) -> bytes:
    """PROTOCOL 5.1: queryPendingTasks order, keccak256(ResourceAddress || taskHash)."""
    return keccak(bytes.fromhex(address[2:]) + bytes.fromhex(task_hash[2:]))


def mine(chain: LocalChain, blocks: int = 1) -> int:
    """Produce `blocks` blocks on a chain started with run=False; returns the new height."""
    for _ in range(blocks):
        chain.node.produce_block()
    return chain.node.head.height


async def batched_snapshot(
    client: InferchainClient, *addresses: str, task_hashes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`snapshot` in one batch request plus GET /health, for tests that take thousands; with
    `task_hashes`, also those tasks as queryTask answers them, and the head's height."""
    calls: list[tuple[str, Any]] = [("getAccount", {"address": a}) for a in addresses]
    calls += [("getResourceNodes", None), ("taskStats", None)]
    calls += [("queryTask", {"taskHash": task_hash}) for task_hash in task_hashes]
    answers = await client.batch(calls)
    for answer in answers:
        assert not isinstance(answer, RpcError), f"a read failed: {answer}"
    accounts = {
        address: {k: v for k, v in account.items() if k != "blockHeight"}
        for address, account in zip(addresses, answers, strict=False)
    }
    rest = answers[len(addresses) :]
    health = await client.health()
    state = {
        "accounts": accounts,
        "resourceNodes": rest[0],
        "taskStats": rest[1],
        "mempool": health["mempool"],
    }
    if task_hashes:
        state["tasks"] = dict(zip(task_hashes, rest[2:], strict=True))
        state["height"] = health["height"]
    return state
