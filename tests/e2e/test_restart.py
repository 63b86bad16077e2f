"""A validator process killed (SIGKILL) or stopped (SIGTERM) under load reopens its data
directory where it left off: every block and transaction a client saw committed is still
there, unchanged, the state commitment (appHash) is the same, and the chain keeps going.

About appHash (PROTOCOL 6, chain/node/ledger.py): GET /health reports the head `height` with
`appHash` = appHash(height), the state commitment *after* that block. A block's header field
`appHash` is the commitment after the *previous* block, so getBlock(h + 1).appHash is
appHash(h), while getBlock(h).appHash is appHash(h - 1). The tests therefore compare the
/health appHash seen at height h before a stop with the /health appHash of the restarted node
when it is still at h, and with getBlock(h + 1).appHash once the chain has grown past h.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chain.protocol.genesis import Genesis
from chain.protocol.types import SubmitTask, Transfer
from rpc.client import InferchainClient, PresignedTx, TransportError, Wallet, presign
from tests.e2e.network import eventually
from tests.e2e.processes import TRACEBACK, StartValidator, log_text
from tests.helpers import ValidatorProcess

pytestmark = pytest.mark.slow

CYCLES = 3
SENDERS = tuple(Wallet.dev(i) for i in range(4))
RECIPIENTS = tuple(Wallet.dev(i).address for i in range(5, 9))  # one per sender
PROBE_RECIPIENT = Wallet.dev(9).address  # receives only the post-restart probe transfers
COMMITTED_BEFORE_STOP = 25  # the stop condition: this many of the stream's txs seen committed
MAX_TXS_PER_SENDER = 5000  # a bound only; the stop interrupts the stream long before
TX_TIMEOUT = 20.0
DONE_STATUSES = ("committed", "late")


@dataclass(frozen=True, slots=True)
class SentTx:
    tx: PresignedTx
    sender: str
    nonce: int


@dataclass
class Observed:
    """What the client saw on the chain before the stops, to compare after the restarts."""

    txs: dict[str, dict[str, Any]] = field(default_factory=dict)  # txHash -> GET /tx object
    block_hashes: dict[int, str] = field(default_factory=dict)


@dataclass
class Stream:
    """Signed SubmitTask and Transfer transactions from several dev accounts, as fast as the
    node answers, with nonces counted here from the node's pendingNonce."""

    client: InferchainClient
    chain_id: int
    label: str
    # every tx whose sending started, including the ones in flight when the node went away
    sent: list[SentTx] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    enough_accepted: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted: int = 0

    async def send_from(self, wallet: Wallet, recipient: str, first_nonce: int) -> None:
        for i in range(MAX_TXS_PER_SENDER):
            nonce = first_nonce + i
            msg: SubmitTask | Transfer
            if i % 2 == 0:
                msg = SubmitTask(
                    sender=wallet.address,
                    nonce=nonce,
                    schema="text",
                    target_count=1,
                    prompts=f"{self.label}: prompt {i}",
                    model_options='{"model": "echo"}',
                )
            else:
                msg = Transfer(sender=wallet.address, nonce=nonce, to=recipient, amount=1000 + i)
            tx = presign(msg, self.chain_id, wallet.private_key)
            self.sent.append(SentTx(tx, wallet.address, nonce))
            try:
                result = await self.client.send_presigned(tx)
            except TransportError:
                self.interrupted += 1  # the node is gone: the stream of this sender ends
                return
            assert result["txHash"].lower() == tx.tx_hash
            if isinstance(msg, SubmitTask):
                assert result["taskHash"].lower() == tx.digest
            self.accepted.append(tx.tx_hash)
            if len(self.accepted) >= COMMITTED_BEFORE_STOP:
                self.enough_accepted.set()


async def observe_committed(
    client: InferchainClient, stream: Stream, observed: Observed
) -> dict[str, Any]:
    """Wait for the stop condition, record what is committed, and return the last /health."""
    await asyncio.wait_for(stream.enough_accepted.wait(), TX_TIMEOUT)
    for tx_hash in stream.accepted[:COMMITTED_BEFORE_STOP]:
        tx = await client.wait_for_tx(tx_hash, timeout=TX_TIMEOUT)
        assert tx["status"] == "committed", tx
        assert isinstance(tx["blockHeight"], int), tx
        observed.txs[tx_hash] = tx
    for tx_hash in list(stream.accepted[COMMITTED_BEFORE_STOP:]):
        seen = await client.get_tx(tx_hash)
        if seen is not None and seen["status"] in DONE_STATUSES:
            observed.txs[tx_hash] = seen
    for tx_hash in stream.accepted:
        seen = observed.txs.get(tx_hash)
        if seen is None:
            continue
        height = seen["blockHeight"]
        block = await client.get_block(height)
        assert tx_hash in block["txs"], (tx_hash, block)
        observed.block_hashes[height] = block["hash"]
    health = await client.health()
    assert health["height"] >= max(tx["blockHeight"] for tx in observed.txs.values())
    head = await client.get_block(health["height"])
    assert head["hash"] == health["blockHash"]
    observed.block_hashes[health["height"]] = health["blockHash"]
    return health


async def stream_then_stop(
    process: ValidatorProcess, client: InferchainClient, observed: Observed, how: signal.Signals
) -> tuple[dict[str, Any], Stream, int]:
    """Run a stream; once COMMITTED_BEFORE_STOP of its txs are seen committed, send `how`
    (SIGKILL or SIGTERM) while the senders are still sending. Returns the last /health seen
    before the signal, the stream and the exit code."""
    chain_id = await client.chain_id()
    stream = Stream(client, chain_id, label=f"{how.name} at {await client.block_number()}")
    first_nonces = [(await client.get_account(w.address))["pendingNonce"] for w in SENDERS]
    senders = [
        asyncio.create_task(stream.send_from(wallet, recipient, nonce))
        for wallet, recipient, nonce in zip(SENDERS, RECIPIENTS, first_nonces, strict=True)
    ]
    returncode: int | None = None
    try:
        health = await observe_committed(client, stream, observed)
        if how == signal.SIGKILL:
            process.kill()
            assert process.proc is not None
            returncode = process.proc.returncode
        else:
            returncode = process.terminate()
    finally:
        if returncode is None:  # the test failed before the stop: end the stream
            for sender in senders:
                sender.cancel()
        outcomes = await asyncio.gather(*senders, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    # The signal landed while the stream was running, not after it had ended by itself.
    assert stream.interrupted > 0, "every sender finished before the stop"
    return health, stream, returncode


async def check_restarted(
    client: InferchainClient, before: dict[str, Any], observed: Observed, stream: Stream
) -> dict[str, Any]:
    """The restarted node holds everything seen before the stop; returns its first /health."""
    health = await client.health()
    height = before["height"]
    assert health["genesisHash"] == before["genesisHash"]
    assert health["height"] >= height
    assert health["height"] >= max(tx["blockHeight"] for tx in observed.txs.values())
    if health["height"] == height:
        assert (health["appHash"], health["blockHash"]) == (before["appHash"], before["blockHash"])
    assert (await client.get_block(height))["hash"] == before["blockHash"]
    for block_height, block_hash in sorted(observed.block_hashes.items()):
        block = await client.get_block(block_height)
        assert block["hash"] == block_hash, f"block {block_height} changed across the restart"
    for tx_hash, seen in observed.txs.items():
        now = await client.get_tx(tx_hash)
        assert now is not None, f"committed tx {tx_hash} (block {seen['blockHeight']}) is lost"
        assert (now["status"], now["blockHeight"]) == (seen["status"], seen["blockHeight"])
        assert tx_hash in (await client.get_block(seen["blockHeight"]))["txs"]

    # The ledger is a prefix of what was sent, with everything answered in it: the mempool
    # journal gives the restarted node back what waited (PROTOCOL 5.1), and it commits them.
    # Once its mempool is empty, per sender exactly the txs below its committed nonce are in
    # blocks, every answered one among them; the others (in flight at the stop) are not.
    drained = await eventually(
        client.health, lambda h: h["mempool"] == 0, TX_TIMEOUT, "the mempool to drain"
    )
    nonces = {w.address: (await client.get_account(w.address))["nonce"] for w in SENDERS}
    answered = set(stream.accepted)
    for sent in stream.sent:
        now = await client.get_tx(sent.tx.tx_hash)
        if sent.nonce < nonces[sent.sender]:
            assert now is not None and now["status"] == "committed", (sent, now)
            assert now["blockHeight"] <= drained["height"], (sent, now)
        else:
            assert sent.tx.tx_hash not in answered, f"answered {sent} is lost"
            assert now is None, (sent, now)
    return health


async def probe_transfer(client: InferchainClient, before: dict[str, Any]) -> None:
    """The chain keeps working: a transfer with the node's next nonce commits after the old
    head, and block before.height + 1 carries the appHash reported at before.height."""
    wallet = SENDERS[0]
    account = await client.get_account(wallet.address)
    recipient_before = int((await client.get_account(PROBE_RECIPIENT))["balance"])
    nonce = account["pendingNonce"]
    amount = 10**15 + before["height"]
    tx_hash = await client.transfer(wallet, PROBE_RECIPIENT, amount, nonce=nonce)
    tx = await client.wait_for_tx(tx_hash, timeout=TX_TIMEOUT)
    assert tx["status"] == "committed", tx
    assert tx["blockHeight"] > before["height"]
    assert (await client.get_account(wallet.address))["nonce"] == nonce + 1
    recipient_after = int((await client.get_account(PROBE_RECIPIENT))["balance"])
    assert recipient_after == recipient_before + amount

    following = await client.get_block(before["height"] + 1)
    assert following["prevHash"] == before["blockHash"]
    assert following["appHash"] == before["appHash"], (
        "the state after the restart differs from the state reported before the stop"
    )


async def test_sigkill_under_load_then_restart_keeps_every_committed_tx(
    tmp_path: Path, validators: StartValidator, dev_genesis: tuple[Genesis, Path]
) -> None:
    _genesis, genesis_path = dev_genesis
    data_dir = tmp_path / "ledger"
    observed = Observed()
    process = validators(genesis_path, data_dir)
    for cycle in range(CYCLES):
        async with InferchainClient(process.url) as client:
            before, stream, returncode = await stream_then_stop(
                process, client, observed, signal.SIGKILL
            )
        assert returncode == -signal.SIGKILL
        assert len(observed.txs) >= COMMITTED_BEFORE_STOP * (cycle + 1)

        process = validators(genesis_path, data_dir)
        async with InferchainClient(process.url) as client:
            await check_restarted(client, before, observed, stream)
            await probe_transfer(client, before)
    assert TRACEBACK not in log_text(process), log_text(process)


async def test_sigterm_exits_zero_and_restarts_at_the_same_state(
    tmp_path: Path, validators: StartValidator, dev_genesis: tuple[Genesis, Path]
) -> None:
    """A quiet node (transfers only, all committed, so no block is due) stopped with SIGTERM
    exits 0 and restarts at exactly the same height, block hash and appHash."""
    _genesis, genesis_path = dev_genesis
    data_dir = tmp_path / "ledger"
    process = validators(genesis_path, data_dir)
    async with InferchainClient(process.url) as client:
        hashes = [
            await client.transfer(wallet, recipient, 10**18)
            for wallet, recipient in zip(SENDERS, RECIPIENTS, strict=True)
            for _ in range(3)
        ]
        txs = [await client.wait_for_tx(h, timeout=TX_TIMEOUT) for h in hashes]
        assert all(tx["status"] == "committed" for tx in txs), txs
        before = await client.health()
    assert before["mempool"] == 0
    assert before["height"] >= max(tx["blockHeight"] for tx in txs) > 0

    assert process.terminate() == 0, log_text(process)
    assert TRACEBACK not in log_text(process), log_text(process)

    process = validators(genesis_path, data_dir)
    async with InferchainClient(process.url) as client:
        after = await client.health()
        keys = ("genesisHash", "height", "blockHash", "appHash")
        assert {k: after[k] for k in keys} == {k: before[k] for k in keys}
        for tx_hash, tx in zip(hashes, txs, strict=True):
            assert await client.get_tx(tx_hash) == tx
        await probe_transfer(client, before)


async def test_sigterm_under_load_exits_zero_and_keeps_every_committed_tx(
    tmp_path: Path, validators: StartValidator, dev_genesis: tuple[Genesis, Path]
) -> None:
    _genesis, genesis_path = dev_genesis
    data_dir = tmp_path / "ledger"
    observed = Observed()
    process = validators(genesis_path, data_dir)
    async with InferchainClient(process.url) as client:
        before, stream, returncode = await stream_then_stop(
            process, client, observed, signal.SIGTERM
        )
    assert returncode == 0, log_text(process)
    assert TRACEBACK not in log_text(process), log_text(process)

    process = validators(genesis_path, data_dir)
    async with InferchainClient(process.url) as client:
        await check_restarted(client, before, observed, stream)
        await probe_transfer(client, before)
