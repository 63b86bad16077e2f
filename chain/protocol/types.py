"""Values of the chain: transactions, blocks, votes, accounts and tasks.

Every value is a frozen dataclass. Transaction messages carry their EIP-712 type table
(PROTOCOL 3): `FIELDS` lists (wire name, attribute, ABI type) in the normative order.
Bytes fields (schema, prompts, ...) keep the wire string exactly as given; `chain.protocol.wire`
decodes them for hashing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

ZERO_HASH = b"\x00" * 32
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

FieldSpec = tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class SubmitTask:
    sender: str
    nonce: int
    schema: str
    target_count: int
    prompts: str
    model_options: str
    sid: bytes = ZERO_HASH
    fee_params: str = ""

    TYPE: ClassVar[str] = "SubmitTask"
    TX_TYPE: ClassVar[str] = "creation"
    SIGNER: ClassVar[str] = "sender"
    FIELDS: ClassVar[FieldSpec] = (
        ("sender", "sender", "address"),
        ("nonce", "nonce", "uint64"),
        ("schema", "schema", "bytes"),
        ("targetCount", "target_count", "uint256"),
        ("prompts", "prompts", "bytes"),
        ("modelOptions", "model_options", "bytes"),
        ("SID", "sid", "bytes32"),
        ("feeParams", "fee_params", "bytes"),
    )


@dataclass(frozen=True, slots=True)
class SubmitInferenceResult:
    task_hash: bytes
    resource_node: str
    result: str
    proof: str = ""

    TYPE: ClassVar[str] = "SubmitInferenceResult"
    TX_TYPE: ClassVar[str] = "inference"
    SIGNER: ClassVar[str] = "resource_node"
    FIELDS: ClassVar[FieldSpec] = (
        ("taskHash", "task_hash", "bytes32"),
        ("resourceNode", "resource_node", "address"),
        ("result", "result", "bytes"),
        ("proof", "proof", "bytes"),
    )


@dataclass(frozen=True, slots=True)
class SubmitVerification:
    task_hash: bytes
    verifier: str
    submitter: str
    valid: bool

    TYPE: ClassVar[str] = "SubmitVerification"
    TX_TYPE: ClassVar[str] = "verification"
    SIGNER: ClassVar[str] = "verifier"
    FIELDS: ClassVar[FieldSpec] = (
        ("taskHash", "task_hash", "bytes32"),
        ("verifier", "verifier", "address"),
        ("submitter", "submitter", "address"),
        ("valid", "valid", "bool"),
    )


@dataclass(frozen=True, slots=True)
class Transfer:
    sender: str
    nonce: int
    to: str
    amount: int

    TYPE: ClassVar[str] = "Transfer"
    TX_TYPE: ClassVar[str] = "transfer"
    SIGNER: ClassVar[str] = "sender"
    FIELDS: ClassVar[FieldSpec] = (
        ("sender", "sender", "address"),
        ("nonce", "nonce", "uint64"),
        ("to", "to", "address"),
        ("amount", "amount", "uint256"),
    )


@dataclass(frozen=True, slots=True)
class Stake:
    sender: str
    nonce: int
    amount: int

    TYPE: ClassVar[str] = "Stake"
    TX_TYPE: ClassVar[str] = "stake"
    SIGNER: ClassVar[str] = "sender"
    FIELDS: ClassVar[FieldSpec] = (
        ("sender", "sender", "address"),
        ("nonce", "nonce", "uint64"),
        ("amount", "amount", "uint256"),
    )


@dataclass(frozen=True, slots=True)
class Unstake:
    sender: str
    nonce: int
    amount: int

    TYPE: ClassVar[str] = "Unstake"
    TX_TYPE: ClassVar[str] = "unstake"
    SIGNER: ClassVar[str] = "sender"
    FIELDS: ClassVar[FieldSpec] = (
        ("sender", "sender", "address"),
        ("nonce", "nonce", "uint64"),
        ("amount", "amount", "uint256"),
    )


@dataclass(frozen=True, slots=True)
class RegisterResourceNode:
    sender: str
    nonce: int
    models: str
    endpoint: str

    TYPE: ClassVar[str] = "RegisterResourceNode"
    TX_TYPE: ClassVar[str] = "register"
    SIGNER: ClassVar[str] = "sender"
    FIELDS: ClassVar[FieldSpec] = (
        ("sender", "sender", "address"),
        ("nonce", "nonce", "uint64"),
        ("models", "models", "string"),
        ("endpoint", "endpoint", "string"),
    )


Message = (
    SubmitTask
    | SubmitInferenceResult
    | SubmitVerification
    | Transfer
    | Stake
    | Unstake
    | RegisterResourceNode
)
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        SubmitTask,
        SubmitInferenceResult,
        SubmitVerification,
        Transfer,
        Stake,
        Unstake,
        RegisterResourceNode,
    )
}
ACCOUNT_TX_TYPES = (SubmitTask, Transfer, Stake, Unstake, RegisterResourceNode)


def signer_of(msg: Message) -> str:
    """The address that must have signed `msg` (sender, resourceNode or verifier)."""
    address: str = getattr(msg, msg.SIGNER)
    return address


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A message with its signature; `signer` was recovered once, at admission."""

    message: Message
    signature: bytes
    digest: bytes
    hash: bytes
    signer: str

    @property
    def nonce(self) -> int | None:
        return getattr(self.message, "nonce", None)


@dataclass(frozen=True, slots=True)
class Account:
    balance: int = 0
    stake: int = 0
    nonce: int = 0


@dataclass(frozen=True, slots=True)
class ResourceNodeInfo:
    models: str
    endpoint: str
    jailed: bool = False

    def serves(self, model: str | None) -> bool:
        served = [m.strip() for m in self.models.split(",")]
        return "*" in served or (model is not None and model in served)


@dataclass(frozen=True, slots=True)
class ValidatorInfo:
    address: str
    consensus_pub_key: bytes
    url: str


@dataclass(frozen=True, slots=True)
class Task:
    """A task as the ledger keeps it; `queryTask` renders it for the wire."""

    task_hash: bytes
    tx_hash: bytes
    sender: str
    nonce: int
    schema: str
    target_count: int
    prompts: str
    model_options: str
    sid: bytes
    fee_params: str
    fee: int
    model: str | None
    created_height: int | None  # None while its SubmitTask waits in the mempool
    created_at: int | None
    status: str = "submitted"
    finished_height: int | None = None
    finished_at: int | None = None
    response: str | None = None
    verification_count: int = 0
    execution_info: tuple[dict[str, Any], ...] = ()
    settlement: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What the rules know of the block they run in (no clock of their own)."""

    height: int
    time: int
    proposer: str


@dataclass(frozen=True, slots=True)
class Vote:
    """A signed prevote or precommit (PROTOCOL 6); `block_hash` empty means nil."""

    chain_id: int
    height: int
    round: int
    type: str
    block_hash: bytes
    validator: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class Block:
    height: int
    time: int
    proposer: str
    prev_hash: bytes
    txs: tuple[bytes, ...]
    app_hash: bytes
    last_commit: tuple[Vote, ...] = field(default=())
