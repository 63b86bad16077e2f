"""The client library (rpc/client.py) against a real validator: its bookkeeping (nonce counter,
nonce resets, batches, notifications, GET /tx, waiting) and a round trip for every account
transaction it signs.

What the client sends is observed, not faked: an aiohttp TraceConfig on the client's session
records every request body, so a test can count the round trips the client made.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from chain.protocol import crypto
from chain.protocol.types import Transfer
from rpc.client import InferchainClient, RpcError, TaskReceipt, TransportError, Wallet, presign
from tests.helpers import LocalChain
from tests.rpc.support import (
    CHAIN_ID,
    DEAD,
    DEV0,
    DEV1,
    DEV_BALANCE,
    NODE0,
    ZERO_SID,
    committed,
    task_fee,
)

UNKNOWN_HASH = "0x" + "12" * 32


class Recorder:
    """Records the JSON bodies a session POSTs (a batch counts each of its calls)."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []

    def trace_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()

        async def start(_s: Any, ctx: SimpleNamespace, _p: Any) -> None:
            ctx.body = bytearray()

        async def chunk(_s: Any, ctx: SimpleNamespace, params: Any) -> None:
            ctx.body.extend(params.chunk)

        async def end(_s: Any, ctx: SimpleNamespace, params: Any) -> None:
            if params.method == "POST":
                self.bodies.append(json.loads(bytes(ctx.body)))

        config.on_request_start.append(start)
        config.on_request_chunk_sent.append(chunk)
        config.on_request_end.append(end)
        return config

    def calls(self, method: str) -> list[dict[str, Any]]:
        items = [i for b in self.bodies for i in (b if isinstance(b, list) else [b])]
        return [i for i in items if i.get("method") == method]

    def clear(self) -> None:
        self.bodies.clear()


@pytest.fixture
async def traced(chain: LocalChain) -> AsyncIterator[tuple[InferchainClient, Recorder]]:
    recorder = Recorder()
    async with aiohttp.ClientSession(trace_configs=[recorder.trace_config()]) as session:
        yield InferchainClient(chain.url, session=session), recorder


async def dev_transfers(chain: LocalChain, count: int, sender: Wallet = DEV0) -> None:
    """`count` dev-mode transfers from `sender`, sent around the client's nonce counter."""
    for _ in range(count):
        await chain.client.call("transfer", {"sender": sender.address, "to": DEAD, "amount": "1"})


# The nonce counter


async def test_burst_of_sends_fetches_the_nonce_once(
    chain: LocalChain, traced: tuple[InferchainClient, Recorder]
) -> None:
    client, recorder = traced
    await dev_transfers(chain, 5)  # the pending nonce of dev 0 is now 5 (mempool included)
    receipts = [await client.submit_task(DEV0, prompts=f"p{i}") for i in range(3)]
    sent = [c["params"] for c in recorder.calls("submitTask")]
    assert [p["nonce"] for p in sent] == [5, 6, 7]
    assert len(recorder.calls("getAccount")) == 1
    assert len(recorder.calls("chainId")) == 1
    assert len({r.task_hash for r in receipts}) == 3
    assert sent[0]["SID"] == ZERO_SID and sent[0]["feeParams"] == ""
    assert int(sent[0]["targetCount"]) == 1
    for receipt, nonce in zip(receipts, (5, 6, 7), strict=True):
        await committed(chain, receipt.tx_hash)
        assert (await client.query_task(receipt.task_hash))["nonce"] == nonce


async def test_invalid_nonce_resets_counter_to_data_expected_without_retry(
    chain: LocalChain, traced: tuple[InferchainClient, Recorder]
) -> None:
    client, recorder = traced
    with pytest.raises(RpcError) as info:
        await client.submit_task(DEV0, prompts="x", nonce=9)
    assert info.value.code == -32000 and info.value.data is not None
    assert info.value.data["expected"] == 0
    assert len(recorder.calls("submitTask")) == 1  # no automatic retry
    receipt = await client.submit_task(DEV0, prompts="y")
    assert recorder.calls("submitTask")[-1]["params"]["nonce"] == 0
    assert recorder.calls("getAccount") == []  # the error told the client
    await committed(chain, receipt.tx_hash)


async def test_stale_counter_is_corrected_and_the_transaction_sent_again(
    chain: LocalChain, traced: tuple[InferchainClient, Recorder]
) -> None:
    """Another sender used the wallet's nonces: the -32000 sets the counter to the node's
    `data.expected`, and the transaction is signed again with it and sent once more."""
    client, recorder = traced
    await client.transfer(DEV1, DEAD, 1)  # counter fetched: 0, next 1
    await dev_transfers(chain, 2, DEV1)  # someone else uses nonces 1 and 2
    tx_hash = await client.transfer(DEV1, DEAD, 2)
    assert [c["params"]["nonce"] for c in recorder.calls("transfer")] == [0, 1, 3]
    assert len(recorder.calls("getAccount")) == 1  # the error told the client
    await committed(chain, tx_hash)
    assert (await client.get_transaction(tx_hash))["params"]["nonce"] == 3
    second = await client.transfer(DEV1, DEAD, 3)
    assert recorder.calls("transfer")[-1]["params"]["nonce"] == 4
    await committed(chain, second)
    assert (await client.get_account(DEV1.address))["nonce"] == 5
    assert (await client.get_account(DEAD))["balance"] == str(1 + 1 + 1 + 2 + 3)


async def test_rejected_send_resyncs_the_counter_from_the_node(
    chain: LocalChain, traced: tuple[InferchainClient, Recorder]
) -> None:
    """A refused transaction used no nonce: the client forgets its counter, and the next
    transaction takes the nonce the node says (its pendingNonce)."""
    client, recorder = traced
    with pytest.raises(RpcError) as info:
        await client.submit_task(DEV0, prompts="x", target_count=0)
    assert info.value.code == -32602
    with pytest.raises(RpcError) as info:
        await client.stake(DEV0, DEV_BALANCE + 1)
    assert info.value.code == -32002
    await dev_transfers(chain, 1)  # meanwhile someone else sends with nonce 0
    receipt = await client.submit_task(DEV0, prompts="y")
    sent = [c["params"]["nonce"] for c in recorder.calls("submitTask") + recorder.calls("stake")]
    assert sorted(sent) == [0, 0, 1]
    assert len(recorder.calls("getAccount")) == 3  # asked again after each refusal
    assert len(recorder.calls("submitTask")) == 2  # no -32000 on the way
    await committed(chain, receipt.tx_hash)
    assert (await client.query_task(receipt.task_hash))["nonce"] == 1


async def test_concurrent_nonce_requests_share_one_fetch(
    chain: LocalChain, traced: tuple[InferchainClient, Recorder]
) -> None:
    client, recorder = traced
    await dev_transfers(chain, 2, DEV1)
    address = DEV1.address
    nonces = await asyncio.gather(*(client.next_nonce(address.lower()) for _ in range(5)))
    assert sorted(nonces) == [2, 3, 4, 5, 6]
    assert len(recorder.calls("getAccount")) == 1
    client.reset_nonce(address)
    assert await client.next_nonce(address) == 2  # nothing was sent: the node still says 2
    assert len(recorder.calls("getAccount")) == 2


CONCURRENT_SUBMITS = 50


async def test_concurrent_submits_from_one_wallet_take_consecutive_nonces(
    chain: LocalChain, traced: tuple[InferchainClient, Recorder]
) -> None:
    """Many submit_task of one wallet at once: each takes the next nonce and every one is
    accepted and committed, whatever order the requests would otherwise reach the node in."""
    client, recorder = traced
    receipts = await asyncio.gather(
        *(client.submit_task(DEV0, prompts=f"p{i}") for i in range(CONCURRENT_SUBMITS))
    )
    sent = [c["params"]["nonce"] for c in recorder.calls("submitTask")]
    assert sorted(sent) == list(range(CONCURRENT_SUBMITS))
    assert len(recorder.calls("getAccount")) == 1  # read once, then allotted locally
    for receipt in receipts:
        await committed(chain, receipt.tx_hash)
    tasks = [await client.query_task(r.task_hash) for r in receipts]
    assert sorted(t["nonce"] for t in tasks) == list(range(CONCURRENT_SUBMITS))
    account = await client.get_account(DEV0.address)
    assert account["nonce"] == account["pendingNonce"] == CONCURRENT_SUBMITS


async def test_a_rejected_submit_among_concurrent_ones_leaves_no_gap(
    chain: LocalChain, traced: tuple[InferchainClient, Recorder]
) -> None:
    """One submit in the middle of a burst is refused (targetCount 0, -32602); the nonce it
    took is handed out again, so every submit after it is accepted and committed."""
    client, recorder = traced
    bad = CONCURRENT_SUBMITS // 2
    outcomes = await asyncio.gather(
        *(
            client.submit_task(DEV0, prompts=f"p{i}", target_count=0 if i == bad else 1)
            for i in range(CONCURRENT_SUBMITS)
        ),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], RpcError), refused
    assert refused[0].code == -32602 and refused[0].data is not None
    assert refused[0].data["param"] == "targetCount"
    receipts = [o for o in outcomes if isinstance(o, TaskReceipt)]
    assert len(receipts) == CONCURRENT_SUBMITS - 1
    for receipt in receipts:
        await committed(chain, receipt.tx_hash)
    tasks = [await client.query_task(r.task_hash) for r in receipts]
    assert sorted(t["nonce"] for t in tasks) == list(range(CONCURRENT_SUBMITS - 1))
    assert (await client.get_account(DEV0.address))["nonce"] == CONCURRENT_SUBMITS - 1
    assert recorder.calls("submitTask")[-1]["params"]["nonce"] <= CONCURRENT_SUBMITS - 1


async def test_query_pending_tasks_is_signed_for_the_nodes_chain(
    traced: tuple[InferchainClient, Recorder],
) -> None:
    """What a resource node sends (PROTOCOL 5.1): the text names the chainId the client asked
    the node for, once."""
    client, recorder = traced
    assert await client.query_pending_tasks(NODE0) == []
    assert await client.query_pending_tasks(NODE0, limit=3) == []
    sent = [c["params"] for c in recorder.calls("queryPendingTasks")]
    assert len(recorder.calls("chainId")) == 1
    for params in sent:
        text = f"queryPendingTasks:{CHAIN_ID}:{NODE0.address}:{params['TimeStamp']}"
        digest = crypto.personal_message_hash(text)
        signature = bytes.fromhex(params["Signature"][2:])
        assert crypto.recover_digest(digest, signature) == NODE0.address


# Calls, batches, notifications


async def test_call_raises_rpc_error_with_the_servers_data(
    traced: tuple[InferchainClient, Recorder],
) -> None:
    client, recorder = traced
    with pytest.raises(RpcError) as info:
        await client.query_task(UNKNOWN_HASH)
    assert (info.value.code, info.value.message) == (-32003, "Invalid requestHash")
    assert isinstance(info.value.data, dict) and info.value.data["requestHash"] == UNKNOWN_HASH
    assert recorder.bodies[-1]["params"] == {"taskHash": UNKNOWN_HASH}
    assert "-32003" in str(info.value)


async def test_batch_results_in_call_order(traced: tuple[InferchainClient, Recorder]) -> None:
    client, recorder = traced
    results = await client.batch(
        [
            ("chainId", None),
            ("queryTask", {"taskHash": UNKNOWN_HASH}),
            ("getAccount", {"address": DEV0.address}),
            ("nope", [1]),
            ("blockNumber", None),
        ]
    )
    assert results[0] == CHAIN_ID
    assert isinstance(results[1], RpcError) and results[1].code == -32003
    assert isinstance(results[2], dict) and results[2]["address"] == DEV0.address
    assert isinstance(results[3], RpcError) and results[3].data == {
        "method": "nope",
        "reason": "no such method",
    }
    assert results[4] == 0
    sent_ids = [item["id"] for item in recorder.bodies[-1]]
    assert len(set(sent_ids)) == 5

    recorder.clear()
    assert await client.batch([]) == []
    assert recorder.bodies == []  # nothing sent


async def test_batch_refused_as_a_whole_raises(traced: tuple[InferchainClient, Recorder]) -> None:
    client, _recorder = traced
    with pytest.raises(RpcError) as info:
        await client.batch([("chainId", None)] * 1001)
    assert info.value.code == -32600 and isinstance(info.value.data, dict)


async def test_notify_expects_204_and_the_call_takes_effect(
    chain: LocalChain, traced: tuple[InferchainClient, Recorder]
) -> None:
    client, recorder = traced
    await client.notify("transfer", {"sender": DEV0.address, "to": DEAD, "amount": "21"})
    assert recorder.bodies[-1] == {
        "jsonrpc": "2.0",
        "method": "transfer",
        "params": {"sender": DEV0.address, "to": DEAD, "amount": "21"},
    }
    expected = presign(Transfer(DEV0.address, 0, DEAD, 21), CHAIN_ID, DEV0.private_key)
    await committed(chain, expected.tx_hash)
    assert (await client.get_account(DEAD))["balance"] == "21"
    await client.notify("nope")  # a failing notification is not answered either

    with pytest.raises(TransportError) as info:  # over 5 MiB: HTTP 413 instead of 204
        await client.notify("chainId", {"padding": "x" * (5 * 1024 * 1024)})
    assert info.value.status == 413


# GET /tx and waiting


async def test_get_tx_404_is_none_and_wait_for_tx(
    chain: LocalChain, traced: tuple[InferchainClient, Recorder]
) -> None:
    client, _recorder = traced
    assert await client.get_tx(UNKNOWN_HASH) is None
    with pytest.raises(TimeoutError, match=UNKNOWN_HASH):
        await client.wait_for_tx(UNKNOWN_HASH, timeout=0.1)
    with pytest.raises(TransportError) as info:
        await client.get_tx("0x12")
    assert info.value.status == 400

    tx_hash = await client.transfer(DEV0, DEAD, 5)
    tx = await client.wait_for_tx(tx_hash)
    assert tx["status"] == "committed" and tx["blockHeight"] >= 1
    assert await client.wait_for_block(tx["blockHeight"]) >= tx["blockHeight"]
    pending_or_done = await client.wait_for_tx(tx_hash, statuses=("pending", "committed"))
    assert pending_or_done["status"] == "committed"


# Round trips of every account transaction


async def test_submit_task_round_trip(
    chain: LocalChain, traced: tuple[InferchainClient, Recorder]
) -> None:
    client, _recorder = traced
    receipt = await client.submit_task(
        DEV1,
        prompts='{"prompt":"¿Qué? 漢字 🚀"}',
        schema="0x516d58",
        model_options='{"model":"gpt-neo-2.7B","temperature":0.7}',
        target_count=3,
        sid=b"\x22" * 32,
        fee_params='{"maxFee":"4000000000000000"}',
    )
    tx = await committed(chain, receipt.tx_hash)
    assert tx["associated_task"] == receipt.task_hash and tx["signer"] == DEV1.address
    task = await client.query_task(receipt.task_hash)
    assert task["status"] == "submitted" and task["sender"] == DEV1.address
    assert task["prompts"] == '{"prompt":"¿Qué? 漢字 🚀"}' and task["schema"] == "0x516d58"
    assert task["SID"] == "0x" + "22" * 32 and task["fee"] == str(task_fee(3))
    assert task["txHash"] == receipt.tx_hash
    stats = await client.task_stats()
    assert stats["total"] == stats["submitted"] == 1


async def test_transfer_stake_unstake_register_round_trips(
    chain: LocalChain, traced: tuple[InferchainClient, Recorder]
) -> None:
    client, recorder = traced
    wallet = Wallet.from_key("0x" + "31" * 32)
    funded = await client.transfer(DEV0, wallet.address.lower(), 100 * 10**18)
    await committed(chain, funded)
    staked = await client.stake(wallet, 60 * 10**18)
    unstaked = await client.unstake(wallet, 10 * 10**18)
    registered = await client.register_resource_node(wallet, "llama-3,*", "https://node.test")
    for tx_hash in (staked, unstaked, registered):
        tx = await committed(chain, tx_hash)
        assert tx["signer"] == wallet.address
    types = [(await client.get_tx(h) or {})["tx_type"] for h in (staked, unstaked, registered)]
    assert types == ["stake", "unstake", "register"]

    account = await client.get_account(wallet.address)
    assert account["balance"] == str(50 * 10**18) and account["stake"] == str(50 * 10**18)
    assert account["nonce"] == 3
    assert account["resourceNode"] == {"models": "llama-3,*", "endpoint": "https://node.test"}
    nodes = {n["address"]: n for n in await client.get_resource_nodes()}
    assert nodes[wallet.address]["stake"] == str(50 * 10**18)
    assert len(recorder.calls("chainId")) == 1  # asked once, then cached
    assert len(recorder.calls("getAccount")) == 3  # one fetch per address, then counted


async def test_read_wrappers(chain: LocalChain, traced: tuple[InferchainClient, Recorder]) -> None:
    client, recorder = traced
    assert await client.chain_id() == await client.chain_id() == CHAIN_ID
    assert len(recorder.calls("chainId")) == 1
    genesis_hash = await client.genesis_hash()
    assert await client.genesis_hash() == genesis_hash
    assert len(recorder.calls("genesisHash")) == 2  # not cached: a reset chain shows here
    assert (await client.health())["genesisHash"] == genesis_hash
    assert await client.block_number() == 0
    assert (await client.get_block(0))["height"] == 0
    assert (await client.get_block())["height"] == 0
    validators = await client.get_validators()
    assert [v["address"] for v in validators] == [Wallet.dev(100).address]
    tx_hash = await client.transfer(DEV0, DEAD, 1)
    await committed(chain, tx_hash)
    assert (await client.get_transaction(tx_hash))["params"]["to"] == DEAD
