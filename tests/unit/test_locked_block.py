"""A block a validator precommits is kept on its disk until the height is committed
(PROTOCOL 6.7): after a crash it still holds the block it is locked on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chain.node.ledger import Ledger
from chain.node.node import dev_validator_key
from chain.protocol import crypto, gossip
from chain.protocol.blocks import block_hash
from chain.protocol.consensus import VoteMsg
from chain.protocol.genesis import DEV_MNEMONIC, dev_genesis, parse_genesis
from chain.protocol.gossip import sign_vote
from chain.protocol.types import Block, BlockContext, Transfer

GENESIS = parse_genesis(dev_genesis(validators=4))
SENDER_KEY = crypto.dev_private_key(DEV_MNEMONIC, 0)
SENDER = crypto.address_of_private_key(SENDER_KEY)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger.open(tmp_path / "ledger", GENESIS)
    yield ledger
    ledger.close()


def proposed_block(ledger: Ledger) -> gossip.CommittedBlock:
    """A block of another validator at the next height, with one transaction."""
    tx = crypto.sign_message(Transfer(SENDER, 0, SENDER, 1), GENESIS.chain_id, SENDER_KEY)
    head = ledger.head
    proposer = GENESIS.validators[1].address
    block = ledger.next_block(BlockContext(head.height + 1, head.time + 1, proposer), [tx.hash])
    assert isinstance(block, Block)
    return gossip.CommittedBlock(block, block_hash(block), (), (tx,))


def test_a_kept_block_reads_back_with_its_transactions_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    ledger = Ledger.open(path, GENESIS)
    kept = proposed_block(ledger)
    ledger.save_locked_block(kept.block.height, 2, gossip.committed_to_wire(kept))
    ledger.close()

    ledger = Ledger.open(path, GENESIS)
    try:
        [record] = ledger.locked_blocks(kept.block.height)
        again = gossip.committed_from_wire(record, GENESIS.chain_id)
        assert again.hash == kept.hash
        assert [tx.hash for tx in again.txs] == [tx.hash for tx in kept.txs]
        assert again.txs[0].signer == SENDER
        assert ledger.locked_blocks(kept.block.height + 1) == []
    finally:
        ledger.close()


def test_a_kept_block_is_no_vote_and_counts_its_round(ledger: Ledger) -> None:
    kept = proposed_block(ledger)
    height = kept.block.height
    key = dev_validator_key(GENESIS, 0)
    vote = sign_vote(key, GENESIS.chain_id, VoteMsg(height, 3, "precommit", kept.hash, key.address))
    ledger.save_locked_block(height, 3, gossip.committed_to_wire(kept))
    ledger.save_own_vote(vote)
    assert ledger.own_votes(height) == [vote]
    assert ledger.own_rounds(height) == [3]
    # deleted with the commit of its height, as the votes are
    assert len(ledger.stale_own_keys(height)) == 2
