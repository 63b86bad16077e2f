"""The task lifecycle over JSON-RPC (PROTOCOL 4, 5.1): submitInferenceResult (alias
submitResponse), submitVerification and queryTask from submission to settlement.

The tests drive a real validator whose blocks they produce themselves (run=False), so every
height, deadline and balance is exact. Expected amounts are computed here from the formulas
of PROTOCOL 4.8, not read back from the node, and the assigned verifiers from the order of
PROTOCOL 4.5 (tests.helpers.verifier_order). Forced errors are off here (canaryRateBps 0):
tests/rpc/test_secrets.py has them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chain.protocol.crypto import digest as eip712_digest
from chain.protocol.crypto import personal_message_hash, sign_digest, task_seed
from chain.protocol.genesis import Genesis, Params, dev_genesis, parse_genesis
from chain.protocol.types import SubmitInferenceResult, SubmitVerification
from rpc.client import PresignedTx, RpcError, Wallet
from tests.helpers import (
    LocalChain,
    assigned_rounds,
    dev_node_by_address,
    dev_node_wallet,
    entry_of,
    local_chain,
    verifier_order,
    verify_with_assigned,
)
from tests.rpc.support import (
    CHAIN_ID,
    DEV0,
    DEV1,
    E18,
    NODE0,
    NODE1,
    NODE2,
    NODE_STAKE,
    NODES,
    STRANGER,
    mine,
    node_seed,
    result_tx,
    rpc_error,
    snapshot,
    task_fee,
    vector,
    verdict_tx,
)

CDB = 4  # computeDeadlineBlocks of these chains
VDB = 4  # verifyDeadlineBlocks
BPS = 10_000
MIN_NODE_STAKE = 1000 * E18
NETWORK_REWARD = 10**16
UNKNOWN_HASH = "0x" + "5a" * 32
WATCHED = (DEV0.address, DEV1.address, STRANGER.address, *(n.address for n in NODES))
ENTRY_KEYS = {
    "assignment",
    "forcedError",
    "rank",
    "resourceNode",
    "result",
    "proof",
    "seed",
    "txHash",
    "height",
    "status",
    "decidedHeight",
    "verifications",
    "postprocessed",
}
PENDING, VERIFYING, VERIFIED, REJECTED, UNVERIFIED = 0, 1, 2, 3, 4


def lifecycle_genesis(**overrides: Any) -> Genesis:
    """The dev genesis of these tests: short deadlines, no forced errors; `resource_nodes`
    dev resource nodes (3 unless said), each staked NODE_STAKE and serving "*"."""
    nodes = overrides.pop("resource_nodes", 3)
    params = Params(
        **{
            "block_time_ms": 0,
            "compute_deadline_blocks": CDB,
            "verify_deadline_blocks": VDB,
            "canary_rate_bps": 0,
            **overrides,
        }
    )
    return parse_genesis(dev_genesis(params=params, resource_nodes=nodes))


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """A dev chain (nodes 200..202 serve "*") whose blocks the test produces. With three
    nodes and verificationQuorum 2, the verifiers of a result are the two other nodes, in one
    round that is the last (PROTOCOL 4.5)."""
    async with local_chain(tmp_path / "ledger", lifecycle_genesis(), run=False) as running:
        yield running


@pytest.fixture
async def wide(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """The same with five resource nodes (200..204): a result has four candidates, round 0
    takes two of them and a dispute opens round 1, the last, with the other two."""
    genesis = lifecycle_genesis(resource_nodes=5)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as running:
        yield running


async def expected_assignment(
    chain: LocalChain, height: int, task_hash: str, submitter: str, candidates: list[str]
) -> dict[str, Any]:
    """The `assignment` of a result included at `height` whose only round is the last: every
    candidate, in the order of PROTOCOL 4.5 under that block's hash."""
    block_hash = (await chain.client.get_block(height))["hash"]
    order = verifier_order(block_hash, task_hash, submitter, candidates)
    return {"complete": True, "rounds": [order], "seed": block_hash}


def others(*nodes: Wallet) -> list[str]:
    """The addresses of the dev nodes of `manual` other than `nodes`."""
    return [n.address for n in NODES if n not in nodes]


async def open_task(
    chain: LocalChain,
    target_count: int = 1,
    *,
    schema: str = "text",
    model: str = "demo",
    prompts: str = "What is 2 + 2?",
) -> str:
    """Submit a task from DEV0 and commit it; returns its taskHash."""
    receipt = await chain.client.submit_task(
        DEV0,
        prompts=prompts,
        schema=schema,
        target_count=target_count,
        model_options=json.dumps({"model": model}),
    )
    mine(chain)
    task = await chain.client.query_task(receipt.task_hash)
    assert task["status"] == "submitted" and task["createdHeight"] == chain.node.head.height
    return receipt.task_hash


async def accepted(chain: LocalChain, tx: PresignedTx) -> str:
    """Send a presigned result or verdict that must answer true; returns its txHash."""
    assert await chain.client.send_presigned(tx) is True
    return tx.tx_hash


async def unchanged_after(chain: LocalChain, task_hash: str | None, call: Any) -> Any:
    """Run `call` and check that it changed nothing: accounts (with pending nonces), nodes,
    task counters, mempool size, and the task itself (PROTOCOL 5.3)."""
    client = chain.client
    before = await snapshot(client, *WATCHED)
    task_before = None if task_hash is None else await client.query_task(task_hash)
    outcome = await call()
    assert await snapshot(client, *WATCHED) == before
    if task_hash is not None:
        assert await client.query_task(task_hash) == task_before
    return outcome


async def refused(
    chain: LocalChain, method: str, params: Any, code: int, task_hash: str | None
) -> RpcError:
    error: RpcError = await unchanged_after(
        chain, task_hash, lambda: rpc_error(chain.client, method, params)
    )
    assert error.code == code, error
    assert error.data is not None
    return error


async def answered_false(chain: LocalChain, tx: PresignedTx, task_hash: str) -> None:
    """A well-formed result or verdict that finds the task closed: false, and nothing kept."""
    answer = await unchanged_after(chain, task_hash, lambda: chain.client.send_presigned(tx))
    assert answer is False
    assert await chain.client.get_tx(tx.tx_hash) is None


def foreign_signature(wallet: Wallet, msg: Any) -> str:
    """A signature of `msg` by `wallet`, which is not the message's signer."""
    return "0x" + sign_digest(eip712_digest(msg, CHAIN_ID), wallet.private_key).hex()


def rank_weights(count: int, decay_bps: int = 1000) -> list[int]:
    """PROTOCOL 4.8: w1 = 10000, w(i+1) = w(i) * (10000 - rankDecayBps) / 10000."""
    weights = [BPS][:count]
    while len(weights) < count:
        weights.append(weights[-1] * (BPS - decay_bps) // BPS)
    return weights


def shares(pool: int, count: int) -> list[int]:
    weights = rank_weights(count)
    return [pool * w // sum(weights) for w in weights]


def remainder(
    fee: int, reward: int, slashed: int, unpaid_compute: int, unpaid_verify: int, pool_v: int
) -> dict[str, str]:
    """Where the unpaid rest goes, pool by pool pro rata to its sources (the choice of
    PROTOCOL 4.8): slashes are burned, the fee refunded, the reward not minted."""
    burned = unpaid_verify * slashed // pool_v if pool_v else 0
    rest = unpaid_compute + unpaid_verify - burned
    unminted = rest * reward // (fee + reward)
    return {
        "networkReward": str(reward - unminted),
        "refund": str(rest - unminted),
        "burned": str(burned),
    }


def check_settlement_adds_up(settlement: dict[str, Any]) -> None:
    """Every base unit is accounted for: what was paid, refunded and burned is what came in
    (fee, minted reward, slashes). Amounts are decimal strings (PROTOCOL 1)."""
    for key in ("fee", "networkReward", "refund", "burned"):
        assert isinstance(settlement[key], str) and settlement[key].isdigit(), key
    for item in settlement["payouts"] + settlement["slashed"]:
        assert isinstance(item["amount"], str) and item["amount"].isdigit(), item
    paid = sum(int(p["amount"]) for p in settlement["payouts"])
    slashed = sum(int(s["amount"]) for s in settlement["slashed"])
    incoming = int(settlement["fee"]) + int(settlement["networkReward"]) + slashed
    assert paid + int(settlement["refund"]) + int(settlement["burned"]) == incoming


# submitInferenceResult


async def test_result_is_accepted_and_recorded(manual: LocalChain) -> None:
    client = manual.client
    task_hash = await open_task(manual, target_count=2)
    tx = result_tx(NODE0, task_hash, "Bonjour, le monde!", proof="0xc0ffee")
    assert await accepted(manual, tx) == tx.tx_hash

    pending = await client.get_tx(tx.tx_hash)
    assert pending is not None and pending["status"] == "pending"
    assert pending["blockHeight"] is None and pending["tx_type"] == "inference"

    height = mine(manual)
    assert await client.get_tx(tx.tx_hash) == {
        "signer": NODE0.address,
        "tx_type": "inference",
        "associated_task": task_hash,
        "payload": {"inference_result": "Bonjour, le monde!", "proof_of_inference": "0xc0ffee"},
        "blockHeight": height,
        "status": "committed",
    }
    full = await client.get_transaction(tx.tx_hash)
    assert full["type"] == "SubmitInferenceResult" and full["params"] == tx.params

    task = await client.query_task(task_hash)
    assert task["status"] == "processing" and task["settlement"] is None
    assert task["response"] is None and task["verificationCount"] == 0
    (entry,) = task["executionInfo"]
    assert set(entry) == ENTRY_KEYS
    seed = task_seed(bytes.fromhex(task_hash[2:]), NODE0.address)
    assert seed == node_seed(task_hash, NODE0.address)
    assignment = await expected_assignment(manual, height, task_hash, NODE0.address, others(NODE0))
    assert entry == {
        "assignment": assignment,
        "forcedError": None,
        "rank": 1,
        "resourceNode": NODE0.address,
        "result": "Bonjour, le monde!",
        "proof": "0xc0ffee",
        "seed": str(seed),
        "txHash": tx.tx_hash,
        "height": height,
        "status": PENDING,
        "decidedHeight": None,
        "verifications": [],
        "postprocessed": {"kind": "text", "value": "Bonjour, le monde!", "error": None},
    }
    assert task["verificationInfos"] == []


async def test_client_library_submits_results_and_verdicts(manual: LocalChain) -> None:
    client = manual.client
    task_hash = await open_task(manual, target_count=2)
    assert await client.submit_inference_result(NODE0, task_hash, "4", proof="p") is True
    # a result still waiting in the mempool has no verifiers yet (PROTOCOL 4.5)
    early = verdict_tx(NODE1, task_hash, NODE0.address, True).params
    error = await refused(manual, "submitVerification", early, -32005, task_hash)
    assert error.data is not None and error.data["reason"] == "not assigned"
    mine(manual)
    (first, second) = (await assigned_rounds(client, task_hash, NODE0.address))[0]
    for verifier in (first, second):
        wallet = dev_node_by_address(verifier)
        assert await client.submit_verification(wallet, task_hash, NODE0.address, True) is True
    mine(manual)
    (entry,) = (await client.query_task(task_hash))["executionInfo"]
    assert entry["txHash"] == result_tx(NODE0, task_hash, "4", "p").tx_hash
    assert entry["status"] == VERIFIED
    assert [v["txHash"] for v in entry["verifications"]] == [
        verdict_tx(dev_node_by_address(v), task_hash, NODE0.address, True).tx_hash
        for v in (first, second)
    ]


def _result_params(tx: PresignedTx, spelling: str) -> Any:
    params = dict(tx.params)
    if spelling == "positional":
        return [params[k] for k in ("taskHash", "resourceNode", "result", "proof", "signature")]
    if spelling == "upstream names":
        params["requestHash"] = params.pop("taskHash")
        params["response"] = params.pop("result")
    if spelling == "no proof":
        del params["proof"]
    return params


@pytest.mark.parametrize("method", ["submitInferenceResult", "submitResponse"])
@pytest.mark.parametrize("spelling", ["names", "upstream names", "positional", "no proof"])
async def test_result_spellings(manual: LocalChain, method: str, spelling: str) -> None:
    """PROTOCOL 5.1: submitResponse, requestHash and response are accepted everywhere,
    positional params in upstream order, and proof defaults to empty."""
    task_hash = await open_task(manual)
    proof = "" if spelling == "no proof" else "proof-bytes"
    tx = result_tx(NODE1, task_hash, "a response", proof)
    assert await manual.client.call(method, _result_params(tx, spelling)) is True
    mine(manual)
    (entry,) = (await manual.client.query_task(task_hash))["executionInfo"]
    assert (entry["txHash"], entry["result"], entry["proof"]) == (tx.tx_hash, "a response", proof)


@pytest.mark.parametrize("spelling", ["names", "requestHash", "positional"])
async def test_verdict_spellings(manual: LocalChain, spelling: str) -> None:
    task_hash = await open_task(manual)
    await accepted(manual, result_tx(NODE0, task_hash, "r"))
    mine(manual)
    verifier = (await assigned_rounds(manual.client, task_hash, NODE0.address))[0][0]
    tx = verdict_tx(dev_node_by_address(verifier), task_hash, NODE0.address, True)
    params: Any = dict(tx.params)
    if spelling == "requestHash":
        params["requestHash"] = params.pop("taskHash")
    elif spelling == "positional":
        params = [params[k] for k in ("taskHash", "verifier", "submitter", "valid", "signature")]
    assert await manual.client.call("submitVerification", params) is True
    mine(manual)
    (entry,) = (await manual.client.query_task(task_hash))["executionInfo"]
    assert [v["txHash"] for v in entry["verifications"]] == [tx.tx_hash]


@pytest.mark.parametrize("shape", ["names", "upstream names", "submitResponse", "positional"])
async def test_the_result_vector_is_refused_as_an_unknown_task(
    chain: LocalChain, shape: str
) -> None:
    """The upstream-shaped vector parses and its signature checks out (its signer is resource
    node 0), so the only thing wrong on a fresh chain is the task: -32001, not -32602/-32004."""
    item = vector("submitInferenceResult")
    assert item["signer"] == NODE0.address and item["chainId"] == CHAIN_ID
    params: Any = {**item["message"], "signature": item["signature"]}
    method = "submitResponse" if shape == "submitResponse" else "submitInferenceResult"
    if shape in ("upstream names", "submitResponse"):
        params["requestHash"] = params.pop("taskHash")
        params["response"] = params.pop("result")
    elif shape == "positional":
        params = [params[k] for k in ("taskHash", "resourceNode", "result", "proof", "signature")]
    error = await refused(chain, method, params, -32001, None)
    assert error.data is not None and error.data["taskHash"] == item["message"]["taskHash"]
    assert error.message == "Invalid requestHash provided"

    # the same vector with its result changed after signing: the signature check comes first
    changed = {**item["message"], "result": "Bonjour, le monde !", "signature": item["signature"]}
    error = await refused(chain, "submitInferenceResult", changed, -32004, None)
    assert error.data is not None and error.data["recovered"] != NODE0.address


async def test_result_is_false_when_every_slot_is_taken(manual: LocalChain) -> None:
    task_hash = await open_task(manual, target_count=1)
    await accepted(manual, result_tx(NODE0, task_hash, "first"))
    # the slot is taken by a result still in the mempool: admission already sees it
    await answered_false(manual, result_tx(NODE1, task_hash, "second"), task_hash)
    mine(manual)
    task = await manual.client.query_task(task_hash)
    assert task["status"] == "completed"
    await answered_false(manual, result_tx(NODE1, task_hash, "second"), task_hash)
    assert await manual.client.submit_inference_result(NODE2, task_hash, "third") is False


async def test_result_is_accepted_until_the_compute_deadline_then_false(
    manual: LocalChain,
) -> None:
    task_hash = await open_task(manual, target_count=3)
    created = manual.node.head.height
    await accepted(manual, result_tx(NODE0, task_hash, "early"))
    mine(manual, CDB - 1)
    assert manual.node.head.height == created + CDB - 1
    # the next block is createdHeight + computeDeadlineBlocks: still accepted
    last = result_tx(NODE1, task_hash, "last moment")
    await accepted(manual, last)
    assert mine(manual) == created + CDB
    included = await manual.client.get_tx(last.tx_hash)
    assert included is not None and included["status"] == "committed"
    assert included["blockHeight"] == created + CDB
    task = await manual.client.query_task(task_hash)
    assert task["status"] == "processing" and len(task["executionInfo"]) == 2
    # one slot is still open, but the deadline has passed
    await answered_false(manual, result_tx(NODE2, task_hash, "too late"), task_hash)


async def test_result_is_false_once_the_task_is_final(manual: LocalChain) -> None:
    client = manual.client
    verified = await open_task(manual, target_count=1, prompts="one")
    created = manual.node.head.height
    failed = await open_task(manual, target_count=1, prompts="two")
    await accepted(manual, result_tx(NODE0, verified, "4"))
    mine(manual)
    # one of the two assigned verifiers answers: the result waits for the other ...
    silent, speaking = (await assigned_rounds(client, verified, NODE0.address))[0]
    await accepted(manual, verdict_tx(dev_node_by_address(speaking), verified, NODE0.address, True))
    mine(manual, CDB)
    assert (await client.query_task(failed))["status"] == "failed"
    assert (await client.query_task(verified))["status"] == "completed"
    # ... until the verify deadline, where the answers it has decide it (PROTOCOL 4.6)
    mine(manual, created + CDB + VDB - manual.node.head.height)
    assert (await client.query_task(verified))["status"] == "verified"
    await answered_false(manual, result_tx(NODE2, verified, "4"), verified)
    await answered_false(manual, result_tx(NODE2, failed, "4"), failed)
    late = verdict_tx(dev_node_by_address(silent), verified, NODE0.address, True)
    await answered_false(manual, late, verified)


async def test_result_errors_change_nothing(manual: LocalChain) -> None:
    client = manual.client
    task_hash = await open_task(manual, target_count=3)
    await accepted(manual, result_tx(NODE0, task_hash, "mine"))

    # -32001: a task the chain does not know
    unknown = result_tx(NODE1, UNKNOWN_HASH, "x")
    error = await refused(manual, "submitInferenceResult", unknown.params, -32001, task_hash)
    assert error.data is not None and error.data["taskHash"] == UNKNOWN_HASH

    # -32004: signed by another key; no signature from a key the node does not hold
    msg = SubmitInferenceResult(bytes.fromhex(task_hash[2:]), NODE1.address, "x")
    params = {**result_tx(NODE1, task_hash, "x").params, "signature": foreign_signature(NODE2, msg)}
    error = await refused(manual, "submitInferenceResult", params, -32004, task_hash)
    assert error.data == {**error.data, "expected": NODE1.address, "recovered": NODE2.address}
    unsigned = {k: v for k, v in params.items() if k != "signature"}
    await refused(manual, "submitInferenceResult", unsigned, -32004, task_hash)
    await refused(manual, "submitResponse", {**unsigned, "signature": None}, -32004, task_hash)

    # -32005: an address that is no resource node, with no stake (signed, and in dev mode)
    stranger = result_tx(STRANGER, task_hash, "x").params
    error = await refused(manual, "submitInferenceResult", stranger, -32005, task_hash)
    assert error.data is not None and error.data["address"] == STRANGER.address
    dev = {"taskHash": task_hash, "resourceNode": DEV1.address, "result": "x"}
    error = await refused(manual, "submitInferenceResult", dev, -32005, task_hash)
    assert error.data is not None and error.data["address"] == DEV1.address

    # -32006: the same node again, with another result or with the very same transaction
    again = result_tx(NODE0, task_hash, "changed my mind").params
    await refused(manual, "submitInferenceResult", again, -32006, task_hash)
    same = result_tx(NODE0, task_hash, "mine").params
    await refused(manual, "submitInferenceResult", same, -32006, task_hash)
    mine(manual)
    await refused(manual, "submitResponse", same, -32006, task_hash)
    await refused(manual, "submitInferenceResult", again, -32006, task_hash)
    task = await client.query_task(task_hash)
    assert [e["result"] for e in task["executionInfo"]] == ["mine"]


async def test_a_node_that_does_not_serve_the_model_is_not_eligible(manual: LocalChain) -> None:
    client = manual.client
    # DEV1 (an unlocked dev account) becomes a resource node serving only m1
    await client.register_resource_node(DEV1, "m1", "http://127.0.0.1:9999")
    await client.stake(DEV1, MIN_NODE_STAKE)
    mine(manual)
    nodes = {n["address"]: n for n in await client.get_resource_nodes()}
    assert nodes[DEV1.address]["models"] == "m1"
    assert nodes[DEV1.address]["stake"] == str(MIN_NODE_STAKE)
    served = await open_task(manual, model="m1")
    other = await open_task(manual, model="m2")

    signed = result_tx(DEV1, other, "x").params
    error = await refused(manual, "submitInferenceResult", signed, -32005, other)
    assert error.data is not None and error.data["address"] == DEV1.address
    assert "m2" in error.data["reason"]
    dev_mode = {"taskHash": other, "resourceNode": DEV1.address, "result": "x"}
    await refused(manual, "submitResponse", dev_mode, -32005, other)

    # the same node on a task for its model, and a "*" node on m2: both accepted
    dev_mode_served = {"taskHash": served, "resourceNode": DEV1.address, "result": "x"}
    assert await client.call("submitInferenceResult", dev_mode_served) is True
    await accepted(manual, result_tx(NODE0, other, "y"))
    mine(manual)
    assert (await client.query_task(served))["executionInfo"][0]["resourceNode"] == DEV1.address
    # a verdict on an m2 result by the m1-only node is refused as well
    await refused(
        manual, "submitVerification", verdict_tx(DEV1, other, NODE0.address, True).params,
        -32005, other,
    )  # fmt: skip


# submitVerification


async def test_verdict_is_accepted_recorded_and_decides_the_result(manual: LocalChain) -> None:
    client = manual.client
    task_hash = await open_task(manual, target_count=2)
    await accepted(manual, result_tx(NODE0, task_hash, "42"))
    mine(manual)
    first, second = (dev_node_by_address(a) for a in others(NODE0))
    tx = verdict_tx(first, task_hash, NODE0.address, True)
    await accepted(manual, tx)
    height = mine(manual)
    # one of the two assigned verifiers: the last round holds 2000 of 4000, not above 2/3
    (entry,) = (await client.query_task(task_hash))["executionInfo"]
    assert entry["status"] == VERIFYING and entry["decidedHeight"] is None
    assert await client.get_tx(tx.tx_hash) == {
        "signer": first.address,
        "tx_type": "verification",
        "associated_task": task_hash,
        "payload": {},
        "blockHeight": height,
        "status": "committed",
    }
    tx2 = verdict_tx(second, task_hash, NODE0.address, True)
    await accepted(manual, tx2)
    height2 = mine(manual)
    task = await client.query_task(task_hash)
    (entry,) = task["executionInfo"]
    verdicts = [
        {"verifier": first.address, "valid": True, "txHash": tx.tx_hash, "height": height},
        {"verifier": second.address, "valid": True, "txHash": tx2.tx_hash, "height": height2},
    ]
    assert entry["verifications"] == [{**v, "seq": k} for k, v in enumerate(verdicts, 1)]
    assert entry["status"] == VERIFIED and entry["decidedHeight"] == height2
    assert task["verificationInfos"] == [
        {**v, "seq": k, "submitter": NODE0.address} for k, v in enumerate(verdicts, 1)
    ]
    # a slot is still open: the task is not decided before its compute deadline
    assert task["status"] == "processing" and task["settlement"] is None
    # the result is decided: the same verifier again is a duplicate, and changes nothing
    again = verdict_tx(second, task_hash, NODE0.address, False).params
    await refused(manual, "submitVerification", again, -32006, task_hash)


async def test_verdict_errors_change_nothing(manual: LocalChain) -> None:
    task_hash = await open_task(manual, target_count=2)
    await accepted(manual, result_tx(NODE0, task_hash, "42"))
    mine(manual)

    # -32005: a node cannot verify its own result; an address that is no node
    own = verdict_tx(NODE0, task_hash, NODE0.address, True).params
    error = await refused(manual, "submitVerification", own, -32005, task_hash)
    assert error.data is not None and error.data["address"] == NODE0.address
    stranger = verdict_tx(STRANGER, task_hash, NODE0.address, True).params
    await refused(manual, "submitVerification", stranger, -32005, task_hash)

    # -32602: a verdict on a node that has no result in this task
    for submitter in (NODE2.address, STRANGER.address):
        params = verdict_tx(NODE1, task_hash, submitter, False).params
        error = await refused(manual, "submitVerification", params, -32602, task_hash)
        assert error.data is not None and error.data["param"] == "submitter"

    # -32001: an unknown task
    params = verdict_tx(NODE1, UNKNOWN_HASH, NODE0.address, True).params
    error = await refused(manual, "submitVerification", params, -32001, task_hash)
    assert error.data is not None and error.data["taskHash"] == UNKNOWN_HASH

    # -32004: signed by another key; unsigned from a key the node does not hold
    msg = SubmitVerification(bytes.fromhex(task_hash[2:]), NODE1.address, NODE0.address, True)
    params = {
        **verdict_tx(NODE1, task_hash, NODE0.address, True).params,
        "signature": foreign_signature(NODE2, msg),
    }
    error = await refused(manual, "submitVerification", params, -32004, task_hash)
    assert error.data is not None and error.data["recovered"] == NODE2.address
    unsigned = {k: v for k, v in params.items() if k != "signature"}
    await refused(manual, "submitVerification", unsigned, -32004, task_hash)

    # -32006: a second verdict by the same verifier on the same result, even a flipped one
    first = verdict_tx(NODE1, task_hash, NODE0.address, False)
    await accepted(manual, first)  # one of the two assigned: undecided, now verifying
    await refused(manual, "submitVerification", first.params, -32006, task_hash)
    flipped = verdict_tx(NODE1, task_hash, NODE0.address, True).params
    await refused(manual, "submitVerification", flipped, -32006, task_hash)
    mine(manual)
    (entry,) = (await manual.client.query_task(task_hash))["executionInfo"]
    assert entry["status"] == VERIFYING and len(entry["verifications"]) == 1
    await refused(manual, "submitVerification", first.params, -32006, task_hash)


# A whole task


async def test_whole_lifecycle_with_three_nodes_one_wrong(tmp_path: Path) -> None:
    """Nodes 0 and 1 answer right, node 2 answers wrong; every result is decided by its two
    assigned verifiers (the other nodes), the task is verified at its compute deadline (the
    rejected result freed a slot), and settlement pays, slashes, jails, refunds and mints to
    the base unit."""
    cdb, slash_bps = 10, 6000
    genesis = lifecycle_genesis(compute_deadline_blocks=cdb, result_slash_bps=slash_bps)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        client = chain.client
        before = {
            a: await client.get_account(a) for a in (DEV0.address, *(n.address for n in NODES))
        }
        stats0 = await client.task_stats()
        seen: list[str] = []

        async def observe(task_hash: str) -> dict[str, Any]:
            task = await client.query_task(task_hash)
            seen.append(task["status"])
            stats = await client.task_stats()
            expected = {**stats0, "total": stats0["total"] + 1}
            expected[task["status"]] += 1
            assert stats == expected, (task["status"], stats)
            return task

        fee = task_fee(3)
        task_hash = await open_task(chain, target_count=3, prompts="What is 2 + 2?")
        created = chain.node.head.height
        task = await observe(task_hash)
        assert task["fee"] == str(fee) and task["executionInfo"] == []
        sender = await client.get_account(DEV0.address)
        assert int(sender["balance"]) == int(before[DEV0.address]["balance"]) - fee

        r0 = await accepted(chain, result_tx(NODE0, task_hash, "4", proof="p0"))
        h_r0 = mine(chain)
        task = await observe(task_hash)
        r1 = await accepted(chain, result_tx(NODE1, task_hash, "4.0", proof="p1"))
        r2 = await accepted(chain, result_tx(NODE2, task_hash, "5", proof="p2"))
        h_r12 = mine(chain)
        task = await observe(task_hash)
        expected_entries = [
            {
                "assignment": await expected_assignment(
                    chain, height, task_hash, node.address, others(node)
                ),
                "forcedError": None,
                "rank": rank,
                "resourceNode": node.address,
                "result": result,
                "proof": proof,
                "seed": str(task_seed(bytes.fromhex(task_hash[2:]), node.address)),
                "txHash": tx_hash,
                "height": height,
                "status": PENDING,
                "decidedHeight": None,
                "verifications": [],
                "postprocessed": {"kind": "text", "value": result, "error": None},
            }
            for rank, node, result, proof, tx_hash, height in [
                (1, NODE0, "4", "p0", r0, h_r0),
                (2, NODE1, "4.0", "p1", r1, h_r12),
                (3, NODE2, "5", "p2", r2, h_r12),
            ]
        ]
        assert task["executionInfo"] == expected_entries
        for entry in expected_entries:
            assert entry["seed"] == str(node_seed(task_hash, entry["resourceNode"]))

        # Node 0 says node 2 is wrong: one of its two verifiers, the result waits.
        v1 = await accepted(chain, verdict_tx(NODE0, task_hash, NODE2.address, False))
        h_v1 = mine(chain)
        task = await observe(task_hash)
        assert [e["status"] for e in task["executionInfo"]] == [PENDING, PENDING, VERIFYING]

        # Node 1 confirms node 0, node 2 (honest as a verifier) confirms node 1: half of each.
        v2 = await accepted(chain, verdict_tx(NODE1, task_hash, NODE0.address, True))
        v3 = await accepted(chain, verdict_tx(NODE2, task_hash, NODE1.address, True))
        h_v23 = mine(chain)
        task = await observe(task_hash)
        assert [e["status"] for e in task["executionInfo"]] == [VERIFYING] * 3
        # the submitter takes no part in deciding its own result
        own = verdict_tx(NODE2, task_hash, NODE2.address, True).params
        error = await refused(chain, "submitVerification", own, -32005, task_hash)
        assert error.data is not None and error.data["address"] == NODE2.address

        # The second verifiers of nodes 0 and 1 agree with the first: both verified.
        v4 = await accepted(chain, verdict_tx(NODE2, task_hash, NODE0.address, True))
        v5 = await accepted(chain, verdict_tx(NODE0, task_hash, NODE1.address, True))
        h_v45 = mine(chain)
        task = await observe(task_hash)
        assert [e["status"] for e in task["executionInfo"]] == [VERIFIED, VERIFIED, VERIFYING]

        # Node 1 says node 2 is wrong too: both its verifiers: rejected, its slot is free.
        v6 = await accepted(chain, verdict_tx(NODE1, task_hash, NODE2.address, False))
        h_v6 = mine(chain)
        task = await observe(task_hash)
        assert [e["status"] for e in task["executionInfo"]] == [VERIFIED, VERIFIED, REJECTED]
        assert [e["decidedHeight"] for e in task["executionInfo"]] == [h_v45, h_v45, h_v6]
        assert task["settlement"] is None and task["response"] is None

        # The free slot stays open until the compute deadline; then the task is decided.
        mine(chain, created + cdb - 1 - chain.node.head.height)
        task = await observe(task_hash)
        assert task["settlement"] is None
        assert mine(chain) == created + cdb
        task = await observe(task_hash)
        assert seen == ["submitted", "processing", "completed", "completed", "completed",
                        "completed", "processing", "processing", "verified"]  # fmt: skip

        assert task["response"] == "4" and task["verificationCount"] == 2
        assert task["finishedHeight"] == created + cdb
        block = await client.get_block(created + cdb)
        assert task["finishedAt"] == block["time"]
        verdicts = [
            (NODE0, NODE2, False, v1, h_v1),
            (NODE1, NODE0, True, v2, h_v23),
            (NODE2, NODE1, True, v3, h_v23),
            (NODE2, NODE0, True, v4, h_v45),
            (NODE0, NODE1, True, v5, h_v45),
            (NODE1, NODE2, False, v6, h_v6),
        ]
        assert task["verificationInfos"] == [
            {
                "verifier": verifier.address,
                "valid": valid,
                "txHash": tx_hash,
                "height": height,
                "seq": seq,
                "submitter": submitter.address,
            }
            for seq, (verifier, submitter, valid, tx_hash, height) in enumerate(verdicts, 1)
        ]
        for entry in task["executionInfo"]:
            assert entry["verifications"] == [
                {k: v for k, v in info.items() if k != "submitter"}
                for info in task["verificationInfos"]
                if info["submitter"] == entry["resourceNode"]
            ]

        # Settlement, from PROTOCOL 4.8
        settlement = task["settlement"]
        slashed = NODE_STAKE * slash_bps // BPS
        pool_c = (fee + NETWORK_REWARD) * 7000 // BPS
        pool_v = fee + NETWORK_REWARD - pool_c + slashed
        compute = shares(pool_c, 2)
        verify = shares(pool_v, 6)
        assert settlement["height"] == created + cdb
        assert settlement["fee"] == str(fee)
        assert settlement["slashed"] == [
            {"address": NODE2.address, "amount": str(slashed), "reason": "result"}
        ]
        payouts = [
            (NODE0, compute[0], "compute", 1),
            (NODE1, compute[1], "compute", 2),
            *(
                (verifier, verify[seq - 1], "verify", seq)
                for seq, (verifier, *_rest) in enumerate(verdicts, 1)
            ),
        ]
        assert sorted(settlement["payouts"], key=lambda p: (p["role"], p["rank"])) == [
            {"address": node.address, "amount": str(amount), "role": role, "rank": rank}
            for node, amount, role, rank in payouts
        ]
        check_settlement_adds_up(settlement)
        unpaid_c, unpaid_v = pool_c - sum(compute), pool_v - sum(verify)
        assert unpaid_c + unpaid_v > 0  # rounding leaves a rest here: where it goes is checked
        rest = remainder(fee, NETWORK_REWARD, slashed, unpaid_c, unpaid_v, pool_v)
        assert {key: settlement[key] for key in rest} == rest

        # Balances move exactly by the settlement
        sender = await client.get_account(DEV0.address)
        assert int(sender["balance"]) == (
            int(before[DEV0.address]["balance"]) - fee + int(settlement["refund"])
        )
        for node in NODES:
            account = await client.get_account(node.address)
            paid = sum(amount for n, amount, _r, _k in payouts if n == node)
            lost = slashed if node == NODE2 else 0
            assert int(account["balance"]) == int(before[node.address]["balance"]) + paid
            assert int(account["stake"]) == int(before[node.address]["stake"]) - lost

        # Node 2's stake fell below minNodeStake: it is jailed, and can no longer answer
        nodes = {n["address"]: n for n in await client.get_resource_nodes()}
        assert nodes[NODE2.address]["jailed"] is True
        assert nodes[NODE2.address]["stake"] == str(NODE_STAKE - slashed)
        assert (await client.get_account(NODE2.address))["jailed"] is True
        assert not nodes[NODE0.address]["jailed"] and not nodes[NODE1.address]["jailed"]
        assert (await client.get_account(NODE0.address))["jailed"] is False
        later = await open_task(chain, prompts="again")
        error = await refused(
            chain, "submitInferenceResult", result_tx(NODE2, later, "x").params, -32005, later
        )
        assert error.data is not None and "jailed" in error.data["reason"]


async def test_result_without_a_majority_is_unverified_at_the_verify_deadline(
    manual: LocalChain,
) -> None:
    """A result with no verdict, or with its two verifiers on opposite sides (equal stake), is
    `unverified` at the verify deadline: no reward, no slash, its verifiers neither paid nor
    slashed; the task fails and its fee goes back to the sender."""
    client = manual.client
    balance = int((await client.get_account(DEV0.address))["balance"])
    silent = (await client.submit_task(DEV0, prompts="nobody checks this")).task_hash
    tied = (await client.submit_task(DEV0, prompts="one says no")).task_hash
    created = mine(manual)  # both tasks in one block
    await accepted(manual, result_tx(NODE0, silent, "x"))
    await accepted(manual, result_tx(NODE0, tied, "y"))
    mine(manual)
    await accepted(manual, verdict_tx(NODE1, tied, NODE0.address, False))
    await accepted(manual, verdict_tx(NODE2, tied, NODE0.address, True))
    mine(manual)
    stakes = {n.address: (await client.get_account(n.address))["stake"] for n in NODES}
    deadline = created + CDB + VDB
    mine(manual, deadline - 1 - manual.node.head.height)
    for task_hash, status_before in ((silent, PENDING), (tied, VERIFYING)):
        task = await client.query_task(task_hash)
        assert task["status"] == "completed" and task["settlement"] is None
        assert task["executionInfo"][0]["status"] == status_before
    assert mine(manual) == deadline

    fee = task_fee(1)
    for task_hash in (silent, tied):
        task = await client.query_task(task_hash)
        (entry,) = task["executionInfo"]
        assert entry["status"] == UNVERIFIED and entry["decidedHeight"] == deadline
        assert task["status"] == "failed" and task["response"] is None
        assert task["finishedHeight"] == deadline
        assert task["settlement"] == {
            "height": deadline,
            "fee": str(fee),
            "networkReward": "0",
            "slashed": [],
            "payouts": [],
            "refund": str(fee),
            "burned": "0",
        }
        check_settlement_adds_up(task["settlement"])
    assert int((await client.get_account(DEV0.address))["balance"]) == balance
    for node in NODES:
        assert (await client.get_account(node.address))["stake"] == stakes[node.address]
    await answered_false(manual, verdict_tx(NODE2, silent, NODE0.address, False), silent)


def genesis_serving_only(model: str) -> Genesis:
    """The dev genesis with its three resource nodes serving only `model`."""
    raw = dev_genesis(
        params=Params(block_time_ms=0, compute_deadline_blocks=CDB, verify_deadline_blocks=VDB)
    )
    for node in raw["resourceNodes"]:
        node["models"] = model
    return parse_genesis(raw)


async def test_task_for_a_model_nobody_serves_fails_with_a_full_refund(tmp_path: Path) -> None:
    async with local_chain(tmp_path / "ledger", genesis_serving_only("m1"), run=False) as chain:
        client = chain.client
        before = await client.get_account(DEV0.address)
        stats0 = await client.task_stats()
        task_hash = await open_task(chain, target_count=2, model="m2")
        created = chain.node.head.height
        fee = task_fee(2)
        after_fee = await client.get_account(DEV0.address)
        assert int(after_fee["balance"]) == int(before["balance"]) - fee

        for node in NODES:
            error = await refused(
                chain, "submitInferenceResult", result_tx(node, task_hash, "x").params,
                -32005, task_hash,
            )  # fmt: skip
            assert error.data is not None and "m2" in error.data["reason"]
            assert await client.query_pending_tasks(node) == []

        mine(chain, CDB - 1)
        task = await client.query_task(task_hash)
        assert task["status"] == "submitted" and task["settlement"] is None
        assert mine(chain) == created + CDB
        task = await client.query_task(task_hash)
        assert task["status"] == "failed" and task["finishedHeight"] == created + CDB
        assert task["response"] is None and task["executionInfo"] == []
        assert task["settlement"] == {
            "height": created + CDB,
            "fee": str(fee),
            "networkReward": "0",
            "slashed": [],
            "payouts": [],
            "refund": str(fee),
            "burned": "0",
        }
        after = await client.get_account(DEV0.address)
        assert after["balance"] == before["balance"] and after["nonce"] == before["nonce"] + 1
        assert await client.task_stats() == {
            **stats0,
            "total": stats0["total"] + 1,
            "failed": stats0["failed"] + 1,
        }


# postprocessed


@pytest.mark.parametrize("schema", ["json", '{"type": "json"}', "0x" + b"JSON-v1".hex()])
async def test_postprocessed_results_of_a_json_schema(manual: LocalChain, schema: str) -> None:
    task_hash = await open_task(manual, target_count=3, schema=schema)
    valid = '{"answer": 42, "items": [1, "two", null], "ok": true}'
    invalid = '{"answer": '
    hex_json = "0x" + b'[true, 1.5, "\xc3\xa9"]'.hex()
    for node, result in ((NODE0, valid), (NODE1, invalid), (NODE2, hex_json)):
        await accepted(manual, result_tx(node, task_hash, result))
    mine(manual)
    task = await manual.client.query_task(task_hash)
    assert task["schema"] == schema
    first, second, third = task["executionInfo"]
    assert (first["result"], second["result"], third["result"]) == (valid, invalid, hex_json)
    assert first["postprocessed"] == {"kind": "json", "value": json.loads(valid), "error": None}
    bad = second["postprocessed"]
    assert bad["kind"] == "json" and bad["value"] is None
    assert isinstance(bad["error"], str) and "JSON" in bad["error"]
    assert third["postprocessed"] == {"kind": "json", "value": [True, 1.5, "é"], "error": None}


async def test_postprocessed_results_of_a_text_schema(manual: LocalChain) -> None:
    task_hash = await open_task(manual, target_count=3, schema="text-generation-v1")
    results = ('{"not": "parsed"}', "0x" + "héllo".encode().hex(), "0xfffe")
    for node, result in zip(NODES, results, strict=True):
        await accepted(manual, result_tx(node, task_hash, result))
    mine(manual)
    entries = (await manual.client.query_task(task_hash))["executionInfo"]
    assert [e["result"] for e in entries] == list(results)
    assert entries[0]["postprocessed"] == {"kind": "text", "value": results[0], "error": None}
    assert entries[1]["postprocessed"] == {"kind": "text", "value": "héllo", "error": None}
    not_text = entries[2]["postprocessed"]
    assert not_text["kind"] == "text" and not_text["value"] is None
    assert isinstance(not_text["error"], str) and "UTF-8" in not_text["error"]


async def test_postprocessed_json_keeps_big_integers_or_reports_an_error(
    manual: LocalChain,
) -> None:
    task_hash = await open_task(manual, schema="json")
    result = '{"id": 123456789012345678901234567890}'
    await accepted(manual, result_tx(NODE0, task_hash, result))
    mine(manual)
    (entry,) = (await manual.client.query_task(task_hash))["executionInfo"]
    postprocessed = entry["postprocessed"]
    assert postprocessed["error"] is not None or postprocessed["value"] == json.loads(result)


# The signature text of queryPendingTasks is not a transaction signature


async def test_a_pending_tasks_signature_is_no_result_signature(manual: LocalChain) -> None:
    """EIP-191 and EIP-712 signatures do not mix: a personal_sign signature by the node does
    not authorize a result."""
    task_hash = await open_task(manual)
    text = f"queryPendingTasks:{NODE0.address}:1"
    personal = "0x" + sign_digest(personal_message_hash(text), NODE0.private_key).hex()
    params = {**result_tx(NODE0, task_hash, "x").params, "signature": personal}
    await refused(manual, "submitInferenceResult", params, -32004, task_hash)


# Slashes of verifiers, payouts when the task fails, deciding after the compute deadline


async def test_a_verifier_on_the_losing_side_is_slashed(wide: LocalChain) -> None:
    """Round 0 disagrees: a dispute opens round 1, the last (PROTOCOL 4.5), where three of
    the four assigned (6000 of 8000 staked, above 2/3) decide; the dissenter of round 0 is on
    the losing side and slashed."""
    client = wide.client
    nodes = [dev_node_wallet(k) for k in range(5)]
    submitter = nodes[0]
    before = {n.address: await client.get_account(n.address) for n in nodes}
    task_hash = await open_task(wide)
    await accepted(wide, result_tx(submitter, task_hash, "right"))
    height = mine(wide)
    candidates = [n.address for n in nodes[1:]]
    block_hash = (await client.get_block(height))["hash"]
    order = verifier_order(block_hash, task_hash, submitter.address, candidates)
    entry = entry_of(await client.query_task(task_hash), submitter.address)
    assert entry["assignment"] == {"complete": False, "rounds": [order[:2]], "seed": block_hash}
    dissenter, agreeing = (dev_node_by_address(a) for a in order[:2])
    # the third candidate is not assigned (yet)
    unassigned = verdict_tx(dev_node_by_address(order[2]), task_hash, submitter.address, True)
    error = await refused(wide, "submitVerification", unassigned.params, -32005, task_hash)
    assert error.data is not None and error.data["reason"] == "not assigned"

    await accepted(wide, verdict_tx(dissenter, task_hash, submitter.address, False))
    await accepted(wide, verdict_tx(agreeing, task_hash, submitter.address, True))
    mine(wide)
    entry = entry_of(await client.query_task(task_hash), submitter.address)
    assert entry["status"] == VERIFYING
    assert entry["assignment"] == {
        "complete": True,
        "rounds": [order[:2], order[2:]],
        "seed": block_hash,
    }
    assert await verify_with_assigned(client, task_hash, submitter.address, True) == order[2:]
    height = mine(wide)
    task = await client.query_task(task_hash)
    assert task["status"] == "verified" and task["finishedHeight"] == height
    fee = task_fee(1)
    slashed = NODE_STAKE * 500 // BPS  # verifierSlashBps
    pool_c = (fee + NETWORK_REWARD) * 7000 // BPS
    pool_v = fee + NETWORK_REWARD - pool_c + slashed
    verify = shares(pool_v, 3)
    winners = [agreeing.address, *order[2:]]
    settlement = task["settlement"]
    assert settlement["slashed"] == [
        {"address": dissenter.address, "amount": str(slashed), "reason": "verdict"}
    ]
    assert sorted(settlement["payouts"], key=lambda p: (p["role"], p["rank"])) == [
        {"address": submitter.address, "amount": str(pool_c), "role": "compute", "rank": 1},
        *(
            {"address": address, "amount": str(verify[k]), "role": "verify", "rank": k + 1}
            for k, address in enumerate(winners)
        ),
    ]
    check_settlement_adds_up(settlement)
    rest = remainder(fee, NETWORK_REWARD, slashed, 0, pool_v - sum(verify), pool_v)
    assert {key: settlement[key] for key in rest} == rest
    after = {n.address: await client.get_account(n.address) for n in nodes}
    paid = {submitter.address: pool_c, **dict(zip(winners, verify, strict=True))}
    for node in nodes:
        gain = paid.get(node.address, 0)
        assert int(after[node.address]["balance"]) == int(before[node.address]["balance"]) + gain
    assert int(after[dissenter.address]["stake"]) == NODE_STAKE - slashed
    assert after[dissenter.address]["jailed"] is False  # 1900 is still above minNodeStake


async def test_verifiers_are_paid_when_the_task_fails(manual: LocalChain) -> None:
    client = manual.client
    balance = int((await client.get_account(DEV0.address))["balance"])
    task_hash = await open_task(manual)
    created = manual.node.head.height
    await accepted(manual, result_tx(NODE2, task_hash, "wrong"))
    mine(manual)
    await accepted(manual, verdict_tx(NODE0, task_hash, NODE2.address, False))
    await accepted(manual, verdict_tx(NODE1, task_hash, NODE2.address, False))
    mine(manual)
    task = await client.query_task(task_hash)
    assert task["executionInfo"][0]["status"] == REJECTED
    assert task["status"] == "processing" and task["settlement"] is None  # the slot is free
    mine(manual, created + CDB - manual.node.head.height)
    task = await client.query_task(task_hash)
    assert task["status"] == "failed" and task["finishedHeight"] == created + CDB
    fee = task_fee(1)
    slashed = NODE_STAKE * 1000 // BPS  # resultSlashBps
    pool_c = fee * 7000 // BPS
    pool_v = fee - pool_c + slashed
    verify = shares(pool_v, 2)
    settlement = task["settlement"]
    assert settlement["networkReward"] == "0"
    assert settlement["slashed"] == [
        {"address": NODE2.address, "amount": str(slashed), "reason": "result"}
    ]
    assert settlement["payouts"] == [
        {"address": NODE0.address, "amount": str(verify[0]), "role": "verify", "rank": 1},
        {"address": NODE1.address, "amount": str(verify[1]), "role": "verify", "rank": 2},
    ]
    check_settlement_adds_up(settlement)
    # no valid result: the compute pool goes back to the sender, with the rounding rest
    rest = remainder(fee, 0, slashed, pool_c, pool_v - sum(verify), pool_v)
    assert {key: settlement[key] for key in rest} == rest
    assert int(settlement["refund"]) >= pool_c
    after = int((await client.get_account(DEV0.address))["balance"])
    assert after == balance - fee + int(settlement["refund"])


async def test_a_task_is_decided_when_its_last_result_is_decided_after_the_compute_deadline(
    manual: LocalChain,
) -> None:
    """PROTOCOL 4.7: the task is decided once no result is undecided and either no slot is
    open or the compute deadline has passed."""
    task_hash = await open_task(manual, target_count=2)
    created = manual.node.head.height
    await accepted(manual, result_tx(NODE0, task_hash, "4"))
    mine(manual, CDB)
    assert manual.node.head.height == created + CDB  # no more results from here on
    task = await manual.client.query_task(task_hash)
    assert task["status"] == "processing" and task["settlement"] is None
    assert await verify_with_assigned(manual.client, task_hash, NODE0.address, True)
    height = mine(manual)
    assert height < created + CDB + VDB
    task = await manual.client.query_task(task_hash)
    assert task["executionInfo"][0]["status"] == VERIFIED
    assert task["status"] == "verified" and task["finishedHeight"] == height
