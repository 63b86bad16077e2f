"""chain.ledger: the LevelDB ledger (genesis, blocks, txs, history, appHash) and its twin store.

The appHash chain is recomputed here from PROTOCOL 6 with an independent keccak
(pycryptodome) over the state diff read back from the store before and after each block.
One contract suite runs against LevelDBStore and MemoryStore, and hypothesis compares the
two on random operations.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from Crypto.Hash import keccak as pycryptodome_keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.node.ledger import Ledger, repair_ledger, replay_problem
from chain.node.store import (
    MARKER,
    MARKER_FORMAT,
    DataDirState,
    KeyValueStore,
    LevelDBStore,
    MemoryStore,
    data_dir_state,
)
from chain.protocol import blocks, crypto
from chain.protocol.blocks import block_hash
from chain.protocol.errors import InvalidTransaction, StorageError
from chain.protocol.genesis import DEV_MNEMONIC, dev_genesis, parse_genesis
from chain.protocol.state import (
    OPEN_TASK,
    STATE_PREFIX,
    State,
    account_key,
    decode_account,
    encode_write_set,
    get_account,
    node_key,
    put_account,
)
from chain.protocol.types import (
    ZERO_ADDRESS,
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

GENESIS = parse_genesis(dev_genesis(mnemonic=DEV_MNEMONIC))
PARAMS = GENESIS.params
FEE = PARAMS.transfer_fee  # of every Transfer (PROTOCOL 4.12)
E18 = 10**18
KEYS = {
    crypto.address_of_private_key(k): k
    for k in (crypto.dev_private_key(DEV_MNEMONIC, i) for i in [0, 1, 2, 200])
}
ALICE, BOB, CAROL, NODE0 = KEYS
assert GENESIS.resource_nodes[0].address == NODE0
VALIDATOR = GENESIS.validators[0].address
FRESH = "0x000000000000000000000000000000000000dEaD"


def keccak(data: bytes) -> bytes:
    return pycryptodome_keccak.new(digest_bits=256, data=data).digest()


def sign(msg: Message) -> SignedTx:
    return crypto.sign_message(msg, GENESIS.chain_id, KEYS[getattr(msg, msg.SIGNER)])


def task(sender: str, nonce: int, prompts: str = "hi") -> SubmitTask:
    return SubmitTask(sender, nonce, "", 2, prompts, '{"model": "m"}')


def commit(
    ledger: Ledger, msgs: list[Message], signers: tuple[str, ...] = ()
) -> tuple[Block, list[SignedTx], list[tuple[bytes, bytes | None]]]:
    """Execute `msgs` like a proposer would (late when they fail) and commit the block."""
    head = ledger.head
    ctx = BlockContext(head.height + 1, head.time + 5, VALIDATOR)
    state = State(ledger.store)
    txs = [sign(m) for m in msgs]
    records = []
    for tx in txs:
        try:
            blocks.apply_tx(state, PARAMS, ctx, tx)
            records.append((tx, "committed"))
        except InvalidTransaction:
            records.append((tx, "late"))
    blocks.end_block(state, PARAMS, ctx, signers)
    block = Block(
        ctx.height, ctx.time, VALIDATOR, head.hash, tuple(t.hash for t in txs), head.app_hash
    )
    write_set = state.write_set()
    ledger.commit_block(block, (), records, write_set)
    return block, txs, write_set


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger.open(tmp_path / "ledger", GENESIS)
    yield ledger
    ledger.close()


def state_snapshot(store: KeyValueStore) -> dict[bytes, bytes]:
    return dict(store.iterate(STATE_PREFIX))


# --- genesis ---------------------------------------------------------------------------------


def test_genesis_block_and_head(ledger: Ledger) -> None:
    head = ledger.head
    assert head.height == 0
    assert head.hash == GENESIS.hash
    assert head.time == GENESIS.genesis_time == 1_767_225_600
    stored = ledger.get_block(0)
    assert stored is not None
    assert stored.hash == GENESIS.hash
    assert stored.block.prev_hash == b"\x00" * 32
    assert stored.block.proposer == ZERO_ADDRESS
    assert stored.block.txs == () and stored.commit == ()
    assert ledger.height_of_block_hash(GENESIS.hash) == 0


def test_genesis_app_hash_commits_to_the_genesis_state(ledger: Ledger) -> None:
    pairs = sorted(state_snapshot(ledger.store).items())
    assert decode_account(dict(pairs)[account_key(ALICE)]) == Account(10_000 * E18, 0, 0)
    expected = keccak(b"\x00" * 32 + keccak(encode_write_set(pairs)))
    assert ledger.head.app_hash == expected
    stored = ledger.get_block(0)
    assert stored is not None and stored.block.app_hash == expected


def test_genesis_is_written_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    ledger = Ledger.open(path, GENESIS)
    commit(ledger, [Transfer(ALICE, 0, BOB, 5)])
    head = ledger.head
    ledger.close()
    reopened = Ledger.open(path, GENESIS)
    try:
        assert reopened.head == head
        assert reopened.head.height == 1
        # the genesis balances were not written again over block 1
        assert get_account(reopened.store, ALICE) == Account(10_000 * E18 - 5 - FEE, 0, 1)
    finally:
        reopened.close()


def test_another_genesis_on_the_same_dir_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    Ledger.open(path, GENESIS).close()
    other = parse_genesis(dev_genesis(mnemonic=DEV_MNEMONIC, chain_id=7332))
    assert other.hash != GENESIS.hash
    with pytest.raises(StorageError) as info:
        Ledger.open(path, other)
    message = str(info.value)
    assert "0x" + GENESIS.hash.hex() in message
    assert "0x" + other.hash.hex() in message
    # the refused open released the directory: the right genesis opens it again
    again = Ledger.open(path, GENESIS)
    assert again.head.hash == GENESIS.hash
    again.close()


def test_second_store_on_an_open_dir_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="in use"):
        LevelDBStore(tmp_path / "ledger")
    with pytest.raises(StorageError, match="in use"):
        Ledger.open(tmp_path / "ledger", GENESIS)
    assert ledger.store.get(b"meta/genesis") == GENESIS.hash  # the first one still works


# --- blocks and the appHash chain -----------------------------------------------------------


def test_app_hash_chain_over_blocks(ledger: Ledger) -> None:
    blocks: list[list[Message]] = [
        [Transfer(ALICE, 0, BOB, 10), Transfer(BOB, 0, FRESH, 3)],
        [],
        [task(ALICE, 1), Stake(CAROL, 0, 500 * E18)],
        [Transfer(ALICE, 9, BOB, 1)],  # late: changes nothing but the reward
    ]
    prev = ledger.head.app_hash
    for height, msgs in enumerate(blocks, start=1):
        before = state_snapshot(ledger.store)
        head_before = ledger.head
        block, _txs, write_set = commit(ledger, msgs, signers=(VALIDATOR,) if height > 1 else ())
        after = state_snapshot(ledger.store)
        diff = sorted(
            (key, after.get(key))
            for key in before.keys() | after.keys()
            if before.get(key) != after.get(key)
        )
        assert write_set == diff
        expected = keccak(prev + keccak(encode_write_set(diff)))
        assert ledger.head.app_hash == expected
        assert ledger.head.height == height
        assert block.app_hash == head_before.app_hash  # a block carries the previous appHash
        prev = expected


def test_blocks_round_trip(ledger: Ledger) -> None:
    block1, txs1, _ = commit(ledger, [Transfer(ALICE, 0, BOB, 1)])
    block2, _, _ = commit(ledger, [])
    for height, block in ((1, block1), (2, block2)):
        stored = ledger.get_block(height)
        assert stored is not None
        assert stored.block == block
        assert stored.hash == block_hash(block)
        assert ledger.height_of_block_hash(stored.hash) == height
    assert block2.prev_hash == block_hash(block1)
    assert ledger.head.hash == block_hash(block2)
    assert ledger.get_block(3) is None
    assert ledger.height_of_block_hash(b"\x42" * 32) is None
    assert ledger.get_block(1).block.txs == (txs1[0].hash,)  # type: ignore[union-attr]


def test_block_hash_covers_every_header_field(ledger: Ledger) -> None:
    block, _, _ = commit(ledger, [])
    vote = Vote(GENESIS.chain_id, 0, 0, "precommit", GENESIS.hash, VALIDATOR, b"\x04" * 64)
    variants = [
        replace(block, height=block.height + 1),
        replace(block, time=block.time + 1),
        replace(block, proposer=ALICE),
        replace(block, prev_hash=b"\x01" * 32),
        replace(block, txs=(b"\x02" * 32,)),
        replace(block, app_hash=b"\x03" * 32),
        replace(block, last_commit=(vote,)),
        replace(block, last_commit=(replace(vote, signature=b"\x05" * 64),)),
    ]
    hashes = {block_hash(v) for v in variants}
    assert len(hashes) == len(variants)
    assert block_hash(block) not in hashes


@pytest.mark.parametrize(
    "change",
    [
        {"height": 2},
        {"height": 0},
        {"height": 1, "prev_hash": b"\x00" * 32},
        {"height": 1, "prev_hash": b"\x07" * 32},
    ],
    ids=["height-ahead", "height-behind", "prev-zero", "prev-wrong"],
)
def test_commit_block_refuses_a_block_that_does_not_follow_the_head(
    ledger: Ledger, change: dict[str, Any]
) -> None:
    head = ledger.head
    good = Block(1, head.time, VALIDATOR, head.hash, (), head.app_hash)
    snapshot = dict(ledger.store.iterate(b""))
    with pytest.raises(StorageError):
        ledger.commit_block(replace(good, **change), (), [], [])
    assert ledger.head == head
    assert dict(ledger.store.iterate(b"")) == snapshot
    ledger.commit_block(good, (), [], [])
    assert ledger.head.height == 1


def test_commit_block_refuses_a_block_with_a_wrong_app_hash(ledger: Ledger) -> None:
    head = ledger.head
    bad = Block(1, head.time, VALIDATOR, head.hash, (), b"\x09" * 32)
    with pytest.raises(Exception, match=r"(?i)app ?hash"):
        ledger.commit_block(bad, (), [], [])


# --- transactions and indexes ---------------------------------------------------------------


def test_get_tx_status_height_and_index(ledger: Ledger) -> None:
    _, txs1, _ = commit(ledger, [Transfer(ALICE, 0, BOB, 1), Transfer(ALICE, 0, BOB, 2)])
    _, txs2, _ = commit(ledger, [Stake(BOB, 0, 10)])
    expected = [(txs1[0], 1, 0, "committed"), (txs1[1], 1, 1, "late"), (txs2[0], 2, 0, "committed")]
    for tx, height, index, status in expected:
        record = ledger.get_tx(tx.hash)
        assert record is not None
        assert (record.height, record.index, record.status) == (height, index, status)
        assert record.tx == tx
    assert ledger.get_tx(b"\x55" * 32) is None
    # the late transfer changed nothing
    assert get_account(ledger.store, ALICE) == Account(10_000 * E18 - 1 - FEE, 0, 1)


def transfer_block(ledger: Ledger) -> tuple[BlockContext, SignedTx, State, Block]:
    """The block after the head with one transfer of 7 from ALICE to BOB, executed."""
    head = ledger.head
    ctx = BlockContext(head.height + 1, head.time + 5, VALIDATOR)
    state = State(ledger.view)
    tx = sign(Transfer(ALICE, 0, BOB, 7))
    blocks.apply_tx(state, PARAMS, ctx, tx)
    blocks.end_block(state, PARAMS, ctx, ())
    block = Block(ctx.height, ctx.time, VALIDATOR, head.hash, (tx.hash,), head.app_hash)
    return ctx, tx, state, block


def test_reads_see_a_written_block_only_once_it_is_published(ledger: Ledger) -> None:
    """A block's batch may be written while clients read (dev mode writes it in a thread):
    until `publish`, every read is still the state, blocks and transactions of the head."""
    head = ledger.head
    ctx, tx, state, block = transfer_block(ledger)
    prepared = ledger.prepare_block(block, (), [(tx, "committed")], state.write_set())
    before = get_account(ledger.view, BOB)
    ledger.store.write(prepared.changes)

    assert get_account(ledger.store, BOB).balance == before.balance + 7  # on disk
    assert ledger.head == head
    assert get_account(ledger.view, BOB) == before
    assert ledger.get_tx(tx.hash) is None
    assert ledger.get_block(ctx.height) is None

    assert ledger.publish(prepared) == prepared.head
    assert ledger.head.height == ctx.height
    assert get_account(ledger.view, BOB).balance == before.balance + 7
    record = ledger.get_tx(tx.hash)
    assert record is not None and record.height == ctx.height
    assert ledger.get_block(ctx.height) is not None
    with pytest.raises(StorageError, match="does not follow"):
        ledger.publish(prepared)  # a block is published once


def test_a_commit_given_after_prepare_makes_the_same_batch(ledger: Ledger) -> None:
    """Dev mode signs a block's precommit in the write thread, after `prepare_block`:
    `with_commit` must give the batch and the head that a commit given up front gives."""
    ctx, tx, state, block = transfer_block(ledger)
    records = [(tx, "committed")]
    unsigned = ledger.prepare_block(block, (), records, state.write_set())
    vote = Vote(
        GENESIS.chain_id, ctx.height, 0, "precommit", unsigned.head.hash, VALIDATOR, b"\x05" * 64
    )
    upfront = ledger.prepare_block(block, (vote,), records, state.write_set())
    later = unsigned.with_commit((vote,))

    assert later.changes == upfront.changes
    assert (later.head, later.commit, later.opened, later.closed) == (
        upfront.head,
        upfront.commit,
        upfront.opened,
        upfront.closed,
    )
    assert unsigned.changes != upfront.changes  # the commit is in the block's record
    assert unsigned.commit == ()  # and the prepared block it came from is unchanged
    ledger.store.write(later.changes)
    ledger.publish(later)
    stored = ledger.get_block(ctx.height)
    assert stored is not None and stored.commit == (vote,)
    assert ledger.head_commit() == (vote,)


def test_state_at_returns_each_past_version(ledger: Ledger) -> None:
    commit(ledger, [Transfer(ALICE, 0, BOB, 100)])  # 1
    commit(ledger, [])  # 2: ALICE untouched
    commit(ledger, [Stake(ALICE, 1, 40), Transfer(BOB, 0, FRESH, 7)])  # 3
    commit(ledger, [Transfer(ALICE, 2, BOB, 1)])  # 4
    alice = 10_000 * E18
    expect_alice = {
        0: Account(alice, 0, 0),
        1: Account(alice - 100 - FEE, 0, 1),
        2: Account(alice - 100 - FEE, 0, 1),
        3: Account(alice - 140 - FEE, 40, 2),
        4: Account(alice - 141 - 2 * FEE, 40, 3),
        9: Account(alice - 141 - 2 * FEE, 40, 3),
    }
    for height, account in expect_alice.items():
        raw = ledger.state_at(account_key(ALICE), height)
        assert raw is not None and decode_account(raw) == account, height
    for height in (0, 1, 2):
        assert ledger.state_at(account_key(FRESH), height) is None
    for height in (3, 4):
        raw = ledger.state_at(account_key(FRESH), height)
        assert raw is not None and decode_account(raw) == Account(7, 0, 0)
    raw = ledger.state_at(node_key(NODE0), 4)
    assert raw is not None and raw == ledger.store.get(node_key(NODE0))
    assert ledger.state_at(node_key(ALICE), 4) is None


def test_task_hashes_of_sender(ledger: Ledger) -> None:
    _, txs1, _ = commit(ledger, [task(ALICE, 0), task(BOB, 0), task(ALICE, 5)])  # last is late
    _, txs2, _ = commit(ledger, [task(ALICE, 1, prompts="second")])
    assert list(ledger.task_hashes_of_sender(ALICE)) == [txs1[0].digest, txs2[0].digest]
    assert list(ledger.task_hashes_of_sender(BOB)) == [txs1[1].digest]
    assert list(ledger.task_hashes_of_sender(CAROL)) == []
    stored = ledger.get_task(txs2[0].digest)
    assert stored is not None and stored.prompts == "second" and stored.created_height == 2
    assert ledger.get_task(txs1[2].digest) is None
    assert set(ledger.open_task_hashes()) == {txs1[0].digest, txs1[1].digest, txs2[0].digest}
    assert ledger.has_open_tasks()


def test_supply_check_holds_after_blocks(ledger: Ledger) -> None:
    held, expected = ledger.supply_check()
    assert held == expected == GENESIS.supply
    commit(ledger, [task(ALICE, 0), Transfer(BOB, 0, FRESH, 10**18)])
    commit(ledger, [Stake(NODE0, 0, 5)], signers=(VALIDATOR,))
    held, expected = ledger.supply_check()
    burned = PARAMS.transfer_fee  # the fee of the one transfer (PROTOCOL 4.12)
    assert held == expected == GENESIS.supply + 2 * PARAMS.block_reward - burned
    assert ledger.has_open_tasks()  # the task is open: its escrow was counted above


def test_supply_check_sees_a_broken_invariant(ledger: Ledger) -> None:
    head = ledger.head
    state = State(ledger.store)
    acct = get_account(state, ALICE)
    put_account(state, ALICE, Account(acct.balance + 1, acct.stake, acct.nonce))
    block = Block(1, head.time, VALIDATOR, head.hash, (), head.app_hash)
    ledger.commit_block(block, (), [], state.write_set())
    held, expected = ledger.supply_check()
    assert held == expected + 1


def test_own_votes_and_proposals_persist(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "db", GENESIS)
    vote = Vote(GENESIS.chain_id, 3, 1, "precommit", b"\x01" * 32, VALIDATOR, b"\x02" * 64)
    nil = replace(vote, round=2, type="prevote", block_hash=b"")
    assert ledger.own_vote(3, 1, "precommit") is None
    ledger.save_own_vote(vote)
    ledger.save_own_vote(nil)
    ledger.save_own_proposal(3, 4, b"\x03" * 32)
    ledger.close()
    ledger = Ledger.open(tmp_path / "db", GENESIS)  # what a restart sees
    try:
        assert ledger.own_vote(3, 1, "precommit") == vote
        assert ledger.own_vote(3, 1, "prevote") is None
        assert ledger.own_vote(3, 0, "precommit") is None
        assert ledger.own_votes(3) == [vote, nil]
        assert ledger.own_votes(4) == []
        assert ledger.own_proposal(3, 4) == b"\x03" * 32
        assert ledger.own_proposal(3, 1) is None
        assert ledger.own_rounds(3) == [1, 2, 4]
        assert ledger.own_rounds(2) == []
        assert len(ledger.stale_own_keys(2)) == 0
        assert len(ledger.stale_own_keys(3)) == 3
    finally:
        ledger.close()


# --- the store contract, against both backends ----------------------------------------------


@pytest.fixture(params=["memory", "leveldb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyValueStore]:
    s: KeyValueStore = MemoryStore() if request.param == "memory" else LevelDBStore(tmp_path / "kv")
    yield s
    s.close()


DATA = {
    b"a": b"0",
    b"a\xff": b"1",
    b"ab": b"2",
    b"ab\x00": b"3",
    b"abc": b"4",
    b"ac": b"5",
    b"b": b"6",
    b"\xff": b"7",
    b"\xff\xff\x01": b"8",
}
ORDER = [b"a", b"ab", b"ab\x00", b"abc", b"ac", b"a\xff", b"b", b"\xff", b"\xff\xff\x01"]
assert sorted(DATA) == ORDER


def test_contract_get_and_missing(store: KeyValueStore) -> None:
    assert store.get(b"a") is None
    store.write(DATA)
    for key, value in DATA.items():
        assert store.get(key) == value
    assert store.get(b"zz") is None
    assert store.get(b"") is None


def test_contract_write_puts_and_deletes_together(store: KeyValueStore) -> None:
    store.write(DATA)
    store.write({b"ab": None, b"new": b"n", b"a": b"changed", b"missing": None})
    assert store.get(b"ab") is None
    assert store.get(b"missing") is None
    assert store.get(b"new") == b"n"
    assert store.get(b"a") == b"changed"
    assert store.get(b"abc") == b"4"
    assert [k for k, _ in store.iterate(b"ab")] == [b"ab\x00", b"abc"]
    store.write({})
    assert store.get(b"new") == b"n"


def test_contract_empty_value_is_stored(store: KeyValueStore) -> None:
    store.write({b"k": b"", b"k2": b"x"})
    assert store.get(b"k") == b""
    assert list(store.iterate(b"k")) == [(b"k", b""), (b"k2", b"x")]


@pytest.mark.parametrize(
    ("prefix", "keys"),
    [
        (b"a", [b"a", b"ab", b"ab\x00", b"abc", b"ac", b"a\xff"]),
        (b"ab", [b"ab", b"ab\x00", b"abc"]),
        (b"\xff", [b"\xff", b"\xff\xff\x01"]),
        (b"\xff\xff", [b"\xff\xff\x01"]),
        (b"ad", []),
        (b"c", []),
        (b"", ORDER),
    ],
)
def test_contract_iterate_prefix(store: KeyValueStore, prefix: bytes, keys: list[bytes]) -> None:
    store.write(DATA)
    assert list(store.iterate(prefix)) == [(k, DATA[k]) for k in keys]
    assert list(store.iterate(prefix, reverse=True)) == [(k, DATA[k]) for k in reversed(keys)]


@pytest.mark.parametrize(
    ("prefix", "start", "forward", "backward"),
    [
        (b"a", b"ab", [b"ab", b"ab\x00", b"abc", b"ac", b"a\xff"], [b"ab", b"a"]),
        (b"a", b"ab\x01", [b"abc", b"ac", b"a\xff"], [b"ab\x00", b"ab", b"a"]),
        (b"a", b"a\xff\xff", [], [b"a\xff", b"ac", b"abc", b"ab\x00", b"ab", b"a"]),
        (b"ab", b"abz", [], [b"abc", b"ab\x00", b"ab"]),
        (b"ab", b"ab\x00", [b"ab\x00", b"abc"], [b"ab\x00", b"ab"]),
        (b"\xff", b"\xff\xff\x02", [], [b"\xff\xff\x01", b"\xff"]),
        (b"\xff\xff", b"\xff\xff", [b"\xff\xff\x01"], []),
    ],
)
def test_contract_iterate_from_start(
    store: KeyValueStore,
    prefix: bytes,
    start: bytes,
    forward: list[bytes],
    backward: list[bytes],
) -> None:
    """`start` is inclusive; forward runs to the prefix's end, reverse back to its beginning."""
    store.write(DATA)
    assert [k for k, _ in store.iterate(prefix, start=start)] == forward
    assert [k for k, _ in store.iterate(prefix, start=start, reverse=True)] == backward


def test_contract_snapshot_is_blind_to_later_writes(store: KeyValueStore) -> None:
    store.write(DATA)
    snapshot = store.snapshot()
    store.write({b"a": b"changed", b"ab": None, b"aa": b"new"})
    assert snapshot.get(b"a") == b"0"
    assert snapshot.get(b"ab") == b"2"
    assert snapshot.get(b"aa") is None
    assert list(snapshot.iterate(b"a")) == [(k, DATA[k]) for k in ORDER if k.startswith(b"a")]
    assert next(iter(snapshot.iterate(b"a", reverse=True))) == (b"a\xff", b"1")
    assert store.get(b"a") == b"changed"


def test_contract_close_twice(store: KeyValueStore) -> None:
    store.write({b"k": b"v"})
    store.close()
    store.close()


def both_stores(path: Path, data: dict[bytes, bytes]) -> tuple[LevelDBStore, MemoryStore]:
    leveldb, memory = LevelDBStore(path), MemoryStore()
    leveldb.write(data)
    memory.write(data)
    return leveldb, memory


@pytest.mark.parametrize(
    ("prefix", "start"),
    [(b"b", None), (b"abc", None), (b"a", b"a"), (b"\xff", b"\xff\xff")],
)
def test_twins_agree_on_reverse_iteration_over_a_key_equal_to_the_prefix(
    tmp_path: Path, prefix: bytes, start: bytes | None
) -> None:
    leveldb, memory = both_stores(tmp_path / "kv", DATA)
    try:
        expected = list(memory.iterate(prefix, start=start, reverse=True))
        assert expected == [(prefix, DATA[prefix])]
        assert list(leveldb.iterate(prefix, start=start, reverse=True)) == expected
    finally:
        leveldb.close()


@pytest.mark.parametrize(
    ("prefix", "start", "reverse"),
    [(b"ab", b"a", False), (b"ab", b"ac", True), (b"a", b"b", True)],
)
def test_twins_agree_when_start_lies_outside_the_prefix(
    tmp_path: Path, prefix: bytes, start: bytes, reverse: bool
) -> None:
    leveldb, memory = both_stores(tmp_path / "kv", DATA)
    try:
        expected = list(memory.iterate(prefix, start=start, reverse=reverse))
        assert all(k.startswith(prefix) for k, _ in expected)
        assert list(leveldb.iterate(prefix, start=start, reverse=reverse)) == expected
    finally:
        leveldb.close()


# Fixed-width keys and shorter prefixes, like the ledger's own keys: no key equals a prefix
# and every start lies inside its prefix; the edge cases above are tested one by one.
FIXED_KEYS = st.binary(min_size=3, max_size=3).map(lambda b: bytes(x % 4 for x in b))
OPS = st.lists(
    st.dictionaries(FIXED_KEYS, st.none() | st.binary(max_size=2), max_size=8),
    min_size=1,
    max_size=6,
)
QUERIES = st.lists(
    st.tuples(
        st.binary(max_size=2).map(lambda b: bytes(x % 4 for x in b)),
        st.none() | st.binary(max_size=3).map(lambda b: bytes(x % 5 for x in b)),
        st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=OPS, queries=QUERIES)
def test_leveldb_behaves_like_its_memory_twin(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[dict[bytes, bytes | None]],
    queries: list[tuple[bytes, bytes | None, bool]],
) -> None:
    leveldb = LevelDBStore(tmp_path_factory.mktemp("twin"))
    memory = MemoryStore()
    try:
        for batch in batches:
            leveldb.write(batch)
            memory.write(batch)
        everything = list(memory.iterate(b""))
        assert list(leveldb.iterate(b"")) == everything
        assert list(leveldb.iterate(b"", reverse=True)) == everything[::-1]
        for key in {k for batch in batches for k in batch}:
            assert leveldb.get(key) == memory.get(key)
        for prefix, suffix, reverse in queries:
            start = None if suffix is None else prefix + suffix
            got = list(leveldb.iterate(prefix, start=start, reverse=reverse))
            assert got == list(memory.iterate(prefix, start=start, reverse=reverse))
            assert all(k.startswith(prefix) for k, _ in got)
    finally:
        leveldb.close()


def test_open_tasks_follow_the_head_and_survive_a_reopen(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger", GENESIS)
    try:
        assert list(ledger.open_task_hashes()) == [] and not ledger.has_open_tasks()
        _, txs, _ = commit(ledger, [task(ALICE, 0), task(BOB, 0, "other")])
        opened = sorted(tx.digest for tx in txs)
        assert list(ledger.open_task_hashes()) == opened and ledger.has_open_tasks()
        indexed = [k[len(OPEN_TASK) :] for k, _ in ledger.view.iterate(OPEN_TASK)]
        assert indexed == opened
    finally:
        ledger.close()
    reopened = Ledger.open(tmp_path / "ledger", GENESIS)
    try:
        assert list(reopened.open_task_hashes()) == opened
    finally:
        reopened.close()


# --- the data directory: marker, refusals, adoption, consistency (PROTOCOL 6.11) -------------


def files_of(path: Path) -> dict[str, bytes | None]:
    """Every file under `path` (None for a directory), by relative path."""
    return {
        str(p.relative_to(path)): None if p.is_dir() else p.read_bytes()
        for p in sorted(path.rglob("*"))
    }


def test_a_new_dir_is_marked_and_an_empty_dir_counts_as_new(tmp_path: Path) -> None:
    assert data_dir_state(tmp_path / "missing") is DataDirState.NEW
    (tmp_path / "empty").mkdir()
    assert data_dir_state(tmp_path / "empty") is DataDirState.NEW
    Ledger.open(tmp_path / "empty", GENESIS).close()
    assert data_dir_state(tmp_path / "empty") is DataDirState.MARKED
    marker = json.loads((tmp_path / "empty" / MARKER).read_bytes())
    assert marker == {"kind": "inferchain data directory", "format": MARKER_FORMAT}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    names=st.sets(
        st.sampled_from(["CURRENT", "MANIFEST-000002", "000003.log", "000005.ldb", "LOG", "x"]),
        min_size=1,
    )
)
def test_files_without_the_marker_are_never_new_nor_marked(
    tmp_path_factory: pytest.TempPathFactory, names: set[str]
) -> None:
    path = tmp_path_factory.mktemp("unmarked")
    for name in names:
        (path / name).write_bytes(b"not what LevelDB wrote")
    before = files_of(path)
    assert data_dir_state(path) is DataDirState.UNMARKED
    with pytest.raises(StorageError, match=str(path)):
        Ledger.open(path, GENESIS)
    assert files_of(path) == before


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=64))
def test_a_marker_that_is_not_format_1_is_refused(
    tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    path = tmp_path_factory.mktemp("marked")
    Ledger.open(path, GENESIS).close()
    (path / MARKER).write_bytes(content)
    before = files_of(path)
    try:
        valid = json.loads(content) == {"format": MARKER_FORMAT}
    except ValueError:
        valid = False
    if valid:
        Ledger.open(path, GENESIS).close()
        return
    with pytest.raises(StorageError, match=MARKER):
        Ledger.open(path, GENESIS)
    assert files_of(path) == before


def test_a_store_without_a_check_refuses_an_unmarked_leveldb(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    Ledger.open(path, GENESIS).close()
    (path / MARKER).unlink()
    with pytest.raises(StorageError, match="not an inferchain data directory"):
        LevelDBStore(path)


def test_a_ledger_without_the_marker_is_adopted_and_marked(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    ledger = Ledger.open(path, GENESIS)
    commit(ledger, [Transfer(ALICE, 0, BOB, 5)])
    head = ledger.head
    ledger.close()
    (path / MARKER).unlink()
    reopened = Ledger.open(path, GENESIS)
    try:
        assert reopened.head == head
        assert data_dir_state(path) is DataDirState.MARKED
    finally:
        reopened.close()


def _broken(ledger: Ledger) -> dict[str, Mapping[bytes, bytes | None]]:
    """Writes that each leave `ledger` (at height 1) inconsistent, by the check they fail."""
    head = ledger.head
    block1 = ledger.store.get(b"blk/" + (1).to_bytes(8, "big"))
    assert block1 is not None
    return {
        "no head": {b"meta/head": None},
        "head record cannot be read": {b"meta/head": b"{"},
        "no block at its head height 1": {b"blk/" + (1).to_bytes(8, "big"): None},
        "not the genesis": {b"blk/" + (0).to_bytes(8, "big"): block1},
        "block-hash index": {b"bhash/" + head.hash: None},
        "a block above its head": {b"blk/" + (2).to_bytes(8, "big"): block1},
        "not its last version": {account_key(BOB): ledger.store.get(account_key(ALICE))},
        "supply invariant": {b"s/supply": b'{"genesis": "1", "minted": "0", "burned": "0"}'},
        "keys but no genesis hash": {b"meta/genesis": None},
    }


@pytest.mark.parametrize(
    "problem",
    [
        "no head",
        "head record cannot be read",
        "no block at its head height 1",
        "not the genesis",
        "block-hash index",
        "a block above its head",
        "not its last version",
        "supply invariant",
        "keys but no genesis hash",
    ],
)
def test_an_inconsistent_ledger_is_refused_and_left_as_it_was(tmp_path: Path, problem: str) -> None:
    path = tmp_path / "ledger"
    ledger = Ledger.open(path, GENESIS)
    commit(ledger, [Transfer(ALICE, 0, BOB, 5)])
    ledger.store.write(_broken(ledger)[problem])
    ledger.close()
    before = files_of(path)
    with pytest.raises(StorageError) as info:
        Ledger.open(path, GENESIS)
    message = str(info.value)
    assert f"the ledger in {path} is damaged" in message and problem in message, message
    assert "--repair" in message
    assert files_of(path) == before


def test_damage_found_by_a_read_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    ledger = Ledger.open(path, GENESIS)
    for nonce in range(20):  # blocks enough to fill more than the table block the open reads
        commit(ledger, [Transfer(ALICE, nonce, BOB, 5)])
    ledger.close()
    ledger = Ledger.open(path, GENESIS)  # the first run's log is now a table
    seen: list[StorageError] = []
    ledger.watch_damage(seen.append)
    try:
        for table in path.glob("*.ldb"):
            table.write_bytes(bytes(table.stat().st_size))
        for _ in range(2):
            with pytest.raises(StorageError, match="found while running"):
                list(ledger.store.iterate(b"blk/"))
        assert len(seen) == 1 and str(path) in str(seen[0])
    finally:
        ledger.close()


def test_repair_rebuilds_a_lost_current_and_checks_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    ledger = Ledger.open(path, GENESIS)
    commit(ledger, [Transfer(ALICE, 0, BOB, 5)])
    head = ledger.head
    ledger.close()
    (path / "CURRENT").unlink()
    with pytest.raises(StorageError, match="CURRENT missing"):
        Ledger.open(path, GENESIS)
    repaired = repair_ledger(path, GENESIS)
    assert "CURRENT" not in repaired.before and "CURRENT" in repaired.after
    assert repaired.head == head
    reopened = Ledger.open(path, GENESIS)
    try:
        assert reopened.head == head
    finally:
        reopened.close()


def test_repair_refuses_a_new_or_foreign_dir(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no ledger"):
        repair_ledger(tmp_path / "missing", GENESIS)
    foreign_dir = tmp_path / "foreign"
    foreign_dir.mkdir()
    (foreign_dir / "notes.txt").write_text("hello\n")
    with pytest.raises(StorageError, match="not an inferchain data directory"):
        repair_ledger(foreign_dir, GENESIS)
    assert files_of(foreign_dir) == {"notes.txt": b"hello\n"}


def test_replay_agrees_with_a_healthy_ledger(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger", GENESIS)
    try:
        commit(ledger, [Transfer(ALICE, 0, BOB, 5), task(CAROL, 0)])
        commit(ledger, [Transfer(BOB, 0, CAROL, 1)])
        assert replay_problem(ledger, tmp_path / "replay") is None
    finally:
        ledger.close()


def test_repair_refuses_a_state_that_its_blocks_do_not_make(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    ledger = Ledger.open(path, GENESIS)
    commit(ledger, [Transfer(ALICE, 0, BOB, 5)])
    ledger.store.write({b"s/val/" + bytes.fromhex(VALIDATOR[2:]): None})
    ledger.close()
    (path / "CURRENT").unlink()
    with pytest.raises(StorageError) as info:
        repair_ledger(path, GENESIS)
    message = str(info.value)
    assert f"LevelDB repaired the ledger in {path}, but it is still not consistent" in message
    assert "s/val/" in message, message


@pytest.fixture(scope="module")
def closed_ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[bytes, bytes]]:
    """A ledger of a few blocks, closed, its first run's writes in a table file; and every
    key and value it holds."""
    path = tmp_path_factory.mktemp("closed") / "ledger"
    ledger = Ledger.open(path, GENESIS)
    for nonce in range(5):
        commit(ledger, [Transfer(ALICE, nonce, BOB, 5), task(CAROL, nonce, f"p{nonce}")])
    ledger.close()
    ledger = Ledger.open(path, GENESIS)
    try:
        held = dict(ledger.store.iterate(b""))
    finally:
        ledger.close()
    assert list(path.glob("*.ldb"))
    return path, held


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=st.floats(min_value=0, max_value=1, exclude_max=True), garbage=st.binary(min_size=1))
def test_damage_anywhere_in_a_table_is_refused_or_changes_no_value(
    closed_ledger: tuple[Path, dict[bytes, bytes]],
    tmp_path_factory: pytest.TempPathFactory,
    where: float,
    garbage: bytes,
) -> None:
    """Bytes overwritten anywhere in a table file: the open refuses, leaving every file as it
    was, or (bytes no read depends on, such as the footer's padding) every key reads back the
    value it had. Never a ledger that opens with other values."""
    source, held = closed_ledger
    path = tmp_path_factory.mktemp("damaged") / "ledger"
    shutil.copytree(source, path)
    table = sorted(path.glob("*.ldb"))[0]
    data = bytearray(table.read_bytes())
    offset = int(where * len(data))
    data[offset : offset + len(garbage)] = garbage[: len(data) - offset]
    table.write_bytes(bytes(data))
    before = files_of(path)
    try:
        ledger = Ledger.open(path, GENESIS)
    except StorageError as exc:
        assert f"the ledger in {path} is damaged" in str(exc), exc
        assert files_of(path) == before
        return
    try:
        assert dict(ledger.store.iterate(b"")) == held
    finally:
        ledger.close()
