"""chain.signer: a validator never signs two different votes for one (height, round, type).

`check_vote` is the rule alone; `PrivValidator` applies it against the ledger's record on
LevelDB. Closing the ledger and opening it again stands for a restart: what was signed before
must still bind the validator afterwards (PROTOCOL 6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chain.node.ledger import Ledger
from chain.node.node import dev_validator_key
from chain.node.signer import PrivValidator, check_vote
from chain.protocol import crypto
from chain.protocol.blocks import block_hash
from chain.protocol.consensus import Proposal, ValidatorSet, VoteMsg
from chain.protocol.errors import ConflictingVote
from chain.protocol.genesis import dev_genesis, parse_genesis
from chain.protocol.gossip import ValidatorKey, Verifier, sign_vote
from chain.protocol.types import Block

GENESIS = parse_genesis(dev_genesis(validators=4))
CHAIN_ID = GENESIS.chain_id
KEY = dev_validator_key(GENESIS, 1)
OTHER_KEY = dev_validator_key(GENESIS, 2)
ME = KEY.address
VERIFIER = Verifier(
    CHAIN_ID,
    ValidatorSet.from_genesis(GENESIS),
    {v.address: v.consensus_pub_key for v in GENESIS.validators},
)

HASH_A = crypto.keccak(b"block a")
HASH_B = crypto.keccak(b"block b")


def prevote(height: int, round_: int, value: bytes | None, who: str = ME) -> VoteMsg:
    return VoteMsg(height, round_, "prevote", value, who)


def precommit(height: int, round_: int, value: bytes | None, who: str = ME) -> VoteMsg:
    return VoteMsg(height, round_, "precommit", value, who)


def block_at(height: int, time: int = 1_767_225_700) -> Block:
    return Block(height, time, ME, GENESIS.hash, (), crypto.keccak(b"app"))


class Restartable:
    """A PrivValidator over a LevelDB ledger that can be closed and opened again."""

    def __init__(self, path: Path, key: ValidatorKey = KEY) -> None:
        self.path = path
        self.key = key
        self.ledger = Ledger.open(path, GENESIS)

    @property
    def signer(self) -> PrivValidator:
        return PrivValidator(self.key, CHAIN_ID, self.ledger)

    def restart(self) -> PrivValidator:
        self.ledger.close()
        self.ledger = Ledger.open(self.path, GENESIS)
        return self.signer


@pytest.fixture
def validator(tmp_path: Path) -> Iterator[Restartable]:
    running = Restartable(tmp_path / "db")
    yield running
    running.ledger.close()


# --- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [HASH_A, None], ids=["hash", "nil"])
def test_check_vote_with_nothing_on_record_signs(value: bytes | None) -> None:
    assert check_vote(None, prevote(3, 0, value)) is None


@pytest.mark.parametrize("value", [HASH_A, None], ids=["hash", "nil"])
def test_check_vote_of_the_same_value_returns_the_vote_on_record(value: bytes | None) -> None:
    message = precommit(3, 1, value)
    on_record = sign_vote(KEY, CHAIN_ID, message)
    assert check_vote(on_record, message) is on_record


@pytest.mark.parametrize(
    ("signed", "asked"),
    [(HASH_A, HASH_B), (None, HASH_A), (HASH_A, None)],
    ids=["another-hash", "nil-then-hash", "hash-then-nil"],
)
def test_check_vote_of_another_value_is_a_conflict(
    signed: bytes | None, asked: bytes | None
) -> None:
    on_record = sign_vote(KEY, CHAIN_ID, prevote(3, 2, signed))
    with pytest.raises(ConflictingVote) as refused:
        check_vote(on_record, prevote(3, 2, asked))
    assert (refused.value.height, refused.value.round, refused.value.vote_type) == (
        3,
        2,
        "prevote",
    )
    assert "already signed" in refused.value.reason


# --- votes across a restart --------------------------------------------------------------------


def test_signed_vote_verifies(validator: Restartable) -> None:
    message = prevote(1, 0, HASH_A)
    vote = validator.signer.sign_vote(message)
    assert (vote.chain_id, vote.validator) == (CHAIN_ID, ME)
    assert VERIFIER.vote(vote) == message


def test_signed_vote_is_on_record_in_the_ledger(validator: Restartable) -> None:
    vote = validator.signer.sign_vote(precommit(4, 1, HASH_A))
    assert validator.ledger.own_vote(4, 1, "precommit") == vote
    assert validator.ledger.own_vote(4, 1, "prevote") is None


@pytest.mark.parametrize(
    ("first", "second"),
    [(HASH_A, HASH_B), (None, HASH_A), (HASH_A, None)],
    ids=["another-hash", "nil-then-hash", "hash-then-nil"],
)
@pytest.mark.parametrize("make", [prevote, precommit], ids=["prevote", "precommit"])
def test_conflicting_vote_is_refused_after_a_restart(
    validator: Restartable,
    make: Callable[[int, int, bytes | None], VoteMsg],
    first: bytes | None,
    second: bytes | None,
) -> None:
    before = validator.signer.sign_vote(make(2, 3, first))
    signer = validator.restart()
    with pytest.raises(ConflictingVote) as refused:
        signer.sign_vote(make(2, 3, second))
    assert (refused.value.height, refused.value.round) == (2, 3)
    # nothing changed on record, and the same vote is still answered with the same signature
    assert validator.ledger.own_vote(2, 3, before.type) == before
    again = signer.sign_vote(make(2, 3, first))
    assert again == before
    assert again.signature == before.signature


def test_conflict_is_refused_without_a_restart_too(validator: Restartable) -> None:
    signer = validator.signer
    signer.sign_vote(prevote(2, 0, HASH_A))
    with pytest.raises(ConflictingVote):
        signer.sign_vote(prevote(2, 0, HASH_B))


def test_other_rounds_types_and_heights_are_still_signed_after_a_restart(
    validator: Restartable,
) -> None:
    validator.signer.sign_vote(prevote(2, 0, HASH_A))
    signer = validator.restart()
    for message in (
        precommit(2, 0, HASH_B),  # another type
        prevote(2, 1, HASH_B),  # another round
        prevote(2, 256, None),  # a round whose bytes share a prefix with round 1
        prevote(3, 0, HASH_B),  # another height
    ):
        vote = signer.sign_vote(message)
        assert VERIFIER.vote(vote) == message
    signer = validator.restart()
    with pytest.raises(ConflictingVote):
        signer.sign_vote(prevote(2, 1, HASH_A))
    with pytest.raises(ConflictingVote):
        signer.sign_vote(prevote(2, 256, HASH_A))


def test_votes_survive_several_restarts(validator: Restartable) -> None:
    signer = validator.signer
    votes = [signer.sign_vote(precommit(5, r, HASH_A if r % 2 else None)) for r in range(4)]
    for _ in range(3):
        signer = validator.restart()
    for r, vote in enumerate(votes):
        assert signer.sign_vote(precommit(5, r, HASH_A if r % 2 else None)) == vote
        with pytest.raises(ConflictingVote):
            signer.sign_vote(precommit(5, r, HASH_B))


def test_vote_of_another_validator_is_not_signed(validator: Restartable) -> None:
    with pytest.raises(ValueError, match="not a vote of"):
        validator.signer.sign_vote(prevote(1, 0, HASH_A, who=OTHER_KEY.address))
    assert validator.ledger.own_vote(1, 0, "prevote") is None


# --- proposals across a restart ----------------------------------------------------------------


def test_signed_proposal_is_recorded_and_verifies(validator: Restartable) -> None:
    block = block_at(1)
    proposal = Proposal(1, 0, block_hash(block), -1, ME)
    signed = validator.signer.sign_proposal(proposal, block, ())
    assert (signed.proposal, signed.block, signed.txs) == (proposal, block, ())
    assert VERIFIER.proposal(signed) == proposal
    assert validator.ledger.own_proposal(1, 0) == proposal.value


def test_another_block_at_the_same_height_and_round_is_refused_after_a_restart(
    validator: Restartable,
) -> None:
    block, rival = block_at(1), block_at(1, time=1_767_225_701)
    proposal = Proposal(1, 2, block_hash(block), -1, ME)
    first = validator.signer.sign_proposal(proposal, block, ())
    signer = validator.restart()
    rival_proposal = Proposal(1, 2, block_hash(rival), -1, ME)
    with pytest.raises(ConflictingVote) as refused:
        signer.sign_proposal(rival_proposal, rival, ())
    assert (refused.value.height, refused.value.round, refused.value.vote_type) == (
        1,
        2,
        "proposal",
    )
    assert validator.ledger.own_proposal(1, 2) == proposal.value
    # the same block again is fine (a re-send), and so is the rival in another round
    assert signer.sign_proposal(proposal, block, ()).signature == first.signature
    later = Proposal(1, 3, block_hash(rival), -1, ME)
    assert VERIFIER.proposal(signer.sign_proposal(later, rival, ())) == later


def test_proposal_record_does_not_count_as_a_vote(validator: Restartable) -> None:
    block = block_at(1)
    validator.signer.sign_proposal(Proposal(1, 0, block_hash(block), -1, ME), block, ())
    signer = validator.restart()
    assert validator.ledger.own_vote(1, 0, "prevote") is None
    assert validator.ledger.own_vote(1, 0, "precommit") is None
    # the proposer still prevotes and precommits whatever the round brings
    signer.sign_vote(prevote(1, 0, block_hash(block)))
    signer.sign_vote(precommit(1, 0, None))


# --- what to resume with -----------------------------------------------------------------------


def test_signed_at_with_nothing_signed(validator: Restartable) -> None:
    assert validator.signer.signed_at(1) == ([], 0)


def test_signed_at_returns_the_earlier_votes_and_their_last_round(validator: Restartable) -> None:
    signer = validator.signer
    messages = [
        prevote(4, 0, HASH_A),
        precommit(4, 0, None),
        prevote(4, 1, None),
        prevote(4, 3, HASH_B),
    ]
    for message in messages:
        signer.sign_vote(message)
    signer.sign_vote(prevote(5, 7, HASH_A))  # another height
    signer.sign_vote(prevote(3, 9, HASH_A))
    signer = validator.restart()
    votes, resume = signer.signed_at(4)
    assert votes == messages
    assert all(isinstance(v, VoteMsg) for v in votes)
    assert resume == 3
    assert signer.signed_at(5) == ([prevote(5, 7, HASH_A)], 7)
    assert signer.signed_at(6) == ([], 0)


def test_signed_at_orders_rounds_numerically(validator: Restartable) -> None:
    signer = validator.signer
    for round_ in (256, 1, 2):
        signer.sign_vote(prevote(2, round_, HASH_A))
    votes, resume = validator.restart().signed_at(2)
    assert [v.round for v in votes] == [1, 2, 256]
    assert resume == 256


def test_signed_at_counts_a_round_in_which_only_a_proposal_was_signed(
    validator: Restartable,
) -> None:
    signer = validator.signer
    signer.sign_vote(prevote(1, 0, None))
    block = block_at(1)
    signer.sign_proposal(Proposal(1, 2, block_hash(block), -1, ME), block, ())
    signer = validator.restart()
    votes, resume = signer.signed_at(1)
    assert votes == [prevote(1, 0, None)]
    assert resume == 2
    # the proposal itself is on record, to be sent again as it was
    again = signer.proposal_on_record(1, 2)
    assert again is not None
    assert again.proposal == Proposal(1, 2, block_hash(block), -1, ME)
    assert again.block == block
    assert signer.proposal_on_record(1, 0) is None


def test_a_proposal_on_record_is_sent_again_byte_for_byte(validator: Restartable) -> None:
    block = block_at(1)
    first = validator.signer.sign_proposal(Proposal(1, 2, block_hash(block), -1, ME), block, ())
    signer = validator.restart()
    # after a restart the machine reaches the same value with another validRound
    again = signer.sign_proposal(Proposal(1, 2, block_hash(block), 1, ME), block, ())
    assert again == first
    assert again.proposal.valid_round == -1
