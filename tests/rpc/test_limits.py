"""The limits of the RPC surface hold, and are the ones README states: a batch of at most
1000 calls, `maxTxBytes` of canonical JSON per transaction, and a mempool of at most 20,000
transactions and 64 MiB, of which one sender may hold 1000, that answers -32007 when full
while the validator keeps serving reads and its memory stays bounded.

Covered elsewhere: the 5 MiB body limit (test_batches.py); a batch of 1001 reads refused and
one of 1000 answered, transactions far over maxTxBytes (test_errors.py); -32007 on a mempool
of capacity 3 in this process (test_errors.py); a mempool filled with a few 4 MB tasks, whose
-32007 must say that its bytes are full (tests/conformance/test_errors.py).

The floods run against a validator in its own process (`python -m rpc`) with a block time of
ten minutes, so no block drains the pool while the test fills it; its memory is read from
/proc/<pid>/status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chain.node.mempool import DEFAULT_CAPACITY, DEFAULT_CAPACITY_BYTES, DEFAULT_MAX_PER_SENDER
from chain.protocol.genesis import Params, dev_genesis, parse_genesis
from chain.protocol.types import Message, SubmitInferenceResult, SubmitTask, Transfer
from rpc.client import InferchainClient, PresignedTx, RpcError, Wallet, presign
from rpc.server import MAX_BATCH, MAX_BODY_BYTES
from tests.helpers import (
    REPO,
    LocalChain,
    ValidatorProcess,
    local_chain,
    make_genesis,
    write_genesis,
)
from tests.rpc.support import (
    CHAIN_ID,
    DEAD,
    DEV0,
    DEV1,
    NODE0,
    NODE1,
    assert_error_shape,
    mine,
    post_json,
    request,
    snapshot,
)

MIB = 1024 * 1024
MAX_TX_BYTES = Params().max_tx_bytes
TEN_MINUTES_MS = 600_000
# Enough senders to fill the pool's count, each up to its share (PROTOCOL 5.1).
FLOOD_SENDERS = [Wallet.dev(i) for i in range(DEFAULT_CAPACITY // DEFAULT_MAX_PER_SENDER)]
# RSS bounds over the validator's own RSS before the flood, in bytes.
# 20,000 small transfers are about 5.5 MB of canonical JSON; each is held as a SignedTx (its
# message, signature and hashes), a size entry and the pending state's account writes: a few
# hundred bytes of Python objects each (measured: +18 MiB). 64 MiB leaves room for 3x that.
COUNT_FLOOD_RSS_BOUND = 64 * MIB
# 64 MiB of SubmitTasks of ~128 KiB: the pool holds each prompt about three times (the text
# parsed from the request in the message, its bytes, and the pending state's encoded task
# record; measured: +195 MiB), plus the buffers of a 5 MiB request. Four times the cap.
BYTES_FLOOD_RSS_BOUND = 4 * DEFAULT_CAPACITY_BYTES
# Refused calls keep nothing: more refused batches may only reuse freed memory.
REFUSED_ROUNDS = 5
REFUSED_RSS_SLACK = 16 * MIB


def canonical_size(params: dict[str, Any]) -> int:
    """PROTOCOL 3: maxTxBytes counts the canonical JSON of the params and the signature (keys
    sorted, no spaces, UTF-8); computed here independently of the node."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode())


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_the_limits_are_the_ones_readme_states() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"batches of up to {MAX_BATCH} calls" in readme
    assert f"bodies up to {MAX_BODY_BYTES // MIB} MiB (HTTP 413 beyond)" in readme
    assert (
        f"The mempool holds up to {DEFAULT_CAPACITY:,} transactions and "
        f"{DEFAULT_CAPACITY_BYTES // MIB} MiB, and at most {DEFAULT_MAX_PER_SENDER:,} of them "
        "from one sender; beyond that, -32007" in readme
    )
    assert f"--max-pending-per-sender N` ({DEFAULT_MAX_PER_SENDER})" in readme
    shipped = json.loads((REPO / "genesis.json").read_text())
    assert shipped["params"]["maxTxBytes"] == MAX_TX_BYTES == 131072  # PROTOCOL 2


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """A dev chain whose blocks the test makes: admitted transactions stay in the mempool."""
    async with local_chain(tmp_path / "ledger", run=False) as running:
        yield running


# Batches (1000 calls)


def dev_transfers(count: int, request_id: bool = True) -> list[dict[str, Any]]:
    return [
        request(
            "transfer",
            {"sender": DEV0.address, "to": DEAD, "amount": str(i + 1)},
            request_id=i if request_id else None,
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("notifications", [False, True], ids=["calls", "notifications"])
async def test_a_batch_over_the_limit_runs_none_of_its_calls(
    manual: LocalChain, http: aiohttp.ClientSession, notifications: bool
) -> None:
    before = await snapshot(manual.client, DEV0.address, DEAD)
    batch = dev_transfers(MAX_BATCH + 1, request_id=not notifications)
    status, answer = await post_json(http, manual.url, batch)
    assert status == 200 and isinstance(answer, dict), answer  # answered, even if all notify
    assert answer["id"] is None
    error = RpcError.from_response(answer["error"])
    assert_error_shape(error)
    assert error.code == -32600 and error.data is not None
    assert (error.data["limit"], error.data["got"]) == (MAX_BATCH, MAX_BATCH + 1)
    assert await snapshot(manual.client, DEV0.address, DEAD) == before


async def test_a_batch_of_1000_transactions_is_admitted_in_order(
    manual: LocalChain, http: aiohttp.ClientSession
) -> None:
    status, answers = await post_json(http, manual.url, dev_transfers(MAX_BATCH))
    assert status == 200 and [a["id"] for a in answers] == list(range(MAX_BATCH))
    expected = [
        presign(Transfer(DEV0.address, i, DEAD, i + 1), CHAIN_ID, DEV0.private_key).tx_hash
        for i in range(MAX_BATCH)
    ]
    assert [a["result"]["txHash"] for a in answers] == expected
    assert (await manual.client.health())["mempool"] == MAX_BATCH
    account = await manual.client.get_account(DEV0.address)
    assert (account["nonce"], account["pendingNonce"]) == (0, MAX_BATCH)


# maxTxBytes


Builder = Callable[[str], Message]


def sized(build: Builder, size: int, wallet: Wallet, wide: bool = False) -> PresignedTx:
    """The message `build(text)` signed by `wallet`, with `text` chosen so that the
    transaction's canonical JSON is exactly `size` bytes; `wide` fills with a two-byte
    character (so the text has fewer characters than bytes)."""
    base = canonical_size(presign(build(""), CHAIN_ID, wallet.private_key).params)
    room = size - base
    text = "é" * (room // 2) + "x" * (room % 2) if wide else "x" * room
    tx = presign(build(text), CHAIN_ID, wallet.private_key)
    assert canonical_size(tx.params) == size
    return tx


def task_of(wallet: Wallet, nonce: int) -> Builder:
    """A builder of `wallet`'s SubmitTask with `nonce`, from its prompts."""
    return lambda text: SubmitTask(wallet.address, nonce, "text", 1, text, "")


async def test_a_transaction_of_max_tx_bytes_is_accepted_and_one_byte_more_is_not(
    manual: LocalChain,
) -> None:
    client = manual.client
    narrow = sized(task_of(NODE0, 0), MAX_TX_BYTES + 1, NODE0)
    wide = sized(task_of(NODE0, 0), MAX_TX_BYTES + 1, NODE0, wide=True)
    assert len(wide.params["prompts"]) < MAX_TX_BYTES  # bytes are counted, not characters
    for over in (narrow, wide):
        before = await snapshot(client, NODE0.address)
        with pytest.raises(RpcError) as info:
            await client.send_presigned(over)
        assert_error_shape(info.value)
        assert info.value.code == -32602 and info.value.data is not None
        assert info.value.data["param"] == "(transaction)"
        assert f"{MAX_TX_BYTES + 1} bytes" in info.value.data["reason"]
        assert str(MAX_TX_BYTES) in info.value.data["reason"]
        assert await snapshot(client, NODE0.address) == before

    for nonce, wide_text in ((0, False), (1, True)):
        exact = sized(task_of(NODE0, nonce), MAX_TX_BYTES, NODE0, wide=wide_text)
        receipt = await client.send_presigned(exact)
        assert receipt["txHash"] == exact.tx_hash
    mine(manual)
    assert (await client.task_stats())["total"] == 2


async def test_max_tx_bytes_counts_the_signature_the_node_adds_in_dev_mode(
    manual: LocalChain,
) -> None:
    """A dev-mode call has no nonce nor signature; the node fills both (PROTOCOL 5.4) and
    the limit applies to the transaction it signed (deterministic, RFC 6979)."""
    client = manual.client
    for size, accepted in ((MAX_TX_BYTES + 1, False), (MAX_TX_BYTES, True)):
        signed = sized(task_of(DEV1, 0), size, DEV1)
        unsigned = {k: v for k, v in signed.params.items() if k not in ("nonce", "signature")}
        if accepted:
            receipt = await client.call("submitTask", unsigned)
            assert receipt["txHash"] == signed.tx_hash
        else:
            with pytest.raises(RpcError) as info:
                await client.call("submitTask", unsigned)
            assert info.value.code == -32602 and info.value.data is not None
            assert info.value.data["param"] == "(transaction)"
            assert (await client.get_account(DEV1.address))["pendingNonce"] == 0


async def test_a_result_of_max_tx_bytes_is_accepted_and_one_byte_more_is_not(
    manual: LocalChain,
) -> None:
    """Results carry the inference output: the same limit holds for them."""
    client = manual.client
    receipt = await client.submit_task(DEV0, prompts="long answer", target_count=2)
    mine(manual)
    task = bytes.fromhex(receipt.task_hash[2:])

    def result_of(node: Wallet) -> Builder:
        return lambda text: SubmitInferenceResult(task, node.address, text, "")

    before = await snapshot(client, NODE0.address, NODE1.address)
    with pytest.raises(RpcError) as info:
        await client.send_presigned(sized(result_of(NODE0), MAX_TX_BYTES + 1, NODE0))
    assert info.value.code == -32602 and info.value.data is not None
    assert info.value.data["param"] == "(transaction)"
    assert await snapshot(client, NODE0.address, NODE1.address) == before
    exact = [sized(result_of(node), MAX_TX_BYTES, node) for node in (NODE0, NODE1)]
    for tx in exact:
        assert await client.send_presigned(tx) is True
    mine(manual)
    entries = (await client.query_task(receipt.task_hash))["executionInfo"]
    assert [e["txHash"] for e in entries] == [tx.tx_hash for tx in exact]
    assert [e["result"] for e in entries] == [tx.params["result"] for tx in exact]


# The mempool under a flood


async def start_validator(tmp_path: Path) -> tuple[ValidatorProcess, str]:
    """A validator whose blocks come every ten minutes, with dev accounts for every sender of
    FLOOD_SENDERS; the mempool's own limits are tested, so tasks are not refused first as
    more than the network verifies in time (PROTOCOL 5.10)."""
    params = Params(block_time_ms=0)
    raw = dev_genesis(params=params, dev_accounts=max(10, len(FLOOD_SENDERS)))
    genesis = write_genesis(tmp_path / "genesis.json", parse_genesis(raw))
    validator = ValidatorProcess(
        genesis, tmp_path / "data", "--block-time", str(TEN_MINUTES_MS), "--no-overload-guard"
    )
    return validator, await asyncio.to_thread(validator.start)


async def send_batch(client: InferchainClient, txs: list[PresignedTx]) -> list[Any]:
    return await client.batch([(tx.method, tx.params) for tx in txs])


async def reads_still_answered(client: InferchainClient) -> None:
    """The reads a dApp makes, each within the client's timeout."""
    assert await client.call("chainId") == CHAIN_ID
    assert (await client.get_account(DEV0.address))["address"] == DEV0.address
    assert (await client.get_block("latest"))["height"] == 0
    assert await client.task_stats() is not None
    answers = await client.batch([("getAccount", {"address": w.address}) for w in FLOOD_SENDERS])
    assert not any(isinstance(a, RpcError) for a in answers)


def transfers(wallet: Wallet, nonces: range) -> list[PresignedTx]:
    return [
        presign(Transfer(wallet.address, n, DEAD, 1), CHAIN_ID, wallet.private_key) for n in nonces
    ]


@pytest.mark.slow
async def test_a_mempool_full_of_transactions_refuses_more_and_keeps_serving(
    tmp_path: Path,
) -> None:
    per_sender = DEFAULT_CAPACITY // len(FLOOD_SENDERS)
    flood = [tx for w in FLOOD_SENDERS for tx in transfers(w, range(per_sender))]
    extra = [tx for w in FLOOD_SENDERS for tx in transfers(w, range(per_sender, per_sender + 50))]
    validator, url = await start_validator(tmp_path)
    try:
        assert validator.proc is not None
        async with InferchainClient(url, timeout=20.0) as client:
            await reads_still_answered(client)  # warm up before measuring
            start_rss = rss_bytes(validator.proc.pid)
            for i in range(0, len(flood), MAX_BATCH):
                answers = await send_batch(client, flood[i : i + MAX_BATCH])
                refused = [a for a in answers if isinstance(a, RpcError)]
                assert not refused, refused[:3]
            assert (await client.health())["mempool"] == DEFAULT_CAPACITY
            full_rss = rss_bytes(validator.proc.pid)
            assert full_rss - start_rss < COUNT_FLOOD_RSS_BOUND, (start_rss, full_rss)

            watched = [w.address for w in FLOOD_SENDERS] + [DEAD]
            before = await snapshot(client, *watched)
            for _ in range(REFUSED_ROUNDS):
                answers = await send_batch(client, extra)
                for answer in answers:
                    assert isinstance(answer, RpcError), answer
                    assert_error_shape(answer)
                    assert answer.code == -32007 and answer.data is not None
                    assert answer.data["capacity"] == DEFAULT_CAPACITY
                    assert answer.data["retry"] is True
            dev_mode = {"sender": DEV0.address, "to": DEAD, "amount": "1"}
            with pytest.raises(RpcError) as info:
                await client.call("transfer", dev_mode)
            assert info.value.code == -32007
            assert await snapshot(client, *watched) == before
            await reads_still_answered(client)
            assert rss_bytes(validator.proc.pid) - full_rss < REFUSED_RSS_SLACK
        assert validator.proc.poll() is None
    finally:
        validator.close()


async def test_one_sender_gets_its_share_of_the_mempool_and_the_others_still_get_in(
    tmp_path: Path,
) -> None:
    """One sender cannot fill the mempool: past DEFAULT_MAX_PER_SENDER waiting transactions
    it gets -32007 naming its limit, and nothing changes, while every other sender is still
    admitted and reads are answered."""
    flooder, other = DEV0, DEV1
    share = transfers(flooder, range(DEFAULT_MAX_PER_SENDER))
    beyond = transfers(flooder, range(DEFAULT_MAX_PER_SENDER, DEFAULT_MAX_PER_SENDER + 50))
    validator, url = await start_validator(tmp_path)
    try:
        async with InferchainClient(url, timeout=20.0) as client:
            answers = await send_batch(client, share)
            assert not [a for a in answers if isinstance(a, RpcError)]
            before = await snapshot(client, flooder.address, other.address, DEAD)
            answers = await send_batch(client, beyond)
            for answer in answers:
                assert isinstance(answer, RpcError), answer
                assert_error_shape(answer)
                assert answer.code == -32007 and answer.data is not None
                assert answer.data["limit"] == "perSender"
                assert answer.data["sender"] == flooder.address
                assert answer.data["max"] == answer.data["pending"] == DEFAULT_MAX_PER_SENDER
                assert answer.data["retry"] is True
            # unsigned dev-mode calls of the same sender too
            with pytest.raises(RpcError) as info:
                await client.call(
                    "transfer", {"sender": flooder.address, "to": DEAD, "amount": "1"}
                )
            assert info.value.code == -32007 and info.value.data is not None
            assert info.value.data["limit"] == "perSender"
            assert await snapshot(client, flooder.address, other.address, DEAD) == before
            assert (await client.health())["mempool"] == DEFAULT_MAX_PER_SENDER
            # another sender is admitted as if nothing happened
            theirs = transfers(other, range(3))
            for tx in theirs:
                assert (await client.send_presigned(tx))["txHash"] == tx.tx_hash
            assert (await client.get_account(other.address))["pendingNonce"] == 3
            await reads_still_answered(client)
        assert validator.proc is not None and validator.proc.poll() is None
    finally:
        validator.close()


async def test_a_validator_started_with_a_larger_share_admits_that_many(tmp_path: Path) -> None:
    """`--max-pending-per-sender N` sets one sender's share (the benchmark pipelines more)."""
    genesis = write_genesis(tmp_path / "genesis.json", make_genesis())
    share = 3
    validator = ValidatorProcess(
        genesis,
        tmp_path / "data",
        "--block-time",
        str(TEN_MINUTES_MS),
        "--max-pending-per-sender",
        str(share),
    )
    try:
        url = await asyncio.to_thread(validator.start)
        async with InferchainClient(url) as client:
            answers = await send_batch(client, transfers(DEV0, range(share + 1)))
            assert not any(isinstance(a, RpcError) for a in answers[:share]), answers
            refused = answers[share]
            assert isinstance(refused, RpcError) and refused.data is not None
            assert (refused.code, refused.data["limit"], refused.data["max"]) == (
                -32007,
                "perSender",
                share,
            )
    finally:
        validator.close()


def big_tasks(wallet: Wallet, count: int) -> list[PresignedTx]:
    """SubmitTasks just under maxTxBytes."""
    return [sized(task_of(wallet, nonce), MAX_TX_BYTES - 64, wallet) for nonce in range(count)]


async def flood_by_bytes(client: InferchainClient) -> list[RpcError]:
    """Fill the mempool's 64 MiB with dev account 0's tasks of ~128 KiB, in batches under
    the body limit, and one batch more; the errors of the calls refused once it was full."""
    per_batch = MAX_BODY_BYTES // (MAX_TX_BYTES + 200)
    count = DEFAULT_CAPACITY_BYTES // (MAX_TX_BYTES - 64) + per_batch
    tasks = big_tasks(DEV0, count)
    refused: list[RpcError] = []
    for i in range(0, len(tasks), per_batch):
        answers = await send_batch(client, tasks[i : i + per_batch])
        got = [a for a in answers if isinstance(a, RpcError)]
        if refused:
            assert len(got) == len(answers), "admitted again after the first refusal"
        refused += got
    return refused


async def test_a_mempool_full_of_bytes_refuses_more_and_keeps_serving(tmp_path: Path) -> None:
    validator, url = await start_validator(tmp_path)
    try:
        assert validator.proc is not None
        async with InferchainClient(url, timeout=20.0) as client:
            await reads_still_answered(client)
            start_rss = rss_bytes(validator.proc.pid)
            refused = await flood_by_bytes(client)
            assert refused and all(e.code == -32007 for e in refused), refused[:3]
            for error in refused:
                assert_error_shape(error)
            size = (await client.health())["mempool"]
            assert size < DEFAULT_CAPACITY  # full by bytes, far below the count
            assert size * (MAX_TX_BYTES - 64) <= DEFAULT_CAPACITY_BYTES
            assert (size + 1) * (MAX_TX_BYTES - 64) > DEFAULT_CAPACITY_BYTES
            full_rss = rss_bytes(validator.proc.pid)
            assert full_rss - start_rss < BYTES_FLOOD_RSS_BOUND, (start_rss, full_rss)
            await reads_still_answered(client)

            # a refused call changes nothing, in dev mode too
            before = await snapshot(client, DEV0.address, DEV1.address)
            more = sized(task_of(DEV1, 0), MAX_TX_BYTES - 64, DEV1)
            for params in (more.params, {**more.params, "nonce": None, "signature": None}):
                with pytest.raises(RpcError) as info:
                    await client.call(
                        "submitTask", {k: v for k, v in params.items() if v is not None}
                    )
                assert info.value.code == -32007
            assert await snapshot(client, DEV0.address, DEV1.address) == before

            # the bound is on bytes: a small transaction still fits
            small = transfers(DEV1, range(1))[0]
            assert (await client.send_presigned(small))["txHash"] == small.tx_hash
        assert validator.proc.poll() is None
    finally:
        validator.close()
