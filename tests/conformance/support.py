"""Shared pieces of the conformance suite: the normative shapes of PROTOCOL 5, the error table
of 5.3, raw JSON-RPC for the bodies and envelopes the client library does not expose, and
small flows (a committed task, a signed result or verdict) built with the client library.

Everything here talks HTTP to the node under test and reads nothing else of it: the suite
can check any implementation of the AegisAI RPC.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from eth_hash.auto import keccak

from chain.protocol import crypto
from chain.protocol.types import SubmitInferenceResult, SubmitVerification
from rpc.client import (
    InferchainClient,
    PresignedTx,
    TaskReceipt,
    Wallet,
    pending_tasks_params,
    presign,
)
from tests.rpc.support import request

E18 = 10**18
MIN_FUNDS = E18  # a dev account with less does not fund the suite
SENDER_FUNDS = E18 // 10  # what each test's sender gets: fees of dozens of tasks
DEV_WALLETS = tuple(Wallet.dev(i) for i in range(10))  # PROTOCOL 2: dev accounts 0..9
NODE_WALLETS = tuple(Wallet.dev(200 + k) for k in range(3))  # dev resource nodes 0..2
SETTLED_ADDRESSES = frozenset(wallet.address for wallet in NODE_WALLETS)
UNKNOWN_HASH = "0x" + "5a" * 32
DEAD = "0x000000000000000000000000000000000000dEaD"

HASH = re.compile(r"^0x[0-9a-f]{64}$")
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")

# JSON-RPC 2.0, section 5.1, and PROTOCOL 5.3.
ERROR_MESSAGES = {
    -32700: "Parse error",
    -32600: "Invalid Request",
    -32601: "Method not found",
    -32602: "Invalid params",
    -32603: "Internal error",
    -32000: "Invalid nonce provided",
    -32001: "Invalid requestHash provided",
    -32002: "Insufficient balance",
    -32003: "Invalid requestHash",
    -32004: "Invalid signature",
    -32005: "Not eligible",
    -32006: "Duplicate submission",
    -32007: "Mempool full",
}

# PROTOCOL 5.1 and 5.2: the members every answer holds (implementations may add more).
TASK_RECEIPT_KEYS = {"txHash", "taskHash", "requestHash"}
QUERY_TASK_KEYS = {
    "status",
    "response",
    "verificationCount",
    "taskHash",
    "sender",
    "nonce",
    "schema",
    "targetCount",
    "prompts",
    "modelOptions",
    "SID",
    "feeParams",
    "fee",
    "createdHeight",
    "createdAt",
    "finishedHeight",
    "finishedAt",
    "executionInfo",
    "txHash",
    "settlement",
}
TASK_STATUSES = {"submitted", "processing", "completed", "verified", "failed"}
SETTLEMENT_KEYS = {"height", "fee", "networkReward", "slashed", "payouts", "refund", "burned"}
TX_KEYS = {"signer", "tx_type", "associated_task", "payload", "blockHeight", "status"}
TX_TYPES = {
    "creation", "inference", "verification", "transfer", "stake", "unstake", "register",
    "secrets", "reveal",
}  # fmt: skip
TX_STATUSES = {"pending", "committed", "late"}
BLOCK_KEYS = {"height", "hash", "time", "proposer", "prevHash", "appHash", "txs", "lastCommit"}
ACCOUNT_KEYS = {"address", "balance", "stake", "nonce", "jailed", "resourceNode"}
VALIDATOR_KEYS = {"address", "consensusPubKey", "stake", "url"}
RESOURCE_NODE_KEYS = {"address", "stake", "models", "endpoint", "jailed"}
STATS_KEYS = {"total", "submitted", "processing", "completed", "verified", "failed"}

# Positional params follow the upstream order: the EIP-712 field order of PROTOCOL 3, then
# the signature.
SUBMIT_TASK_ORDER = (
    "sender",
    "nonce",
    "schema",
    "targetCount",
    "prompts",
    "modelOptions",
    "SID",
    "feeParams",
    "signature",
)
RESULT_ORDER = ("taskHash", "resourceNode", "result", "proof", "signature")
VERDICT_ORDER = ("taskHash", "verifier", "submitter", "valid", "signature")
TRANSFER_ORDER = ("sender", "nonce", "to", "amount", "signature")
STAKE_ORDER = ("sender", "nonce", "amount", "signature")
REGISTER_ORDER = ("sender", "nonce", "models", "endpoint", "signature")
PENDING_ORDER = ("ResourceAddress", "TimeStamp", "Signature", "limit")


def epoch() -> int:
    return int(time.time())


def fresh_wallet() -> Wallet:
    """A new random key: no balance, no stake, unknown to every chain."""
    return Wallet.from_key(secrets.token_bytes(32))


def unique(label: str) -> str:
    """Text no earlier run sent: the suite never assumes a fresh chain."""
    return f"conformance {label} {uuid.uuid4().hex}"


def positional(params: dict[str, Any], order: tuple[str, ...]) -> list[Any]:
    return [params[name] for name in order]


def renamed(params: dict[str, Any], **names: str) -> dict[str, Any]:
    """`params` with keys renamed (`renamed(p, taskHash="requestHash")`), order kept."""
    return {names.get(key, key): value for key, value in params.items()}


def without(params: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in names}


def privilege_key(address: str, task_hash: str) -> bytes:
    """PROTOCOL 5.1: queryPendingTasks order, keccak256(ResourceAddress || taskHash)."""
    return keccak(bytes.fromhex(address[2:]) + bytes.fromhex(task_hash[2:]))


# Raw JSON-RPC


async def post_raw(
    session: aiohttp.ClientSession, url: str, body: bytes | str, path: str = "/"
) -> tuple[int, bytes]:
    """POST a raw body; the HTTP status and the raw response body."""
    async with session.post(
        url + path, data=body, headers={"Content-Type": "application/json"}
    ) as resp:
        return resp.status, await resp.read()


async def post_json(
    session: aiohttp.ClientSession, url: str, payload: Any, path: str = "/"
) -> tuple[int, Any]:
    """POST `payload` as JSON; the HTTP status and the parsed answer (None for no body)."""
    status, raw = await post_raw(session, url, json.dumps(payload), path)
    return status, (json.loads(raw) if raw else None)


def check_error_object(error: Any, code: int, mentions: tuple[str, ...] = ()) -> dict[str, Any]:
    """PROTOCOL 5.3: `code`, the table's `message`, and a `data` object saying what was wrong
    (its text names each of `mentions`, compared without case). Returns `data`."""
    assert isinstance(error, dict), f"an error must be an object: {error!r}"
    assert {"code", "message", "data"} <= set(error), f"error lacks members: {error}"
    assert type(error["code"]) is int and error["code"] == code, f"expected {code}: {error}"
    assert error["message"] == ERROR_MESSAGES[code], error
    data = error["data"]
    assert isinstance(data, dict) and data, f"data must be a non-empty object: {error}"
    text = json.dumps(data).lower()
    for item in mentions:
        assert item.lower() in text, f"data does not say {item!r}: {data}"
    return data


def check_error_response(
    answer: Any, code: int, request_id: Any, mentions: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A JSON-RPC 2.0 error response: exactly jsonrpc, error, id. Returns the error's data."""
    assert isinstance(answer, dict), f"expected one response object: {answer!r}"
    assert set(answer) == {"jsonrpc", "error", "id"}, answer
    assert answer["jsonrpc"] == "2.0"
    assert answer["id"] == request_id and type(answer["id"]) is type(request_id), answer
    return check_error_object(answer["error"], code, mentions)


def check_result_response(answer: Any, request_id: Any) -> Any:
    assert isinstance(answer, dict), f"expected one response object: {answer!r}"
    assert set(answer) == {"jsonrpc", "result", "id"}, answer
    assert answer["jsonrpc"] == "2.0"
    assert answer["id"] == request_id and type(answer["id"]) is type(request_id), answer
    return answer["result"]


async def account_state(client: InferchainClient, address: str) -> dict[str, Any]:
    """What a rejected call must leave as it was: the account (with pendingNonce, if the
    node reports it), minus the height the answer describes. The balances of the dev
    resource nodes are left out: tasks of other tests pay them at any block."""
    account = await client.get_account(address)
    skip = {"blockHeight", "balance"} if address in SETTLED_ADDRESSES else {"blockHeight"}
    return {k: v for k, v in account.items() if k not in skip}


@dataclass
class Api:
    """The node under test: the client library for calls, raw HTTP for exact envelopes."""

    client: InferchainClient
    http: aiohttp.ClientSession
    url: str

    async def chain_id(self) -> int:
        return await self.client.chain_id()

    async def raw(self, payload: Any, path: str = "/") -> tuple[int, Any]:
        return await post_json(self.http, self.url, payload, path)

    async def result(self, method: str, params: Any = None, request_id: Any = 1) -> Any:
        """One call, checked as a JSON-RPC 2.0 success response (HTTP 200, exact members)."""
        status, answer = await self.raw(request(method, params, request_id))
        assert status == 200, (status, answer)
        return check_result_response(answer, request_id)

    async def error(
        self,
        method: str,
        params: Any,
        code: int,
        *,
        mentions: tuple[str, ...] = (),
        watch: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Call and expect error `code` with its data; the accounts in `watch` must not change
        (PROTOCOL 5.3: a rejected call changes nothing). Returns the error's data."""
        before = [await account_state(self.client, address) for address in watch]
        status, answer = await self.raw(request(method, params, "e"))
        assert status == 200, (status, answer)
        data = check_error_response(answer, code, "e", mentions)
        after = [await account_state(self.client, address) for address in watch]
        assert after == before, "a rejected call changed the state (PROTOCOL 5.3)"
        return data

    async def get_tx(self, tx_hash: str) -> dict[str, Any]:
        """GET /tx/<hash> of a known transaction, checked for the PROTOCOL 5.1 shape."""
        tx = await self.client.get_tx(tx_hash)
        assert tx is not None, f"GET /tx/{tx_hash} answered 404"
        check_tx_object(tx)
        return tx

    async def committed(self, tx_hash: str) -> dict[str, Any]:
        """Wait until the transaction is in a block, and check that it took effect."""
        tx = await self.client.wait_for_tx(tx_hash, timeout=15)
        assert tx["status"] == "committed", tx
        check_tx_object(tx)
        return tx

    async def open_task(
        self, sender: Wallet, *, target_count: int = 1, label: str = "task", **fields: Any
    ) -> TaskReceipt:
        """A signed SubmitTask, committed; prompts no earlier run used."""
        receipt = await self.client.submit_task(
            sender,
            prompts=fields.pop("prompts", unique(label)),
            model_options=fields.pop("model_options", '{"model":"conformance"}'),
            target_count=target_count,
            **fields,
        )
        await self.committed(receipt.tx_hash)
        return receipt

    async def result_tx(
        self, wallet: Wallet, task_hash: str, result: str, proof: str = ""
    ) -> PresignedTx:
        msg = SubmitInferenceResult(bytes.fromhex(task_hash[2:]), wallet.address, result, proof)
        return presign(msg, await self.chain_id(), wallet.private_key)

    async def verdict_tx(
        self, wallet: Wallet, task_hash: str, submitter: str, valid: bool
    ) -> PresignedTx:
        msg = SubmitVerification(bytes.fromhex(task_hash[2:]), wallet.address, submitter, valid)
        return presign(msg, await self.chain_id(), wallet.private_key)

    async def assigned(self, task_hash: str, submitter: str) -> list[list[str]]:
        """The rounds of verifiers assigned to `submitter`'s result (PROTOCOL 4.5), waiting
        for the end of the block that includes it."""
        deadline = time.monotonic() + 15
        while True:
            task = await self.client.query_task(task_hash)
            entries = [e for e in task["executionInfo"] if e["resourceNode"] == submitter]
            if entries and entries[0]["assignment"]["rounds"]:
                return [list(members) for members in entries[0]["assignment"]["rounds"]]
            assert time.monotonic() < deadline, f"no verifiers assigned to {submitter}: {task}"
            await self.client.wait_for_block(await self.client.block_number() + 1, timeout=15)

    async def verify_assigned(
        self, task_hash: str, submitter: str, valid: bool, nodes: list[Wallet]
    ) -> list[PresignedTx]:
        """Signed verdicts of the current round's members that have not answered, each
        accepted (true); skips the test when a member is no dev resource node of `nodes`."""
        rounds = await self.assigned(task_hash, submitter)
        task = await self.client.query_task(task_hash)
        (entry,) = [e for e in task["executionInfo"] if e["resourceNode"] == submitter]
        answered = {v["verifier"] for v in entry["verifications"]}
        keys = {wallet.address: wallet for wallet in nodes}
        sent = []
        for verifier in rounds[-1]:
            if verifier in answered:
                continue
            if verifier not in keys:
                pytest.skip(f"the verifier {verifier} assigned here is no dev resource node")
            tx = await self.verdict_tx(keys[verifier], task_hash, submitter, valid)
            assert await self.result("submitVerification", tx.params) is True
            sent.append(tx)
        return sent

    async def reveal_for(self, node: Wallet, task_hash: str) -> str | None:
        """When queryPendingTasks tells `node` that its result in the task waits for its
        secret (PROTOCOL 4.13), reveal the secret of the task's createdHeight (a dev node's
        chain: crypto.dev_secrets_head of its key, else skip); the last reveal's txHash, or
        None when nothing waits."""
        params = await self.pending_params(node, limit=1000)
        items = await self.result("queryPendingTasks", params)
        if not any(i["taskHash"] == task_hash and i.get("reveal") for i in items):
            return None
        height = (await self.client.query_task(task_hash))["createdHeight"]
        listed = [n for n in await self.client.get_resource_nodes() if n["address"] == node.address]
        secrets = listed[0].get("secrets") if listed else None
        head = crypto.dev_secrets_head(node.private_key)
        if not secrets or secrets["head"] != "0x" + head.hex():
            pytest.skip(f"{node.address} has no dev chain of secrets here")
        seed, base = crypto.secrets_seed(node.private_key), secrets["base"]
        last = secrets["revealedHeight"]
        tx_hash = None
        while last < height:  # at most MAX_REVEAL_STEPS heights per reveal
            last = min(height, last + 4096)
            secret = crypto.hash_steps(seed, crypto.SECRET_CHAIN_LENGTH - (last - base))
            tx_hash = await self.client.reveal_secret(node, last, secret)
            await self.committed(tx_hash)
        return tx_hash

    async def pending_params(
        self, wallet: Wallet, timestamp: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """queryPendingTasks params signed by `wallet` over the text naming this chain."""
        return pending_tasks_params(wallet, timestamp, limit, chain_id=await self.chain_id())


@dataclass
class Target:
    """The node under test and what it was found to offer (filled in on first use)."""

    url: str
    owned: bool  # started by this suite: its genesis is known
    probed: bool = False
    dev_mode: bool = False
    funded: list[Wallet] = field(default_factory=list)
    nodes: list[Wallet] = field(default_factory=list)
    tasks_by_sender: bool = False


# Shapes


def is_amount(value: Any) -> bool:
    """PROTOCOL 1: amounts are decimal strings on the wire, never numbers."""
    return isinstance(value, str) and bool(DECIMAL.match(value))


def is_height(value: Any) -> bool:
    return type(value) is int and value >= 0


def check_tx_object(tx: dict[str, Any]) -> None:
    """The GET /tx/<hash> object of PROTOCOL 5.1."""
    assert set(tx) >= TX_KEYS, f"missing {TX_KEYS - set(tx)}: {tx}"
    assert ADDRESS.match(tx["signer"]), tx
    assert tx["tx_type"] in TX_TYPES, tx
    assert tx["associated_task"] is None or HASH.match(tx["associated_task"]), tx
    assert isinstance(tx["payload"], dict), tx
    if tx["tx_type"] == "inference":
        assert set(tx["payload"]) == {"inference_result", "proof_of_inference"}, tx
    else:
        assert tx["payload"] == {}, tx
    assert tx["status"] in TX_STATUSES, tx
    assert tx["blockHeight"] is None or is_height(tx["blockHeight"]), tx
    if tx["status"] != "pending":
        assert is_height(tx["blockHeight"]), tx


def check_task_object(task: dict[str, Any]) -> None:
    """The queryTask object of PROTOCOL 5.1."""
    assert set(task) >= QUERY_TASK_KEYS, f"missing {QUERY_TASK_KEYS - set(task)}"
    assert task["status"] in TASK_STATUSES, task["status"]
    assert HASH.match(task["taskHash"]) and HASH.match(task["txHash"]), task
    assert HASH.match(task["SID"]), task["SID"]
    assert ADDRESS.match(task["sender"]), task["sender"]
    assert type(task["nonce"]) is int and type(task["targetCount"]) is int
    assert type(task["verificationCount"]) is int and task["verificationCount"] >= 0
    assert is_amount(task["fee"]), task["fee"]
    assert isinstance(task["executionInfo"], list)
    if task["status"] in ("verified", "failed"):
        assert is_height(task["finishedHeight"]) and type(task["finishedAt"]) is int, task
        check_settlement(task["settlement"])
    else:
        assert task["finishedHeight"] is None and task["finishedAt"] is None, task
        assert task["settlement"] is None, task


def check_settlement(settlement: Any) -> None:
    """PROTOCOL 5.1: the settlement explains every base unit of 4.8."""
    assert isinstance(settlement, dict), settlement
    assert set(settlement) >= SETTLEMENT_KEYS, settlement
    assert is_height(settlement["height"])
    for key in ("fee", "networkReward", "refund", "burned"):
        assert is_amount(settlement[key]), (key, settlement)
    for item in settlement["slashed"]:
        assert ADDRESS.match(item["address"]) and is_amount(item["amount"]), item
        assert item["reason"] in ("result", "verdict", "lazy"), item
    for item in settlement["payouts"]:
        assert ADDRESS.match(item["address"]) and is_amount(item["amount"]), item
        assert item["role"] in ("compute", "verify", "canary"), item
    paid = sum(int(p["amount"]) for p in settlement["payouts"])
    slashed = sum(int(s["amount"]) for s in settlement["slashed"])
    incoming = int(settlement["fee"]) + int(settlement["networkReward"]) + slashed
    assert paid + int(settlement["refund"]) + int(settlement["burned"]) == incoming, settlement
