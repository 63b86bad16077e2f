"""Crash loop: under a steady load, one validator of four is SIGKILLed at random moments and
restarted, again and again. After every restart its ledger opens; every transaction a client
saw in one of its committed blocks is still there, at the same height and index; and its
blocks and appHashes equal those of a validator that was never killed.

The default run kills 10 times; `INFERCHAIN_LONG=1` kills `INFERCHAIN_LONG_KILLS` times
(default 200) under the `long` marker. The figures of a run are printed (`-s` shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from dataclasses import dataclass, field

import pytest

from chain.protocol.types import Transfer
from rpc.client import InferchainClient, PresignedTx, TransportError, Wallet, presign
from tests.e2e.network import LocalNetwork

LONG = os.environ.get("INFERCHAIN_LONG") == "1"
KILLS = int(os.environ.get("INFERCHAIN_LONG_KILLS", "200")) if LONG else 10
VICTIM = 3
WITNESS = 0  # never killed
SENDERS = (5, 6, 7)


@dataclass
class Load:
    """Transfers sent through the witness, and what the victim showed committed."""

    pending: list[PresignedTx] = field(default_factory=list)
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # tx hash -> (height, index)
    sent: int = 0
    checked: int = 0  # how many of `seen` (in order) a check after a restart has covered
    checks: int = 0  # transaction checks made, over all restarts


async def send_forever(net: LocalNetwork, load: Load, stop: asyncio.Event) -> None:
    chain_id = net.genesis.chain_id
    wallets = [Wallet.dev(i) for i in SENDERS]
    nonces = [0] * len(wallets)
    recipient = Wallet.dev(9).address
    client = net.clients[WITNESS]
    while not stop.is_set():
        for w, wallet in enumerate(wallets):
            msg = Transfer(wallet.address, nonces[w], recipient, 1)
            tx = presign(msg, chain_id, wallet.private_key)
            await client.send_presigned(tx)
            nonces[w] += 1
            load.pending.append(tx)
            load.sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)  # a steady rate, about 60 tx/s


BATCH = 500
SAMPLE = 1000


async def committed_records(
    client: InferchainClient, tx_hashes: list[str]
) -> dict[str, tuple[int, int]]:
    """(height, index) of each of `tx_hashes` the node holds in a committed block, asked in
    batches of getTransaction calls."""
    found = {}
    for start in range(0, len(tx_hashes), BATCH):
        chunk = tx_hashes[start : start + BATCH]
        answers = await client.batch([("getTransaction", {"txHash": h}) for h in chunk])
        for tx_hash, answer in zip(chunk, answers, strict=True):
            if isinstance(answer, dict) and answer.get("status") == "committed":
                found[tx_hash] = (answer["blockHeight"], answer["index"])
    return found


async def watch(victim: InferchainClient, load: Load) -> None:
    """Record the transactions the victim reports in a committed block."""
    try:
        found = await committed_records(victim, [tx.tx_hash for tx in load.pending])
    except TransportError:
        return  # down: try again later
    load.seen.update(found)
    load.pending = [tx for tx in load.pending if tx.tx_hash not in found]


async def check_after_restart(
    net: LocalNetwork, load: Load, rng: random.Random | None = None
) -> int:
    """Every transaction seen committed is still there (with `rng`: those seen since the last
    check and a random sample of SAMPLE older ones, to keep a long run linear)."""
    victim = net.clients[VICTIM]
    seen = list(load.seen)
    older, new = seen[: load.checked], seen[load.checked :]
    if rng is not None and len(older) > SAMPLE:
        older = rng.sample(older, SAMPLE)
    chosen = new + older
    load.checked = len(seen)
    held = await committed_records(victim, chosen)
    lost = {h: load.seen[h] for h in chosen if held.get(h) != load.seen[h]}
    load.checks += len(chosen)
    assert not lost, f"committed transactions gone or moved after a restart: {lost}"
    head = await victim.block_number()
    mine = await victim.get_block(head)
    theirs = await net.clients[WITNESS].get_block(head)
    assert (mine["hash"], mine["appHash"]) == (theirs["hash"], theirs["appHash"])
    return head


async def crash_loop(net: LocalNetwork, kills: int) -> None:
    net.start_all()
    await net.wait_heights([0, 1, 2, 3], 2)
    load = Load()
    stop = asyncio.Event()
    sender = asyncio.create_task(send_forever(net, load, stop))
    rng = random.Random(20261122)
    heads = []
    try:
        for _ in range(kills):
            moment = rng.uniform(0.05, 0.4)
            loop = asyncio.get_running_loop()
            until = loop.time() + moment
            while loop.time() < until:  # watch the victim until the random kill moment
                await watch(net.clients[VICTIM], load)
            net.kill(VICTIM)
            await net.start_validator(VICTIM)  # once the ledger is open and the RPC listens
            await check_after_restart(net, load, rng)
            # it syncs what it missed and takes part again before the next kill
            network_head = (await net.heights([WITNESS]))[WITNESS]
            await net.wait_heights([VICTIM], network_head, timeout=30)
            heads.append(await check_after_restart(net, load, rng))
        stop.set()
        await sender
        await net.wait_heights([VICTIM], max((await net.heights()).values()))
        await watch(net.clients[VICTIM], load)
        await check_after_restart(net, load)  # every one of them, at the end
    finally:
        stop.set()
        if not sender.done():
            sender.cancel()
    assert len(load.seen) > kills, "the load did not reach the victim's blocks"
    print(
        f"\ncrash loop: {kills} kills survived, {load.sent} transactions sent, "
        f"{len(load.seen)} seen committed by the victim, {load.checks} checks of them "
        "after restarts, "
        f"victim heads {min(heads)}..{max(heads)}, 0 lost"
    )
    last = min((await net.heights()).values())
    await net.assert_same_chain([0, 1, 2, 3], last)


async def test_crash_loop(network: LocalNetwork) -> None:
    await crash_loop(network, 10)


@pytest.mark.long
@pytest.mark.skipif(not LONG, reason="the long crash loop: INFERCHAIN_LONG=1")
async def test_crash_loop_long(network: LocalNetwork) -> None:
    await crash_loop(network, KILLS)
