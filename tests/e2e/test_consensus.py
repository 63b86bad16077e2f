"""Several validators in real processes agree on every block through Tendermint (PROTOCOL 6).

Four validators of equal stake: any three are a quorum, two are not. Blocks every 200 ms,
every validator checks the supply invariant after every block (`--check-invariants`; a
broken invariant stops the process, and the test then fails).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chain.node.ledger import HISTORY, Ledger
from chain.node.node import dev_validator_key
from chain.node.signer import PrivValidator
from chain.protocol.consensus import VoteMsg
from chain.protocol.state import State, get_account, put_account
from chain.protocol.types import Transfer
from rpc.client import RpcError, Wallet, presign
from tests.e2e.network import LocalNetwork, eventually


async def test_four_validators_commit_the_same_blocks_and_take_txs_from_any(
    network: LocalNetwork,
) -> None:
    network.start_all()
    await network.wait_heights([0, 1, 2, 3], 2)
    recipient = Wallet.dev(9).address
    before = int((await network.clients[0].get_account(recipient))["balance"])
    # one transfer through each validator, from four different senders
    hashes = [
        await client.transfer(Wallet.dev(k + 1), recipient, (k + 1) * 10**18)
        for k, client in enumerate(network.clients)
    ]
    for tx_hash in hashes:
        for client in network.clients:
            tx = await client.wait_for_tx(tx_hash, timeout=30)
            assert tx["status"] == "committed", tx
    await network.wait_heights([0, 1, 2, 3], 6)
    last = min((await network.heights()).values())
    await network.assert_same_chain([0, 1, 2, 3], last)
    for client in network.clients:
        balance = int((await client.get_account(recipient, last))["balance"])
        assert balance == before + 10 * 10**18
    # the blocks were proposed by every validator in turn and carry their commits
    blocks = await network.blocks(0, last)
    assert {b["proposer"] for b in blocks} == {v.address for v in network.genesis.validators}
    for block in blocks[1:]:
        assert len(block["lastCommit"]) >= 3


async def test_one_down_goes_on_two_down_halts_and_the_chain_resumes(
    network: LocalNetwork,
) -> None:
    network.start_all()
    await network.wait_heights([0, 1, 2, 3], 2)

    network.kill(3)
    start = min((await network.heights([0, 1, 2])).values())
    await network.wait_heights([0, 1, 2], start + 6)  # with validator 3 among the proposers

    network.kill(2)
    # a block whose precommits were already out may still commit; after that, none can:
    # two of four validators are not more than 2/3 of the voting power
    halted = max((await network.heights([0, 1])).values()) + 1
    with pytest.raises(AssertionError, match="timed out"):
        await eventually(
            lambda: network.heights([0, 1]),
            lambda seen: max(seen.values()) > halted,
            3.0,  # 15 block intervals
            "a block committed by two of four validators",
        )
    survivors = await network.heights([0, 1])
    await network.assert_same_chain([0, 1], min(survivors.values()))
    # while the chain is halted, a transaction sent to one validator waits in the mempool of
    # the other too: gossip, not a block, brought it there
    tx_hash = await network.clients[0].transfer(Wallet.dev(5), Wallet.dev(6).address, 1)
    pending = await network.clients[1].wait_for_tx(tx_hash, timeout=10, statuses=("pending",))
    assert pending["status"] == "pending"

    network.start(2)
    network.start(3)
    resumed = max(survivors.values()) + 4
    await network.wait_heights([0, 1, 2, 3], resumed, timeout=60)
    await network.assert_same_chain([0, 1, 2, 3], resumed)
    for client in network.clients:
        assert (await client.wait_for_tx(tx_hash, timeout=30))["status"] == "committed"
    # validator 3 was behind by many blocks: it fetched them from a peer
    assert "synced" in network.log(3)


async def test_a_restarted_validator_catches_up_and_votes_again(network: LocalNetwork) -> None:
    network.start_all()
    await network.wait_heights([0, 1, 2, 3], 2)
    network.kill(3)
    behind = min((await network.heights([0, 1, 2])).values())
    await network.wait_heights([0, 1, 2], behind + 10)

    network.start(3)
    target = max((await network.heights([0, 1, 2])).values()) + 1
    await network.wait_heights([3], target, timeout=60)
    assert "synced" in network.log(3)
    caught_up = (await network.heights([3]))[3]

    # it votes again: its precommits are in the commits of blocks after it caught up
    address = network.genesis.validators[3].address

    async def signers_since() -> set[str]:
        head = await network.clients[0].block_number()
        signed: set[str] = set()
        for height in range(caught_up + 1, head + 1):
            block = await network.clients[0].get_block(height)
            signed |= {vote["validator"] for vote in block["lastCommit"]}
        return signed

    await eventually(signers_since, lambda signed: address in signed, 30, f"{address} voting")
    last = min((await network.heights()).values())
    await network.assert_same_chain([0, 1, 2, 3], last)


async def test_a_restarted_validator_never_signs_a_conflicting_vote(
    network: LocalNetwork,
) -> None:
    network.start_all()
    await network.wait_heights([0, 1, 2, 3], 3)
    for k in range(4):
        network.kill(k)
    heads = {}
    for k in range(4):
        ledger = Ledger.open(network.data_dir(k), network.genesis)
        heads[k] = ledger.head.height
        ledger.close()
    # what validator 3 signed before the crash, at the height the network decides next: a
    # prevote and a precommit for a block nobody else has, in the first round of that height
    # it had signed nothing in (it may have prevoted in round 0 already before the kill)
    height = max(heads.values()) + 1
    other_block = b"\xee" * 32
    ledger = Ledger.open(network.data_dir(3), network.genesis)
    try:
        priv = PrivValidator(
            dev_validator_key(network.genesis, 3), network.genesis.chain_id, ledger
        )
        address = priv.key.address
        rounds = ledger.own_rounds(height)
        round_ = rounds[-1] + 1 if rounds else 0
        for vote_type in ("prevote", "precommit"):
            priv.sign_vote(VoteMsg(height, round_, vote_type, other_block, address))
        votes_signed = len(ledger.own_votes(height))
    finally:
        ledger.close()

    network.start_all()
    await network.wait_heights([0, 1, 2, 3], height + 2, timeout=60)
    # no validator holds a precommit of validator 3 in that round for another block
    for client in network.clients:
        for block in (await client.get_block(height), await client.get_block(height + 1)):
            votes = block["commit"] if block["height"] == height else block["lastCommit"]
            for vote in votes:
                if vote["validator"] == address and vote["round"] == round_:
                    assert vote["blockHash"] == "0x" + other_block.hex(), vote
    await network.assert_same_chain([0, 1, 2, 3], height + 2)
    # it resumed in the round it had signed in, with its votes counted as already sent, so
    # it was never even asked to sign again there
    log = network.log(3)
    assert f"resuming height {height} at round {round_} with {votes_signed} votes" in log
    assert "refusing to sign" not in log


async def test_a_validator_whose_state_differs_stops_with_an_app_hash_error(
    network: LocalNetwork,
) -> None:
    network.start_all()
    await network.wait_heights([0, 1, 2, 3], 3)
    network.kill(3)
    # damage validator 3's state behind the ledger's back: one base unit moves from one
    # validator to another (the supply still adds up; the next block rewards both), and the
    # last version of each record in the history says the same, so the ledger's own check
    # at start finds nothing: only the next block's appHash can tell
    ledger = Ledger.open(network.data_dir(3), network.genesis)
    try:
        state = State(ledger.store)
        for validator, delta in zip(network.genesis.validators, (-1, 1, 0, 0), strict=True):
            account = get_account(state, validator.address)
            put_account(state, validator.address, replace(account, balance=account.balance + delta))
        changes = dict(state.write_set())
        for key, value in list(changes.items()):
            latest = next(iter(ledger.store.iterate(HISTORY + key, reverse=True)))
            changes[latest[0]] = value
        ledger.store.write(changes)
    finally:
        ledger.close()

    process = network.start(3)
    assert process.proc is not None
    returncode = await asyncio.to_thread(process.proc.wait, 60)
    assert returncode == 2
    log = network.log(3)
    assert "appHash mismatch" in log and "Traceback" not in log
    # the others never noticed: they go on, on one chain
    height = min((await network.heights([0, 1, 2])).values())
    await network.wait_heights([0, 1, 2], height + 3)
    await network.assert_same_chain([0, 1, 2], height + 3)


async def test_a_burst_through_one_validator_reaches_every_ledger(network: LocalNetwork) -> None:
    network.start_all()
    await network.wait_heights([0, 1, 2, 3], 2)
    chain_id = network.genesis.chain_id
    recipient = Wallet.dev(9).address
    presigned = [
        presign(Transfer(wallet.address, nonce, recipient, 1), chain_id, wallet.private_key)
        for wallet in (Wallet.dev(1), Wallet.dev(2), Wallet.dev(3))
        for nonce in range(150)
    ]
    entry = network.clients[1]
    for start in range(0, len(presigned), 100):
        chunk = presigned[start : start + 100]
        results = await entry.batch([(tx.method, tx.params) for tx in chunk])
        assert [str(r) for r in results if isinstance(r, RpcError)] == []
    last = presigned[-1].tx_hash
    for client in network.clients:
        assert (await client.wait_for_tx(last, timeout=60))["status"] == "committed"
    heights = await network.heights()
    await network.assert_same_chain([0, 1, 2, 3], min(heights.values()))
    for tx in presigned[::50]:
        for client in network.clients:
            assert (await client.get_tx(tx.tx_hash) or {}).get("status") == "committed"


async def test_each_validator_times_the_blocks_it_decides(network: LocalNetwork) -> None:
    """GET /metrics of validators under Tendermint (PROTOCOL 5.7): their peers up, and each
    block decided by consensus timed from the start of its height to its commit."""
    network.start_all()
    await network.wait_heights([0, 1, 2, 3], 3)

    async def scrape(k: int) -> dict[str, float]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(network.clients[k].url + "/metrics") as resp,
        ):
            assert resp.status == 200
            text = await resp.text()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }

    # A validator started after the others may take its first blocks by block sync (it
    # learns their heights from their first answers) before it decides one itself.
    for k in range(4):
        samples = await eventually(
            lambda k=k: scrape(k),
            lambda seen: (
                seen.get("inferchain_peers_up") == 3
                and seen.get("inferchain_block_commit_seconds_count", 0) >= 1
            ),
            30,
            f"validator {k} with its three peers up, having decided a block",
        )
        height = samples["inferchain_height"]
        committed = samples["inferchain_block_commit_seconds_count"]
        assert height >= 3
        assert 1 <= committed <= height  # a block taken by block sync is not timed
        assert samples["inferchain_block_commit_seconds_sum"] > 0
        assert samples["inferchain_round"] >= 0
