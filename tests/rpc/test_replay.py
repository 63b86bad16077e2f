"""Replay protection (PROTOCOL 3, 5.1, 5.3, 5.4): a signed message takes effect once, on the
chain it was signed for, for the signer it names; a signed queryPendingTasks is good only on
the chain its text names and within 300 s of the node clock; a chain without a `dev` section
signs nothing for anyone and refuses the deprecated query text that names no chain.
Every refused replay changes nothing: the accounts (with their pending nonces), the resource
nodes, the task counters and the mempool are the same before and after.

Covered elsewhere and not repeated here:

- test_errors.py: a signed Transfer sent twice, pending and committed (-32000); signatures
  made for chain 1 (a transfer, a result, the task vector; -32004); a result or a verdict
  signed by a key other than the one it names, on an unknown task (-32004); queries signed a
  day ago or for tomorrow (-32004).
- test_batches.py: the same transaction twice in one batch (-32000).
- test_lifecycle.py: a result sent twice and a verdict sent twice (-32006); a result or a
  verdict on a live task signed by another key (-32004); a signed verdict of a node on its
  own result (-32005).
- test_pending.py: the 300 s window, to the second, on a fixed node clock (JSON-RPC).

What this module adds: each other account transaction replayed, also with the same message
encoded otherwise (same digest, so the same nonce); transactions accepted on one chain and
replayed on another; signed queries for one chain refused by another, and the deprecated
query text answered on dev chains only; a node presenting another node's accepted result or
verdict as its own; a verdict on one's own result in dev mode; unsigned calls on a chain
without dev accounts; a captured signed query replayed as the node clock moves, over JSON-RPC
and GET.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chain.protocol import crypto
from chain.protocol.genesis import Params, dev_genesis, parse_genesis
from chain.protocol.types import (
    Message,
    RegisterResourceNode,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    Transfer,
    Unstake,
)
from rpc.client import InferchainClient, PresignedTx, Wallet, pending_tasks_params, presign
from rpc.methods import METHODS
from tests.helpers import (
    DEV_MNEMONIC,
    LocalChain,
    ValidatorProcess,
    local_chain,
    write_genesis,
)
from tests.rpc.support import (
    CHAIN_ID,
    DEAD,
    DEV0,
    DEV1,
    E18,
    NODE0,
    NODE1,
    NODE2,
    committed,
    mine,
    result_tx,
    rpc_error,
    snapshot,
    task_params,
    verdict_tx,
)

OTHER_CHAIN_ID = 7332
MIN_NODE_STAKE = 1000 * E18
WATCHED = (DEV0.address, DEV1.address, NODE0.address, NODE1.address, NODE2.address, DEAD)
NOW = 1_900_000_000  # the node clock of the query tests
WINDOW_S = 300

ACCOUNT_TXS: dict[str, Callable[[int], Message]] = {
    "submitTask": lambda nonce: SubmitTask(NODE0.address, nonce, "text", 1, "once", ""),
    "stake": lambda nonce: Stake(NODE0.address, nonce, 5 * E18),
    "unstake": lambda nonce: Unstake(NODE0.address, nonce, 5 * E18),
    "registerResourceNode": lambda nonce: RegisterResourceNode(
        NODE0.address, nonce, "m1,m2", "http://127.0.0.1:9311"
    ),
    "transfer": lambda nonce: Transfer(NODE0.address, nonce, DEAD, 3),
}


def node0_tx(method: str, nonce: int = 0, chain_id: int = CHAIN_ID) -> PresignedTx:
    return presign(ACCOUNT_TXS[method](nonce), chain_id, NODE0.private_key)


def same_message_otherwise(method: str, params: dict[str, Any]) -> list[Any]:
    """`params` encoded in other ways the node reads as the same message (so the same digest
    and signature): a lowercase sender, the nonce as a decimal string, amounts as JSON
    integers, and positional params in upstream order."""
    variants: list[Any] = [
        {**params, "sender": params["sender"].lower()},
        {**params, "nonce": str(params["nonce"])},
        [params[name] for name in METHODS[method].names],
    ]
    if "amount" in params:
        variants.append({**params, "amount": int(params["amount"])})
    if method == "submitTask":
        variants.append(("submitRequest", params))
    return variants


async def refused(client: InferchainClient, method: str, params: Any, code: int) -> dict[str, Any]:
    """The call fails with `code` and a data object, and changes nothing."""
    before = await snapshot(client, *WATCHED)
    error = await rpc_error(client, method, params)
    assert error.code == code, f"{method} {params!r}: {error}"
    assert await snapshot(client, *WATCHED) == before
    assert error.data is not None
    return error.data


# One chain, one nonce


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """A dev chain whose blocks the test makes, so a transaction stays pending until then."""
    async with local_chain(tmp_path / "ledger", run=False) as running:
        yield running


async def tx_status(chain: LocalChain, tx_hash: str) -> str:
    tx = await chain.client.get_tx(tx_hash)
    assert tx is not None, tx_hash
    return str(tx["status"])


@pytest.mark.parametrize("method", ["submitTask", "stake", "unstake", "registerResourceNode"])
async def test_an_account_transaction_takes_effect_once(manual: LocalChain, method: str) -> None:
    client = manual.client
    tx = node0_tx(method)
    await client.send_presigned(tx)
    replays = [(method, tx.params)]
    for variant in same_message_otherwise(method, tx.params):
        replays.append(variant if isinstance(variant, tuple) else (method, variant))
    for name, params in replays:  # while the first is in the mempool
        data = await refused(client, name, params, -32000)
        assert (data["expected"], data["got"]) == (1, 0), (name, params, data)
    mine(manual)
    assert await tx_status(manual, tx.tx_hash) == "committed"
    for name, params in replays:  # and once it is committed
        data = await refused(client, name, params, -32000)
        assert (data["expected"], data["got"]) == (1, 0), (name, params, data)

    # and after the account moved on: the replay still names a nonce long used
    for nonce in (1, 2):
        await client.transfer(NODE0, DEAD, 1, nonce=nonce)
    mine(manual)
    data = await refused(client, method, tx.params, -32000)
    assert data["expected"] == 3
    assert (await client.get_account(NODE0.address))["nonce"] == 3
    assert (await client.task_stats())["total"] == (1 if method == "submitTask" else 0)


# Another chain


@pytest.fixture
async def other_chain(tmp_path: Path) -> AsyncIterator[LocalChain]:
    genesis = parse_genesis(dev_genesis(chain_id=OTHER_CHAIN_ID, params=Params(block_time_ms=0)))
    async with local_chain(tmp_path / "other", genesis) as running:
        yield running


async def test_transactions_accepted_on_another_chain_are_refused_here(
    chain: LocalChain, other_chain: LocalChain
) -> None:
    """The same keys and balances on chain 7332: what it accepted is not valid on 7331, whose
    EIP-712 domain differs, so the signature recovers to another address."""
    other = other_chain.client
    assert await other.chain_id() == OTHER_CHAIN_ID
    elsewhere = [node0_tx(method, i, OTHER_CHAIN_ID) for i, method in enumerate(ACCOUNT_TXS)]
    for tx in elsewhere:
        await other.send_presigned(tx)
    receipt = await other.submit_task(
        DEV0, prompts="there", target_count=2, model_options='{"model":"demo"}'
    )
    await other.wait_for_tx(receipt.tx_hash)
    task = bytes.fromhex(receipt.task_hash[2:])
    result = presign(
        SubmitInferenceResult(task, NODE1.address, "r", ""), OTHER_CHAIN_ID, NODE1.private_key
    )
    verdict = presign(
        SubmitVerification(task, NODE2.address, NODE1.address, True),
        OTHER_CHAIN_ID,
        NODE2.private_key,
    )
    assert await other.send_presigned(result) is True
    await other.wait_for_tx(result.tx_hash)
    assert await other.send_presigned(verdict) is True
    for tx in [*elsewhere, verdict]:
        assert (await other.wait_for_tx(tx.tx_hash))["status"] == "committed"

    for tx in [*elsewhere, result, verdict]:
        data = await refused(chain.client, tx.method, tx.params, -32004)
        signer = tx.signed.signer
        assert data["expected"] == signer and data["recovered"] != signer, data
        assert_names_the_domain(data, CHAIN_ID)

    # The other way round: a transaction of this chain is refused there.
    here = node0_tx("transfer")
    await chain.client.send_presigned(here)
    await committed(chain, here.tx_hash)
    data = await refused(other_chain.client, "transfer", here.params, -32004)
    assert data["recovered"] != NODE0.address
    assert_names_the_domain(data, OTHER_CHAIN_ID)


def assert_names_the_domain(data: dict[str, Any], chain_id: int) -> None:
    """-32004 for another signer says which chain and EIP-712 domain the node expects."""
    assert data["chainId"] == chain_id, data
    assert data["domain"] == {"name": "AegisAI", "version": "1", "chainId": chain_id}
    assert data["domainType"] == "EIP712Domain(string name,string version,uint256 chainId)"
    assert f"chainId {chain_id}" in data["reason"]


def query_text(chain_id: int, wallet: Wallet, stamp: int) -> str:
    return f"queryPendingTasks:{chain_id}:{wallet.address}:{stamp}"


def legacy_query(wallet: Wallet, stamp: int) -> dict[str, Any]:
    """queryPendingTasks params signed over the previous release's text, which names no chain."""
    text = f"queryPendingTasks:{wallet.address}:{stamp}"
    signature = crypto.sign_digest(crypto.personal_message_hash(text), wallet.private_key)
    return {
        "ResourceAddress": wallet.address,
        "TimeStamp": stamp,
        "Signature": "0x" + signature.hex(),
    }


async def test_a_signed_query_is_good_on_its_own_chain_only(
    chain: LocalChain, other_chain: LocalChain
) -> None:
    """The queryPendingTasks text names the chain (PROTOCOL 5.1): a query signed for 7331 is
    refused by 7332 and the other way round, and the error says which text the node expects."""
    here = pending_tasks_params(NODE0, chain_id=CHAIN_ID)
    there = pending_tasks_params(NODE0, here["TimeStamp"], chain_id=OTHER_CHAIN_ID)
    assert await chain.client.call("queryPendingTasks", here) == []
    assert await other_chain.client.call("queryPendingTasks", there) == []
    for target, params, chain_id in ((chain, there, CHAIN_ID), (other_chain, here, OTHER_CHAIN_ID)):
        data = await refused(target.client, "queryPendingTasks", params, -32004)
        assert data["chainId"] == chain_id
        assert data["text"] == query_text(chain_id, NODE0, here["TimeStamp"])
        assert data["textFormat"] == "queryPendingTasks:<chainId>:<address>:<TimeStamp>"
        assert data["expected"] == NODE0.address and data["recovered"] != NODE0.address
        assert f"chainId {chain_id}" in data["reason"]
    # the client signs for the chain it talks to
    assert await chain.client.query_pending_tasks(NODE0) == []
    assert await other_chain.client.query_pending_tasks(NODE0) == []


async def test_the_deprecated_query_text_is_still_answered_on_dev_chains(
    chain: LocalChain, other_chain: LocalChain
) -> None:
    """For one release a dev chain answers the text without a chainId as before, so it is
    replayable between dev chains within its window; a chain without `dev` refuses it
    (test_a_chain_without_dev_accounts_signs_nothing_and_takes_chain_bound_queries)."""
    legacy = legacy_query(NODE0, int(time.time()))
    assert await chain.client.call("queryPendingTasks", legacy) == []
    assert await other_chain.client.call("queryPendingTasks", legacy) == []


# A node presenting another node's signed message


async def test_a_node_cannot_claim_another_nodes_result_or_verdict(chain: LocalChain) -> None:
    client = chain.client
    receipt = await client.submit_task(
        DEV0, prompts="claim", target_count=2, model_options='{"model":"demo"}'
    )
    await committed(chain, receipt.tx_hash)
    task_hash = receipt.task_hash
    result = result_tx(NODE0, task_hash, "node 0's answer", "0xabcd")
    assert await client.send_presigned(result) is True
    await committed(chain, result.tx_hash)

    # node 0's signed result, naming node 1, node 2, or an unlocked dev account instead
    for claimant in (NODE1.address, NODE2.address, DEV1.address, NODE1.address.lower()):
        params = {**result.params, "resourceNode": claimant}
        data = await refused(chain.client, "submitInferenceResult", params, -32004)
        assert data["expected"].lower() == claimant.lower()
        assert data["recovered"] not in (claimant, NODE0.address)
    upstream = {
        "requestHash": task_hash,
        "resourceNode": NODE1.address,
        "response": result.params["result"],
        "proof": result.params["proof"],
        "signature": result.params["signature"],
    }
    await refused(chain.client, "submitResponse", upstream, -32004)
    (entry,) = (await client.query_task(task_hash))["executionInfo"]
    assert entry["resourceNode"] == NODE0.address

    # node 2's accepted verdict on node 0's result, replayed as node 1's, or on another result
    verdict = verdict_tx(NODE2, task_hash, NODE0.address, True)
    assert await client.send_presigned(verdict) is True
    await committed(chain, verdict.tx_hash)
    task_before = await client.query_task(task_hash)
    for changed in (
        {"verifier": NODE1.address},
        {"verifier": DEV1.address},
        {"submitter": NODE1.address},
        {"valid": False},
    ):
        data = await refused(
            chain.client, "submitVerification", {**verdict.params, **changed}, -32004
        )
        assert data["recovered"] != NODE2.address
    assert await client.query_task(task_hash) == task_before


async def test_a_verdict_on_ones_own_result_in_dev_mode(chain: LocalChain) -> None:
    """Dev account 1 becomes a resource node; the node signs its calls (PROTOCOL 5.4), and
    still refuses its verdict on its own result (-32005), however the submitter is written."""
    client = chain.client
    await client.register_resource_node(DEV1, "*", "http://127.0.0.1:9312")
    await committed(chain, await client.stake(DEV1, MIN_NODE_STAKE))
    # its chain of secrets, committed before the task (PROTOCOL 4.13)
    head = crypto.dev_secrets_head(DEV1.private_key)
    await committed(chain, await client.commit_secrets(DEV1, head))
    receipt = await client.submit_task(
        DEV0, prompts="own", target_count=2, model_options='{"model":"demo"}'
    )
    await committed(chain, receipt.tx_hash)
    task_hash = receipt.task_hash
    own_result = {"taskHash": task_hash, "resourceNode": DEV1.address, "result": "mine"}
    assert await client.call("submitInferenceResult", own_result) is True
    # the node signs as the client would (RFC 6979): the same transaction hash
    await committed(chain, result_tx(DEV1, task_hash, "mine").tx_hash)

    for submitter in (DEV1.address, DEV1.address.lower(), "0x" + DEV1.address[2:].upper()):
        for params in (
            {"taskHash": task_hash, "valid": True},
            {"taskHash": task_hash, "valid": False, "signature": None},
            {"requestHash": task_hash, "valid": True},
        ):
            params |= {"verifier": DEV1.address, "submitter": submitter}
            data = await refused(chain.client, "submitVerification", params, -32005)
            assert data["address"] == DEV1.address
    signed = verdict_tx(DEV1, task_hash, DEV1.address, True)
    data = await refused(chain.client, "submitVerification", signed.params, -32005)
    assert data["address"] == DEV1.address
    (entry,) = (await client.query_task(task_hash))["executionInfo"]
    assert entry["resourceNode"] == DEV1.address and entry["verifications"] == []


# A chain without dev accounts


async def test_a_chain_without_dev_accounts_signs_nothing_and_takes_chain_bound_queries(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Unsigned calls are refused (PROTOCOL 5.4); a queryPendingTasks signed over the
    deprecated text without a chainId is refused with the text to sign, over JSON-RPC and
    GET, and one signed over the chain's text is answered (PROTOCOL 5.1)."""
    raw = dev_genesis(
        params=Params(block_time_ms=0, compute_deadline_blocks=1000, verify_deadline_blocks=1000)
    )
    del raw["dev"]
    genesis = parse_genesis(raw)
    assert genesis.dev is None
    key_file = tmp_path / "validator.key"
    key_file.write_text("0x" + crypto.dev_private_key(DEV_MNEMONIC, 100).hex())
    validator = ValidatorProcess(
        write_genesis(tmp_path / "genesis.json", genesis),
        tmp_path / "data",
        "--validator-key",
        str(key_file),
    )
    try:
        url = await asyncio.to_thread(validator.start)
        async with InferchainClient(url) as client:
            # signed calls work as on any chain: a task, and node 0's result on it
            receipt = await client.submit_task(
                DEV0, prompts="no dev", target_count=2, model_options='{"model":"demo"}'
            )
            await client.wait_for_tx(receipt.tx_hash)
            task_hash = receipt.task_hash
            result = result_tx(NODE0, task_hash, "r")
            assert await client.send_presigned(result) is True
            await client.wait_for_tx(result.tx_hash)

            def result_of(node: Wallet) -> dict[str, Any]:
                return {"taskHash": task_hash, "resourceNode": node.address, "result": "r"}

            def verdict_of(node: Wallet) -> dict[str, Any]:
                return {
                    "taskHash": task_hash,
                    "verifier": node.address,
                    "submitter": NODE0.address,
                    "valid": True,
                }

            # each of these is a valid call on a dev chain, where the node signs it (5.4)
            unsigned: list[tuple[str, dict[str, Any]]] = [
                ("transfer", {"sender": DEV0.address, "to": DEAD, "amount": "1"}),
                ("transfer", {"sender": DEV0.address, "nonce": 1, "to": DEAD, "amount": "1"}),
                ("stake", {"sender": DEV0.address, "amount": "1", "signature": None}),
                ("unstake", {"sender": NODE0.address, "nonce": 1, "amount": "1"}),
                ("registerResourceNode", {"sender": DEV1.address, "models": "*", "endpoint": ""}),
                ("submitTask", task_params(DEV1.address)),
                ("submitRequest", task_params(DEV0.address, nonce=1, signature=None)),
                ("submitInferenceResult", {**result_of(NODE1), "signature": None}),
                (
                    "submitResponse",
                    {"requestHash": task_hash, "resourceNode": NODE2.address, "response": "r"},
                ),
                ("submitInferenceResult", result_of(DEV1)),
                ("submitVerification", verdict_of(NODE1)),
                ("submitVerification", {**verdict_of(NODE2), "signature": None}),
            ]
            for method, params in unsigned:
                data = await refused(client, method, params, -32004)
                assert data.get("reason"), (method, data)
            assert (await client.get_account(DEV0.address))["pendingNonce"] == 1
            (entry,) = (await client.query_task(task_hash))["executionInfo"]
            assert entry["verifications"] == []

            stamp = int(time.time())
            legacy = legacy_query(NODE1, stamp)
            data = await refused(client, "queryPendingTasks", legacy, -32004)
            assert data["text"] == query_text(CHAIN_ID, NODE1, stamp)
            assert data["chainId"] == CHAIN_ID and data["expected"] == NODE1.address
            assert "dev chains only" in data["reason"]
            async with http.get(
                url + "/queryPendingTasks", params={k: str(v) for k, v in legacy.items()}
            ) as resp:
                status, body = resp.status, await resp.json()
            assert status == 400 and body["code"] == -32004 and body["result"] is None
            assert body["data"]["text"] == query_text(CHAIN_ID, NODE1, stamp)
            tasks = await client.query_pending_tasks(NODE1)
            assert [t["taskHash"] for t in tasks] == [task_hash]  # NODE1 may still compute it
        assert validator.proc is not None and validator.proc.poll() is None
    finally:
        validator.close()


# A captured signed query


async def test_a_captured_query_is_good_only_within_its_window(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    clock = [float(NOW)]
    async with local_chain(tmp_path / "ledger", run=False, clock=lambda: clock[0]) as chain:

        async def get_route(params: dict[str, Any]) -> tuple[int, Any]:
            async with http.get(chain.url + "/queryPendingTasks", params=params) as resp:
                return resp.status, await resp.json()

        captured = pending_tasks_params(NODE0, NOW, chain_id=CHAIN_ID)
        for now in (NOW, NOW + WINDOW_S):  # replayable while fresh (it only reads)
            clock[0] = float(now)
            assert await chain.client.call("queryPendingTasks", captured) == []
            status, body = await get_route({k: str(v) for k, v in captured.items()})
            assert (status, body["code"]) == (200, 0)

        clock[0] = float(NOW + WINDOW_S + 1)  # stale
        data = await refused(chain.client, "queryPendingTasks", captured, -32004)
        assert str(WINDOW_S) in data["reason"]
        status, body = await get_route({k: str(v) for k, v in captured.items()})
        assert status == 400 and body["code"] == -32004 and body["result"] is None

        # bound to its address too: the same signature for another node
        clock[0] = float(NOW)
        moved = {**captured, "ResourceAddress": NODE1.address}
        data = await refused(chain.client, "queryPendingTasks", moved, -32004)
        assert data["recovered"] != NODE1.address

        # signed ahead of the node clock: refused until the clock is within 300 s of it
        ahead = pending_tasks_params(NODE0, NOW + WINDOW_S + 1, chain_id=CHAIN_ID)
        await refused(chain.client, "queryPendingTasks", ahead, -32004)
        status, body = await get_route({k: str(v) for k, v in ahead.items()})
        assert status == 400 and body["code"] == -32004
        clock[0] = float(NOW + 1)
        assert await chain.client.call("queryPendingTasks", ahead) == []
