"""chain.mempool: admission in per-sender nonce order over the committed LevelDB state.

The mempool's speculative state is the committed state plus every admitted transaction, so
the nonce a sender must use next counts admitted transactions (PROTOCOL 3), and a refused
admission changes nothing (PROTOCOL 5.3).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.node.ledger import Ledger
from chain.node.mempool import Mempool
from chain.protocol import blocks, crypto
from chain.protocol.errors import (
    ChainError,
    InsufficientBalance,
    InvalidParams,
    InvalidTransaction,
    MempoolFull,
    NonceMismatch,
)
from chain.protocol.genesis import DEV_MNEMONIC, dev_genesis, parse_genesis
from chain.protocol.state import State, get_account
from chain.protocol.types import (
    Account,
    Block,
    BlockContext,
    Message,
    SignedTx,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    Transfer,
)

GENESIS = parse_genesis(dev_genesis(mnemonic=DEV_MNEMONIC))
PARAMS = GENESIS.params
E18 = 10**18
BALANCE = 10_000 * E18
KEYS = {
    crypto.address_of_private_key(k): k
    for k in (crypto.dev_private_key(DEV_MNEMONIC, i) for i in [0, 1, 2, 200])
}
ALICE, BOB, CAROL, NODE0 = KEYS
VALIDATOR = GENESIS.validators[0].address


def sign(msg: Message) -> SignedTx:
    return crypto.sign_message(msg, GENESIS.chain_id, KEYS[getattr(msg, msg.SIGNER)])


def task(sender: str, nonce: int, target_count: int = 1) -> SubmitTask:
    return SubmitTask(sender, nonce, "", target_count, f"prompt {nonce}", "{}")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger.open(tmp_path / "ledger", GENESIS)
    yield ledger
    ledger.close()


def ctx_of(ledger: Ledger) -> BlockContext:
    return BlockContext(ledger.head.height + 1, ledger.head.time + 1, VALIDATOR)


@pytest.fixture
def pool(ledger: Ledger) -> Mempool:
    return Mempool(ledger.store, PARAMS, capacity=50)


def admit(pool: Mempool, ledger: Ledger, msg: Message) -> SignedTx:
    tx = sign(msg)
    pool.admit(tx, ctx_of(ledger))
    return tx


def commit(ledger: Ledger, txs: list[SignedTx]) -> None:
    """Commit a block of `txs` (which must all apply) directly to the ledger."""
    head = ledger.head
    ctx = ctx_of(ledger)
    state = State(ledger.store)
    for tx in txs:
        blocks.apply_tx(state, PARAMS, ctx, tx)
    blocks.end_block(state, PARAMS, ctx, [])
    block = Block(
        ctx.height, ctx.time, VALIDATOR, head.hash, tuple(t.hash for t in txs), head.app_hash
    )
    ledger.commit_block(block, (), [(tx, "committed") for tx in txs], state.write_set())


def test_empty_pool(pool: Mempool) -> None:
    assert len(pool) == 0
    assert pool.take(10) == []
    assert pool.next_nonce(ALICE) == 0
    assert pool.next_nonce("0x000000000000000000000000000000000000dEaD") == 0


def test_admission_keeps_order_and_counts_nonces(pool: Mempool, ledger: Ledger) -> None:
    txs = [
        admit(pool, ledger, Transfer(ALICE, 0, BOB, 1)),
        admit(pool, ledger, Transfer(BOB, 0, CAROL, 2)),
        admit(pool, ledger, task(ALICE, 1)),
        admit(pool, ledger, Stake(ALICE, 2, 3)),
    ]
    assert len(pool) == 4
    assert pool.take(10) == txs
    assert (pool.next_nonce(ALICE), pool.next_nonce(BOB), pool.next_nonce(CAROL)) == (3, 1, 0)
    for tx in txs:
        assert tx.hash in pool
        assert pool.get(tx.hash) == tx
    assert b"\x00" * 32 not in pool
    # the committed state did not move
    assert get_account(ledger.store, ALICE) == Account(BALANCE, 0, 0)
    fee = PARAMS.task_base_fee + PARAMS.task_fee_per_node
    assert get_account(pool.pending_state, ALICE) == Account(BALANCE - 1 - fee - 3, 3, 3)


def test_nonce_must_count_admitted_transactions(pool: Mempool, ledger: Ledger) -> None:
    admit(pool, ledger, Transfer(ALICE, 0, BOB, 1))
    with pytest.raises(NonceMismatch) as info:
        admit(pool, ledger, Transfer(ALICE, 0, BOB, 2))
    assert (info.value.expected, info.value.got) == (1, 0)
    with pytest.raises(NonceMismatch) as info:
        admit(pool, ledger, Transfer(ALICE, 2, BOB, 2))
    assert (info.value.expected, info.value.got) == (1, 2)
    admit(pool, ledger, Transfer(ALICE, 1, BOB, 2))
    assert pool.next_nonce(ALICE) == 2


def test_balance_counts_admitted_transactions(pool: Mempool, ledger: Ledger) -> None:
    admit(pool, ledger, Transfer(ALICE, 0, BOB, BALANCE - 10))
    with pytest.raises(InsufficientBalance) as info:
        admit(pool, ledger, Transfer(ALICE, 1, BOB, 11))
    assert info.value.available == 10
    admit(pool, ledger, Transfer(ALICE, 1, BOB, 10))
    # BOB can spend what ALICE's admitted transfers will give him
    admit(pool, ledger, Transfer(BOB, 0, CAROL, 2 * BALANCE))
    assert get_account(pool.pending_state, CAROL).balance == 3 * BALANCE


REFUSALS = [
    (Transfer(ALICE, 5, BOB, 1), NonceMismatch),
    (Transfer(ALICE, 1, BOB, BALANCE), InsufficientBalance),
    (Transfer(ALICE, 1, BOB, 0), InvalidParams),
    (task(ALICE, 1, target_count=0), InvalidParams),
    (Stake(ALICE, 1, BALANCE), InsufficientBalance),
]


@pytest.mark.parametrize(("msg", "error"), REFUSALS, ids=[e.__name__ for _, e in REFUSALS])
def test_refused_admission_changes_nothing(
    pool: Mempool, ledger: Ledger, msg: Message, error: type[InvalidTransaction]
) -> None:
    first = admit(pool, ledger, Transfer(ALICE, 0, BOB, 1))
    pending_alice = get_account(pool.pending_state, ALICE)
    with pytest.raises(error):
        admit(pool, ledger, msg)
    assert len(pool) == 1
    assert pool.take(10) == [first]
    assert pool.next_nonce(ALICE) == 1
    assert get_account(pool.pending_state, ALICE) == pending_alice
    assert sign(msg).hash not in pool
    admit(pool, ledger, Transfer(ALICE, 1, BOB, 1))  # the next nonce still works
    assert len(pool) == 2


def test_result_transactions_are_not_executed_by_this_version(
    pool: Mempool, ledger: Ledger
) -> None:
    msg = SubmitInferenceResult(b"\x01" * 32, NODE0, "out")
    with pytest.raises(ChainError):
        admit(pool, ledger, msg)
    assert len(pool) == 0


def test_capacity_gives_mempool_full(ledger: Ledger) -> None:
    pool = Mempool(ledger.store, PARAMS, capacity=2)
    admit(pool, ledger, Transfer(ALICE, 0, BOB, 1))
    admit(pool, ledger, Transfer(BOB, 0, ALICE, 1))
    with pytest.raises(MempoolFull) as info:
        admit(pool, ledger, Transfer(ALICE, 1, BOB, 1))
    assert info.value.capacity == 2
    assert info.value.data()["retry"] is True
    assert len(pool) == 2
    assert pool.next_nonce(ALICE) == 1
    # full is checked first: even an invalid transaction gets MempoolFull
    with pytest.raises(MempoolFull):
        admit(pool, ledger, Transfer(CAROL, 9, BOB, 1))


def test_capacity_frees_after_commit(ledger: Ledger) -> None:
    pool = Mempool(ledger.store, PARAMS, capacity=1)
    tx = admit(pool, ledger, Transfer(ALICE, 0, BOB, 1))
    with pytest.raises(MempoolFull):
        admit(pool, ledger, Transfer(ALICE, 1, BOB, 1))
    commit(ledger, [tx])
    assert pool.after_commit([tx.hash], ctx_of(ledger)) == []
    admit(pool, ledger, Transfer(ALICE, 1, BOB, 1))
    assert len(pool) == 1


def test_byte_capacity_gives_mempool_full(ledger: Ledger) -> None:
    first = sign(Transfer(ALICE, 0, BOB, 1))
    size = blocks.tx_size(first)
    pool = Mempool(ledger.store, PARAMS, capacity=100, capacity_bytes=2 * size)
    pool.admit(first, ctx_of(ledger))
    admit(pool, ledger, Transfer(ALICE, 1, BOB, 1))
    with pytest.raises(MempoolFull):
        admit(pool, ledger, Transfer(ALICE, 2, BOB, 1))
    assert len(pool) == 2


def test_take_limit_keeps_admission_order(pool: Mempool, ledger: Ledger) -> None:
    txs = [admit(pool, ledger, Transfer(ALICE, n, BOB, n + 1)) for n in range(5)]
    assert pool.take(0) == []
    assert pool.take(2) == txs[:2]
    assert pool.take(5) == txs
    assert pool.take(99) == txs
    assert len(pool) == 5  # take does not remove


def test_after_commit_drops_included_and_keeps_the_rest(pool: Mempool, ledger: Ledger) -> None:
    a0 = admit(pool, ledger, Transfer(ALICE, 0, BOB, 1))
    b0 = admit(pool, ledger, Transfer(BOB, 0, CAROL, 1))
    a1 = admit(pool, ledger, task(ALICE, 1))
    a2 = admit(pool, ledger, Transfer(ALICE, 2, CAROL, 5))
    included = pool.take(2)
    assert included == [a0, b0]
    commit(ledger, included)
    dropped = pool.after_commit([t.hash for t in included], ctx_of(ledger))
    assert dropped == []
    assert pool.take(10) == [a1, a2]
    assert a0.hash not in pool and b0.hash not in pool
    assert (pool.next_nonce(ALICE), pool.next_nonce(BOB)) == (3, 1)
    assert pool.pending_task(a1.digest) == a1
    # the pending state now builds on the new committed state
    assert get_account(ledger.store, ALICE).nonce == 1
    assert get_account(pool.pending_state, CAROL).balance == BALANCE + 1 + 5


def test_after_commit_drops_what_no_longer_applies(pool: Mempool, ledger: Ledger) -> None:
    a0 = admit(pool, ledger, Transfer(ALICE, 0, BOB, 1))
    a1 = admit(pool, ledger, Transfer(ALICE, 1, BOB, 2))
    c0 = admit(pool, ledger, Transfer(CAROL, 0, BOB, BALANCE))
    t = admit(pool, ledger, task(ALICE, 2))
    # another proposer's block: ALICE's nonce 0 spent on another transfer, CAROL's balance gone
    rival_a = sign(Transfer(ALICE, 0, CAROL, 7))
    rival_c = sign(Stake(CAROL, 0, 1))
    commit(ledger, [rival_a, rival_c])
    dropped = pool.after_commit([rival_a.hash, rival_c.hash], ctx_of(ledger))
    # a0 (nonce 0 used) and c0 (nonce 0 used) are gone; a1 and the task follow on nonce 1, 2
    assert dropped == [a0, c0]
    assert pool.take(10) == [a1, t]
    assert len(pool) == 2
    assert pool.next_nonce(ALICE) == 3
    assert pool.next_nonce(CAROL) == 1
    assert pool.pending_task(t.digest) == t
    assert get_account(pool.pending_state, BOB).balance == BALANCE + 2


def test_after_commit_drops_a_transfer_the_new_balance_cannot_pay(
    pool: Mempool, ledger: Ledger
) -> None:
    b0 = admit(pool, ledger, Transfer(BOB, 0, CAROL, 1))
    b1 = admit(pool, ledger, Transfer(BOB, 1, CAROL, BALANCE - 1))
    rival = sign(Stake(BOB, 0, BALANCE // 2))
    commit(ledger, [rival])
    # b0: nonce 0 is used; b1: nonce 1 is right now, but half the balance is staked
    assert pool.after_commit([rival.hash], ctx_of(ledger)) == [b0, b1]
    assert len(pool) == 0
    assert pool.next_nonce(BOB) == 1
    assert get_account(pool.pending_state, BOB) == Account(BALANCE // 2, BALANCE // 2, 1)


def test_after_commit_of_everything_empties_the_pool(pool: Mempool, ledger: Ledger) -> None:
    txs = [admit(pool, ledger, Transfer(ALICE, n, BOB, 1)) for n in range(3)]
    t = admit(pool, ledger, task(BOB, 0))
    txs.append(t)
    commit(ledger, txs)
    assert pool.after_commit([x.hash for x in txs], ctx_of(ledger)) == []
    assert len(pool) == 0
    assert pool.pending_task(t.digest) is None
    assert pool.next_nonce(ALICE) == 3  # now from the committed state
    admit(pool, ledger, Transfer(ALICE, 3, BOB, 1))


def test_pending_task_lookup(pool: Mempool, ledger: Ledger) -> None:
    t0 = admit(pool, ledger, task(ALICE, 0))
    admit(pool, ledger, Transfer(ALICE, 1, BOB, 1))
    t1 = admit(pool, ledger, task(BOB, 0, target_count=3))
    assert pool.pending_task(t0.digest) == t0
    assert pool.pending_task(t1.digest) == t1
    assert pool.pending_task(t0.hash) is None  # keyed by taskHash (the digest), not txHash
    assert pool.pending_task(b"\x00" * 32) is None
    commit(ledger, [t0])
    pool.after_commit([t0.hash], ctx_of(ledger))
    assert pool.pending_task(t0.digest) is None
    assert pool.pending_task(t1.digest) == t1


def test_take_stops_at_a_byte_budget(pool: Mempool, ledger: Ledger) -> None:
    txs = [
        admit(pool, ledger, Transfer(ALICE, 0, BOB, 1)),
        admit(pool, ledger, task(ALICE, 1)),
        admit(pool, ledger, Transfer(BOB, 0, CAROL, 2)),
    ]
    sizes = [blocks.tx_size(tx) for tx in txs]
    assert pool.take(10, sum(sizes)) == txs
    assert pool.take(10, sum(sizes) - 1) == txs[:2]
    assert pool.take(10, sizes[0]) == txs[:1]
    assert pool.take(10, sizes[0] - 1) == []
    assert pool.take(2, sum(sizes)) == txs[:2]


def test_sealed_transactions_stay_known_until_released(pool: Mempool, ledger: Ledger) -> None:
    """A block being written: its transactions are set aside (still held, still found, never
    taken again); admission goes on after them, with the next block's context; once the block
    is written they are forgotten, and nothing is applied again."""
    a0 = admit(pool, ledger, task(ALICE, 0))
    b0 = admit(pool, ledger, Transfer(BOB, 0, CAROL, 3))
    a1 = admit(pool, ledger, Transfer(ALICE, 1, CAROL, 5))
    included = pool.take(2)
    assert included == [a0, b0]
    ctx = ctx_of(ledger)
    state = State(ledger.view)
    for tx in included:
        blocks.apply_tx(state, PARAMS, ctx, tx)
    blocks.end_block(state, PARAMS, ctx, [])
    next_ctx = BlockContext(ctx.height + 1, ctx.time + 1, VALIDATOR)
    pool.seal([t.hash for t in included], state, next_ctx)

    assert len(pool) == 3 and a0.hash in pool and pool.get(b0.hash) == b0
    assert pool.pending_task(a0.digest) == a0
    assert pool.take(10) == [a1]  # re-admitted on the state after the sealed block
    assert (pool.next_nonce(ALICE), pool.next_nonce(BOB)) == (2, 1)
    a2 = sign(task(ALICE, 2))
    pool.admit(a2, next_ctx)
    assert pool.pending_task(a2.digest) == a2
    assert get_account(pool.pending_state, CAROL).balance == BALANCE + 3 + 5

    commit(ledger, included)  # the block is written
    pool.release([t.hash for t in included])
    assert len(pool) == 2 and a0.hash not in pool and pool.pending_task(a0.digest) is None
    assert pool.take(10) == [a1, a2]
    assert (pool.next_nonce(ALICE), pool.next_nonce(BOB)) == (3, 1)
