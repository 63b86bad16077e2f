"""chain.protocol.gossip: what validators send each other (PROTOCOL 6), signed, encoded and checked,
and the signature on a transport request (6.8).

Everything runs on a real dev genesis with four validators of equal stake (quorum: three of
them), their consensus keys derived as the node derives them, and real EIP-712 transactions
signed by dev accounts. A message that is malformed, badly signed or not for this chain must
raise `InvalidPeerMessage`, never another exception: the node drops exactly those.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from chain.node.node import dev_validator_key
from chain.protocol import crypto
from chain.protocol.blocks import block_hash
from chain.protocol.consensus import VOTE_TYPES, Proposal, ValidatorSet, VoteMsg
from chain.protocol.errors import InvalidPeerMessage
from chain.protocol.genesis import dev_genesis, parse_genesis
from chain.protocol.gossip import (
    MAX_CLOCK_SKEW_MS,
    SIGNATURE_HEADER,
    TIME_HEADER,
    VALIDATOR_HEADER,
    CommittedBlock,
    RequestSigner,
    SignedProposal,
    ValidatorKey,
    Verifier,
    committed_from_wire,
    committed_to_wire,
    proposal_from_wire,
    proposal_to_wire,
    sign_proposal,
    sign_vote,
    tx_from_wire,
    vote_from_wire,
    vote_to_wire,
)
from chain.protocol.types import MESSAGE_TYPES, Block, SignedTx, Stake, Transfer, Vote
from chain.protocol.wire import signed_tx_to_json
from tests.strategies import ADDRESSES

GENESIS = parse_genesis(dev_genesis(validators=4))
CHAIN_ID = GENESIS.chain_id
OTHER_CHAIN_ID = CHAIN_ID + 1
assert GENESIS.dev is not None
MNEMONIC = GENESIS.dev.mnemonic
VALIDATOR_SET = ValidatorSet.from_genesis(GENESIS)
PUBLIC_KEYS = {v.address: v.consensus_pub_key for v in GENESIS.validators}
KEYS = tuple(dev_validator_key(GENESIS, k) for k in range(4))
# a funded dev account: a valid account key, but not a validator
OUTSIDER = ValidatorKey.from_account_key(crypto.dev_private_key(MNEMONIC, 0))
ACCOUNT_KEYS = tuple(crypto.dev_private_key(MNEMONIC, i) for i in range(3))
ACCOUNTS = tuple(crypto.address_of_private_key(key) for key in ACCOUNT_KEYS)

PREV_HASH = crypto.keccak(b"the previous block")
APP_HASH = crypto.keccak(b"the state after it")
HASH_A = crypto.keccak(b"block a")
HASH_B = crypto.keccak(b"block b")


def verifier() -> Verifier:
    return Verifier(CHAIN_ID, VALIDATOR_SET, PUBLIC_KEYS)


def roundtrip_json(obj: dict[str, Any]) -> Any:
    """What the peer receives: the object through real JSON text."""
    return json.loads(json.dumps(obj))


def transfer(sender: int, nonce: int, amount: int, chain_id: int = CHAIN_ID) -> SignedTx:
    message = Transfer(ACCOUNTS[sender], nonce, ACCOUNTS[(sender + 1) % 3], amount)
    return crypto.sign_message(message, chain_id, ACCOUNT_KEYS[sender])


def stake(sender: int, nonce: int, amount: int) -> SignedTx:
    return crypto.sign_message(
        Stake(ACCOUNTS[sender], nonce, amount), CHAIN_ID, ACCOUNT_KEYS[sender]
    )


def precommit(key: ValidatorKey, height: int, value: bytes | None, round_: int = 0) -> Vote:
    return sign_vote(key, CHAIN_ID, VoteMsg(height, round_, "precommit", value, key.address))


def prevote(key: ValidatorKey, height: int, value: bytes | None, round_: int = 0) -> Vote:
    return sign_vote(key, CHAIN_ID, VoteMsg(height, round_, "prevote", value, key.address))


def make_block(
    height: int = 3,
    txs: tuple[SignedTx, ...] = (),
    *,
    proposer: str | None = None,
    time: int = 1_767_225_700,
) -> Block:
    """A block at `height` whose lastCommit is a quorum of precommits for the one before."""
    last_commit = tuple(precommit(k, height - 1, PREV_HASH) for k in KEYS[:3]) if height > 1 else ()
    return Block(
        height=height,
        time=time,
        proposer=proposer or KEYS[0].address,
        prev_hash=PREV_HASH,
        txs=tuple(tx.hash for tx in txs),
        app_hash=APP_HASH,
        last_commit=last_commit,
    )


TXS = (transfer(0, 0, 5), transfer(1, 0, 7), stake(2, 0, 11))


def signed_proposal(
    key: ValidatorKey = KEYS[1],
    *,
    txs: tuple[SignedTx, ...] = TXS,
    height: int = 3,
    round_: int = 1,
    valid_round: int = -1,
    proposer: str | None = None,
    block: Block | None = None,
    chain_id: int = CHAIN_ID,
) -> SignedProposal:
    block = block or make_block(height, txs, proposer=proposer or key.address)
    proposal = Proposal(height, round_, block_hash(block), valid_round, proposer or key.address)
    return sign_proposal(key, chain_id, proposal, block, txs)


def committed(
    txs: tuple[SignedTx, ...] = TXS, signers: tuple[int, ...] = (0, 1, 2)
) -> CommittedBlock:
    block = make_block(4, txs)
    hash_ = block_hash(block)
    return CommittedBlock(block, hash_, tuple(precommit(KEYS[i], 4, hash_) for i in signers), txs)


def flip_byte(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- keys --------------------------------------------------------------------------------------


def test_dev_validator_keys_match_the_genesis() -> None:
    assert [k.address for k in KEYS] == [v.address for v in GENESIS.validators]
    assert [k.public_key for k in KEYS] == [v.consensus_pub_key for v in GENESIS.validators]
    assert len({k.public_key for k in KEYS}) == 4
    # equal stakes: three of the four make a quorum, two do not
    power = VALIDATOR_SET.power(KEYS[0].address)
    assert all(VALIDATOR_SET.power(k.address) == power for k in KEYS)
    assert 2 * power < VALIDATOR_SET.quorum <= 3 * power


# --- votes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("vote_type", ["prevote", "precommit"])
@pytest.mark.parametrize("value", [HASH_A, None], ids=["hash", "nil"])
def test_signed_vote_roundtrips_and_verifies(vote_type: Any, value: bytes | None) -> None:
    key = KEYS[2]
    message = VoteMsg(5, 2, vote_type, value, key.address)
    vote = sign_vote(key, CHAIN_ID, message)
    obj = vote_to_wire(vote)
    assert obj["kind"] == "vote"
    assert obj["blockHash"] == ("0x" + value.hex() if value else "0x")
    decoded = vote_from_wire(roundtrip_json(obj))
    assert decoded == vote
    assert verifier().vote(decoded) == message


def test_vote_from_wire_accepts_a_lower_case_validator_address() -> None:
    vote = precommit(KEYS[3], 9, HASH_A)
    obj = vote_to_wire(vote)
    obj["validator"] = obj["validator"].lower()
    decoded = vote_from_wire(obj)
    assert decoded.validator == KEYS[3].address
    verifier().vote(decoded)


@pytest.mark.parametrize("index", [0, 17, 32, 63])
def test_vote_with_a_flipped_signature_byte_is_refused(index: int) -> None:
    vote = precommit(KEYS[0], 5, HASH_A)
    bad = dataclasses.replace(vote, signature=flip_byte(vote.signature, index))
    with pytest.raises(InvalidPeerMessage, match="bad signature"):
        verifier().vote(vote_from_wire(roundtrip_json(vote_to_wire(bad))))


def test_vote_of_a_non_validator_is_refused() -> None:
    vote = sign_vote(OUTSIDER, CHAIN_ID, VoteMsg(5, 0, "prevote", HASH_A, OUTSIDER.address))
    with pytest.raises(InvalidPeerMessage, match="not a validator"):
        verifier().vote(vote_from_wire(vote_to_wire(vote)))


@pytest.mark.parametrize("signer", [OUTSIDER, KEYS[1]], ids=["outsider", "another-validator"])
def test_vote_naming_a_validator_but_signed_with_another_key_is_refused(
    signer: ValidatorKey,
) -> None:
    forged = dataclasses.replace(
        sign_vote(signer, CHAIN_ID, VoteMsg(5, 0, "prevote", HASH_A, KEYS[0].address)),
        validator=KEYS[0].address,
    )
    with pytest.raises(InvalidPeerMessage, match="bad signature"):
        verifier().vote(forged)


def test_vote_for_another_chain_is_refused() -> None:
    message = VoteMsg(5, 0, "precommit", HASH_A, KEYS[0].address)
    vote = sign_vote(KEYS[0], OTHER_CHAIN_ID, message)
    with pytest.raises(InvalidPeerMessage, match="chain"):
        verifier().vote(vote)
    # the chain id is part of what is signed: relabelling the vote does not help
    with pytest.raises(InvalidPeerMessage, match="bad signature"):
        verifier().vote(dataclasses.replace(vote, chain_id=CHAIN_ID))
    # and a verifier of the other chain accepts it
    assert Verifier(OTHER_CHAIN_ID, VALIDATOR_SET, PUBLIC_KEYS).vote(vote) == message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height", 6),
        ("round", 1),
        ("round", 256),
        ("type", "prevote"),
        ("block_hash", HASH_B),
        ("block_hash", b""),
        ("validator", KEYS[1].address),
    ],
    ids=["height", "round", "round-256", "type", "hash", "hash-to-nil", "validator"],
)
def test_vote_changed_after_signing_is_refused(field: str, value: Any) -> None:
    vote = precommit(KEYS[0], 5, HASH_A)
    changed = dataclasses.replace(vote, **{field: value})
    with pytest.raises(InvalidPeerMessage):
        verifier().vote(vote_from_wire(roundtrip_json(vote_to_wire(changed))))


def test_nil_vote_changed_to_a_hash_after_signing_is_refused() -> None:
    vote = prevote(KEYS[0], 5, None)
    with pytest.raises(InvalidPeerMessage, match="bad signature"):
        verifier().vote(dataclasses.replace(vote, block_hash=HASH_A))


GOOD_VOTE_WIRE = vote_to_wire(precommit(KEYS[0], 5, HASH_A))
VOTE_FIELDS = ["chainId", "height", "round", "type", "blockHash", "validator", "signature"]


@pytest.mark.parametrize("obj", [None, [], "vote", 7, True, [GOOD_VOTE_WIRE]])
def test_vote_wire_that_is_not_an_object_is_refused(obj: Any) -> None:
    with pytest.raises(InvalidPeerMessage):
        vote_from_wire(obj)


@pytest.mark.parametrize("field", VOTE_FIELDS)
def test_vote_wire_with_a_missing_field_is_refused(field: str) -> None:
    obj = dict(GOOD_VOTE_WIRE)
    del obj[field]
    with pytest.raises(InvalidPeerMessage):
        vote_from_wire(obj)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # wrong JSON types
        ("chainId", str(CHAIN_ID)),
        ("chainId", None),
        ("height", "5"),
        ("height", 5.0),
        ("round", [0]),
        ("type", 1),
        ("type", None),
        ("blockHash", 123),
        ("blockHash", None),
        ("blockHash", ["0x" + HASH_A.hex()]),
        ("validator", 123),
        ("validator", None),
        ("signature", 0),
        ("signature", {"r": "0x00"}),
        # a bool is not an integer
        ("chainId", True),
        ("height", True),
        ("round", False),
        # out of range
        ("chainId", -1),
        ("chainId", 2**63),
        ("height", 0),
        ("height", -5),
        ("height", 2**63),
        ("round", -1),
        ("round", 2**31),
        # not hex
        ("blockHash", "0x" + "zz" * 32),
        ("blockHash", "0x" + "a" * 63),
        ("blockHash", "0x" + "é" * 64),
        ("signature", "0x" + "g" * 128),
        ("signature", "0x0x" + "00" * 64),
        # wrong lengths
        ("blockHash", "0x" + "ab" * 31),
        ("blockHash", "0x" + "ab" * 33),
        ("blockHash", "0x00"),
        ("signature", "0x" + "ab" * 63),
        ("signature", "0x" + "ab" * 65),
        ("signature", "0x"),
        # unknown vote types
        ("type", "proposal"),
        ("type", "PREVOTE"),
        ("type", "vote"),
        ("type", ""),
        # not an address
        ("validator", "0x1234"),
        ("validator", "0x" + "g" * 40),
        ("validator", KEYS[0].address[2:]),
        ("validator", KEYS[0].address.swapcase().replace("0X", "0x")),
    ],
)
def test_malformed_vote_wire_is_refused(field: str, value: Any) -> None:
    obj = {**GOOD_VOTE_WIRE, field: value}
    with pytest.raises(InvalidPeerMessage):
        vote_from_wire(obj)


# --- transactions ------------------------------------------------------------------------------


@pytest.mark.parametrize("tx", TXS, ids=["transfer-0", "transfer-1", "stake"])
def test_transaction_roundtrips_with_its_signer_recovered(tx: SignedTx) -> None:
    decoded = tx_from_wire(roundtrip_json(signed_tx_to_json(tx)), CHAIN_ID)
    assert decoded == tx
    assert decoded.signer == ACCOUNTS[TXS.index(tx)]


def test_transaction_signer_hash_and_digest_sent_by_a_peer_are_not_trusted() -> None:
    tx = TXS[0]
    obj = signed_tx_to_json(tx)
    obj.update(signer=ACCOUNTS[2], hash="0x" + "00" * 32, digest="0x" + "11" * 32)
    decoded = tx_from_wire(obj, CHAIN_ID)
    assert (decoded.signer, decoded.hash, decoded.digest) == (tx.signer, tx.hash, tx.digest)


def test_transaction_of_another_chain_is_refused() -> None:
    obj = signed_tx_to_json(transfer(0, 0, 5, chain_id=OTHER_CHAIN_ID))
    with pytest.raises(InvalidPeerMessage):
        tx_from_wire(obj, CHAIN_ID)


def tx_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = copy.deepcopy(signed_tx_to_json(TXS[0]))
    change(obj)
    return obj


MALFORMED_TXS = {
    "not-an-object": ["Transfer"],
    "unknown-type": tx_with(lambda o: o.update(type="Mint")),
    "type-not-a-string": tx_with(lambda o: o.update(type=None)),
    "message-not-an-object": tx_with(lambda o: o.update(message=[])),
    "missing-field": tx_with(lambda o: o["message"].pop("amount")),
    "extra-field": tx_with(lambda o: o["message"].update(memo="hi")),
    "negative-amount": tx_with(lambda o: o["message"].update(amount=-1)),
    "bool-nonce": tx_with(lambda o: o["message"].update(nonce=True)),
    "amount-changed": tx_with(lambda o: o["message"].update(amount="6")),
    "recipient-changed": tx_with(lambda o: o["message"].update(to=ACCOUNTS[2])),
    "sender-changed": tx_with(lambda o: o["message"].update(sender=ACCOUNTS[2])),
    "missing-signature": tx_with(lambda o: o.pop("signature")),
    "short-signature": tx_with(lambda o: o.update(signature=o["signature"][:-2])),
    "signature-not-hex": tx_with(lambda o: o.update(signature="0x" + "zz" * 65)),
    "signature-bad-v": tx_with(lambda o: o.update(signature=o["signature"][:-2] + "05")),
    "signature-flipped": tx_with(
        lambda o: o.update(signature="0x" + flip_byte(TXS[0].signature, 10).hex())
    ),
}


@pytest.mark.parametrize("obj", list(MALFORMED_TXS.values()), ids=list(MALFORMED_TXS))
def test_malformed_or_tampered_transaction_is_refused(obj: Any) -> None:
    with pytest.raises(InvalidPeerMessage):
        tx_from_wire(obj, CHAIN_ID)


# --- proposals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("txs", [TXS, ()], ids=["with-txs", "empty"])
@pytest.mark.parametrize("valid_round", [-1, 0])
def test_proposal_roundtrips_with_its_transactions(
    txs: tuple[SignedTx, ...], valid_round: int
) -> None:
    signed = signed_proposal(txs=txs, valid_round=valid_round)
    obj = proposal_to_wire(signed)
    assert obj["kind"] == "proposal"
    decoded = proposal_from_wire(roundtrip_json(obj), CHAIN_ID)
    assert decoded == signed
    assert decoded.txs == txs
    assert [tx.signer for tx in decoded.txs] == [ACCOUNTS[i] for i in range(len(txs))]
    assert decoded.block.last_commit == signed.block.last_commit
    assert verifier().proposal(decoded) == signed.proposal


def test_proposal_value_is_the_hash_of_the_block_it_carries() -> None:
    signed = signed_proposal()
    obj = roundtrip_json(proposal_to_wire(signed))
    obj["block"]["time"] += 1
    decoded = proposal_from_wire(obj, CHAIN_ID)
    assert decoded.proposal.value == block_hash(decoded.block) != signed.proposal.value
    with pytest.raises(InvalidPeerMessage, match="bad signature"):
        verifier().proposal(decoded)


def swap_in_other_txs(obj: dict[str, Any]) -> None:
    obj["txs"] = [signed_tx_to_json(tx) for tx in (transfer(0, 1, 5), TXS[1], TXS[2])]


def reorder_txs(obj: dict[str, Any]) -> None:
    obj["txs"].reverse()


def drop_a_tx(obj: dict[str, Any]) -> None:
    obj["txs"].pop()


def add_a_tx(obj: dict[str, Any]) -> None:
    obj["txs"].append(signed_tx_to_json(transfer(0, 1, 5)))


def tamper_amount(obj: dict[str, Any]) -> None:
    obj["txs"][1]["message"]["amount"] = "700"


def tamper_recipient(obj: dict[str, Any]) -> None:
    obj["txs"][0]["message"]["to"] = ACCOUNTS[0]


def tamper_nonce(obj: dict[str, Any]) -> None:
    obj["txs"][2]["message"]["nonce"] = 1


def tx_of_another_chain(obj: dict[str, Any]) -> None:
    obj["txs"][0] = signed_tx_to_json(transfer(0, 0, 5, chain_id=OTHER_CHAIN_ID))


def block_lists_other_hashes(obj: dict[str, Any]) -> None:
    obj["block"]["txs"][0] = "0x" + "00" * 32


@pytest.mark.parametrize(
    "change",
    [
        swap_in_other_txs,
        reorder_txs,
        drop_a_tx,
        add_a_tx,
        tamper_amount,
        tamper_recipient,
        tamper_nonce,
        tx_of_another_chain,
        block_lists_other_hashes,
    ],
)
def test_proposal_whose_transactions_were_changed_is_refused(
    change: Callable[[dict[str, Any]], None],
) -> None:
    obj = roundtrip_json(proposal_to_wire(signed_proposal()))
    change(obj)
    with pytest.raises(InvalidPeerMessage):
        verifier().proposal(proposal_from_wire(obj, CHAIN_ID))


def test_proposal_of_a_block_listing_a_transaction_twice_is_refused() -> None:
    txs = (TXS[0], TXS[0])
    obj = proposal_to_wire(signed_proposal(txs=txs))
    with pytest.raises(InvalidPeerMessage, match="twice"):
        proposal_from_wire(obj, CHAIN_ID)


def test_proposal_signed_by_another_validator_than_the_one_named_is_refused() -> None:
    # KEYS[1] signs a proposal (and block) that names KEYS[0] as the proposer
    forged = signed_proposal(KEYS[1], proposer=KEYS[0].address)
    decoded = proposal_from_wire(proposal_to_wire(forged), CHAIN_ID)
    with pytest.raises(InvalidPeerMessage, match="bad signature"):
        verifier().proposal(decoded)


def test_proposal_signed_by_a_non_validator_is_refused() -> None:
    own = signed_proposal(OUTSIDER)
    with pytest.raises(InvalidPeerMessage, match="not a validator"):
        verifier().proposal(proposal_from_wire(proposal_to_wire(own), CHAIN_ID))
    forged = signed_proposal(OUTSIDER, proposer=KEYS[0].address)
    with pytest.raises(InvalidPeerMessage, match="bad signature"):
        verifier().proposal(proposal_from_wire(proposal_to_wire(forged), CHAIN_ID))


def test_proposal_carrying_a_block_of_another_proposer_is_refused() -> None:
    # KEYS[1] signs its own proposal, but the block credits KEYS[0] as its proposer
    block = make_block(3, TXS, proposer=KEYS[0].address)
    signed = signed_proposal(KEYS[1], block=block)
    decoded = proposal_from_wire(proposal_to_wire(signed), CHAIN_ID)
    with pytest.raises(InvalidPeerMessage):
        verifier().proposal(decoded)


def test_a_valid_value_proposed_again_keeps_its_first_proposer() -> None:
    # KEYS[0] proposed the block in round 0; KEYS[1] proposes it again in round 1
    block = make_block(3, TXS, proposer=KEYS[0].address)
    signed = signed_proposal(KEYS[1], block=block, round_=1, valid_round=0)
    decoded = proposal_from_wire(proposal_to_wire(signed), CHAIN_ID)
    assert verifier().proposal(decoded).proposer == KEYS[1].address


@pytest.mark.parametrize(
    ("field", "value"),
    [("height", 4), ("round", 2), ("validRound", 0), ("proposer", KEYS[2].address)],
)
def test_proposal_changed_after_signing_is_refused(field: str, value: Any) -> None:
    obj = roundtrip_json(proposal_to_wire(signed_proposal()))
    obj[field] = value
    with pytest.raises(InvalidPeerMessage):
        verifier().proposal(proposal_from_wire(obj, CHAIN_ID))


def test_proposal_at_another_height_than_its_block_is_refused() -> None:
    block = make_block(3, TXS, proposer=KEYS[1].address)
    proposal = Proposal(4, 0, block_hash(block), -1, KEYS[1].address)
    signed = sign_proposal(KEYS[1], CHAIN_ID, proposal, block, TXS)
    with pytest.raises(InvalidPeerMessage, match="carries block 3"):
        verifier().proposal(proposal_from_wire(proposal_to_wire(signed), CHAIN_ID))


def test_proposal_for_another_chain_is_refused() -> None:
    signed = signed_proposal(chain_id=OTHER_CHAIN_ID)
    with pytest.raises(InvalidPeerMessage, match="bad signature"):
        verifier().proposal(proposal_from_wire(proposal_to_wire(signed), CHAIN_ID))


@pytest.mark.parametrize("index", [0, 40, 63])
def test_proposal_with_a_flipped_signature_byte_is_refused(index: int) -> None:
    signed = signed_proposal()
    bad = dataclasses.replace(signed, signature=flip_byte(signed.signature, index))
    with pytest.raises(InvalidPeerMessage, match="bad signature"):
        verifier().proposal(proposal_from_wire(proposal_to_wire(bad), CHAIN_ID))


def proposal_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = roundtrip_json(proposal_to_wire(signed_proposal()))
    change(obj)
    return obj


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value

    return change


def _del(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        for key in path[:-1]:
            obj = obj[key]
        del obj[path[-1]]

    return change


MALFORMED_PROPOSALS = {
    "missing-block": proposal_with(_del(("block",))),
    "block-not-an-object": proposal_with(_set(("block",), [])),
    "missing-height": proposal_with(_del(("height",))),
    "height-bool": proposal_with(_set(("height",), True)),
    "round-negative": proposal_with(_set(("round",), -1)),
    "round-too-large": proposal_with(_set(("round",), 2**31)),
    "valid-round-below-minus-one": proposal_with(_set(("validRound",), -2)),
    "valid-round-string": proposal_with(_set(("validRound",), "-1")),
    "proposer-not-an-address": proposal_with(_set(("proposer",), "validator-1")),
    "signature-short": proposal_with(_set(("signature",), "0x" + "00" * 63)),
    "signature-not-hex": proposal_with(_set(("signature",), "0x" + "q" * 128)),
    "txs-missing": proposal_with(_del(("txs",))),
    "txs-not-a-list": proposal_with(_set(("txs",), {})),
    "tx-not-an-object": proposal_with(_set(("txs", 0), "0x00")),
    "block-height-zero": proposal_with(_set(("block", "height"), 0)),
    "block-height-bool": proposal_with(_set(("block", "height"), True)),
    "block-height-missing": proposal_with(_del(("block", "height"))),
    "block-time-negative": proposal_with(_set(("block", "time"), -1)),
    "block-time-float": proposal_with(_set(("block", "time"), 1.5)),
    "block-proposer-not-an-address": proposal_with(_set(("block", "proposer"), 42)),
    "block-prev-hash-short": proposal_with(_set(("block", "prevHash"), "0x" + "00" * 31)),
    "block-prev-hash-not-hex": proposal_with(_set(("block", "prevHash"), "0x" + "zz" * 32)),
    "block-prev-hash-null": proposal_with(_set(("block", "prevHash"), None)),
    "block-app-hash-missing": proposal_with(_del(("block", "appHash"))),
    "block-txs-not-a-list": proposal_with(_set(("block", "txs"), 3)),
    "block-tx-hash-short": proposal_with(_set(("block", "txs", 0), "0x00")),
    "block-tx-hash-number": proposal_with(_set(("block", "txs", 0), 0)),
    "last-commit-missing": proposal_with(_del(("block", "lastCommit"))),
    "last-commit-not-a-list": proposal_with(_set(("block", "lastCommit"), "none")),
    "last-commit-vote-not-an-object": proposal_with(_set(("block", "lastCommit", 0), 1)),
    "last-commit-vote-missing-field": proposal_with(_del(("block", "lastCommit", 0, "signature"))),
    "last-commit-vote-bad-type": proposal_with(_set(("block", "lastCommit", 0, "type"), "nay")),
    "last-commit-vote-bad-hash": proposal_with(
        _set(("block", "lastCommit", 0, "blockHash"), {"x": 1})
    ),
}


@pytest.mark.parametrize("obj", list(MALFORMED_PROPOSALS.values()), ids=list(MALFORMED_PROPOSALS))
def test_malformed_proposal_wire_is_refused(obj: Any) -> None:
    with pytest.raises(InvalidPeerMessage):
        proposal_from_wire(obj, CHAIN_ID)


# --- commits -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signers",
    [*itertools.combinations(range(4), 3), (0, 1, 2, 3), (3, 1, 0)],
    ids=lambda s: "".join(map(str, s)),
)
def test_commit_of_a_quorum_is_accepted(signers: tuple[int, ...]) -> None:
    votes = [precommit(KEYS[i], 7, HASH_A) for i in signers]
    verifier().commit(7, HASH_A, votes)


def test_commit_may_gather_precommits_of_one_round() -> None:
    votes = [precommit(KEYS[i], 7, HASH_A, round_=3) for i in (0, 2, 3)]
    verifier().commit(7, HASH_A, votes)


@pytest.mark.parametrize(
    "signers",
    [(), (0,), *itertools.combinations(range(4), 2)],
    ids=lambda s: "".join(map(str, s)) or "none",
)
def test_commit_without_a_quorum_is_refused(signers: tuple[int, ...]) -> None:
    votes = [precommit(KEYS[i], 7, HASH_A) for i in signers]
    with pytest.raises(InvalidPeerMessage, match="voting power"):
        verifier().commit(7, HASH_A, votes)


def test_commit_counts_a_validator_once() -> None:
    twice = [precommit(KEYS[0], 7, HASH_A), precommit(KEYS[1], 7, HASH_A)]
    with pytest.raises(InvalidPeerMessage, match="two precommits"):
        verifier().commit(7, HASH_A, [*twice, twice[1]])
    # precommits of two rounds are not one commit, even for one block
    again = precommit(KEYS[2], 7, HASH_A, round_=1)
    with pytest.raises(InvalidPeerMessage, match="mixes rounds"):
        verifier().commit(7, HASH_A, [*twice, again])


def test_commit_weighs_validators_by_stake() -> None:
    powers = {KEYS[0].address: 3, KEYS[1].address: 1, KEYS[2].address: 1, KEYS[3].address: 1}
    weighted = Verifier(CHAIN_ID, ValidatorSet.from_stakes(powers), PUBLIC_KEYS)
    assert weighted.validators.quorum == 5
    weighted.commit(7, HASH_A, [precommit(KEYS[i], 7, HASH_A) for i in (0, 1, 2)])
    with pytest.raises(InvalidPeerMessage, match="voting power"):
        weighted.commit(7, HASH_A, [precommit(KEYS[i], 7, HASH_A) for i in (1, 2, 3)])
    with pytest.raises(InvalidPeerMessage, match="voting power"):
        weighted.commit(7, HASH_A, [precommit(KEYS[i], 7, HASH_A) for i in (0, 1)])


def with_a_quorum(vote: Vote) -> list[Vote]:
    """Good precommits for HASH_A at height 7 of validators 0, 1 and 2, then `vote`."""
    return [*(precommit(KEYS[i], 7, HASH_A) for i in (0, 1, 2)), vote]


def with_two(vote: Vote) -> list[Vote]:
    """Good precommits for HASH_A at height 7 of validators 0 and 1, then `vote`."""
    return [precommit(KEYS[0], 7, HASH_A), precommit(KEYS[1], 7, HASH_A), vote]


def badly_signed(vote: Vote) -> Vote:
    return dataclasses.replace(vote, signature=flip_byte(vote.signature, 5))


BAD_COMMITS = {
    "a-prevote": with_two(prevote(KEYS[2], 7, HASH_A)),
    "a-prevote-beside-a-quorum": with_a_quorum(prevote(KEYS[3], 7, HASH_A)),
    "another-hash": with_two(precommit(KEYS[2], 7, HASH_B)),
    "another-hash-beside-a-quorum": with_a_quorum(precommit(KEYS[3], 7, HASH_B)),
    "nil": with_two(precommit(KEYS[2], 7, None)),
    "nil-beside-a-quorum": with_a_quorum(precommit(KEYS[3], 7, None)),
    "another-height": with_two(precommit(KEYS[2], 8, HASH_A)),
    "another-height-beside-a-quorum": with_a_quorum(precommit(KEYS[3], 6, HASH_A)),
    "a-bad-signature": with_two(badly_signed(precommit(KEYS[2], 7, HASH_A))),
    "a-bad-signature-beside-a-quorum": with_a_quorum(badly_signed(precommit(KEYS[3], 7, HASH_A))),
    "a-zero-signature-beside-a-quorum": with_a_quorum(
        dataclasses.replace(precommit(KEYS[3], 7, HASH_A), signature=bytes(64))
    ),
    "a-non-validator": with_two(precommit(OUTSIDER, 7, HASH_A)),
    "another-chain": with_two(
        sign_vote(KEYS[2], OTHER_CHAIN_ID, VoteMsg(7, 0, "precommit", HASH_A, KEYS[2].address))
    ),
}


@pytest.mark.parametrize("votes", list(BAD_COMMITS.values()), ids=list(BAD_COMMITS))
def test_bad_commit_is_refused(votes: list[Vote]) -> None:
    with pytest.raises(InvalidPeerMessage):
        verifier().commit(7, HASH_A, votes)


def test_committed_block_roundtrips_and_its_commit_verifies() -> None:
    block = committed()
    obj = committed_to_wire(block)
    decoded = committed_from_wire(roundtrip_json(obj), CHAIN_ID)
    assert decoded == block
    assert [tx.signer for tx in decoded.txs] == list(ACCOUNTS)
    verifier().commit(decoded.block.height, decoded.hash, decoded.commit)


def test_committed_block_without_transactions_roundtrips() -> None:
    block = committed(txs=())
    assert committed_from_wire(committed_to_wire(block), CHAIN_ID) == block


@pytest.mark.parametrize(
    "value",
    ["0x" + HASH_B.hex(), "0x" + PREV_HASH.hex(), "0x" + "00" * 31, "0x" + "zz" * 32, None, 5],
    ids=["another-hash", "the-previous-hash", "short", "not-hex", "null", "number"],
)
def test_committed_block_with_a_wrong_hash_field_is_refused(value: Any) -> None:
    obj = roundtrip_json(committed_to_wire(committed()))
    obj["hash"] = value
    with pytest.raises(InvalidPeerMessage):
        committed_from_wire(obj, CHAIN_ID)


def test_committed_block_whose_block_changed_no_longer_matches_its_hash() -> None:
    obj = roundtrip_json(committed_to_wire(committed()))
    obj["block"]["time"] += 1
    with pytest.raises(InvalidPeerMessage, match="does not hash"):
        committed_from_wire(obj, CHAIN_ID)


def test_committed_block_with_too_few_precommits_decodes_but_does_not_verify() -> None:
    decoded = committed_from_wire(committed_to_wire(committed(signers=(0, 3))), CHAIN_ID)
    with pytest.raises(InvalidPeerMessage, match="voting power"):
        verifier().commit(decoded.block.height, decoded.hash, decoded.commit)


def committed_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = roundtrip_json(committed_to_wire(committed()))
    change(obj)
    return obj


MALFORMED_COMMITTED = {
    "not-an-object": [],
    "missing-commit": committed_with(_del(("commit",))),
    "commit-not-a-list": committed_with(_set(("commit",), {})),
    "commit-vote-malformed": committed_with(_set(("commit", 0, "round"), "0")),
    "missing-txs": committed_with(_del(("txs",))),
    "txs-reordered": committed_with(lambda o: o["txs"].reverse()),
    "tx-tampered": committed_with(_set(("txs", 0, "message", "amount"), "6")),
    "missing-block": committed_with(_del(("block",))),
}


@pytest.mark.parametrize("obj", list(MALFORMED_COMMITTED.values()), ids=list(MALFORMED_COMMITTED))
def test_malformed_committed_block_is_refused(obj: Any) -> None:
    with pytest.raises(InvalidPeerMessage):
        committed_from_wire(obj, CHAIN_ID)


# --- any JSON a peer may send --------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.binary(max_size=70).map(lambda b: "0x" + b.hex()),
    ADDRESSES,
    st.sampled_from(
        [
            *(0, 1, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63),
            *("", "0x", "-1", "1e3", "0x" + "zz" * 32, "proposal"),
            *VOTE_TYPES,
            *MESSAGE_TYPES,
        ]
    ),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            out.extend(_paths(value, (*prefix, index)))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """`base` with one to three of its values (at any depth) replaced, removed or duplicated."""
    obj: Any = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(obj)[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "remove", "duplicate"]))
        if action == "replace":
            parent[key] = draw(JSON_VALUES)
        elif action == "remove":
            del parent[key]
        elif isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        else:
            parent[draw(st.text(max_size=8))] = copy.deepcopy(parent[key])
    return obj


DECODERS: dict[str, tuple[Callable[[Any], object], dict[str, Any]]] = {
    "vote": (vote_from_wire, vote_to_wire(precommit(KEYS[0], 5, HASH_A))),
    "proposal": (
        lambda obj: proposal_from_wire(obj, CHAIN_ID),
        proposal_to_wire(signed_proposal()),
    ),
    "committed": (
        lambda obj: committed_from_wire(obj, CHAIN_ID),
        committed_to_wire(committed()),
    ),
    "tx": (lambda obj: tx_from_wire(obj, CHAIN_ID), signed_tx_to_json(TXS[0])),
}


@pytest.mark.parametrize("kind", list(DECODERS))
def test_valid_wire_objects_decode(kind: str) -> None:
    decode, base = DECODERS[kind]
    decode(roundtrip_json(base))


@pytest.mark.parametrize("kind", list(DECODERS))
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_any_json_decodes_or_is_refused_as_an_invalid_peer_message(
    kind: str, data: st.DataObject
) -> None:
    decode, base = DECODERS[kind]
    near = mutated(base)
    obj = data.draw(st.one_of(JSON_VALUES, near, near, near), label="obj")
    with contextlib.suppress(InvalidPeerMessage):
        decode(obj)


@settings(max_examples=100, deadline=None)
@given(
    key=st.sampled_from(KEYS),
    height=st.integers(min_value=1, max_value=2**63 - 1),
    round_=st.integers(min_value=0, max_value=2**31 - 1),
    vote_type=st.sampled_from(["prevote", "precommit"]),
    value=st.none() | st.binary(min_size=32, max_size=32),
)
def test_any_signed_vote_roundtrips_and_verifies(
    key: ValidatorKey, height: int, round_: int, vote_type: Any, value: bytes | None
) -> None:
    message = VoteMsg(height, round_, vote_type, value, key.address)
    vote = sign_vote(key, CHAIN_ID, message)
    assert verifier().vote(vote_from_wire(roundtrip_json(vote_to_wire(vote)))) == message


# What the transport checks first (PROTOCOL 6.8)


def test_the_signer_of_a_consensus_message_is_checked_before_it_is_decoded() -> None:
    vote = vote_to_wire(
        sign_vote(KEYS[2], CHAIN_ID, VoteMsg(4, 0, "prevote", None, KEYS[2].address))
    )
    assert verifier().claimed_signer(vote) == KEYS[2].address
    assert verifier().claimed_signer({**vote, "signature": "junk"}) == KEYS[2].address
    proposal = proposal_to_wire(signed_proposal())
    assert verifier().claimed_signer(proposal) == KEYS[1].address
    outsider = {**vote, "validator": OUTSIDER.address}
    with pytest.raises(InvalidPeerMessage, match="who is not a validator"):
        verifier().claimed_signer(outsider)
    with pytest.raises(InvalidPeerMessage, match="who is not a validator"):
        verifier().claimed_signer({**proposal, "proposer": OUTSIDER.address})
    unknown: list[Any] = [{**vote, "kind": "gossip"}, [], None, {"kind": 1}]
    for obj in unknown:
        with pytest.raises(InvalidPeerMessage, match="unknown message kind"):
            verifier().claimed_signer(obj)
    with pytest.raises(InvalidPeerMessage, match="not an address"):
        verifier().claimed_signer({**vote, "validator": "0x12"})


def test_a_forged_proposal_is_refused_before_its_transactions_are_recovered() -> None:
    forged = roundtrip_json(proposal_to_wire(signed_proposal(OUTSIDER, proposer=KEYS[0].address)))
    forged["txs"][0]["message"]["nonce"] += 1  # a transaction that would not recover
    # without the verifier the transactions are recovered first, and the bad one is found
    with pytest.raises(InvalidPeerMessage, match="a bad transaction"):
        proposal_from_wire(forged, CHAIN_ID)
    # with it, the proposal's own signature fails first: no transaction was recovered
    with pytest.raises(InvalidPeerMessage, match="bad signature"):
        proposal_from_wire(forged, CHAIN_ID, verifier())
    honest = roundtrip_json(proposal_to_wire(signed_proposal()))
    assert proposal_from_wire(honest, CHAIN_ID, verifier()) == signed_proposal()


NOW_MS = 1_767_225_700_000
BODY = b'{"messages":[],"txs":[]}'


def signed_request(
    key: ValidatorKey = KEYS[3], body: bytes = BODY, time_ms: int = NOW_MS, chain_id: int = CHAIN_ID
) -> dict[str, str]:
    return RequestSigner(key, chain_id).headers(body, time_ms)


def test_a_request_signed_by_a_validator_verifies() -> None:
    assert verifier().request(signed_request(), BODY, NOW_MS) == KEYS[3].address
    skew = MAX_CLOCK_SKEW_MS
    for time_ms in (NOW_MS - skew, NOW_MS + skew):
        assert verifier().request(signed_request(time_ms=time_ms), BODY, NOW_MS)


@pytest.mark.parametrize(
    ("headers", "body", "why"),
    [
        (signed_request(), BODY + b" ", "bad signature"),
        (signed_request(chain_id=OTHER_CHAIN_ID), BODY, "bad signature"),
        (signed_request(OUTSIDER), BODY, "is not a validator"),
        (signed_request(OUTSIDER) | {VALIDATOR_HEADER: KEYS[0].address}, BODY, "bad signature"),
        (signed_request() | {VALIDATOR_HEADER: KEYS[0].address}, BODY, "bad signature"),
        (signed_request(time_ms=NOW_MS - MAX_CLOCK_SKEW_MS - 1), BODY, "off this validator"),
        (signed_request(time_ms=NOW_MS + MAX_CLOCK_SKEW_MS + 1), BODY, "off this validator"),
        (signed_request() | {TIME_HEADER: str(NOW_MS + 1)}, BODY, "bad signature"),
        (signed_request() | {TIME_HEADER: "-5"}, BODY, "unix milliseconds"),
        (signed_request() | {SIGNATURE_HEADER: "0x1234"}, BODY, "64 bytes"),
        (signed_request() | {SIGNATURE_HEADER: "nothex"}, BODY, "not hex"),
        ({}, BODY, "not an address"),
    ],
)
def test_a_request_with_a_bad_signature_is_refused_saying_why(
    headers: dict[str, str], body: bytes, why: str
) -> None:
    with pytest.raises(InvalidPeerMessage, match=why):
        verifier().request(headers, body, NOW_MS)


@given(
    st.dictionaries(
        st.sampled_from([VALIDATOR_HEADER, TIME_HEADER, SIGNATURE_HEADER]), st.text(max_size=140)
    ),
    st.binary(max_size=64),
)
@example({TIME_HEADER: "\u00b2"}, b"")  # a digit to str.isdigit, not to int
def test_any_request_headers_verify_or_are_refused_as_an_invalid_peer_message(
    changes: dict[str, str], body: bytes
) -> None:
    headers = signed_request(body=body) | changes
    try:
        assert verifier().request(headers, body, NOW_MS) == KEYS[3].address
    except InvalidPeerMessage:
        assert changes
