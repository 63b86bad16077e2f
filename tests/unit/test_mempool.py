"""chain.mempool: admission in per-sender nonce order over the committed LevelDB state.

The mempool's speculative state is the committed state plus every admitted transaction, so
the nonce a sender must use next counts admitted transactions (PROTOCOL 3), and a refused
admission changes nothing (PROTOCOL 5.3). One sender holds at most its share of the pool,
and with a journal every admitted transaction is on disk when `admit` returns (PROTOCOL 5.1;
the restart of a real process is tests/e2e/test_mempool_journal.py).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hyp

from chain.node.journal import Journal, encode_record, parse_records
from chain.node.ledger import Ledger
from chain.node.mempool import JOURNAL_SLACK_RECORDS, Mempool
from chain.node.node import Node, dev_validator_key
from chain.protocol import blocks, crypto, wire
from chain.protocol.errors import (
    ChainError,
    InsufficientBalance,
    InvalidParams,
    InvalidTransaction,
    MempoolFull,
    NonceMismatch,
    StorageError,
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
FEE = PARAMS.transfer_fee  # of every Transfer (PROTOCOL 4.12)
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
    assert get_account(pool.pending_state, ALICE) == Account(BALANCE - 1 - FEE - fee - 3, 3, 3)


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
    admit(pool, ledger, Transfer(ALICE, 0, BOB, BALANCE - 10 - 2 * FEE))
    with pytest.raises(InsufficientBalance) as info:
        admit(pool, ledger, Transfer(ALICE, 1, BOB, 11))
    assert (info.value.needed, info.value.available) == (11 + FEE, 10 + FEE)
    admit(pool, ledger, Transfer(ALICE, 1, BOB, 10))
    assert get_account(pool.pending_state, ALICE).balance == 0
    # BOB can spend what ALICE's admitted transfers will give him
    admit(pool, ledger, Transfer(BOB, 0, CAROL, 2 * BALANCE - 3 * FEE))
    assert get_account(pool.pending_state, CAROL).balance == 3 * BALANCE - 3 * FEE


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
    c0 = admit(pool, ledger, Transfer(CAROL, 0, BOB, BALANCE - FEE))
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
    b1 = admit(pool, ledger, Transfer(BOB, 1, CAROL, BALANCE - 1 - 2 * FEE))
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


# --- one sender's share (PROTOCOL 5.1) -------------------------------------------------------


def test_one_sender_cannot_hold_more_than_its_share(ledger: Ledger) -> None:
    pool = Mempool(ledger.store, PARAMS, capacity=50, max_per_sender=3)
    mine = [admit(pool, ledger, Transfer(ALICE, n, BOB, 1)) for n in range(3)]
    pending_alice = get_account(pool.pending_state, ALICE)
    with pytest.raises(MempoolFull) as info:
        admit(pool, ledger, Transfer(ALICE, 3, BOB, 1))
    data = info.value.data()
    assert (data["limit"], data["sender"], data["max"], data["pending"]) == (
        "perSender",
        ALICE,
        3,
        3,
    )
    assert data["retry"] is True and ALICE in data["reason"]
    # nothing changed, and the share is checked before the rules (a bad nonce too)
    assert pool.take(10) == mine and pool.pending_of(ALICE) == 3
    assert get_account(pool.pending_state, ALICE) == pending_alice
    with pytest.raises(MempoolFull):
        admit(pool, ledger, Transfer(ALICE, 9, BOB, 1))
    # another sender still gets in
    admit(pool, ledger, Transfer(BOB, 0, CAROL, 1))
    assert (pool.pending_of(ALICE), pool.pending_of(BOB), pool.pending_of(CAROL)) == (3, 1, 0)


def test_a_senders_share_frees_when_its_transactions_leave(ledger: Ledger) -> None:
    pool = Mempool(ledger.store, PARAMS, capacity=50, max_per_sender=2)
    a0 = admit(pool, ledger, Transfer(ALICE, 0, BOB, 1))
    a1 = admit(pool, ledger, Transfer(ALICE, 1, BOB, 1))
    # sealed in a block being written: still held, still counted
    ctx = ctx_of(ledger)
    state = State(ledger.view)
    blocks.apply_tx(state, PARAMS, ctx, a0)
    blocks.end_block(state, PARAMS, ctx, [])
    pool.seal([a0.hash], state, BlockContext(ctx.height + 1, ctx.time + 1, VALIDATOR))
    with pytest.raises(MempoolFull):
        admit(pool, ledger, Transfer(ALICE, 2, BOB, 1))
    commit(ledger, [a0])
    pool.release([a0.hash])
    assert pool.pending_of(ALICE) == 1
    admit(pool, ledger, Transfer(ALICE, 2, BOB, 1))
    # a rival block drops both: the share is free again
    rival = [sign(Transfer(ALICE, 1, CAROL, 1)), sign(Transfer(ALICE, 2, CAROL, 1))]
    commit(ledger, rival)
    assert pool.after_commit([t.hash for t in rival], ctx_of(ledger)) == [a1, pool_tx(2)]
    assert pool.pending_of(ALICE) == 0 and len(pool) == 0


def pool_tx(nonce: int) -> SignedTx:
    return sign(Transfer(ALICE, nonce, BOB, 1))


# --- the journal (PROTOCOL 5.1) ------------------------------------------------------------


def journal_pool(ledger: Ledger, data_dir: Path) -> tuple[Mempool, Journal]:
    journal = Journal(data_dir)
    journal.rewrite([])
    return Mempool(ledger.store, PARAMS, capacity=50, journal=journal), journal


def journal_hashes(journal: Journal) -> list[str]:
    records, skipped = journal.read()
    assert skipped == 0
    return [r["hash"] for r in records]


def test_every_admitted_transaction_is_in_the_journal_when_admit_returns(
    ledger: Ledger, tmp_path: Path
) -> None:
    pool, journal = journal_pool(ledger, tmp_path)
    txs = [admit(pool, ledger, Transfer(ALICE, 0, BOB, 1)), admit(pool, ledger, task(BOB, 0))]
    assert journal_hashes(journal) == [wire.hex0x(t.hash) for t in txs]
    with pytest.raises(NonceMismatch):  # a refused one is not written
        admit(pool, ledger, Transfer(ALICE, 5, BOB, 1))
    assert journal.records == 2 and len(journal_hashes(journal)) == 2
    # each record is the gossip form of the transaction, read back as it was
    records, _ = journal.read()
    assert [wire.signed_tx_from_json(r) for r in records] == txs


def test_a_journal_that_cannot_be_written_admits_nothing(ledger: Ledger, tmp_path: Path) -> None:
    pool, journal = journal_pool(ledger, tmp_path)
    journal.close()  # as if the file were gone: the write fails
    with pytest.raises(StorageError):
        admit(pool, ledger, Transfer(ALICE, 0, BOB, 1))
    assert len(pool) == 0 and pool.next_nonce(ALICE) == 0 and pool.pending_of(ALICE) == 0
    assert get_account(pool.pending_state, ALICE) == Account(BALANCE, 0, 0)


def test_the_journal_is_rewritten_once_it_holds_many_more_records_than_the_pool(
    ledger: Ledger, tmp_path: Path
) -> None:
    pool, journal = journal_pool(ledger, tmp_path)
    count = JOURNAL_SLACK_RECORDS + 3
    txs = [sign(Transfer(ALICE, n, BOB, 1)) for n in range(count)]
    pool.capacity = count
    pool.max_per_sender = count
    for tx in txs:
        pool.admit(tx, ctx_of(ledger))
    commit(ledger, txs[:2])
    pool.after_commit([t.hash for t in txs[:2]], ctx_of(ledger))
    assert journal.records == count  # within 2 x held + slack: left as it is
    commit(ledger, txs[2:-1])
    pool.after_commit([t.hash for t in txs[2:-1]], ctx_of(ledger))
    # count records on disk, 1 transaction held: rewritten to just that one
    assert journal_hashes(journal) == [wire.hex0x(txs[-1].hash)]
    assert journal.records == 1


def test_a_transaction_dropped_after_a_block_leaves_the_journal_at_once(
    ledger: Ledger, tmp_path: Path
) -> None:
    pool, journal = journal_pool(ledger, tmp_path)
    a0 = admit(pool, ledger, Transfer(ALICE, 0, BOB, 1))
    b0 = admit(pool, ledger, Transfer(BOB, 0, CAROL, 1))
    rival = sign(Transfer(ALICE, 0, CAROL, 7))
    commit(ledger, [rival])
    assert pool.after_commit([rival.hash], ctx_of(ledger)) == [a0]
    assert journal_hashes(journal) == [wire.hex0x(b0.hash)]


SAMPLE_TXS = [sign(Transfer(ALICE, n, BOB, n + 1)) for n in range(4)] + [sign(task(BOB, 0))]


@given(
    txs=hyp.lists(hyp.sampled_from(SAMPLE_TXS), max_size=6),
    cut=hyp.integers(min_value=0),
    junk=hyp.lists(hyp.tuples(hyp.integers(0, 6), hyp.binary(max_size=20)), max_size=3),
)
def test_a_journal_reads_back_every_complete_record_and_skips_the_rest(
    txs: list[SignedTx], cut: int, junk: list[tuple[int, bytes]]
) -> None:
    """A journal cut anywhere (a crash in the middle of a write) and with damaged lines in
    it gives back every complete record in order, and counts each line it skipped."""
    lines: list[bytes | SignedTx] = list(txs)
    for at, garbage in junk:
        lines.insert(min(at, len(lines)), garbage.replace(b"\n", b"") + b"\x00{")
    data = b"".join(encode_record(x) if isinstance(x, SignedTx) else x + b"\n" for x in lines)
    cut = cut % (len(data) + 1)
    kept = data[:cut]
    complete = kept.count(b"\n")
    expected = [x for x in lines[:complete] if isinstance(x, SignedTx)]
    records, skipped = parse_records(kept)
    assert [wire.signed_tx_from_json(r) for r in records] == expected
    torn = 0 if kept.endswith(b"\n") or not kept else 1
    assert skipped == complete - len(expected) + torn


# --- a validator's restart: the journal admitted again (PROTOCOL 5.1) -------------------------


async def test_a_restarted_node_admits_its_journal_again_and_drops_what_was_committed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    genesis = parse_genesis(
        dev_genesis(mnemonic=DEV_MNEMONIC, params=replace(PARAMS, block_time_ms=0))
    )
    data_dir = tmp_path / "data"
    node = Node(genesis, data_dir, dev_validator_key(genesis, None))
    await node.setup()
    committed = sign(Transfer(ALICE, 0, BOB, 1))
    node.submit(committed)
    node.produce_block()
    waiting = [sign(Transfer(ALICE, 1, BOB, 2)), sign(task(BOB, 0))]
    for tx in waiting:
        node.submit(tx)
    await node.cleanup()  # the journal still holds the committed transfer: no rewrite yet
    records, _ = Journal(data_dir).read()
    assert [r["hash"] for r in records] == [wire.hex0x(t.hash) for t in [committed, *waiting]]

    again = Node(genesis, data_dir, dev_validator_key(genesis, None))
    with caplog.at_level(logging.INFO, logger="chain.node.node"):
        await again.setup()
    try:
        assert again.mempool.held() == waiting
        assert again.next_nonce(ALICE) == 2 and again.next_nonce(BOB) == 1
        record = again.tx_record(committed.hash)
        assert record is not None and record.status == "committed"
        assert "2 transactions admitted again, 1 dropped" in caplog.text
        assert "0 unreadable records skipped" in caplog.text
        # rewritten at the start: only what waits
        assert [r["hash"] for r in Journal(data_dir).read()[0]] == [
            wire.hex0x(t.hash) for t in waiting
        ]
        again.produce_block()
        assert len(again.mempool) == 0
        for tx in waiting:
            done = again.tx_record(tx.hash)
            assert done is not None and done.status == "committed"
    finally:
        await again.cleanup()


SHARE = 3
SENDERS = [ALICE, BOB, CAROL]


@settings(max_examples=25, deadline=None)
@given(
    steps=hyp.lists(hyp.tuples(hyp.sampled_from(["admit", "admit", "commit"]), hyp.integers(0, 2)))
)
def test_a_senders_share_is_its_held_transactions_and_is_never_exceeded(
    steps: list[tuple[str, int]],
) -> None:
    """Whatever is admitted and committed, each sender's count is the number of its held
    transactions, and an admission is refused for its share exactly when it is full."""
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(Path(tmp) / "ledger", GENESIS)
        try:
            pool = Mempool(ledger.store, PARAMS, capacity=50, max_per_sender=SHARE)
            for action, who in steps:
                sender = SENDERS[who]
                if action == "admit":
                    full = pool.pending_of(sender) == SHARE
                    tx = sign(
                        Transfer(
                            sender, pool.next_nonce(sender), BOB if sender != BOB else CAROL, 1
                        )
                    )
                    try:
                        pool.admit(tx, ctx_of(ledger))
                        assert not full
                    except MempoolFull as exc:
                        assert full and exc.data()["limit"] == "perSender"
                else:  # a block of the first `who` transactions admitted
                    block = pool.take(who)
                    commit(ledger, block)
                    pool.after_commit([t.hash for t in block], ctx_of(ledger))
                held = pool.held()
                for address in SENDERS:
                    count = sum(1 for t in held if t.signer == address)
                    assert pool.pending_of(address) == count <= SHARE
        finally:
            ledger.close()
