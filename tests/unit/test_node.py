"""chain.node: block production by a single validator over a LevelDB ledger, in-process.

Blocks are produced by calling `produce_block()` directly; one test runs the automine loop.
Each block must link to its predecessor, carry the previous appHash and the signed precommit
of the previous block (PROTOCOL 6), pay the block reward (4.9) and keep the supply invariant
(4.10).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chain.node.ledger import Head
from chain.node.node import Node, ValidatorKey, dev_validator_key
from chain.protocol import crypto
from chain.protocol.blocks import apply_tx, block_hash, end_block, execute_block, next_app_hash
from chain.protocol.errors import ChainError, GenesisError, NonceMismatch
from chain.protocol.genesis import DEV_MNEMONIC, Genesis, Params, dev_genesis, parse_genesis
from chain.protocol.state import State, get_account
from chain.protocol.types import (
    Account,
    Block,
    BlockContext,
    Message,
    SignedTx,
    Stake,
    SubmitTask,
    Transfer,
    Vote,
)

E18 = 10**18
BALANCE = 10_000 * E18


def genesis_with(**params: Any) -> Genesis:
    return parse_genesis(dev_genesis(mnemonic=DEV_MNEMONIC, params=Params(**params)))


GENESIS = genesis_with(block_time_ms=0)
REWARD = GENESIS.params.block_reward
FEE = GENESIS.params.transfer_fee  # of every Transfer, burned (PROTOCOL 4.12)
KEYS = {
    crypto.address_of_private_key(k): k
    for k in (crypto.dev_private_key(DEV_MNEMONIC, i) for i in [0, 1, 2])
}
ALICE, BOB, CAROL = KEYS
VALIDATOR = GENESIS.validators[0]


def sign(msg: Message, genesis: Genesis = GENESIS) -> SignedTx:
    return crypto.sign_message(msg, genesis.chain_id, KEYS[getattr(msg, msg.SIGNER)])


async def start_node(path: Path, genesis: Genesis = GENESIS) -> Node:
    node = Node(genesis, path, dev_validator_key(genesis, None), check_invariants=True)
    await node.setup()
    return node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    node = await start_node(tmp_path / "ledger")
    yield node
    await node.cleanup()


def produce(node: Node) -> Head:
    head = node.produce_block()
    node.assert_supply_invariant()
    held, expected = node.ledger.supply_check()
    assert held == expected
    return head


def test_dev_validator_key_of_a_one_validator_genesis() -> None:
    key = dev_validator_key(GENESIS, None)
    assert key.address == VALIDATOR.address
    assert key.public_key == VALIDATOR.consensus_pub_key
    by_index = dev_validator_key(GENESIS, 0)
    assert (by_index.address, by_index.public_key) == (key.address, key.public_key)
    expected_seed = crypto.keccak(crypto.dev_private_key(DEV_MNEMONIC, 100))
    assert key.public_key == crypto.ed25519_public_bytes(crypto.ed25519_private_key(expected_seed))


def test_dev_validator_key_errors() -> None:
    with pytest.raises(GenesisError):
        dev_validator_key(GENESIS, 1)
    three = parse_genesis(dev_genesis(mnemonic=DEV_MNEMONIC, validators=3))
    with pytest.raises(GenesisError) as info:
        dev_validator_key(three, None)
    assert info.value.field == "validators"
    assert dev_validator_key(three, 2).address == three.validators[2].address
    raw = dev_genesis(mnemonic=DEV_MNEMONIC)
    del raw["dev"]
    with pytest.raises(GenesisError) as info:
        dev_validator_key(parse_genesis(raw), None)
    assert info.value.field == "dev"


def test_node_refuses_a_validator_key_not_in_genesis(tmp_path: Path) -> None:
    stranger = ValidatorKey.from_account_key(crypto.dev_private_key(DEV_MNEMONIC, 101))
    with pytest.raises(GenesisError) as info:
        Node(GENESIS, tmp_path / "ledger", stranger)
    assert info.value.field == "validators"
    assert stranger.address in str(info.value)
    assert not (tmp_path / "ledger").exists()


def test_node_refuses_a_wrong_consensus_key_for_a_genesis_validator(tmp_path: Path) -> None:
    right = dev_validator_key(GENESIS, None)
    other_seed = crypto.keccak(b"another key")
    wrong = ValidatorKey(right.address, crypto.ed25519_private_key(other_seed))
    with pytest.raises(GenesisError) as info:
        Node(GENESIS, tmp_path / "ledger", wrong)
    assert info.value.field == "validators.consensusPubKey"


async def test_node_is_not_usable_before_setup(tmp_path: Path) -> None:
    node = Node(GENESIS, tmp_path / "ledger", dev_validator_key(GENESIS, None))
    with pytest.raises(ChainError):
        node.produce_block()
    with pytest.raises(ChainError):
        node.submit(sign(Transfer(ALICE, 0, BOB, 1)))


async def test_blocks_link_and_carry_the_previous_app_hash(node: Node) -> None:
    heads = [node.head]
    for n in range(4):
        if n % 2 == 0:
            node.submit(sign(Transfer(ALICE, n // 2, BOB, 1)))
        heads.append(produce(node))
    assert [h.height for h in heads] == [0, 1, 2, 3, 4]
    for height in range(1, 5):
        stored = node.ledger.get_block(height)
        assert stored is not None
        block = stored.block
        assert block.height == height
        assert block.prev_hash == heads[height - 1].hash
        assert block.app_hash == heads[height - 1].app_hash
        assert block.proposer == VALIDATOR.address
        assert stored.hash == block_hash(block) == heads[height].hash
        assert block.time >= heads[height - 1].time
    assert len({h.app_hash for h in heads}) == 5


def verify_vote_signature(
    genesis: Genesis, vote_height: int, block_hash_: bytes, vote: Vote
) -> bool:
    data = crypto.vote_sign_bytes(genesis.chain_id, vote_height, 0, "precommit", block_hash_)
    return crypto.ed25519_verify(genesis.validators[0].consensus_pub_key, vote.signature, data)


async def test_last_commit_carries_the_signed_precommit_of_the_previous_block(node: Node) -> None:
    for _ in range(3):
        produce(node)
    first = node.ledger.get_block(1)
    assert first is not None
    assert first.block.last_commit == ()  # genesis has no commit
    for height in (2, 3):
        stored = node.ledger.get_block(height)
        previous = node.ledger.get_block(height - 1)
        assert stored is not None and previous is not None
        (vote,) = stored.block.last_commit
        assert vote == previous.commit[0]
        assert (vote.chain_id, vote.height, vote.round, vote.type) == (
            GENESIS.chain_id,
            height - 1,
            0,
            "precommit",
        )
        assert vote.block_hash == previous.hash
        assert vote.validator == VALIDATOR.address
        assert verify_vote_signature(GENESIS, height - 1, previous.hash, vote)
        # the signature does not verify for anything else
        assert not verify_vote_signature(GENESIS, height, previous.hash, vote)
        assert not verify_vote_signature(GENESIS, height - 1, stored.hash, vote)
    latest = node.ledger.get_block(3)
    assert latest is not None
    (own,) = latest.commit
    assert own.block_hash == latest.hash
    assert verify_vote_signature(GENESIS, 3, latest.hash, own)


async def test_block_rewards_go_to_the_validator(node: Node) -> None:
    assert get_account(node.ledger.store, VALIDATOR.address) == Account(0, 10_000 * E18, 0)
    for n in range(1, 4):
        produce(node)
        account = get_account(node.ledger.store, VALIDATOR.address)
        assert account == Account(n * REWARD, 10_000 * E18, 0)
    held, expected = node.ledger.supply_check()
    assert held == expected == GENESIS.supply + 3 * REWARD


async def test_transactions_are_committed_with_status_and_effects(node: Node) -> None:
    transfer = sign(Transfer(ALICE, 0, BOB, 5 * E18))
    task = sign(SubmitTask(ALICE, 1, "", 2, "hi", '{"model": "m"}'))
    node.submit(transfer)
    node.submit(task)
    assert node.tx_record(transfer.hash).status == "pending"  # type: ignore[union-attr]
    head = produce(node)
    for index, tx in enumerate((transfer, task)):
        record = node.tx_record(tx.hash)
        assert record is not None
        assert (record.status, record.height, record.index) == ("committed", head.height, index)
        assert record.tx == tx
    fee = GENESIS.params.task_base_fee + 2 * GENESIS.params.task_fee_per_node
    assert get_account(node.ledger.store, ALICE) == Account(BALANCE - 5 * E18 - fee - FEE, 0, 2)
    assert get_account(node.ledger.store, BOB).balance == BALANCE + 5 * E18
    stored_task = node.ledger.get_task(task.digest)
    assert stored_task is not None
    assert (stored_task.created_height, stored_task.status) == (head.height, "submitted")
    assert list(node.ledger.task_hashes_of_sender(ALICE)) == [task.digest]
    assert len(node.mempool) == 0
    assert node.tx_record(b"\x01" * 32) is None


async def test_more_than_max_block_txs_spill_into_the_next_block(tmp_path: Path) -> None:
    genesis = genesis_with(block_time_ms=0, max_block_txs=3)
    node = await start_node(tmp_path / "ledger", genesis)
    try:
        txs = [sign(Transfer(ALICE, n, BOB, n + 1), genesis) for n in range(5)]
        txs.append(sign(Transfer(BOB, 0, CAROL, 1), genesis))
        for tx in txs:
            node.submit(tx)
        produce(node)
        block1 = node.ledger.get_block(1)
        assert block1 is not None and block1.block.txs == tuple(t.hash for t in txs[:3])
        assert len(node.mempool) == 3
        assert node.mempool.take(10) == txs[3:]
        produce(node)
        block2 = node.ledger.get_block(2)
        assert block2 is not None and block2.block.txs == tuple(t.hash for t in txs[3:])
        assert len(node.mempool) == 0
        produce(node)
        block3 = node.ledger.get_block(3)
        assert block3 is not None and block3.block.txs == ()
        assert get_account(node.ledger.store, ALICE) == Account(BALANCE - 15 - 5 * FEE, 0, 5)
        assert get_account(node.ledger.store, CAROL).balance == BALANCE + 1
        for tx in txs:
            record = node.ledger.get_tx(tx.hash)
            assert record is not None and record.status == "committed"
    finally:
        await node.cleanup()


async def test_tx_that_no_longer_applies_is_recorded_late(node: Node) -> None:
    """A competing block (here committed straight to the ledger, as another validator's block
    would be) spends ALICE's nonce 0 while her own transfer waits in the mempool."""
    waiting = sign(Transfer(ALICE, 0, BOB, 9))
    node.submit(waiting)
    head = node.head
    rival = sign(Transfer(ALICE, 0, CAROL, 4))
    ctx = BlockContext(head.height + 1, head.time, VALIDATOR.address)
    state = State(node.ledger.store)
    apply_tx(state, GENESIS.params, ctx, rival)
    end_block(state, GENESIS.params, ctx, [])
    block = Block(ctx.height, ctx.time, ctx.proposer, head.hash, (rival.hash,), head.app_hash)
    node.ledger.commit_block(block, (), [(rival, "committed")], state.write_set())

    new_head = produce(node)
    stored = node.ledger.get_block(new_head.height)
    assert stored is not None and stored.block.txs == (waiting.hash,)
    record = node.tx_record(waiting.hash)
    assert record is not None
    assert (record.status, record.height, record.index) == ("late", new_head.height, 0)
    # it changed nothing: only the rival transfer moved funds
    assert get_account(node.ledger.store, ALICE) == Account(BALANCE - 4 - FEE, 0, 1)
    assert get_account(node.ledger.store, BOB).balance == BALANCE
    assert get_account(node.ledger.store, CAROL).balance == BALANCE + 4
    assert len(node.mempool) == 0
    with pytest.raises(NonceMismatch):
        node.submit(sign(Transfer(ALICE, 0, BOB, 9)))


async def test_supply_invariant_after_every_block(node: Node) -> None:
    msgs: list[Message] = [
        Transfer(ALICE, 0, BOB, 3 * E18),
        SubmitTask(BOB, 0, "", 16, "p", "{}"),
        Stake(CAROL, 0, 1000 * E18),
        Transfer(BOB, 1, "0x000000000000000000000000000000000000dEaD", 1),
    ]
    burned = 0
    for n, msg in enumerate(msgs, start=1):
        node.submit(sign(msg))
        produce(node)
        burned += FEE if isinstance(msg, Transfer) else 0
        held, expected = node.ledger.supply_check()
        assert expected == GENESIS.supply + n * REWARD - burned
        assert held == expected


async def test_restart_gives_the_same_head(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    node = await start_node(path)
    node.submit(sign(Transfer(ALICE, 0, BOB, 1)))
    produce(node)
    produce(node)
    head = node.head
    alice = get_account(node.ledger.store, ALICE)
    await node.cleanup()

    again = await start_node(path)
    try:
        assert again.head == head
        assert get_account(again.ledger.store, ALICE) == alice
        assert len(again.mempool) == 0
        again.submit(sign(Transfer(ALICE, 1, BOB, 1)))
        new_head = produce(again)
        stored = again.ledger.get_block(3)
        assert new_head.height == 3
        assert stored is not None and stored.block.prev_hash == head.hash
        assert stored.block.app_hash == head.app_hash
        (vote,) = stored.block.last_commit  # block 2's commit survived the restart
        assert vote.height == 2 and vote.block_hash == head.hash
    finally:
        await again.cleanup()


async def test_second_node_on_the_same_dir_is_refused(node: Node, tmp_path: Path) -> None:
    other = Node(GENESIS, tmp_path / "ledger", dev_validator_key(GENESIS, None))
    with pytest.raises(ChainError, match="in use"):
        await other.setup()
    assert node.head.height == 0


async def test_dev_sign_signs_for_dev_accounts(node: Node) -> None:
    tx = node.dev_sign(Transfer(ALICE, 0, BOB, 1))
    assert tx.signer == ALICE
    assert crypto.recover_digest(tx.digest, tx.signature) == ALICE
    node.submit(tx)
    with pytest.raises(ChainError):
        node.dev_sign(Transfer(VALIDATOR.address, 0, BOB, 1))


async def test_automine_produces_a_block_when_a_tx_waits(node: Node) -> None:
    runner = asyncio.create_task(node.run_forever())
    try:
        tx = sign(Transfer(ALICE, 0, BOB, 1))
        node.submit(tx)
        head = await node.wait_for_height(1, timeout=15)
        assert head.height >= 1
        record = node.ledger.get_tx(tx.hash)
        assert record is not None and record.status == "committed" and record.height == 1
        node.submit(sign(Transfer(ALICE, 1, BOB, 1)))
        head = await node.wait_for_height(2, timeout=15)
        assert get_account(node.ledger.store, ALICE).nonce == 2
    finally:
        node.stop()
        await asyncio.wait_for(runner, 15)
    assert runner.exception() is None


@pytest.mark.parametrize("rounds", [1, 3])
async def test_a_block_of_the_admitted_transactions_is_what_executing_them_gives(
    node: Node, rounds: int
) -> None:
    """Dev mode makes a block of every admitted transaction from the mempool's state (only
    end_block runs again); executing the block from the previous state, as any validator
    would, gives the same write set and appHash. Also with transactions that fail at
    admission in between, and tasks whose deadlines come due."""
    nonces = dict.fromkeys((ALICE, BOB, CAROL), 0)
    for r in range(rounds):
        before = node.ledger.store.snapshot()
        prev = node.head
        for i in range(6):
            sender = (ALICE, BOB, CAROL)[i % 3]
            msg: Message = (
                SubmitTask(sender, nonces[sender], "", 1, f"round {r} task {i}", "")
                if i % 2
                else Transfer(sender, nonces[sender], CAROL if sender != CAROL else BOB, i + 1)
            )
            node.submit(sign(msg))
            nonces[sender] += 1
        with pytest.raises(NonceMismatch):
            node.submit(sign(Transfer(ALICE, 0, BOB, 1)))
        head = produce(node)
        stored = node.ledger.get_block(head.height)
        assert stored is not None and len(stored.block.txs) == 6
        txs = [node.ledger.get_tx(h) for h in stored.block.txs]
        assert all(t is not None and t.status == "committed" for t in txs)
        ctx = BlockContext(head.height, stored.block.time, stored.block.proposer)
        state = State(before)
        signers = [v.validator for v in stored.block.last_commit]
        records = execute_block(state, GENESIS.params, ctx, [t.tx for t in txs if t], signers)
        assert [status for _tx, status in records] == ["committed"] * 6
        assert next_app_hash(prev.app_hash, state.write_set()) == head.app_hash
