"""Every error code reachable through the account-transaction API, results, verdicts and
queryPendingTasks (PROTOCOL 5.3), each with a `data` object, and a rejected call changes
nothing: the sender's account (with its pending nonce), the task counters and the mempool are
the same before and after. The errors that need a task on the chain are in test_lifecycle.py
and test_pending.py."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chain.protocol import crypto, wire
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
from rpc.api import METHOD_OF_TYPE
from rpc.client import RpcError, Wallet, pending_tasks_message, pending_tasks_params, sign_params
from tests.helpers import LocalChain, local_chain
from tests.rpc.support import (
    CHAIN_ID,
    DEAD,
    DEV0,
    DEV1,
    DEV_BALANCE,
    MAX_TARGET_COUNT,
    NODE0,
    NODE1,
    NODE_BALANCE,
    NODE_STAKE,
    STRANGER,
    TRANSFER_FEE,
    VALIDATOR,
    VALIDATOR_STAKE,
    VECTORS_FILE,
    assert_error_shape,
    committed,
    post_raw,
    rpc_error,
    snapshot,
    task_fee,
    task_params,
    vector,
    wrong_checksum,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
UNKNOWN_HASH = "0x" + "5a" * 32


def signed(wallet: Wallet, msg: Message, chain_id: int = CHAIN_ID) -> dict[str, Any]:
    return sign_params(msg, chain_id, wallet.private_key)


def foreign_signature(wallet: Wallet, msg: Message) -> str:
    """A signature of `msg` by a key that is not the signer's (the client refuses to make one)."""
    return "0x" + crypto.sign_digest(crypto.digest(msg, CHAIN_ID), wallet.private_key).hex()


def task_msg(sender: str, nonce: int = 0, **fields: Any) -> SubmitTask:
    values: dict[str, Any] = {
        "sender": sender,
        "nonce": nonce,
        "schema": "text",
        "target_count": 1,
        "prompts": "p",
        "model_options": "",
    }
    values.update(fields)
    return SubmitTask(**values)


def without(params: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in names}


@dataclass(frozen=True)
class Case:
    method: str
    params: Any
    code: int
    data: dict[str, Any] = field(default_factory=dict)  # a subset the error data must hold
    watch: tuple[str, ...] = (DEV0.address, NODE0.address)


def high_s(signature: str) -> str:
    """The same signature with s -> n - s and v flipped: valid math, refused by the low-s rule."""
    raw = bytearray(bytes.fromhex(signature[2:]))
    s = int.from_bytes(raw[32:64], "big")
    raw[32:64] = (SECP256K1_N - s).to_bytes(32, "big")
    raw[64] = 55 - raw[64]
    return "0x" + raw.hex()


NODE0_TRANSFER = signed(NODE0, Transfer(NODE0.address, 0, DEAD, 1))
GOOD_SIG = NODE0_TRANSFER["signature"]
UNKNOWN_TASK = bytes.fromhex(UNKNOWN_HASH[2:])
RESULT_MSG = SubmitInferenceResult(UNKNOWN_TASK, NODE0.address, "r", "p")
VERDICT_MSG = SubmitVerification(UNKNOWN_TASK, NODE0.address, NODE1.address, True)
NODE0_RESULT = signed(NODE0, RESULT_MSG)
NODE0_VERDICT = signed(NODE0, VERDICT_MSG)
RESULT_VECTOR = {
    **vector("submitInferenceResult")["message"],
    "signature": vector("submitInferenceResult")["signature"],
}
VERDICT_VECTOR = {
    **vector("submitVerification, valid")["message"],
    "signature": vector("submitVerification, valid")["signature"],
}


def pending_signed_by(wallet: Wallet, address: str, stamp: int) -> dict[str, Any]:
    """queryPendingTasks params for `address`, personal_signed by `wallet`."""
    text = pending_tasks_message(address, stamp, CHAIN_ID)
    signature = crypto.sign_digest(crypto.personal_message_hash(text), wallet.private_key)
    return {"ResourceAddress": address, "TimeStamp": stamp, "Signature": "0x" + signature.hex()}


NOW = int(time.time())

APP_CASES: dict[str, Case] = {
    # -32000 Invalid nonce
    "nonce ahead, signed": Case(
        "transfer",
        signed(NODE0, Transfer(NODE0.address, 5, DEAD, 1)),
        -32000,
        {"expected": 0, "got": 5},
    ),
    "nonce ahead, dev mode": Case(
        "transfer",
        {"sender": DEV0.address, "nonce": 1, "to": DEAD, "amount": "1"},
        -32000,
        {"expected": 0},
    ),
    "task nonce ahead": Case(
        "submitTask", signed(NODE0, task_msg(NODE0.address, 3)), -32000, {"expected": 0}
    ),
    "stake nonce ahead": Case(
        "stake", signed(NODE0, Stake(NODE0.address, 1, 1)), -32000, {"expected": 0}
    ),
    # -32002 Insufficient balance
    "fee beyond balance": Case(
        "submitTask",
        signed(STRANGER, task_msg(STRANGER.address, target_count=4)),
        -32002,
        {"needed": str(task_fee(4)), "available": "0"},
        (STRANGER.address,),
    ),
    "fee beyond balance, submitRequest": Case(
        "submitRequest",
        signed(STRANGER, task_msg(STRANGER.address)),
        -32002,
        {},
        (STRANGER.address,),
    ),
    "transfer beyond balance": Case(
        "transfer",
        {"sender": DEV0.address, "to": DEV1.address, "amount": str(DEV_BALANCE + 1)},
        -32002,
        {"needed": str(DEV_BALANCE + 1 + TRANSFER_FEE), "available": str(DEV_BALANCE)},
        (DEV0.address, DEV1.address),
    ),
    "stake beyond balance": Case(
        "stake",
        signed(NODE0, Stake(NODE0.address, 0, NODE_BALANCE + 1)),
        -32002,
        {"needed": str(NODE_BALANCE + 1), "available": str(NODE_BALANCE)},
    ),
    "unstake without stake": Case(
        "unstake",
        {"sender": DEV0.address, "amount": "1"},
        -32002,
        {"needed": "1", "available": "0"},
    ),
    "unstake beyond stake": Case(
        "unstake",
        signed(NODE0, Unstake(NODE0.address, 0, NODE_STAKE + 1)),
        -32002,
        {"needed": str(NODE_STAKE + 1), "available": str(NODE_STAKE)},
    ),
    # -32003 Invalid requestHash (queryTask)
    "queryTask unknown": Case("queryTask", {"taskHash": UNKNOWN_HASH}, -32003),
    "queryTask unknown requestHash": Case("queryTask", {"requestHash": UNKNOWN_HASH}, -32003),
    "queryTask unknown positional": Case("queryTask", [UNKNOWN_HASH], -32003),
    "queryTask short hash": Case("queryTask", {"taskHash": "0x12"}, -32003),
    "queryTask long hash": Case("queryTask", {"taskHash": UNKNOWN_HASH + "00"}, -32003),
    "queryTask not hex": Case("queryTask", {"requestHash": "0x" + "g" * 64}, -32003),
    "queryTask no prefix": Case("queryTask", {"taskHash": UNKNOWN_HASH[2:]}, -32003),
    "queryTask empty": Case("queryTask", {"taskHash": ""}, -32003),
    # -32004 Invalid signature
    "no signature, not a dev account": Case(
        "transfer", without(NODE0_TRANSFER, "signature"), -32004
    ),
    "no signature nor nonce, not a dev account": Case(
        "submitTask", task_params(STRANGER.address), -32004, {}, (STRANGER.address,)
    ),
    "signature null, not a dev account": Case(
        "stake", {"sender": NODE0.address, "nonce": 0, "amount": "1", "signature": None}, -32004
    ),
    "signature too short": Case("transfer", {**NODE0_TRANSFER, "signature": "0x1234"}, -32004),
    "signature not hex": Case(
        "transfer", {**NODE0_TRANSFER, "signature": "0x" + "zz" * 65}, -32004
    ),
    "signature without 0x": Case("transfer", {**NODE0_TRANSFER, "signature": GOOD_SIG[2:]}, -32004),
    "signature 66 bytes": Case(
        "transfer", {**NODE0_TRANSFER, "signature": GOOD_SIG + "00"}, -32004
    ),
    "signature v=0": Case(
        "transfer", {**NODE0_TRANSFER, "signature": GOOD_SIG[:-2] + "00"}, -32004
    ),
    "signature high s": Case("transfer", {**NODE0_TRANSFER, "signature": high_s(GOOD_SIG)}, -32004),
    "signature by another key": Case(
        "transfer",
        {
            **NODE0_TRANSFER,
            "signature": foreign_signature(NODE1, Transfer(NODE0.address, 0, DEAD, 1)),
        },
        -32004,
        {"expected": NODE0.address, "recovered": NODE1.address},
    ),
    "dev sender signed by another key": Case(
        "submitTask",
        {
            **wire.message_to_params(task_msg(DEV0.address)),
            "signature": foreign_signature(DEV1, task_msg(DEV0.address)),
        },
        -32004,
        {"expected": DEV0.address, "recovered": DEV1.address},
    ),
    "signature for another chainId": Case(
        "transfer", signed(NODE0, Transfer(NODE0.address, 0, DEAD, 1), chain_id=1), -32004
    ),
    "task vector of chain 1": Case(
        "submitTask",
        {
            **vector("submitTask, unicode prompt, another chain")["message"],
            "signature": vector("submitTask, unicode prompt, another chain")["signature"],
        },
        -32004,
        {"expected": vector("submitTask, unicode prompt, another chain")["signer"]},
    ),
    # -32005 Not eligible
    "validator unstakes below minValidatorStake": Case(
        "unstake",
        signed(VALIDATOR, Unstake(VALIDATOR.address, 0, 1)),
        -32005,
        {"address": VALIDATOR.address},
        (VALIDATOR.address,),
    ),
    "validator unstakes everything": Case(
        "unstake",
        signed(VALIDATOR, Unstake(VALIDATOR.address, 0, VALIDATOR_STAKE)),
        -32005,
        {"address": VALIDATOR.address},
        (VALIDATOR.address,),
    ),
    "validator registers as resource node": Case(
        "registerResourceNode",
        signed(VALIDATOR, RegisterResourceNode(VALIDATOR.address, 0, "*", "http://127.0.0.1:1")),
        -32005,
        {"address": VALIDATOR.address},
        (VALIDATOR.address,),
    ),
    # Results, verdicts and queryPendingTasks
    "result for an unknown task": Case(
        "submitInferenceResult", NODE0_RESULT, -32001, {"taskHash": UNKNOWN_HASH}
    ),
    "result for an unknown task, upstream names": Case(
        "submitResponse",
        {
            **without(NODE0_RESULT, "taskHash", "result"),
            "requestHash": UNKNOWN_HASH,
            "response": "r",
        },
        -32001,
        {"taskHash": UNKNOWN_HASH},
    ),
    "result for an unknown task, dev mode": Case(
        "submitInferenceResult",
        {"taskHash": UNKNOWN_HASH, "resourceNode": DEV0.address, "result": "r"},
        -32001,
    ),
    "result vector on a fresh chain": Case(
        "submitInferenceResult",
        RESULT_VECTOR,
        -32001,
        {"taskHash": RESULT_VECTOR["taskHash"]},
    ),
    "verdict for an unknown task": Case(
        "submitVerification", NODE0_VERDICT, -32001, {"taskHash": UNKNOWN_HASH}
    ),
    "verdict for an unknown task, requestHash": Case(
        "submitVerification",
        {**without(NODE0_VERDICT, "taskHash"), "requestHash": UNKNOWN_HASH},
        -32001,
    ),
    "verdict vector on a fresh chain": Case(
        "submitVerification",
        VERDICT_VECTOR,
        -32001,
        {"taskHash": VERDICT_VECTOR["taskHash"]},
    ),
    "result signed by another key": Case(
        "submitInferenceResult",
        {**NODE0_RESULT, "signature": foreign_signature(NODE1, RESULT_MSG)},
        -32004,
        {"expected": NODE0.address, "recovered": NODE1.address},
    ),
    "result without signature, not a dev account": Case(
        "submitInferenceResult", without(NODE0_RESULT, "signature"), -32004
    ),
    "result with a null signature, not a dev account": Case(
        "submitResponse", {**NODE0_RESULT, "signature": None}, -32004
    ),
    "result for another chainId": Case(
        "submitInferenceResult", signed(NODE0, RESULT_MSG, chain_id=1), -32004
    ),
    "result with a transfer's signature": Case(
        "submitInferenceResult", {**NODE0_RESULT, "signature": GOOD_SIG}, -32004
    ),
    "verdict signed by another key": Case(
        "submitVerification",
        {**NODE0_VERDICT, "signature": foreign_signature(DEV0, VERDICT_MSG)},
        -32004,
        {"expected": NODE0.address, "recovered": DEV0.address},
    ),
    "verdict without signature, not a dev account": Case(
        "submitVerification", without(NODE0_VERDICT, "signature"), -32004
    ),
    "pending tasks signed by another key": Case(
        "queryPendingTasks",
        pending_signed_by(NODE1, NODE0.address, NOW),
        -32004,
        {"expected": NODE0.address, "recovered": NODE1.address},
    ),
    "pending tasks with a transfer's signature": Case(
        "queryPendingTasks",
        {"ResourceAddress": NODE0.address, "TimeStamp": NOW, "Signature": GOOD_SIG},
        -32004,
    ),
    "pending tasks signed a day ago": Case(
        "queryPendingTasks", pending_tasks_params(NODE0, NOW - 86_400, chain_id=CHAIN_ID), -32004
    ),
    "pending tasks signed for tomorrow": Case(
        "queryPendingTasks", pending_tasks_params(NODE0, NOW + 86_400, chain_id=CHAIN_ID), -32004
    ),
    "pending tasks of an unregistered address": Case(
        "queryPendingTasks",
        {"ResourceAddress": STRANGER.address, "TimeStamp": NOW},
        -32005,
        {"address": STRANGER.address},
    ),
    "pending tasks of a validator": Case(
        "queryPendingTasks",
        {"ResourceAddress": VALIDATOR.address, "TimeStamp": NOW},
        -32005,
        {"address": VALIDATOR.address},
    ),
    "pending tasks of a dev account, positional": Case(
        "queryPendingTasks", [DEV0.address, NOW], -32005, {"address": DEV0.address}
    ),
}


async def check_rejected(chain: LocalChain, case: Case) -> RpcError:
    client = chain.client
    before = await snapshot(client, *case.watch)
    error = await rpc_error(client, case.method, case.params)
    assert error.code == case.code, error
    assert error.data is not None
    for key, value in case.data.items():
        assert error.data.get(key) == value, (key, error.data)
    assert await snapshot(client, *case.watch) == before
    return error


@pytest.mark.parametrize("case", list(APP_CASES.values()), ids=list(APP_CASES))
async def test_application_error(chain: LocalChain, case: Case) -> None:
    await check_rejected(chain, case)


async def test_the_same_signed_transaction_twice(tmp_path: Path) -> None:
    # blocks made by the test, so the first copy stays admitted and uncommitted meanwhile
    async with local_chain(tmp_path / "ledger", run=False) as chain:
        client = chain.client
        first = await client.call("transfer", NODE0_TRANSFER)
        before = await snapshot(client, NODE0.address, DEAD)
        assert before["accounts"][NODE0.address]["pendingNonce"] == 1
        assert before["mempool"] == 1
        error = await rpc_error(client, "transfer", NODE0_TRANSFER)
        assert error.code == -32000 and error.data is not None and error.data["expected"] == 1
        assert await snapshot(client, NODE0.address, DEAD) == before
        chain.node.produce_block()
        await committed(chain, first["txHash"])
        error = await rpc_error(client, "transfer", NODE0_TRANSFER)  # and once it is committed
        assert error.code == -32000 and error.data is not None and error.data["expected"] == 1
        assert (await client.get_account(DEAD))["balance"] == "1"


# tests/vectors/invalid.json over RPC: the account-transaction cases


def _invalid_cases() -> list[Any]:
    cases = []
    for case in json.loads((VECTORS_FILE.parent / "invalid.json").read_text()):
        base = vector(case["base"])
        mutation = case["mutation"]
        if mutation["kind"] == "chainId" and mutation["value"] != CHAIN_ID:
            continue  # the replay target is another chain than this one
        if mutation.get("value", 0) is None and base["signerIndex"] < 10:
            continue  # a null signature from an unlocked dev account is dev mode (5.4)
        cases.append(pytest.param(case, id=case["name"]))
    return cases


def _mutated(case: dict[str, Any]) -> dict[str, Any]:
    base = vector(case["base"])
    params = {**base["message"], "signature": base["signature"]}
    mutation = case["mutation"]
    kind = mutation["kind"]
    raw = bytearray(bytes.fromhex(base["signature"][2:]))
    if kind == "field":
        params[mutation["field"]] = mutation["value"]
    elif kind == "chainId":
        pass  # signed for base["chainId"], sent to mutation["value"] (this chain)
    elif kind == "signature":
        params["signature"] = mutation["value"]
    else:
        if kind == "v":
            raw[64] = mutation["value"]
        elif kind == "v-flip":
            raw[64] = 55 - raw[64]
        elif kind == "r":
            raw[:32] = int(mutation["value"]).to_bytes(32, "big")
        elif kind == "s":
            raw[32:64] = int(mutation["value"]).to_bytes(32, "big")
        elif kind == "high-s":
            params["signature"] = high_s(base["signature"])
            return params
        elif kind == "length":
            raw = (raw + bytes(mutation["value"]))[: mutation["value"]]
        else:
            raise AssertionError(f"unknown mutation {kind}")
        params["signature"] = "0x" + bytes(raw).hex()
    return params


@pytest.mark.parametrize("case", _invalid_cases())
async def test_invalid_signature_vectors_are_refused(
    chain: LocalChain, case: dict[str, Any]
) -> None:
    base = vector(case["base"])
    params = _mutated(case)
    watch = (base["signer"], DEV0.address)
    error = await check_rejected(
        chain, Case(METHOD_OF_TYPE[base["type"]], params, -32004, {}, watch)
    )
    assert error.data is not None
    if case["expect"] == "wrong-signer":
        assert error.data["recovered"] != error.data["expected"]


# -32007 Mempool full


async def test_mempool_full(tmp_path: Path) -> None:
    async with local_chain(tmp_path / "ledger", run=False, mempool_capacity=3) as chain:
        client = chain.client
        for amount in (1, 2, 3):
            await client.call("transfer", {"sender": DEV0.address, "to": DEAD, "amount": amount})
        before = await snapshot(client, DEV0.address, NODE0.address, DEAD)
        assert before["mempool"] == 3
        for method, params in [
            ("transfer", {"sender": DEV0.address, "to": DEAD, "amount": "4"}),
            ("transfer", NODE0_TRANSFER),
            ("submitTask", task_params(DEV1.address)),
        ]:
            error = await rpc_error(client, method, params)
            assert error.code == -32007 and error.data is not None
            assert error.data["capacity"] == 3
        assert await snapshot(client, DEV0.address, NODE0.address, DEAD) == before
        assert await client.task_stats() == before["taskStats"]

        chain.node.produce_block()  # drains the mempool: admission works again
        result = await client.call("transfer", NODE0_TRANSFER)
        assert (await client.get_tx(result["txHash"]) or {})["status"] == "pending"
        assert (await client.get_account(DEAD))["balance"] == "6"


# -32601 Method not found


@pytest.mark.parametrize(
    "name",
    ["nope", "", " chainId", "chainid", "SubmitTask", "eth_chainId", "rpc.modules", "keys",
     "get", "__missing__", "__class__", "call", "x" * 300, "漢字"],
)  # fmt: skip
async def test_unknown_method(chain: LocalChain, name: str) -> None:
    error = await rpc_error(chain.client, name, {"a": 1})
    assert error.code == -32601 and error.data is not None and error.data["method"] == name
    assert (await rpc_error(chain.client, name, [1, 2])).code == -32601
    assert await chain.client.call("chainId") == CHAIN_ID


# -32602 Invalid params


TX_VALUE_CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "targetCount 0": ("submitTask", task_params(DEV0.address, targetCount=0), "targetCount"),
    "targetCount above max": (
        "submitTask",
        task_params(DEV0.address, targetCount=MAX_TARGET_COUNT + 1),
        "targetCount",
    ),
    "targetCount 2**64-1": (
        "submitTask",
        task_params(DEV0.address, targetCount=str(2**64 - 1)),
        "targetCount",
    ),
    "maxFee below fee": (
        "submitTask",
        task_params(
            DEV0.address, targetCount=3, feeParams=json.dumps({"maxFee": str(task_fee(3) - 1)})
        ),
        "feeParams.maxFee",
    ),
    "maxFee zero": (
        "submitRequest",
        task_params(DEV0.address, feeParams='{"maxFee":"0"}'),
        "feeParams.maxFee",
    ),
    "temperature 3": (
        "submitTask",
        task_params(DEV0.address, modelOptions='{"temperature":3}'),
        "modelOptions.temperature",
    ),
    "temperature text": (
        "submitTask",
        task_params(DEV0.address, modelOptions='{"temperature":"hot"}'),
        "modelOptions.temperature",
    ),
    "top_p -1": (
        "submitTask",
        task_params(DEV0.address, modelOptions='{"top_p":-1}'),
        "modelOptions.top_p",
    ),
    "max_tokens 0": (
        "submitTask",
        task_params(DEV0.address, modelOptions='{"model":"m","max_tokens":0}'),
        "modelOptions.max_tokens",
    ),
    "max_tokens 1.5": (
        "submitTask",
        task_params(DEV0.address, modelOptions='{"max_tokens":1.5}'),
        "modelOptions.max_tokens",
    ),
    "max_tokens in hex modelOptions": (
        "submitTask",
        task_params(DEV0.address, modelOptions="0x" + b'{"max_tokens":0}'.hex()),
        "modelOptions.max_tokens",
    ),
    "transfer amount 0": (
        "transfer",
        {"sender": DEV0.address, "to": DEAD, "amount": "0"},
        "amount",
    ),
    "stake amount 0": ("stake", {"sender": DEV0.address, "amount": "0"}, "amount"),
    "unstake amount 0": ("unstake", {"sender": DEV0.address, "amount": 0}, "amount"),
    "amount negative": ("transfer", {"sender": DEV0.address, "to": DEAD, "amount": "-1"}, "amount"),
    "amount with decimals": ("stake", {"sender": DEV0.address, "amount": "1.5"}, "amount"),
    "amount 2**256": ("stake", {"sender": DEV0.address, "amount": str(2**256)}, "amount"),
    "models empty": (
        "registerResourceNode",
        {"sender": DEV0.address, "models": "", "endpoint": ""},
        "models",
    ),
    "models with an empty name": (
        "registerResourceNode",
        {"sender": DEV0.address, "models": "a,,b", "endpoint": ""},
        "models",
    ),
    "endpoint not http": (
        "registerResourceNode",
        {"sender": DEV0.address, "models": "*", "endpoint": "ftp://127.0.0.1/"},
        "endpoint",
    ),
    "nonce above uint64": (
        "transfer",
        {"sender": DEV0.address, "nonce": str(2**64), "to": DEAD, "amount": "1"},
        "nonce",
    ),
    "sender with a wrong checksum": (
        "transfer",
        {"sender": wrong_checksum(DEV0.address), "to": DEAD, "amount": "1"},
        "sender",
    ),
    "to with a wrong checksum": (
        "transfer",
        {"sender": DEV0.address, "to": wrong_checksum(NODE0.address), "amount": "1"},
        "to",
    ),
    "task sender with a wrong checksum": (
        "submitTask",
        task_params(wrong_checksum(DEV0.address)),
        "sender",
    ),
    "SID too short": ("submitTask", task_params(DEV0.address, SID="0x12"), "SID"),
    "bogus param on a dev-mode call": (
        "transfer",
        {"sender": DEV0.address, "to": DEAD, "amount": "1", "bogus": 1},
        "bogus",
    ),
    "requestHash on submitTask": (
        "submitTask",
        task_params(DEV0.address, requestHash=UNKNOWN_HASH),
        "requestHash",
    ),
}


# targetCount is a uint256: values beyond 64 bits are well-formed and must be refused by the
# 1..maxTargetCount rule, not fail while the node measures the transaction's size.
HUGE_TARGET_COUNTS = [
    pytest.param(
        "submitTask",
        task_params(DEV0.address, targetCount=str(value)),
        "targetCount",
        id=f"targetCount {label}",
    )
    for label, value in [("2**64", 2**64), ("2**255", 2**255), ("2**256-1", 2**256 - 1)]
]


@pytest.mark.parametrize(
    ("method", "params", "param"),
    [pytest.param(*case, id=name) for name, case in TX_VALUE_CASES.items()] + HUGE_TARGET_COUNTS,
)
async def test_invalid_transaction_params(
    chain: LocalChain, method: str, params: dict[str, Any], param: str
) -> None:
    error = await check_rejected(chain, Case(method, params, -32602, {"param": param}))
    assert isinstance(error.data, dict) and error.data.get("reason")


async def test_max_fee_equal_to_the_fee_is_accepted(chain: LocalChain) -> None:
    params = task_params(
        DEV0.address, targetCount=3, feeParams=json.dumps({"maxFee": str(task_fee(3))})
    )
    result = await chain.client.call("submitTask", params)
    await committed(chain, result["txHash"])


async def test_checksummed_lowercase_and_uppercase_addresses_are_accepted(
    chain: LocalChain,
) -> None:
    for address in (DEV0.address, DEV0.address.lower(), "0x" + DEV0.address[2:].upper()):
        account = await chain.client.call("getAccount", {"address": address})
        assert account["address"] == DEV0.address
    error = await rpc_error(chain.client, "getAccount", {"address": wrong_checksum(DEV0.address)})
    assert error.code == -32602 and error.data is not None and error.data["param"] == "address"


@pytest.mark.parametrize("excess", [1, 1000])
async def test_transaction_over_max_tx_bytes(chain: LocalChain, excess: int) -> None:
    max_tx_bytes = chain.node.params.max_tx_bytes
    params = task_params(DEV0.address, prompts="x" * (max_tx_bytes + excess))
    error = await check_rejected(chain, Case("submitTask", params, -32602))
    assert error.data is not None and "reason" in error.data


async def test_transaction_over_a_small_max_tx_bytes(tmp_path: Path) -> None:
    from tests.helpers import make_genesis

    async with local_chain(tmp_path / "ledger", make_genesis(max_tx_bytes=1000)) as chain:
        small = await chain.client.call("submitTask", task_params(DEV0.address, prompts="x" * 100))
        await committed(chain, small["txHash"])
        error = await check_rejected(
            chain, Case("submitTask", task_params(DEV0.address, prompts="x" * 1000), -32602)
        )
        assert error.data is not None


# Unknown, missing and surplus params, for every method

BASE_PARAMS: dict[str, dict[str, Any]] = {
    "chainId": {},
    "genesisHash": {},
    "blockNumber": {},
    "getValidators": {},
    "getResourceNodes": {},
    "taskStats": {},
    "getBlock": {"height": 0},
    "getTransaction": {"txHash": UNKNOWN_HASH},
    "getAccount": {"address": DEV0.address, "blockHeight": 0},
    "queryTask": {"taskHash": UNKNOWN_HASH},
    "submitTask": task_params(DEV0.address),
    "submitRequest": task_params(DEV0.address),
    "transfer": {"sender": DEV0.address, "to": DEAD, "amount": "1"},
    "stake": {"sender": DEV0.address, "amount": "1"},
    "unstake": {"sender": DEV0.address, "amount": "1"},
    "registerResourceNode": {"sender": DEV0.address, "models": "*", "endpoint": ""},
    "submitInferenceResult": {
        "taskHash": UNKNOWN_HASH,
        "resourceNode": DEV0.address,
        "result": "r",
    },
    "submitResponse": {"taskHash": UNKNOWN_HASH, "resourceNode": DEV0.address, "result": "r"},
    "submitVerification": {
        "taskHash": UNKNOWN_HASH,
        "verifier": DEV0.address,
        "submitter": NODE0.address,
        "valid": True,
    },
    "queryPendingTasks": {"ResourceAddress": NODE0.address, "TimeStamp": NOW, "limit": 5},
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "getTransaction": ("txHash",),
    "getAccount": ("address",),
    "queryTask": ("taskHash",),
    "submitTask": ("sender", "schema", "targetCount", "prompts", "modelOptions"),
    "submitRequest": ("sender", "schema", "targetCount", "prompts", "modelOptions"),
    "transfer": ("sender", "to", "amount"),
    "stake": ("sender", "amount"),
    "unstake": ("sender", "amount"),
    "registerResourceNode": ("sender", "models", "endpoint"),
    "submitInferenceResult": ("taskHash", "resourceNode", "result"),
    "submitResponse": ("taskHash", "resourceNode", "result"),
    "submitVerification": ("taskHash", "verifier", "submitter", "valid"),
    "queryPendingTasks": ("ResourceAddress", "TimeStamp"),
}
POSITIONAL_LIMIT = {
    "getBlock": 1,
    "getTransaction": 1,
    "getAccount": 2,
    "queryTask": 1,
    "submitTask": 9,
    "submitRequest": 9,
    "transfer": 5,
    "stake": 4,
    "unstake": 4,
    "registerResourceNode": 5,
    "submitInferenceResult": 5,
    "submitResponse": 5,
    "submitVerification": 5,
    "queryPendingTasks": 4,
}


@pytest.mark.parametrize("method", list(BASE_PARAMS))
async def test_unknown_param(chain: LocalChain, method: str) -> None:
    for extra in ("bogus", "Sender", "node", "context", "params", ""):
        params = {**BASE_PARAMS[method], extra: 1}
        error = await check_rejected(chain, Case(method, params, -32602, {"param": extra}))
        assert error.data is not None


@pytest.mark.parametrize(
    ("method", "param"), [(m, p) for m, names in REQUIRED.items() for p in names]
)
async def test_missing_param(chain: LocalChain, method: str, param: str) -> None:
    params = without(BASE_PARAMS[method], param)
    if param == "taskHash":
        params = {}
    await check_rejected(chain, Case(method, params, -32602, {"param": param}))


async def test_signed_call_without_nonce(chain: LocalChain) -> None:
    await check_rejected(
        chain, Case("transfer", without(NODE0_TRANSFER, "nonce"), -32602, {"param": "nonce"})
    )


@pytest.mark.parametrize("method", list(BASE_PARAMS))
async def test_too_many_positional_params(chain: LocalChain, method: str) -> None:
    limit = POSITIONAL_LIMIT.get(method, 0)
    await check_rejected(chain, Case(method, [0] * (limit + 1), -32602))


async def test_alias_and_name_together(chain: LocalChain) -> None:
    params = {"taskHash": UNKNOWN_HASH, "requestHash": UNKNOWN_HASH}
    error = await check_rejected(chain, Case("queryTask", params, -32602))
    assert error.data is not None and error.data.get("param") in ("taskHash", "requestHash")
    for method, params, names in [
        ("submitInferenceResult", {**NODE0_RESULT, "requestHash": UNKNOWN_HASH}, "taskHash"),
        ("submitResponse", {**NODE0_RESULT, "response": "r"}, "result"),
        ("submitVerification", {**NODE0_VERDICT, "requestHash": UNKNOWN_HASH}, "taskHash"),
    ]:
        error = await check_rejected(chain, Case(method, params, -32602))
        assert error.data is not None
        assert error.data.get("param") in (names, "requestHash", "response")


@pytest.mark.parametrize(
    ("method", "params", "param"),
    [
        ("submitResponse", {**NODE0_RESULT, "taskHash": "0x12"}, "taskHash"),
        ("submitInferenceResult", {**NODE0_RESULT, "resourceNode": "0x12"}, "resourceNode"),
        (
            "submitInferenceResult",
            {**NODE0_RESULT, "resourceNode": wrong_checksum(NODE0.address)},
            "resourceNode",
        ),
        ("submitVerification", {**NODE0_VERDICT, "valid": "true"}, "valid"),
        ("submitVerification", {**NODE0_VERDICT, "valid": 1}, "valid"),
        ("submitVerification", {**NODE0_VERDICT, "submitter": "0x"}, "submitter"),
        ("queryPendingTasks", {"ResourceAddress": "0x12", "TimeStamp": NOW}, "ResourceAddress"),
        ("queryPendingTasks", {"ResourceAddress": NODE0.address, "TimeStamp": -1}, "TimeStamp"),
        (
            "queryPendingTasks",
            {"ResourceAddress": NODE0.address, "TimeStamp": str(NOW)},
            "TimeStamp",
        ),
        ("queryPendingTasks", {**BASE_PARAMS["queryPendingTasks"], "limit": 0}, "limit"),
        ("queryPendingTasks", {**BASE_PARAMS["queryPendingTasks"], "limit": 1001}, "limit"),
    ],
    ids=["short taskHash", "short resourceNode", "resourceNode checksum", "valid string",
         "valid 1", "submitter 0x", "short ResourceAddress", "TimeStamp -1",
         "TimeStamp string", "limit 0", "limit 1001"],
)  # fmt: skip
async def test_invalid_lifecycle_params(
    chain: LocalChain, method: str, params: dict[str, Any], param: str
) -> None:
    error = await check_rejected(chain, Case(method, params, -32602, {"param": param}))
    assert error.data is not None and error.data.get("reason")


# -32600 Invalid Request and -32700 Parse error (raw bodies the client cannot send)


def _call(**members: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": "chainId", "id": 1, **members})


INVALID_REQUESTS: dict[str, tuple[str, Any]] = {
    "empty batch": ("[]", None),
    "number": ("1", None),
    "string": ('"chainId"', None),
    "null": ("null", None),
    "true": ("true", None),
    "jsonrpc 1.0": (_call(jsonrpc="1.0"), 1),
    "jsonrpc number": (_call(jsonrpc=2.0), 1),
    "jsonrpc null": (_call(jsonrpc=None), 1),
    "jsonrpc missing": (json.dumps({"method": "chainId", "id": 1}), 1),
    "method number": (_call(method=1), 1),
    "method null": (_call(method=None), 1),
    "method list": (_call(method=["chainId"]), 1),
    "method object": (_call(method={}), 1),
    "method missing": (json.dumps({"jsonrpc": "2.0", "id": 1}), 1),
    "params string": (_call(params="x"), 1),
    "params number": (_call(params=1), 1),
    "params null": (_call(params=None), 1),
    "id true": (_call(id=True), None),
    "id object": (_call(id={}), None),
    "id list": (_call(id=[1]), None),
}


@pytest.mark.parametrize(
    ("body", "rid"), list(INVALID_REQUESTS.values()), ids=list(INVALID_REQUESTS)
)
async def test_invalid_request(
    chain: LocalChain, http: aiohttp.ClientSession, body: str, rid: Any
) -> None:
    status, answer = await post_raw(http, chain.url, body)
    assert status == 200
    assert isinstance(answer, dict), answer
    assert answer["jsonrpc"] == "2.0" and answer["id"] in (rid, None)
    error = RpcError.from_response(answer["error"])
    assert error.code == -32600
    assert_error_shape(error)
    assert await chain.client.call("chainId") == CHAIN_ID


async def test_batch_over_1000_calls(chain: LocalChain, http: aiohttp.ClientSession) -> None:
    calls = [{"jsonrpc": "2.0", "method": "chainId", "id": i} for i in range(1001)]
    status, answer = await post_raw(http, chain.url, json.dumps(calls))
    assert status == 200 and isinstance(answer, dict)
    error = RpcError.from_response(answer["error"])
    assert error.code == -32600 and answer["id"] is None
    assert_error_shape(error)

    status, answers = await post_raw(http, chain.url, json.dumps(calls[:1000]))
    assert status == 200 and [a["id"] for a in answers] == list(range(1000))
    assert all(a["result"] == CHAIN_ID for a in answers)


async def test_invalid_items_in_a_batch(chain: LocalChain, http: aiohttp.ClientSession) -> None:
    body = json.dumps([1, "x", {"jsonrpc": "1.0", "method": "chainId", "id": 5}, []])
    status, answers = await post_raw(http, chain.url, body)
    assert status == 200 and isinstance(answers, list) and len(answers) == 4
    for answer in answers:
        error = RpcError.from_response(answer["error"])
        assert error.code == -32600
        assert_error_shape(error)
    assert [a["id"] for a in answers[:2]] + [answers[3]["id"]] == [None, None, None]


PARSE_ERRORS = {
    "truncated object": b'{"jsonrpc": "2.0", "method": "chainId", "id": 1',
    "truncated batch": b'[{"jsonrpc": "2.0", "method": "chainId", "id": 1},',
    "single quotes": b"{'jsonrpc': '2.0', 'method': 'chainId', 'id': 1}",
    "trailing comma": b'{"jsonrpc": "2.0", "method": "chainId", "id": 1,}',
    "two documents": b'{"jsonrpc":"2.0","method":"chainId","id":1}{"a":1}',
    "empty body": b"",
    "whitespace": b"  \n ",
    "not utf-8": b'{"jsonrpc":"2.0","method":"\xff","id":1}',
    "NaN": b"NaN",
    "bare word": b"chainId",
}


@pytest.mark.parametrize("body", list(PARSE_ERRORS.values()), ids=list(PARSE_ERRORS))
async def test_parse_error(chain: LocalChain, http: aiohttp.ClientSession, body: bytes) -> None:
    status, answer = await post_raw(http, chain.url, body)
    assert status == 200 and isinstance(answer, dict)
    assert answer["jsonrpc"] == "2.0" and answer["id"] is None
    error = RpcError.from_response(answer["error"])
    assert error.code == -32700
    assert_error_shape(error)
    assert await chain.client.call("chainId") == CHAIN_ID
