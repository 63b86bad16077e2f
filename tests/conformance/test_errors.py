"""Every row of the error table of PROTOCOL 5.3, provoked through the API, and the standard
codes -32601 and -32602 (-32700 and -32600 are in test_jsonrpc_spec). Each error has its
code, the table's message and a `data` object that says what was wrong; and a rejected call
changes nothing (the accounts involved are compared before and after).

-32603 is a bug and is never expected: every case here names the exact code it wants.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chain.protocol.types import RegisterResourceNode, Stake, SubmitTask, Transfer, Unstake
from rpc.client import (
    InferchainClient,
    PresignedTx,
    RpcError,
    Wallet,
    presign,
    sign_pending_tasks_query,
)
from tests.conformance.support import (
    DEAD,
    DEV_WALLETS,
    E18,
    RESULT_ORDER,
    UNKNOWN_HASH,
    Api,
    Target,
    check_error_object,
    check_task_object,
    epoch,
    fresh_wallet,
    positional,
    renamed,
    request,
    unique,
    without,
)

VECTORS_FILE = Path(__file__).resolve().parents[1] / "vectors" / "eip712.json"
# Enough signed calls in one batch for a validator to recover their signers ahead.
BATCH_OF_FOREIGN_TXS = 10


async def account_tx(
    api: Api, cls: Any, wallet: Wallet, nonce: int | None = None, **fields: Any
) -> PresignedTx:
    """An account transaction signed by `wallet`, by default with its next nonce."""
    if nonce is None:
        nonce = await pending_nonce(api, wallet.address)
    msg = cls(sender=wallet.address, nonce=nonce, **fields)
    return presign(msg, await api.chain_id(), wallet.private_key)


def task_fields(**fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "schema": "text",
        "target_count": 1,
        "prompts": unique("error"),
        "model_options": "",
    }
    values.update(fields)
    return values


async def pending_nonce(api: Api, address: str) -> int:
    account = await api.client.get_account(address)
    return int(account.get("pendingNonce", account["nonce"]))


# -32000 Invalid nonce provided


@pytest.mark.parametrize("ahead", [1, 5])
async def test_nonce_ahead(api: Api, sender: Wallet, ahead: int) -> None:
    expected = await pending_nonce(api, sender.address)
    tx = await account_tx(api, Transfer, sender, expected + ahead, to=DEAD, amount=1)
    data = await api.error("transfer", tx.params, -32000, watch=(sender.address, DEAD))
    assert data["expected"] in (expected, str(expected)), data


async def test_nonce_already_used(api: Api, sender: Wallet) -> None:
    """The same signed transaction again: once admitted, and once committed."""
    tx = await account_tx(api, SubmitTask, sender, **task_fields())
    await api.client.send_presigned(tx)
    # The first copy may be committed at any moment (automine): only the pending nonce
    # stays the same while it is.
    nonce_before = await pending_nonce(api, sender.address)
    data = await api.error("submitTask", tx.params, -32000)
    assert int(data["expected"]) >= tx.params["nonce"] + 1
    assert await pending_nonce(api, sender.address) == nonce_before
    await api.committed(tx.tx_hash)
    data = await api.error("submitRequest", tx.params, -32000, watch=(sender.address,))
    assert int(data["expected"]) == await pending_nonce(api, sender.address)


async def test_nonce_below_on_every_account_transaction(api: Api, sender: Wallet) -> None:
    setup = await account_tx(api, Stake, sender, amount=1)  # so that a nonce lies behind
    await api.client.send_presigned(setup)
    await api.committed(setup.tx_hash)
    nonce = await pending_nonce(api, sender.address)
    stale = nonce - 1
    for cls, method, fields in [
        (Stake, "stake", {"amount": 1}),
        (Unstake, "unstake", {"amount": 1}),
        (RegisterResourceNode, "registerResourceNode", {"models": "*", "endpoint": ""}),
        (SubmitTask, "submitTask", task_fields()),
    ]:
        tx = await account_tx(api, cls, sender, stale, **fields)
        data = await api.error(method, tx.params, -32000, watch=(sender.address,))
        assert int(data["expected"]) == nonce


# -32001 Invalid requestHash provided


def some_nodes(caps: Target) -> list[Wallet]:
    """Eligible resource nodes when the target has them, else new keys: then the only fault
    of a call is the one under test, whatever order a node checks in."""
    return list(caps.nodes) + [fresh_wallet() for _ in range(2)]


async def test_result_for_an_unknown_task(api: Api, caps: Target) -> None:
    node = some_nodes(caps)[0]
    tx = await api.result_tx(node, UNKNOWN_HASH, "r", "p")
    upstream = renamed(tx.params, taskHash="requestHash", result="response")
    for method in ("submitInferenceResult", "submitResponse"):
        for params in (tx.params, upstream, positional(tx.params, RESULT_ORDER)):
            await api.error(method, params, -32001, mentions=(UNKNOWN_HASH,))


ETHERS_VECTORS = [
    vector
    for vector in json.loads(VECTORS_FILE.read_text())["vectors"]
    if vector["type"] in ("SubmitInferenceResult", "SubmitVerification")
]


@pytest.mark.parametrize("vector", ETHERS_VECTORS, ids=[v["name"] for v in ETHERS_VECTORS])
async def test_signature_made_by_ethers_recovers_to_its_signer(
    api: Api, caps: Target, vector: dict[str, Any]
) -> None:
    """A result or verdict signed by ethers.js (tests/vectors/eip712.json) for a task the
    chain does not know: -32001, not -32004, so the node's EIP-712 digest is ethers'."""
    if await api.chain_id() != vector["chainId"]:
        pytest.skip(f"the vector is signed for chain {vector['chainId']}")
    if vector["signer"] not in {node.address for node in caps.nodes}:
        pytest.skip(f"its signer {vector['signer']} is not an eligible resource node here")
    method = (
        "submitInferenceResult"
        if vector["type"] == "SubmitInferenceResult"
        else ("submitVerification")
    )
    params = {**vector["message"], "signature": vector["signature"]}
    await api.error(method, params, -32001, mentions=(vector["message"]["taskHash"],))


async def test_verdict_for_an_unknown_task(api: Api, caps: Target) -> None:
    verifier, submitter = some_nodes(caps)[:2]
    tx = await api.verdict_tx(verifier, UNKNOWN_HASH, submitter.address, True)
    await api.error("submitVerification", tx.params, -32001, mentions=(UNKNOWN_HASH,))
    params = renamed(tx.params, taskHash="requestHash")
    await api.error("submitVerification", params, -32001, mentions=(UNKNOWN_HASH,))


# -32002 Insufficient balance


async def test_task_fee_beyond_the_balance(api: Api) -> None:
    poor = fresh_wallet()
    for method in ("submitTask", "submitRequest"):
        tx = await account_tx(api, SubmitTask, poor, 0, **task_fields())
        await api.error(method, tx.params, -32002, watch=(poor.address,))


async def test_transfer_and_stake_beyond_the_balance(api: Api, sender: Wallet) -> None:
    balance = int((await api.client.get_account(sender.address))["balance"])
    tx = await account_tx(api, Transfer, sender, to=DEAD, amount=balance + 1)
    await api.error("transfer", tx.params, -32002, watch=(sender.address, DEAD))
    tx = await account_tx(api, Stake, sender, amount=balance + 1)
    await api.error("stake", tx.params, -32002, watch=(sender.address,))
    poor = fresh_wallet()
    tx = await account_tx(api, Transfer, poor, 0, to=DEAD, amount=1)
    await api.error("transfer", tx.params, -32002, watch=(poor.address, DEAD))


async def test_unstake_beyond_the_stake(api: Api) -> None:
    poor = fresh_wallet()
    tx = await account_tx(api, Unstake, poor, 0, amount=1)
    await api.error("unstake", tx.params, -32002, watch=(poor.address,))


# -32003 Invalid requestHash


@pytest.mark.parametrize(
    "value",
    [UNKNOWN_HASH, "0x12", UNKNOWN_HASH + "00", "0x" + "g" * 64, UNKNOWN_HASH[2:], ""],
    ids=["unknown", "short", "long", "not-hex", "no-0x", "empty"],
)
@pytest.mark.parametrize("name", ["taskHash", "requestHash", None])
async def test_query_task_of_an_unknown_or_malformed_hash(
    api: Api, value: str, name: str | None
) -> None:
    params: Any = [value] if name is None else {name: value}
    await api.error("queryTask", params, -32003)


# -32004 Invalid signature


def with_signature(params: dict[str, Any], signature: Any) -> dict[str, Any]:
    return {**params, "signature": signature}


async def test_unsigned_call_of_an_account_that_is_not_unlocked(api: Api) -> None:
    stranger = fresh_wallet()
    tx = await account_tx(api, Transfer, stranger, 0, to=DEAD, amount=1)
    await api.error("transfer", without(tx.params, "signature"), -32004, watch=(DEAD,))
    await api.error("transfer", with_signature(tx.params, None), -32004, watch=(DEAD,))
    task = await account_tx(api, SubmitTask, stranger, 0, **task_fields())
    await api.error("submitTask", without(task.params, "signature", "nonce"), -32004)
    result = await api.result_tx(stranger, UNKNOWN_HASH, "r")
    await api.error("submitInferenceResult", without(result.params, "signature"), -32004)


def check_domain_named(data: dict[str, Any], chain_id: int, signer: str) -> None:
    """A typed-data signature that recovers to another address: -32004 whose data names the
    chainId and the EIP-712 domain the node verifies against (PROTOCOL 3, 5.3)."""
    assert data["expected"] == signer and data["recovered"] != signer, data
    assert data["chainId"] == chain_id, data
    assert data["domain"] == {"name": "AegisAI", "version": "1", "chainId": chain_id}, data
    assert data["domainType"] == "EIP712Domain(string name,string version,uint256 chainId)"
    assert str(chain_id) in data["reason"], data


async def test_signature_of_another_key(api: Api, sender: Wallet) -> None:
    other = fresh_wallet()
    mine = await account_tx(api, Transfer, sender, to=DEAD, amount=1)
    theirs = presign(
        Transfer(other.address, mine.params["nonce"], DEAD, 1),
        await api.chain_id(),
        other.private_key,
    )
    params = with_signature(mine.params, theirs.params["signature"])
    data = await api.error("transfer", params, -32004, watch=(sender.address, DEAD))
    check_domain_named(data, await api.chain_id(), sender.address)


async def test_signature_for_another_chain(api: Api, sender: Wallet) -> None:
    """Signed for chainId + 1: the error names the chain and domain this node expects, alone
    and inside a batch (whose signatures a node may recover ahead, PROTOCOL 5)."""
    nonce = await pending_nonce(api, sender.address)
    chain_id = await api.chain_id()
    msg = Transfer(sender.address, nonce, DEAD, 1)
    tx = presign(msg, chain_id + 1, sender.private_key)
    data = await api.error("transfer", tx.params, -32004, watch=(sender.address, DEAD))
    check_domain_named(data, chain_id, sender.address)
    batch = [request("transfer", tx.params, i) for i in range(BATCH_OF_FOREIGN_TXS)]
    status, answers = await api.raw(batch)
    assert status == 200 and len(answers) == BATCH_OF_FOREIGN_TXS, answers
    for answer in answers:
        check_domain_named(check_error_object(answer["error"], -32004), chain_id, sender.address)
    assert await pending_nonce(api, sender.address) == nonce


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: "0x1234",
        lambda s: s + "00",
        lambda s: "0x" + "zz" * 65,
        lambda s: s[2:],
        lambda s: s[:-2] + "00",
        lambda s: 12345,
    ],
    ids=["short", "66-bytes", "not-hex", "no-0x", "v0", "number"],
)
async def test_malformed_signature(api: Api, sender: Wallet, mangle: Any) -> None:
    tx = await account_tx(api, Transfer, sender, to=DEAD, amount=1)
    params = with_signature(tx.params, mangle(tx.params["signature"]))
    await api.error("transfer", params, -32004, watch=(sender.address, DEAD))


async def test_result_and_verdict_signed_by_another_key(
    api: Api, sender: Wallet, nodes: list[Wallet]
) -> None:
    first, second, _ = nodes
    task = (await api.open_task(sender, target_count=2, label="forged")).task_hash
    result = await api.result_tx(first, task, "r")
    forged = await api.result_tx(second, task, "r")
    params = with_signature(result.params, forged.params["signature"])
    await api.error("submitInferenceResult", params, -32004, watch=(first.address,))
    assert await api.client.send_presigned(result) is True
    await api.committed(result.tx_hash)
    verdict = await api.verdict_tx(second, task, first.address, True)
    forged = await api.verdict_tx(first, task, second.address, True)
    params = with_signature(verdict.params, forged.params["signature"])
    data = await api.error("submitVerification", params, -32004, watch=(second.address,))
    check_domain_named(data, await api.chain_id(), second.address)
    assert (await api.client.query_task(task))["status"] == "processing"


async def test_query_pending_tasks_signature(api: Api, caps: Target) -> None:
    """The optional EIP-191 signature of `queryPendingTasks:<chainId>:<address>:<TimeStamp>`
    must recover to ResourceAddress, and its TimeStamp must be within 300 s of the node
    clock; a signature for another chain is refused, naming the text this chain expects."""
    node, other = some_nodes(caps)[:2]
    now = epoch()
    chain_id = await api.chain_id()
    text = f"queryPendingTasks:{chain_id}:{node.address}:{now}"
    params = {
        "ResourceAddress": node.address,
        "TimeStamp": now,
        "Signature": sign_pending_tasks_query(other, now, chain_id),
    }
    data = await api.error("queryPendingTasks", params, -32004)
    assert data["expected"] == node.address and data["recovered"] != node.address
    assert data["text"] == text and data["chainId"] == chain_id
    for stamp in (now - 3600, now + 3600):
        await api.error("queryPendingTasks", await api.pending_params(node, stamp), -32004)

    foreign = await api.pending_params(node, now) | {
        "Signature": sign_pending_tasks_query(node, now, chain_id + 1)
    }
    data = await api.error("queryPendingTasks", foreign, -32004, mentions=(text,))
    assert data["expected"] == node.address and data["recovered"] != node.address
    assert data["chainId"] == chain_id
    assert data["textFormat"] == "queryPendingTasks:<chainId>:<address>:<TimeStamp>"


# -32005 Not eligible


async def test_query_pending_tasks_of_an_unregistered_address(api: Api) -> None:
    stranger = fresh_wallet()
    params = {"ResourceAddress": stranger.address, "TimeStamp": epoch()}
    await api.error("queryPendingTasks", params, -32005, mentions=(stranger.address,))
    await api.error("queryPendingTasks", [stranger.address, epoch()], -32005)


async def test_node_without_stake(api: Api, sender: Wallet) -> None:
    """A registered node with no stake may not ask for work nor answer a task."""
    node = fresh_wallet()
    tx = await account_tx(api, RegisterResourceNode, node, 0, models="*", endpoint="")
    await api.client.send_presigned(tx)
    await api.committed(tx.tx_hash)
    await api.error("queryPendingTasks", await api.pending_params(node), -32005)
    task = await api.open_task(sender, label="unstaked node")
    result = await api.result_tx(node, task.task_hash, "r")
    await api.error("submitInferenceResult", result.params, -32005, watch=(node.address,))


NODE_STAKE = 1000 * E18  # minNodeStake of the shipped genesis (PROTOCOL 2)
FEE_ROOM = E18 // 1000  # for the fee of the transfer back (inferchain's transferFee: 1e12)


async def test_node_that_does_not_serve_the_model(api: Api, caps: Target, sender: Wallet) -> None:
    """A staked node registered for another model is not offered the task and may not answer
    it. The node's funds go back to the dev account that lent them."""
    funder = caps.funded[0]
    if int((await api.client.get_account(funder.address))["balance"]) < 2 * NODE_STAKE:
        pytest.skip(f"{funder.address} cannot lend a resource node its stake")
    node = fresh_wallet()
    lent = NODE_STAKE + FEE_ROOM
    await api.committed(await api.client.transfer(funder, node.address, lent))
    await api.committed(await api.client.stake(node, NODE_STAKE))
    register = await api.client.register_resource_node(node, "another-model", "")
    await api.committed(register)
    try:
        try:
            await api.client.query_pending_tasks(node, limit=1000)
        except RpcError as exc:
            pytest.skip(f"{NODE_STAKE} base units of stake are not enough here: {exc}")
        task = await api.open_task(sender, label="another model")  # model "conformance"
        offered = await api.client.query_pending_tasks(node, limit=1000)
        assert task.task_hash not in {item["taskHash"] for item in offered}
        result = await api.result_tx(node, task.task_hash, "r")
        await api.error("submitInferenceResult", result.params, -32005, watch=(node.address,))
    finally:
        await api.committed(await api.client.unstake(node, NODE_STAKE))
        await api.committed(await api.client.transfer(node, funder.address, NODE_STAKE))


async def test_result_of_an_unregistered_address(api: Api, sender: Wallet) -> None:
    task = await api.open_task(sender, label="unregistered node")
    stranger = fresh_wallet()
    result = await api.result_tx(stranger, task.task_hash, "r")
    await api.error("submitInferenceResult", result.params, -32005, mentions=(stranger.address,))
    assert (await api.client.query_task(task.task_hash))["executionInfo"] == []


async def test_verdict_on_its_own_result(api: Api, sender: Wallet, nodes: list[Wallet]) -> None:
    node = nodes[0]
    task = await api.open_task(sender, target_count=2, label="own verdict")
    result = await api.result_tx(node, task.task_hash, unique("own"))
    assert await api.client.send_presigned(result) is True
    await api.committed(result.tx_hash)
    verdict = await api.verdict_tx(node, task.task_hash, node.address, True)
    await api.error("submitVerification", verdict.params, -32005, watch=(node.address,))


# -32006 Duplicate submission


async def test_duplicate_result_and_verdict(api: Api, sender: Wallet, nodes: list[Wallet]) -> None:
    first, second, _ = nodes
    task = await api.open_task(sender, target_count=2, label="duplicates")
    result = await api.result_tx(first, task.task_hash, unique("once"))
    assert await api.client.send_presigned(result) is True
    await api.error("submitInferenceResult", result.params, -32006)  # the same one again
    await api.committed(result.tx_hash)
    again = await api.result_tx(first, task.task_hash, unique("twice"))
    await api.error("submitResponse", again.params, -32006, watch=(first.address,))

    verdict = await api.verdict_tx(second, task.task_hash, first.address, True)
    assert await api.client.send_presigned(verdict) is True
    await api.committed(verdict.tx_hash)
    # A second verdict of the same node on the same result is a duplicate, even a flipped one.
    other = await api.verdict_tx(second, task.task_hash, first.address, False)
    for tx in (verdict, other):
        await api.error("submitVerification", tx.params, -32006, watch=(second.address,))
    assert len((await api.client.query_task(task.task_hash))["executionInfo"]) == 1


# -32007 Mempool full


MEMPOOL_FILL_PROMPT = "x" * 4_000_000  # under the maxTxBytes of that validator's genesis
MEMPOOL_MAX_REQUESTS = 100  # 64 MiB, the mempool's byte limit, take 17


def mempool_task(sender: Wallet) -> dict[str, Any]:
    """A dev-mode SubmitTask of about 4 MB."""
    return {
        "sender": sender.address,
        "schema": "text",
        "targetCount": 1,
        "prompts": MEMPOOL_FILL_PROMPT,
        "modelOptions": "",
    }


FILLED: dict[str, tuple[int, dict[str, Any], dict[str, Any]]] = {}


async def fill_mempool(api: Api) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Send dev-mode tasks until the node answers -32007, once per node: (accepted count,
    the error object, the receipt of the first task accepted)."""
    if api.url in FILLED:
        return FILLED[api.url]
    receipts = []
    for i in range(MEMPOOL_MAX_REQUESTS):
        sender = DEV_WALLETS[i % len(DEV_WALLETS)]
        status, answer = await api.raw(request("submitTask", mempool_task(sender), i))
        assert status == 200 and isinstance(answer, dict), answer
        if "error" not in answer:
            receipts.append(answer["result"])
            continue
        assert answer["error"].get("code") == -32007, answer
        FILLED[api.url] = (len(receipts), answer["error"], receipts[0])
        return FILLED[api.url]
    raise AssertionError(f"no -32007 after {len(receipts)} transactions")


FullMempool = tuple[Api, int, dict[str, Any], dict[str, Any]]


@pytest.fixture
async def full_mempool(
    mempool_target: str, http: aiohttp.ClientSession
) -> AsyncIterator[FullMempool]:
    """The suite's second validator (no blocks) with its mempool full."""
    async with InferchainClient(mempool_target) as client:
        api = Api(client, http, mempool_target)
        yield (api, *await fill_mempool(api))


async def test_mempool_full(full_mempool: FullMempool) -> None:
    api, accepted, error, _first = full_mempool
    assert accepted > 0
    check_error_object(error, -32007)
    # A further transaction of that size is refused too, and changes nothing.
    sender = DEV_WALLETS[0]
    before = await api.client.task_stats()
    await api.error("submitTask", mempool_task(sender), -32007, watch=(sender.address,))
    assert await api.client.task_stats() == before


async def test_pending_transaction_and_task(full_mempool: FullMempool) -> None:
    """PROTOCOL 5.1: a transaction in the mempool is `pending` (no block yet), and its task
    is `submitted`."""
    api, _accepted, _error, first = full_mempool
    tx = await api.get_tx(first["txHash"])
    assert tx["status"] == "pending" and tx["blockHeight"] is None, tx
    assert tx["tx_type"] == "creation" and tx["associated_task"] == first["taskHash"]
    task = await api.client.query_task(first["taskHash"])
    check_task_object(task)
    assert task["status"] == "submitted" and task["taskHash"] == first["taskHash"]
    assert task["executionInfo"] == [] and task["settlement"] is None


async def test_mempool_full_by_bytes_says_what_is_full(full_mempool: FullMempool) -> None:
    """The suite fills the mempool with a few transactions of 4 MB: the data of -32007 must
    say that the bytes are what is full."""
    _api, accepted, error, _first = full_mempool
    assert accepted < 1000  # far below any count limit: the bytes ran out
    check_error_object(error, -32007, mentions=("byte",))


# -32601 Method not found, -32602 Invalid params


@pytest.mark.parametrize("method", ["foobar", "submitrequest", "SubmitTask", "eth_chainId", ""])
async def test_unknown_method(api: Api, method: str) -> None:
    await api.error(method, {}, -32601)


# PROTOCOL 1: a mixed-case address with a wrong EIP-55 checksum (0xdEaD -> 0xDeAd).
WRONG_CHECKSUM = DEAD[:-4] + "DeAd"


@pytest.mark.parametrize(
    ("method", "params", "param"),
    [
        ("getAccount", {}, "address"),
        ("getAccount", {"address": "0x12"}, "address"),
        ("getAccount", {"address": DEAD, "bogus": 1}, "bogus"),
        ("getBlock", {"height": -1}, "height"),
        ("getBlock", {"height": "x"}, "height"),
        ("getTransaction", {}, "txHash"),
        ("getTransaction", {"txHash": "0x12"}, "txHash"),
        ("queryPendingTasks", {"ResourceAddress": DEAD}, "TimeStamp"),
        ("queryPendingTasks", {"ResourceAddress": "0x12", "TimeStamp": 1}, "ResourceAddress"),
        ("getAccount", {"address": WRONG_CHECKSUM}, "address"),
        ("queryPendingTasks", {"ResourceAddress": WRONG_CHECKSUM, "TimeStamp": 1}, "Resource"),
        ("queryPendingTasks", {"ResourceAddress": DEAD, "TimeStamp": 1, "limit": 0}, "limit"),
        ("queryPendingTasks", {"ResourceAddress": DEAD, "TimeStamp": 1, "limit": 1001}, "limit"),
        ("chainId", [1], "params"),
    ],
)
async def test_invalid_params(api: Api, method: str, params: Any, param: str) -> None:
    await api.error(method, params, -32602, mentions=(param,))


async def test_block_beyond_the_head(api: Api) -> None:
    head = await api.client.block_number()
    await api.error("getBlock", {"height": head + 1000}, -32602, mentions=("height",))
    await api.error("getAccount", [DEAD, head + 1000], -32602, mentions=("blockHeight",))


async def test_unknown_transaction(api: Api) -> None:
    await api.error("getTransaction", {"txHash": UNKNOWN_HASH}, -32602, mentions=("txHash",))


async def test_invalid_transaction_params(api: Api, sender: Wallet) -> None:
    nonce = await pending_nonce(api, sender.address)
    base = (await account_tx(api, Transfer, sender, nonce, to=DEAD, amount=1)).params
    for params, param in [
        (without(base, "to"), "to"),
        ({**base, "to": WRONG_CHECKSUM}, "to"),
        ({**base, "amount": 1.5}, "amount"),
        ({**base, "amount": "-1"}, "amount"),
        ({**base, "to": "0x12"}, "to"),
        ({**base, "memo": "x"}, "memo"),
    ]:
        await api.error("transfer", params, -32602, mentions=(param,), watch=(sender.address,))


@pytest.mark.parametrize("target_count", [0, 2**255])
async def test_task_target_count_out_of_range(api: Api, sender: Wallet, target_count: int) -> None:
    """PROTOCOL 4.1: 1 <= targetCount <= maxTargetCount; the table has no code of its own."""
    tx = await account_tx(api, SubmitTask, sender, **task_fields(target_count=target_count))
    await api.error(
        "submitTask", tx.params, -32602, mentions=("targetCount",), watch=(sender.address,)
    )
