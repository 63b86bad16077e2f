"""The validator's signing side: a vote or proposal is written to disk before it is signed
out, and a vote that conflicts with one signed before is refused (PROTOCOL 6).

`check_vote` is the rule on its own: given what is on record for a (height, round, type),
may this vote be signed? `PrivValidator` applies it against the ledger's synced record, so
the refusal holds across a SIGKILL and a restart.
"""

from __future__ import annotations

import logging

from chain.node.ledger import Ledger
from chain.protocol import wire
from chain.protocol.consensus import Proposal, VoteMsg
from chain.protocol.errors import ConflictingVote
from chain.protocol.gossip import (
    SignedProposal,
    ValidatorKey,
    proposal_from_wire,
    proposal_to_wire,
    sign_proposal,
    sign_vote,
)
from chain.protocol.types import Block, SignedTx, Vote

log = logging.getLogger(__name__)


def check_vote(signed: Vote | None, message: VoteMsg) -> Vote | None:
    """The vote on record if it is this same vote (send it again, sign nothing new); None
    if nothing is on record (sign it); `ConflictingVote` if another vote is."""
    if signed is None:
        return None
    if signed.block_hash == message.block_hash:
        return signed
    raise ConflictingVote(
        message.height, message.round, message.type, signed.block_hash, message.block_hash
    )


class PrivValidator:
    """Signs for one validator, recording each vote and proposal in the ledger first."""

    def __init__(self, key: ValidatorKey, chain_id: int, ledger: Ledger) -> None:
        self.key = key
        self.chain_id = chain_id
        self.ledger = ledger

    def sign_vote(self, message: VoteMsg) -> Vote:
        if message.validator != self.key.address:
            raise ValueError(f"{message} is not a vote of {self.key.address}")
        on_record = self.ledger.own_vote(message.height, message.round, message.type)
        again = check_vote(on_record, message)
        if again is not None:
            return again
        vote = sign_vote(self.key, self.chain_id, message)
        self.ledger.save_own_vote(vote)
        return vote

    def sign_proposal(
        self, proposal: Proposal, block: Block, txs: tuple[SignedTx, ...]
    ) -> SignedProposal:
        on_record = self.ledger.own_proposal(proposal.height, proposal.round)
        if on_record is not None:
            if on_record != proposal.value:
                raise ConflictingVote(
                    proposal.height, proposal.round, "proposal", on_record, proposal.value
                )
            # the proposal of an earlier run, byte for byte: a restored machine may reach the
            # same value with another validRound, and two messages would look like equivocation
            again = self.proposal_on_record(proposal.height, proposal.round)
            if again is not None:
                return again
        signed = sign_proposal(self.key, self.chain_id, proposal, block, txs)
        self.ledger.save_own_proposal(
            proposal.height, proposal.round, proposal.value, proposal_to_wire(signed)
        )
        log.debug(
            "proposing %s at %d/%d", wire.hex0x(proposal.value), proposal.height, proposal.round
        )
        return signed

    def proposal_on_record(self, height: int, round_: int) -> SignedProposal | None:
        """The proposal this validator signed at (height, round) in an earlier run."""
        record = self.ledger.own_proposal_record(height, round_)
        if record is None:
            return None
        return proposal_from_wire(record, self.chain_id)

    def signed_at(self, height: int) -> tuple[list[VoteMsg], int]:
        """The votes signed at `height` in an earlier run, and the round to resume at: the
        last round this validator signed anything in (0 if none).

        Resuming in that round, not the next one, matters for liveness: the others may still
        be in it, waiting for this validator's precommit. The votes already signed there are
        not signed again (`Tendermint.start` records them as sent), and a proposal signed
        there is sent again as it was (`proposal_on_record`).
        """
        votes = [VoteMsg.from_vote(v) for v in self.ledger.own_votes(height)]
        rounds = self.ledger.own_rounds(height)
        return votes, (rounds[-1] if rounds else 0)
