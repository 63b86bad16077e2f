"""What validators send each other (PROTOCOL 6), as values, JSON and signatures.

- a signed PROPOSAL, which carries its block and the block's transactions in full;
- a signed PREVOTE or PRECOMMIT (`chain.protocol.types.Vote`);
- a committed block with its commit and its transactions, for block sync;
- the signature a validator puts on each request it sends a peer (`RequestSigner`), which
  tells the receiver the request comes from a validator (PROTOCOL 6.8).

Decoding checks everything that can be checked without the ledger: the shape of every field,
the Ed25519 signature of a known validator, the block hash a proposal signs, and the EIP-712
signature of every transaction (recovered here, once). Anything wrong raises
`InvalidPeerMessage`; the node drops such a message and logs it. No I/O here: the transport
(`rpc/p2p.py`) moves the JSON, the node acts on the values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from chain.protocol import crypto, wire
from chain.protocol.blocks import block_from_json, block_hash, block_header_json, vote_to_json
from chain.protocol.consensus import PRECOMMIT, VOTE_TYPES, Proposal, ValidatorSet, VoteMsg
from chain.protocol.errors import ChainError, InvalidPeerMessage
from chain.protocol.types import MESSAGE_TYPES, Block, SignedTx, Vote

MAX_ROUND = 2**31 - 1

# The transport's request signature (PROTOCOL 6.8): the sender's address, its clock in
# milliseconds, and its Ed25519 signature over REQUEST_TAG || chainId u64 || time u64 ||
# sha256(body). The tag keeps it apart from anything a vote or a proposal signs.
VALIDATOR_HEADER = "X-Inferchain-Validator"
TIME_HEADER = "X-Inferchain-Time"
SIGNATURE_HEADER = "X-Inferchain-Signature"
REQUEST_TAG = b"inferchain/p2p-request/v1"
MAX_CLOCK_SKEW_MS = 60_000  # a signed request's time may be this far off the receiver's clock
# The dev-chain link control (PROTOCOL 6.8): the token a validator writes into its data
# directory, which a caller sends in this header.
DEV_TOKEN_FILE = "dev-token"
DEV_TOKEN_HEADER = "X-Inferchain-Dev-Token"
# which field of a consensus message names its signer
SIGNER_FIELDS = {"vote": "validator", "proposal": "proposer"}


@dataclass(frozen=True, slots=True)
class ValidatorKey:
    """A validator's account address and its Ed25519 consensus key."""

    address: str
    consensus_key: Ed25519PrivateKey

    @classmethod
    def from_account_key(cls, private_key: bytes) -> ValidatorKey:
        seed = crypto.consensus_seed(private_key)
        return cls(crypto.address_of_private_key(private_key), crypto.ed25519_private_key(seed))

    @property
    def public_key(self) -> bytes:
        return crypto.ed25519_public_bytes(self.consensus_key)


@dataclass(frozen=True, slots=True)
class SignedProposal:
    """PROPOSAL(height, round, blockHash, validRound) with the block it proposes."""

    proposal: Proposal
    block: Block
    txs: tuple[SignedTx, ...]
    signature: bytes


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    """A committed block, its hash, the precommits that committed it, and its transactions."""

    block: Block
    hash: bytes
    commit: tuple[Vote, ...]
    txs: tuple[SignedTx, ...]


class Verifier:
    """The validators of a chain: who may sign, with which key, and with what voting power."""

    def __init__(
        self, chain_id: int, validators: ValidatorSet, public_keys: Mapping[str, bytes]
    ) -> None:
        self.chain_id = chain_id
        self.validators = validators
        self._keys: dict[str, Ed25519PublicKey] = {
            address: Ed25519PublicKey.from_public_bytes(key)
            for address, key in public_keys.items()
            if address in validators
        }

    def is_validator(self, address: str) -> bool:
        return address in self._keys

    def claimed_signer(self, obj: Any) -> str:
        """The validator a consensus message says signed it, checked to be a validator of the
        genesis before anything costly is decoded (its signature is checked later)."""
        kind = obj.get("kind") if isinstance(obj, dict) else None
        field = SIGNER_FIELDS.get(kind) if isinstance(kind, str) else None
        if field is None:
            raise InvalidPeerMessage(f"unknown message kind {kind!r}")
        signer = _address(obj, field)
        if signer not in self._keys:
            raise InvalidPeerMessage(f"a {kind} from {signer}, who is not a validator")
        return signer

    def request(self, headers: Mapping[str, str], body: bytes, now_ms: int) -> str:
        """The validator that signed a transport request (its headers, `RequestSigner`);
        InvalidPeerMessage saying what is wrong if the signature does not check out."""
        try:
            signer = wire.parse_address(headers.get(VALIDATOR_HEADER, ""), VALIDATOR_HEADER)
        except ChainError as exc:
            raise InvalidPeerMessage(f"header {VALIDATOR_HEADER} is not an address") from exc
        if signer not in self._keys:
            raise InvalidPeerMessage(f"{signer} ({VALIDATOR_HEADER}) is not a validator")
        text = headers.get(TIME_HEADER, "")
        if not wire.ascii_digits(text) or len(text) > 19:
            raise InvalidPeerMessage(f"header {TIME_HEADER} must be unix milliseconds")
        time_ms = int(text)
        if abs(time_ms - now_ms) > MAX_CLOCK_SKEW_MS:
            raise InvalidPeerMessage(
                f"the request was signed at {time_ms} ms, {time_ms - now_ms} ms off this "
                f"validator's clock (at most {MAX_CLOCK_SKEW_MS} ms either way)"
            )
        try:
            signature = bytes.fromhex(headers.get(SIGNATURE_HEADER, "").removeprefix("0x"))
        except ValueError as exc:
            raise InvalidPeerMessage(f"header {SIGNATURE_HEADER} is not hex") from exc
        if len(signature) != 64:
            raise InvalidPeerMessage(f"header {SIGNATURE_HEADER} must be 64 bytes")
        data = request_sign_bytes(self.chain_id, time_ms, body)
        self.check(signer, signature, data, "a request")
        return signer

    def check(self, signer: str, signature: bytes, data: bytes, what: str) -> None:
        key = self._keys.get(signer)
        if key is None:
            raise InvalidPeerMessage(f"{what} from {signer}, who is not a validator")
        try:
            key.verify(signature, data)
        except Exception as exc:
            raise InvalidPeerMessage(f"{what} from {signer} has a bad signature") from exc

    # Votes

    def vote(self, vote: Vote) -> VoteMsg:
        """The consensus content of a signed vote, once its signature checks out."""
        if vote.chain_id != self.chain_id:
            raise InvalidPeerMessage(f"a vote for chain {vote.chain_id}, not {self.chain_id}")
        data = crypto.vote_sign_bytes(
            vote.chain_id, vote.height, vote.round, vote.type, vote.block_hash
        )
        self.check(vote.validator, vote.signature, data, f"{vote.type} {vote.height}/{vote.round}")
        return VoteMsg.from_vote(vote)

    def commit(self, height: int, hash_: bytes, votes: Iterable[Vote]) -> None:
        """Raise unless `votes` hold precommits of one round for block `hash_` at `height`
        from validators with more than 2/3 of the voting power, each signed, each validator
        counted once."""
        signers: set[str] = set()
        rounds: set[int] = set()
        power = 0
        for vote in votes:
            rounds.add(vote.round)
            if len(rounds) > 1:
                raise InvalidPeerMessage(f"the commit of block {height} mixes rounds")
            if vote.type != PRECOMMIT or vote.height != height or vote.block_hash != hash_:
                raise InvalidPeerMessage(
                    f"the commit of block {height} holds a {vote.type} at height {vote.height} "
                    f"for {wire.hex0x(vote.block_hash) if vote.block_hash else 'nil'}"
                )
            if vote.validator in signers:
                raise InvalidPeerMessage(
                    f"the commit of block {height} holds two precommits of {vote.validator}"
                )
            self.vote(vote)
            signers.add(vote.validator)
            power += self.validators.power(vote.validator)
        if power < self.validators.quorum:
            raise InvalidPeerMessage(
                f"the commit of block {height} holds {power} of {self.validators.total_power} "
                f"voting power; more than 2/3 ({self.validators.quorum}) is needed"
            )

    # Proposals

    def proposal(self, signed: SignedProposal) -> Proposal:
        proposal = signed.proposal
        data = crypto.proposal_sign_bytes(
            self.chain_id, proposal.height, proposal.round, proposal.valid_round, proposal.value
        )
        self.check(
            proposal.proposer,
            signed.signature,
            data,
            f"proposal {proposal.height}/{proposal.round}",
        )
        if signed.block.height != proposal.height:
            raise InvalidPeerMessage(
                f"proposal at height {proposal.height} carries block {signed.block.height}"
            )
        # a fresh block is the proposer's own; a valid value proposed again (validRound >= 0)
        # is the block of the round it was first proposed in, with that proposer
        if proposal.valid_round == -1 and signed.block.proposer != proposal.proposer:
            raise InvalidPeerMessage(
                f"proposal of {proposal.proposer} carries a block of {signed.block.proposer}"
            )
        return proposal


# Signing


def request_sign_bytes(chain_id: int, time_ms: int, body: bytes) -> bytes:
    return (
        REQUEST_TAG
        + chain_id.to_bytes(8, "big")
        + time_ms.to_bytes(8, "big")
        + hashlib.sha256(body).digest()
    )


@dataclass(frozen=True, slots=True)
class RequestSigner:
    """A validator's signature on the requests it sends its peers (PROTOCOL 6.8)."""

    key: ValidatorKey
    chain_id: int

    def headers(self, body: bytes, time_ms: int) -> dict[str, str]:
        data = request_sign_bytes(self.chain_id, time_ms, body)
        return {
            VALIDATOR_HEADER: self.key.address,
            TIME_HEADER: str(time_ms),
            SIGNATURE_HEADER: wire.hex0x(self.key.consensus_key.sign(data)),
        }


def sign_vote(key: ValidatorKey, chain_id: int, message: VoteMsg) -> Vote:
    data = crypto.vote_sign_bytes(
        chain_id, message.height, message.round, message.type, message.block_hash
    )
    return Vote(
        chain_id=chain_id,
        height=message.height,
        round=message.round,
        type=message.type,
        block_hash=message.block_hash,
        validator=key.address,
        signature=key.consensus_key.sign(data),
    )


def sign_proposal(
    key: ValidatorKey, chain_id: int, proposal: Proposal, block: Block, txs: tuple[SignedTx, ...]
) -> SignedProposal:
    data = crypto.proposal_sign_bytes(
        chain_id, proposal.height, proposal.round, proposal.valid_round, proposal.value
    )
    return SignedProposal(proposal, block, txs, key.consensus_key.sign(data))


# JSON


def vote_to_wire(vote: Vote) -> dict[str, Any]:
    return {"kind": "vote", **vote_to_json(vote)}


def proposal_to_wire(signed: SignedProposal) -> dict[str, Any]:
    proposal = signed.proposal
    return {
        "kind": "proposal",
        "height": proposal.height,
        "round": proposal.round,
        "validRound": proposal.valid_round,
        "proposer": proposal.proposer,
        "signature": wire.hex0x(signed.signature),
        "block": block_header_json(signed.block),
        "txs": [wire.signed_tx_to_json(tx) for tx in signed.txs],
    }


def committed_to_wire(committed: CommittedBlock) -> dict[str, Any]:
    return {
        "block": block_header_json(committed.block),
        "hash": wire.hex0x(committed.hash),
        "commit": [vote_to_json(v) for v in committed.commit],
        "txs": [wire.signed_tx_to_json(tx) for tx in committed.txs],
    }


def _get(obj: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict):
        raise InvalidPeerMessage("expected a JSON object")
    value = obj.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidPeerMessage(f"field {key!r} is missing or of the wrong type")
    return value


def _int(obj: Any, key: str, low: int, high: int) -> int:
    value: int = _get(obj, key, int)
    if not low <= value <= high:
        raise InvalidPeerMessage(f"field {key!r} is out of range")
    return value


def _bytes(obj: Any, key: str, length: int | None = None) -> bytes:
    text: str = _get(obj, key, str)
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError as exc:
        raise InvalidPeerMessage(f"field {key!r} is not hex") from exc
    if length is not None and len(raw) != length:
        raise InvalidPeerMessage(f"field {key!r} must be {length} bytes")
    return raw


def _address(obj: Any, key: str) -> str:
    try:
        return wire.parse_address(_get(obj, key, str), key)
    except ChainError as exc:
        raise InvalidPeerMessage(f"field {key!r} is not an address") from exc


def vote_from_wire(obj: Any) -> Vote:
    """A vote's fields, shape-checked (its signature is checked by `Verifier.vote`)."""
    vote_type = _get(obj, "type", str)
    if vote_type not in VOTE_TYPES:
        raise InvalidPeerMessage(f"unknown vote type {vote_type!r}")
    block_hash_ = _bytes(obj, "blockHash")
    if len(block_hash_) not in (0, 32):
        raise InvalidPeerMessage("field 'blockHash' must be empty (nil) or 32 bytes")
    return Vote(
        chain_id=_int(obj, "chainId", 0, 2**63 - 1),
        height=_int(obj, "height", 1, 2**63 - 1),
        round=_int(obj, "round", 0, MAX_ROUND),
        type=vote_type,
        block_hash=block_hash_,
        validator=_address(obj, "validator"),
        signature=_bytes(obj, "signature", 64),
    )


def block_from_wire(obj: Any) -> Block:
    if not isinstance(obj, dict):
        raise InvalidPeerMessage("a block must be a JSON object")
    try:
        block = block_from_json(obj)
        _int(obj, "height", 1, 2**63 - 1)
        _int(obj, "time", 0, 2**63 - 1)
        _address(obj, "proposer")
        commit = obj["lastCommit"]
        if not isinstance(commit, list):
            raise InvalidPeerMessage("field 'lastCommit' must be a list")
        last_commit = tuple(vote_from_wire(v) for v in commit)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidPeerMessage(f"a malformed block: {exc}") from exc
    if len(block.prev_hash) != 32 or len(block.app_hash) != 32:
        raise InvalidPeerMessage("a block's prevHash and appHash must be 32 bytes")
    if any(len(h) != 32 for h in block.txs):
        raise InvalidPeerMessage("a block's transaction hashes must be 32 bytes")
    return replace(block, last_commit=last_commit)  # the votes, shape-checked


def tx_from_wire(obj: Any, chain_id: int) -> SignedTx:
    """A transaction from a peer, its signer recovered here (peers are not trusted)."""
    cls = MESSAGE_TYPES.get(_get(obj, "type", str))
    if cls is None:
        raise InvalidPeerMessage("unknown transaction type")
    params = _get(obj, "message", dict)
    try:
        message = wire.message_from_params(cls, params)
        signature = wire.parse_signature(obj.get("signature"))
        return crypto.verify_message(message, chain_id, signature)
    except ChainError as exc:
        raise InvalidPeerMessage(f"a bad transaction: {exc.reason}") from exc


def _txs_of(obj: Any, block: Block, chain_id: int) -> tuple[SignedTx, ...]:
    raw_txs = _get(obj, "txs", list)
    txs = tuple(tx_from_wire(item, chain_id) for item in raw_txs)
    if tuple(tx.hash for tx in txs) != block.txs:
        raise InvalidPeerMessage(f"the transactions do not match block {block.height}")
    if len(set(block.txs)) != len(block.txs):
        raise InvalidPeerMessage(f"block {block.height} lists a transaction twice")
    return txs


def proposal_from_wire(obj: Any, chain_id: int, verifier: Verifier | None = None) -> SignedProposal:
    """A proposal's fields and its block's transactions, shape-checked and signer-recovered
    (the proposal's own signature is checked by `Verifier.proposal`; given a `verifier`, it
    is checked here too, before the transactions are recovered: a forged proposal costs one
    Ed25519 check, not a recovery per transaction)."""
    block = block_from_wire(_get(obj, "block", dict))
    try:
        proposal = Proposal(
            height=_int(obj, "height", 1, 2**63 - 1),
            round=_int(obj, "round", 0, MAX_ROUND),
            value=block_hash(block),
            valid_round=_int(obj, "validRound", -1, MAX_ROUND),
            proposer=_address(obj, "proposer"),
        )
    except ValueError as exc:
        raise InvalidPeerMessage(f"a malformed proposal: {exc}") from exc
    signature = _bytes(obj, "signature", 64)
    if verifier is not None:
        verifier.proposal(SignedProposal(proposal, block, (), signature))
    return SignedProposal(proposal, block, _txs_of(obj, block, chain_id), signature)


def committed_from_wire(obj: Any, chain_id: int) -> CommittedBlock:
    """A synced block, shape-checked, its hash recomputed and its transactions recovered
    (its commit is checked by `Verifier.commit`)."""
    block = block_from_wire(_get(obj, "block", dict))
    hash_ = block_hash(block)
    if _bytes(obj, "hash", 32) != hash_:
        raise InvalidPeerMessage(f"block {block.height} does not hash to the hash sent with it")
    commit = tuple(vote_from_wire(v) for v in _get(obj, "commit", list))
    return CommittedBlock(block, hash_, commit, _txs_of(obj, block, chain_id))
