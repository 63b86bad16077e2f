"""Batches of signed transactions: their signers are recovered before their turn, on two
threads (`rpc.server.RpcServer.recover_ahead`), and nothing of that may show.

The tests compare a batch with the same calls sent one by one to a twin validator (same
genesis, blocks produced by the test): the answers must be the same, member for member and
in the same order, and the next block of each must hold the same transactions in the same
order.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import aiohttp
import coincurve
from aiohttp import web

from chain.protocol import crypto
from chain.protocol.types import Message, SubmitInferenceResult, SubmitTask, Transfer
from rpc.client import message_params
from rpc.methods import METHODS, signed_call
from rpc.server import RECOVER_AHEAD_MIN, RpcServer
from tests.helpers import LocalChain, local_chain
from tests.rpc.support import (
    CHAIN_ID,
    DEAD,
    DEV0,
    DEV1,
    NODE0,
    NODE1,
    NODE2,
    STRANGER,
    Wallet,
    mine,
    post_raw,
    request,
    task_params,
)


def signed(msg: Message, signer: Wallet) -> dict[str, Any]:
    """The wire params of `msg` with a signature by `signer`, whoever the message names."""
    signature = crypto.sign_digest(crypto.digest(msg, CHAIN_ID), signer.private_key)
    return message_params(msg) | {"signature": "0x" + signature.hex()}


def task(wallet: Wallet, nonce: int, prompt: str = "hello", signer: Wallet | None = None) -> Any:
    """submitTask params of `wallet`, signed by `signer` (by default the wallet itself)."""
    msg = SubmitTask(wallet.address, nonce, "text", 1, prompt, '{"model":"demo"}')
    return signed(msg, signer or wallet)


def transfer(wallet: Wallet, nonce: int, amount: int = 1, signer: Wallet | None = None) -> Any:
    return signed(Transfer(wallet.address, nonce, DEAD, amount), signer or wallet)


def result(node: Wallet, task_hash: bytes) -> Any:
    return signed(SubmitInferenceResult(task_hash, node.address, "out", ""), node)


def raw_signature(params: dict[str, Any]) -> bytes:
    return bytes.fromhex(params["signature"][2:])


def with_signature(params: dict[str, Any], signature: bytes) -> dict[str, Any]:
    return {**params, "signature": "0x" + signature.hex()}


def high_s(params: dict[str, Any]) -> dict[str, Any]:
    """The same signature with s replaced by n - s (and v flipped): it still recovers the
    signer, and must be refused all the same (s must be in the lower half)."""
    raw = raw_signature(params)
    s = crypto.SECP256K1_N - int.from_bytes(raw[32:64], "big")
    return with_signature(params, raw[:32] + s.to_bytes(32, "big") + bytes([55 - raw[64]]))


def unrecoverable(params: dict[str, Any]) -> dict[str, Any]:
    """A well-formed signature (r and s in range, v 27) whose r is no curve point's x: only
    the recovery itself, on a helper thread in a batch, finds it wrong."""
    s = (1).to_bytes(32, "big")
    for r in range(1, 100):
        candidate = r.to_bytes(32, "big") + s
        try:
            coincurve.PublicKey.from_signature_and_message(
                candidate + b"\x00", b"\x01" * 32, hasher=None
            )
        except ValueError:
            return with_signature(params, candidate + b"\x1b")
    raise AssertionError("every r below 100 is a point's x")


def is_signed_call(item: Any) -> bool:
    return isinstance(item.get("params"), dict) and isinstance(item["params"].get("signature"), str)


def message_of(item: dict[str, Any]) -> Message:
    spec = METHODS[item["method"]]
    assert spec.message_type is not None
    signed = signed_call(spec.message_type, item["params"])
    assert signed is not None
    return signed[0]


async def one_by_one(
    session: aiohttp.ClientSession, url: str, batch: list[Any]
) -> list[dict[str, Any]]:
    """The answers to each item of `batch` sent alone (a notification answers nothing)."""
    answers = []
    for item in batch:
        status, answer = await post_raw(session, url, json.dumps(item))
        if status != 204:
            assert status == 200, answer
            answers.append(answer)
    return answers


def exact(answers: list[dict[str, Any]]) -> list[str]:
    """Answers as text, the order of members included."""
    return [json.dumps(answer) for answer in answers]


async def next_block_txs(chain: LocalChain) -> list[str]:
    return list((await chain.client.get_block(mine(chain)))["txs"])


async def same_as_alone(tmp_path: Path, batch: list[Any]) -> dict[Any, dict[str, Any]]:
    """Send `batch` to one validator and its items one by one to a twin; check that the
    answers and the next blocks are the same. Returns the batch's answers by id."""
    async with (
        local_chain(tmp_path / "batched", run=False) as batched,
        local_chain(tmp_path / "alone", run=False) as alone,
        aiohttp.ClientSession() as session,
    ):
        status, answers = await post_raw(session, batched.url, json.dumps(batch))
        assert status == 200, answers
        assert exact(answers) == exact(await one_by_one(session, alone.url, batch))
        txs = await next_block_txs(batched)
        assert txs == await next_block_txs(alone)
    receipts = [a["result"] for a in answers if isinstance(a.get("result"), dict)]
    admitted = [receipt["txHash"] for receipt in receipts if "txHash" in receipt]
    assert [tx for tx in txs if tx in admitted] == admitted, "admitted out of batch order"
    return {answer["id"]: answer for answer in answers}


def mixed_batch() -> list[Any]:
    """Every kind of item, with more signed transactions than RECOVER_AHEAD_MIN."""
    return [
        request("submitTask", task(DEV0, 0, "a"), "t0"),
        request("transfer", transfer(NODE0, 0), "n0"),
        request("submitTask", task(DEV0, 1, "b"), "t1"),
        request("submitTask", task(DEV0, 2, signer=DEV1), "wrong signer"),
        request("submitTask", {**task(DEV0, 2), "signature": "0x1234"}, "short signature"),
        request("submitTask", {**task(DEV0, 2), "signature": 7}, "not a string"),
        request("submitTask", high_s(task(DEV0, 2, "c")), "high s"),
        request("submitTask", unrecoverable(task(DEV0, 2, "d")), "no point"),
        request("submitTask", {**task(DEV0, 2), "targetCount": "many"}, "bad param"),
        request("submitTask", {**task(DEV0, 2), "colour": "red"}, "unknown param"),
        request("transfer", {**transfer(NODE1, 0), "sender": "0x12"}, "bad address"),
        request("submitTask", task(DEV0, 2, "e"), "t2"),
        request("nope", task(DEV0, 3), "unknown method"),
        request("transfer", transfer(NODE1, 0), None),  # a notification: admitted, no answer
        {"jsonrpc": "1.0", "method": "transfer", "params": transfer(NODE2, 0), "id": "v1"},
        {"jsonrpc": "2.0", "method": "transfer", "params": transfer(NODE2, 0), "id": True},
        request("transfer", {"sender": DEV1.address, "to": DEAD, "amount": "5"}, "dev"),
        request("transfer", transfer(DEV1, 1, 6), "dev, signed"),
        request("transfer", {"sender": NODE2.address, "to": DEAD, "amount": "1"}, "not dev"),
        request("transfer", {**transfer(NODE2, 0), "signature": None}, "null signature"),
        request("transfer", transfer(NODE2, 5), "nonce gap"),
        request("submitTask", task(DEV0, 0, "a"), "t0 again"),
        request("submitTask", task(STRANGER, 0), "no balance"),
        request("getAccount", {"address": DEV0.address}, "read between"),
        request("submitTask", [DEV0.address, 3, "text", 1], "positional, too few"),
        request("transfer", list(transfer(NODE2, 0, 3).values()), "positional"),
        request("submitInferenceResult", result(NODE0, b"\x99" * 32), "no task"),
        request("submitTask", task_params(DEV0.address, nonce=3), "dev with nonce"),
        request("submitTask", task(DEV0, 4, "g"), 17),
        request("transfer", transfer(NODE0, 1), 18.5),
        request("transfer", transfer(NODE0, 2), None),
    ]


async def test_mixed_batch_answers_as_each_call_alone(tmp_path: Path) -> None:
    batch = mixed_batch()
    assert sum(map(is_signed_call, batch)) > 2 * RECOVER_AHEAD_MIN
    by_id = await same_as_alone(tmp_path, batch)
    # The batch holds what it was meant to: refusals of each kind...
    wrong_signer = by_id["wrong signer"]["error"]["data"]
    assert (wrong_signer["expected"], wrong_signer["recovered"]) == (DEV0.address, DEV1.address)
    codes = {rid: answer["error"]["code"] for rid, answer in by_id.items() if "error" in answer}
    for rid in ("short signature", "not a string", "high s", "no point", "not dev"):
        assert codes[rid] == -32004, rid
    for rid in ("bad param", "unknown param", "bad address", "positional, too few"):
        assert codes[rid] == -32602, rid
    assert codes["null signature"] == -32004
    assert codes["unknown method"] == -32601 and codes["v1"] == codes[None] == -32600
    assert codes["nonce gap"] == codes["t0 again"] == -32000
    assert codes["no balance"] == -32002 and codes["no task"] == -32001
    # ...and admissions, signed and dev-signed.
    for rid in ("t0", "n0", "t1", "t2", "dev", "dev, signed", "positional", "dev with nonce"):
        assert "result" in by_id[rid], by_id[rid]
    assert "result" in by_id[17] and "result" in by_id[18.5]
    assert by_id["read between"]["result"]["pendingNonce"] == 3


async def test_signatures_swapped_between_two_calls(tmp_path: Path) -> None:
    """Two calls, each valid alone, with their signatures exchanged: each is refused with
    the address its own signature recovers to, and the rest of the batch is admitted. A
    recovery attached to another call than its own would show here."""
    first, second = task(DEV0, 0, "x"), transfer(NODE0, 0, 9)
    batch = [request("transfer", transfer(NODE1, n), f"n1-{n}") for n in range(RECOVER_AHEAD_MIN)]
    batch[2:2] = [
        request("submitTask", with_signature(first, raw_signature(second)), "first"),
        request("transfer", with_signature(second, raw_signature(first)), "second"),
    ]
    batch += [request("submitTask", first, "first, right"), request("transfer", second, "2nd")]
    by_id = await same_as_alone(tmp_path, batch)
    recovered = []
    for rid, signer in (("first", DEV0), ("second", NODE0)):
        data = by_id[rid]["error"]["data"]
        assert data["expected"] == signer.address
        recovered.append(data["recovered"])
    assert len({DEV0.address, NODE0.address, *recovered}) == 4
    assert all(
        "result" in answer for rid, answer in by_id.items() if rid not in ("first", "second")
    )


async def test_a_long_batch_is_admitted_in_batch_order(tmp_path: Path) -> None:
    """120 calls of four senders taking turns, nonce after nonce: all admitted, and the
    block holds them in batch order."""
    wallets = (DEV0, NODE0, DEV1, NODE1)
    batch = []
    for nonce in range(30):
        for wallet in wallets:
            if nonce % 2:
                batch.append(request("submitTask", task(wallet, nonce, str(nonce)), len(batch)))
            else:
                batch.append(request("transfer", transfer(wallet, nonce), len(batch)))
    by_id = await same_as_alone(tmp_path, batch)
    assert list(by_id) == list(range(len(batch)))
    assert all("result" in answer for answer in by_id.values())


def new_recovery_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    return {t for t in set(threading.enumerate()) - before if t.name.startswith("recover")}


async def test_recover_ahead_keeps_each_recovery_with_its_call(tmp_path: Path) -> None:
    """The pre-pass itself: the positions of the signed calls it decoded, each with the
    message it decodes to and the address its own signature recovers to; its helper thread
    ends with the server."""
    signers = (NODE2, NODE1, NODE0)
    batch: list[Any] = [
        request("submitTask", task(DEV0, 0)),
        request("transfer", transfer(NODE0, 0)),
        request("submitTask", task(DEV0, 1, signer=DEV1)),
        request("chainId"),
        request("transfer", {**transfer(NODE1, 0), "signature": "0x00"}),
        request("transfer", unrecoverable(transfer(NODE1, 0))),
        *(
            request("transfer", transfer(NODE2, n, signer=signers[n % 3]))
            for n in range(RECOVER_AHEAD_MIN)
        ),
    ]
    before = set(threading.enumerate())
    async with local_chain(tmp_path / "ledger", run=False) as chain:
        server = RpcServer(chain.node)
        runner = web.AppRunner(server.app)
        await runner.setup()
        ahead = server.recover_ahead(batch)
        helpers = new_recovery_threads(before)
        await runner.cleanup()
    assert helpers and not any(thread.is_alive() for thread in helpers)
    assert sorted(ahead) == [i for i in range(len(batch)) if i not in (3, 4)]
    failed = ahead.pop(5)
    assert failed.signer is None and failed.failure is not None
    for position, call in ahead.items():
        assert call.failure is None
        assert call.message == message_of(batch[position])
        signature = raw_signature(batch[position]["params"])
        assert call.signer == crypto.recover_digest(call.digest, signature)


async def test_few_signed_calls_need_no_helper(tmp_path: Path) -> None:
    """Below RECOVER_AHEAD_MIN signed calls in a batch no helper thread is used, and the
    answers are the same as alone."""
    batch = [request("transfer", transfer(NODE0, n), n) for n in range(RECOVER_AHEAD_MIN - 1)]
    batch += [request("chainId", request_id=f"read{i}") for i in range(RECOVER_AHEAD_MIN)]
    before = set(threading.enumerate())
    async with local_chain(tmp_path / "ledger", run=False) as chain:
        server = RpcServer(chain.node)
        ahead = server.recover_ahead(batch)
        assert not new_recovery_threads(before)
    assert sorted(ahead) == list(range(RECOVER_AHEAD_MIN - 1))
    assert all(call.signer == NODE0.address for call in ahead.values())
    await same_as_alone(tmp_path / "answers", batch)
