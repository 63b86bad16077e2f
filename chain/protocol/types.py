"""Values of the chain: transactions, blocks, votes, accounts and tasks.

Every value is a frozen dataclass. Transaction messages carry their EIP-712 type table
(PROTOCOL 3): `FIELDS` lists (wire name, attribute, ABI type) in the normative order.
Bytes fields (schema, prompts, ...) keep the wire string exactly as given; `chain.protocol.wire`
decodes them for hashing.

A task's statuses are the one definition of the words and numbers the wire shows
(`TaskStatus`, `ResultStatus`); its result entries, verdicts and settlement are typed values
with amounts as ints. `chain.protocol.state` encodes them to the stored JSON (which enters the
appHash), `rpc.methods` to the answers of queryTask and queryPendingTasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import ClassVar, Literal

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


@dataclass(frozen=True, slots=True)
class CommitSecrets:
    """A resource node's commitment to the head of its hash chain of secrets (PROTOCOL 4.13)."""

    sender: str
    nonce: int
    head: bytes

    TYPE: ClassVar[str] = "CommitSecrets"
    TX_TYPE: ClassVar[str] = "secrets"
    SIGNER: ClassVar[str] = "sender"
    FIELDS: ClassVar[FieldSpec] = (
        ("sender", "sender", "address"),
        ("nonce", "nonce", "uint64"),
        ("head", "head", "bytes32"),
    )


@dataclass(frozen=True, slots=True)
class RevealSecret:
    """A resource node's secret of `height` (PROTOCOL 4.13): it hashes to the one revealed
    before it. Like a result, it has no nonce: a reveal is good once."""

    resource_node: str
    height: int
    secret: bytes

    TYPE: ClassVar[str] = "RevealSecret"
    TX_TYPE: ClassVar[str] = "reveal"
    SIGNER: ClassVar[str] = "resource_node"
    FIELDS: ClassVar[FieldSpec] = (
        ("resourceNode", "resource_node", "address"),
        ("height", "height", "uint64"),
        ("secret", "secret", "bytes32"),
    )


@dataclass(frozen=True, slots=True)
class AoSpawn:
    """An AO process spawned (PROTOCOL 8.2): its module (Lua source, or the id of a published
    module), the unit that may relay its outgoing messages (`scheduler`), its limits and cron
    interval, and AO's tags (a JSON list of {name, value}) and data. Slot 0 of the process."""

    sender: str
    nonce: int
    module: str
    scheduler: str
    memory_limit: int
    compute_limit: int
    cron_interval: str = ""
    tags: str = "[]"
    data: str = ""

    TYPE: ClassVar[str] = "AoSpawn"
    TX_TYPE: ClassVar[str] = "spawn"
    SIGNER: ClassVar[str] = "sender"
    FIELDS: ClassVar[FieldSpec] = (
        ("sender", "sender", "address"),
        ("nonce", "nonce", "uint64"),
        ("module", "module", "string"),
        ("scheduler", "scheduler", "address"),
        ("memoryLimit", "memory_limit", "uint64"),
        ("computeLimit", "compute_limit", "uint64"),
        ("cronInterval", "cron_interval", "string"),
        ("tags", "tags", "string"),
        ("data", "data", "string"),
    )


@dataclass(frozen=True, slots=True)
class AoMessage:
    """A message to an AO process (PROTOCOL 8.2), given the process's next slot. With
    `fromProcess`, a message that process sent, relayed by its scheduler (the signer)."""

    sender: str
    nonce: int
    target: str
    data: str = ""
    tags: str = "[]"
    from_process: str = ""

    TYPE: ClassVar[str] = "AoMessage"
    TX_TYPE: ClassVar[str] = "message"
    SIGNER: ClassVar[str] = "sender"
    FIELDS: ClassVar[FieldSpec] = (
        ("sender", "sender", "address"),
        ("nonce", "nonce", "uint64"),
        ("target", "target", "string"),
        ("data", "data", "string"),
        ("tags", "tags", "string"),
        ("fromProcess", "from_process", "string"),
    )


@dataclass(frozen=True, slots=True)
class AoDataItem:
    """An ANS-104 data item (PROTOCOL 8.3), signed by its own owner and handed in by `sender`:
    a process (tag Type = Process), a message (Type = Message) or a module (Type = Module)."""

    sender: str
    nonce: int
    item: str

    TYPE: ClassVar[str] = "AoDataItem"
    TX_TYPE: ClassVar[str] = "dataitem"
    SIGNER: ClassVar[str] = "sender"
    FIELDS: ClassVar[FieldSpec] = (
        ("sender", "sender", "address"),
        ("nonce", "nonce", "uint64"),
        ("item", "item", "bytes"),
    )


@dataclass(frozen=True, slots=True)
class AoTerminate:
    """An AO process ended by its owner (PROTOCOL 8.2): later messages to it are refused."""

    sender: str
    nonce: int
    process: str

    TYPE: ClassVar[str] = "AoTerminate"
    TX_TYPE: ClassVar[str] = "terminate"
    SIGNER: ClassVar[str] = "sender"
    FIELDS: ClassVar[FieldSpec] = (
        ("sender", "sender", "address"),
        ("nonce", "nonce", "uint64"),
        ("process", "process", "string"),
    )


Message = (
    SubmitTask
    | SubmitInferenceResult
    | SubmitVerification
    | Transfer
    | Stake
    | Unstake
    | RegisterResourceNode
    | CommitSecrets
    | RevealSecret
    | AoSpawn
    | AoMessage
    | AoDataItem
    | AoTerminate
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
        CommitSecrets,
        RevealSecret,
        AoSpawn,
        AoMessage,
        AoDataItem,
        AoTerminate,
    )
}
AO_TX_TYPES = (AoSpawn, AoMessage, AoDataItem, AoTerminate)
ACCOUNT_TX_TYPES = (
    SubmitTask,
    Transfer,
    Stake,
    Unstake,
    RegisterResourceNode,
    CommitSecrets,
    *AO_TX_TYPES,
)


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
class Secrets:
    """A node's committed hash chain of secrets (PROTOCOL 4.13): the head committed at `base`,
    and the last secret revealed, of `revealed_height` (the head itself at `base`)."""

    head: bytes
    base: int
    revealed_height: int
    revealed: bytes


@dataclass(frozen=True, slots=True)
class ResourceNodeInfo:
    models: str
    endpoint: str
    jailed: bool = False
    secrets: Secrets | None = None

    def serves(self, model: str | None) -> bool:
        served = [m.strip() for m in self.models.split(",")]
        return "*" in served or (model is not None and model in served)


@dataclass(frozen=True, slots=True)
class ValidatorInfo:
    address: str
    consensus_pub_key: bytes
    url: str


class TaskStatus(StrEnum):
    """A task's status (PROTOCOL 4): a `str`, so it compares and encodes as its word."""

    SUBMITTED = "submitted"
    PROCESSING = "processing"
    COMPLETED = "completed"
    VERIFIED = "verified"
    FAILED = "failed"


OPEN_STATUSES = (TaskStatus.SUBMITTED, TaskStatus.PROCESSING, TaskStatus.COMPLETED)
FINAL_STATUSES = (TaskStatus.VERIFIED, TaskStatus.FAILED)


class ResultStatus(IntEnum):
    """A result's status (`executionInfo[].status`, PROTOCOL 4.6): an int on the wire."""

    PENDING = 0  # no verdict yet
    VERIFYING = 1  # verdicts, undecided
    VERIFIED = 2
    REJECTED = 3
    UNVERIFIED = 4  # undecided at the verify deadline: neither paid nor slashed


UNDECIDED = (ResultStatus.PENDING, ResultStatus.VERIFYING)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One verdict on a result (PROTOCOL 4.5); `seq` orders verdicts across the task by
    inclusion. `tx_hash` is the 0x-hex string the wire shows."""

    verifier: str
    valid: bool
    tx_hash: str
    height: int
    seq: int


@dataclass(frozen=True, slots=True)
class ExecutionInfo:
    """One result of a task (an `executionInfo` entry, PROTOCOL 4.3): `rank` is its place in
    inclusion order, `seed` the submitter's (4.4), `tx_hash` the 0x-hex string the wire shows,
    `decided_height` the height of the block that decided it (4.6)."""

    rank: int
    resource_node: str
    result: str
    proof: str
    seed: int
    tx_hash: str
    height: int
    status: ResultStatus = ResultStatus.PENDING
    decided_height: int | None = None
    verifications: tuple[Verdict, ...] = ()
    # The assigned verifiers (PROTOCOL 4.5): the including block's hash that orders the
    # candidates (None while the result waits in the mempool or for its block's end), and the
    # rounds opened so far.
    assignment_seed: bytes | None = None
    rounds: tuple[tuple[str, ...], ...] = ()
    assignment_complete: bool = False  # the rounds opened hold every candidate: the last one
    # Known once the submitter revealed the secret of the task's height (PROTOCOL 4.13).
    forced_error: bool | None = None

    def with_verdict(self, verdict: Verdict) -> ExecutionInfo:
        """This result with one more verdict, `verifying` (built directly, as `decided`:
        `dataclasses.replace` costs twice as much on the path of every verdict)."""
        return ExecutionInfo(
            self.rank,
            self.resource_node,
            self.result,
            self.proof,
            self.seed,
            self.tx_hash,
            self.height,
            ResultStatus.VERIFYING,
            self.decided_height,
            (*self.verifications, verdict),
            self.assignment_seed,
            self.rounds,
            self.assignment_complete,
            self.forced_error,
        )

    def decided(self, status: ResultStatus, height: int) -> ExecutionInfo:
        """This result decided as `status` in the block at `height`."""
        return ExecutionInfo(
            self.rank,
            self.resource_node,
            self.result,
            self.proof,
            self.seed,
            self.tx_hash,
            self.height,
            status,
            height,
            self.verifications,
            self.assignment_seed,
            self.rounds,
            self.assignment_complete,
            self.forced_error,
        )

    def assigned(self) -> frozenset[str]:
        """Every node of every opened round."""
        return frozenset(node for members in self.rounds for node in members)


PayoutRole = Literal["compute", "verify", "canary"]
SlashReason = Literal["result", "verdict", "lazy"]


@dataclass(frozen=True, slots=True)
class Payout:
    """A share of a pool (PROTOCOL 4.8): `rank` is its place, from 1, in its pool's order."""

    address: str
    amount: int
    role: PayoutRole
    rank: int


@dataclass(frozen=True, slots=True)
class Slash:
    """Stake taken at settlement (PROTOCOL 4.8 step 2), for a rejected result or a losing
    verdict."""

    address: str
    amount: int
    reason: SlashReason


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a decided task was settled (PROTOCOL 4.8): every base unit accounted for,
    `sum(payouts) + refund + burned == fee + network_reward + sum(slashed)`."""

    height: int
    fee: int
    network_reward: int  # R - unminted
    slashed: tuple[Slash, ...]
    payouts: tuple[Payout, ...]
    refund: int
    burned: int


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
    status: TaskStatus = TaskStatus.SUBMITTED
    finished_height: int | None = None
    finished_at: int | None = None
    response: str | None = None
    verification_count: int = 0
    execution_info: tuple[ExecutionInfo, ...] = ()
    settlement: Settlement | None = None

    def with_results(self, entries: tuple[ExecutionInfo, ...], status: TaskStatus) -> Task:
        """This task with these result entries and this status: `dataclasses.replace` costs
        twice as much, and this runs for every result and verdict."""
        return Task(
            self.task_hash,
            self.tx_hash,
            self.sender,
            self.nonce,
            self.schema,
            self.target_count,
            self.prompts,
            self.model_options,
            self.sid,
            self.fee_params,
            self.fee,
            self.model,
            self.created_height,
            self.created_at,
            status,
            self.finished_height,
            self.finished_at,
            self.response,
            self.verification_count,
            entries,
            self.settlement,
        )


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What the rules know of the block they run in (no clock of their own)."""

    height: int
    time: int
    proposer: str
    # The hash of the block (PROTOCOL 6.2), which orders the verifiers of the results it
    # includes (4.5); zero where no block exists yet (admission to the mempool).
    block_hash: bytes = ZERO_HASH


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
