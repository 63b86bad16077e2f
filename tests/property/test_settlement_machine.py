"""A hypothesis state machine: the real rules of PoS+W against a reference model of them.

The rules are the real thing: `chain.protocol.blocks.execute_block` over an in-memory store
(`MemChain` below: a dict under `chain.protocol.state.State`), fed signed transactions. Each
transaction is admitted by applying it to the pending state of the next block, as a
validator's mempool does; a block runs its admitted transactions again with
`execute_block` (every one must commit) and ends with a block hash the machine draws, which
orders the verifiers of the results it includes (PROTOCOL 4.5). Six resource nodes of
different stakes and models compute (honestly: a fixed function of the task and the node's
seed, wrong on purpose when their secret makes it a forced error; or not), verify (honestly,
flipped or lazily `valid`), commit and reveal their secrets (or never do), while tasks come
and go and runs of empty blocks cross deadlines.

The reference model below is written from PROTOCOL 4 (4.5 to 4.8 and 4.13 as redesigned)
with plain dicts and lists; it never calls chain.protocol.tasks and computes the order of the
verifiers, the rounds and the forced errors itself from keccak. Where PROTOCOL is open it
follows this implementation's choices: rank weights go to valid results in rank order and to
winning verdicts in `seq` order (a verifier with two winning verdicts is paid twice); unpaid
amounts go back pool by pool; slashes take the stake at settlement, one after another in rank
order, and jailing follows all of them; a result is weighed when a verdict arrives and at the
verify deadline (stakes as at that moment); checks report errors in the rules' order. Every
admission decision (accepted, or which error class) must agree with the model; after every step
the pending state's balances, stakes and nonces and its supply invariant; after every block
every account's balance, stake and nonce, every node's jailed flag, models and secrets, and
every task (status, response, verificationCount, executionInfo with its assignment and
forcedError, settlement to the base unit) must equal the model's, and the supply invariant
(4.10) must hold."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from chain.node.store import MemoryStore
from chain.protocol import crypto, tasks, wire
from chain.protocol.blocks import apply_genesis, apply_tx, execute_block
from chain.protocol.errors import (
    ChainError,
    DuplicateSubmission,
    InsufficientBalance,
    InvalidParams,
    NonceMismatch,
    NotEligible,
    TaskClosed,
    UnknownTask,
)
from chain.protocol.genesis import DEV_MNEMONIC, Genesis, Params, dev_genesis, parse_genesis
from chain.protocol.state import (
    ACCOUNT,
    OPEN_TASK,
    State,
    decode_account,
    get_account,
    get_node,
    get_supply,
    get_task,
    get_task_stats,
    settlement_to_json,
)
from chain.protocol.types import (
    FINAL_STATUSES,
    BlockContext,
    CommitSecrets,
    Message,
    RegisterResourceNode,
    ResultStatus,
    RevealSecret,
    SignedTx,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    TaskStatus,
    Unstake,
    signer_of,
)

E18 = 10**18
TIME0 = 1_767_226_000
NODE_COUNT = 6

KEYS: dict[str, bytes] = {}
for _index in [0, 1, *range(200, 200 + NODE_COUNT)]:
    _key = crypto.dev_private_key(DEV_MNEMONIC, _index)
    KEYS[crypto.address_of_private_key(_key)] = _key
SENDERS = [crypto.address_of_private_key(crypto.dev_private_key(DEV_MNEMONIC, i)) for i in (0, 1)]
NODES = [
    crypto.address_of_private_key(crypto.dev_private_key(DEV_MNEMONIC, 200 + k))
    for k in range(NODE_COUNT)
]
UNKNOWN_TASK = b"\x42" * 32

# Models each node serves at genesis: nobody but node 0 serves "phi" or a task naming none;
# llama-3 has enough candidates for every dispute round.
GENESIS_MODELS = ["*", "llama-3,gpt-x", "llama-3,mistral", "llama-3, mistral", "mistral", "llama-3"]
TASK_MODELS = ["llama-3", "llama-3", "llama-3", "mistral", "mistral", "gpt-x", "phi", None]
REGISTER_MODELS = ["*", "llama-3", "mistral , gpt-x", "phi"]

PENDING, VERIFYING, VERIFIED, REJECTED, UNVERIFIED = ResultStatus  # 0 to 4, in this order
FINAL = FINAL_STATUSES

# The machine's chains of secrets: short ones (a dev node's has 65,536 links), one per node
# and epoch, the k-th committed with the k-th CommitSecrets of the node (epoch 0 at genesis).
SECRET_CHAIN = 600

ErrorClass = type[ChainError] | None


def keccak(data: bytes) -> bytes:
    return crypto.keccak(data)


@cache
def secret_chain(address: str, epoch: int) -> tuple[bytes, ...]:
    """links[i] = keccak^i(seed): the head is links[-1], the secret i heights above the base
    is links[SECRET_CHAIN - i]."""
    links = [keccak(b"machine secrets" + bytes.fromhex(address[2:]) + bytes([epoch]))]
    for _ in range(SECRET_CHAIN):
        links.append(keccak(links[-1]))
    return tuple(links)


def seed_of(task_hash: bytes, address: str) -> int:
    """PROTOCOL 4.4: int(keccak256(taskHash || nodeAddress)[:8]), big-endian."""
    return int.from_bytes(keccak(task_hash + bytes.fromhex(address[2:]))[:8], "big")


def honest_output(task_hash: bytes, address: str) -> str:
    return f"output {seed_of(task_hash, address)}"


# --- the rules over an in-memory store --------------------------------------------------------


class MemChain:
    """One validator's rules without its node: admission applies a transaction to the next
    block's pending state (a refused one changes nothing); `produce` runs the admitted ones
    with `execute_block` under the block hash given and commits the block's writes."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.params = genesis.params
        self.validator = genesis.validators[0].address
        self.store = MemoryStore()  # the in-memory twin of the LevelDB store
        state = State(self.store)
        apply_genesis(state, genesis)
        self.store.write(state.writes())
        self.height = 0
        self.pending = State(self.store)
        self.txs: list[SignedTx] = []

    def context(self, block_hash: bytes = b"\x00" * 32) -> BlockContext:
        height = self.height + 1
        return BlockContext(height, TIME0 + height, self.validator, block_hash)

    def sign(self, msg: Message) -> SignedTx:
        return crypto.sign_message(msg, self.genesis.chain_id, KEYS[signer_of(msg)])

    def submit(self, tx: SignedTx) -> ChainError | None:
        """Admit `tx` into the next block, or say why not."""
        try:
            apply_tx(self.pending, self.params, self.context(), tx)
        except ChainError as exc:
            return exc
        self.txs.append(tx)
        return None

    def produce(self, block_hash: bytes) -> int:
        state = State(self.store)
        records = execute_block(state, self.params, self.context(block_hash), self.txs, [])
        assert [status for _tx, status in records] == ["committed"] * len(self.txs)
        self.store.write(state.writes())
        self.height += 1
        self.pending = State(self.store)
        self.txs = []
        return self.height

    def open_task_hashes(self) -> list[bytes]:
        return [key[len(OPEN_TASK) :] for key, _ in self.store.iterate(OPEN_TASK)]

    def supply_check(self) -> tuple[int, int]:
        """(held, expected): balances + stakes + escrow of open tasks, genesis + minted - burned."""
        held = sum(
            decode_account(raw).stake + decode_account(raw).balance
            for _key, raw in self.store.iterate(ACCOUNT)
        )
        for task_hash in self.open_task_hashes():
            task = get_task(self.store, task_hash)
            assert task is not None
            held += task.fee
        genesis_supply, minted, burned = get_supply(self.store)
        return held, genesis_supply + minted - burned


# --- the reference model ----------------------------------------------------------------------


@dataclass
class Acct:
    balance: int = 0
    stake: int = 0
    nonce: int = 0


@dataclass
class MSecrets:
    head: bytes
    base: int
    revealed_height: int
    revealed: bytes


@dataclass
class RNode:
    models: list[str]
    jailed: bool = False
    secrets: MSecrets | None = None

    def serves(self, model: str | None) -> bool:
        return "*" in self.models or (model is not None and model in self.models)


@dataclass
class Verdict:
    verifier: str
    valid: bool
    seq: int
    height: int


@dataclass
class Result:
    node: str
    text: str
    rank: int
    seed: int
    height: int
    order: int  # across the chain, the order results were included in
    status: int = PENDING
    decided_height: int | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    assignment_seed: bytes | None = None
    rounds: list[list[str]] = field(default_factory=list)
    complete: bool = False
    forced: bool | None = None

    @property
    def undecided(self) -> bool:
        return self.status in (PENDING, VERIFYING)

    def assigned(self) -> set[str]:
        return {a for members in self.rounds for a in members}


@dataclass
class MTask:
    task_hash: bytes
    sender: str
    fee: int
    model: str | None
    target: int
    created: int
    results: list[Result] = field(default_factory=list)
    status: TaskStatus = TaskStatus.SUBMITTED
    response: str | None = None
    verification_count: int = 0
    finished: int | None = None
    settlement: dict[str, Any] | None = None

    def open_slots(self) -> int:
        return self.target - sum(1 for r in self.results if r.status != REJECTED)

    def result_of(self, address: str) -> Result | None:
        return next((r for r in self.results if r.node == address), None)


class Reference:
    """PROTOCOL 4 over plain values. Each transaction method checks in the order the rules
    report errors, applies on success, and returns the error class (None when accepted)."""

    def __init__(self, raw: dict[str, Any]) -> None:
        p = raw["params"]
        self.min_stake = int(p["minNodeStake"])
        self.base_fee = int(p["taskBaseFee"])
        self.fee_per_node = int(p["taskFeePerNode"])
        self.network_reward = int(p["networkRewardPerTask"])
        self.block_reward = int(p["blockReward"])
        self.alpha = int(p["computeShareBps"])
        self.decay = int(p["rankDecayBps"])
        self.quorum = int(p["verificationQuorum"])
        self.dispute_rounds = int(p["disputeRounds"])
        self.compute_blocks = int(p["computeDeadlineBlocks"])
        self.verify_blocks = int(p["verifyDeadlineBlocks"])
        self.reveal_blocks = int(p["revealDeadlineBlocks"])
        self.canary_rate = int(p["canaryRateBps"])
        self.canary_bonus = int(p["canaryBonus"])
        self.result_slash = int(p["resultSlashBps"])
        self.verdict_slash = int(p["verifierSlashBps"])
        self.slashing = bool(p["slashing"])
        self.validator = raw["validators"][0]["address"]
        self.accounts: dict[str, Acct] = {}
        self.nodes: dict[str, RNode] = {}
        self.tasks: dict[bytes, MTask] = {}  # in creation order
        for item in raw["accounts"]:
            self.acct(item["address"]).balance += int(item["balance"])
        for item in raw["validators"]:
            self.acct(item["address"]).stake += int(item["stake"])
        for item in raw["resourceNodes"]:
            self.acct(item["address"]).stake += int(item["stake"])
            rnode = RNode([m.strip() for m in item["models"].split(",")])
            if "secretsHead" in item:
                head = bytes.fromhex(item["secretsHead"][2:])
                rnode.secrets = MSecrets(head, 0, 0, head)
            self.nodes[item["address"]] = rnode
        self.genesis_supply = sum(a.balance + a.stake for a in self.accounts.values())
        self.minted = 0
        self.burned = 0
        self.height = 0  # the last committed block; transactions go into height + 1
        self.included = 0  # results so far
        self.to_assign: list[Result] = []  # results of the block being built
        self.reason: str | None = None  # the reason of the last refusal, where PROTOCOL names it

    def acct(self, address: str) -> Acct:
        return self.accounts.setdefault(address, Acct())

    def escrow(self) -> int:
        return sum(t.fee for t in self.tasks.values() if t.settlement is None)

    def compute_deadline(self, task: MTask) -> int:
        return task.created + self.compute_blocks

    def verify_deadline(self, task: MTask) -> int:
        return self.compute_deadline(task) + self.verify_blocks

    def reveal_deadline(self, task: MTask) -> int:
        return self.verify_deadline(task) + self.reveal_blocks

    def standing(self, address: str) -> bool:
        """Registered, not jailed, staked (4.2, without the model)."""
        node = self.nodes.get(address)
        return node is not None and not node.jailed and self.acct(address).stake >= self.min_stake

    def eligible(self, address: str, model: str | None) -> bool:
        return self.standing(address) and self.nodes[address].serves(model)

    def may_compute(self, address: str, task: MTask) -> bool:
        """4.13: with forced errors on, only with secrets committed before the task, and
        the secret of the task's height not revealed yet (else everyone would know at once
        whether the result is a forced error)."""
        secrets = self.nodes[address].secrets
        if not self.canary_rate:
            return True
        return (
            secrets is not None
            and secrets.base < task.created
            and secrets.revealed_height < task.created
        )

    def busy(self, address: str) -> bool:
        """Results or verdicts of the node in a task not settled yet (4.11; the guard lasts
        until the settlement, which takes the stake it slashes)."""
        for task in self.tasks.values():
            if task.settlement is not None:
                continue
            for r in task.results:
                if r.node == address or any(v.verifier == address for v in r.verdicts):
                    return True
        return False

    def secret_at(self, address: str, height: int) -> bytes | None:
        """The node's secret of `height` as far as it is revealed (4.13), else None."""
        secrets = self.nodes[address].secrets
        if secrets is None or not secrets.base < height <= secrets.revealed_height:
            return None
        value = secrets.revealed
        for _ in range(secrets.revealed_height - height):
            value = keccak(value)
        return value

    def is_forced(self, secret: bytes, task_hash: bytes) -> bool:
        draw = int.from_bytes(keccak(secret + task_hash), "big")
        return draw * 10_000 < self.canary_rate * 2**256

    def known_forced(self, address: str, task: MTask) -> bool | None:
        if not self.canary_rate:
            return None
        secret = self.secret_at(address, task.created)
        return None if secret is None else self.is_forced(secret, task.task_hash)

    # account transactions (nonces are always right here: the accounts machine tests them)

    def stake(self, address: str, amount: int) -> ErrorClass:
        acct = self.acct(address)
        if amount == 0:
            return InvalidParams
        if amount > acct.balance:
            return InsufficientBalance
        acct.balance -= amount
        acct.stake += amount
        acct.nonce += 1
        node = self.nodes.get(address)
        if node is not None and node.jailed and acct.stake >= self.min_stake:
            node.jailed = False
        return None

    def unstake(self, address: str, amount: int) -> ErrorClass:
        acct = self.acct(address)
        if amount == 0:
            return InvalidParams
        if amount > acct.stake:
            return InsufficientBalance
        if acct.stake - amount < self.min_stake and address in self.nodes and self.busy(address):
            return NotEligible
        acct.stake -= amount
        acct.balance += amount
        acct.nonce += 1
        return None

    def register(self, address: str, models: str) -> ErrorClass:
        node = self.nodes.get(address)
        kept = RNode([m.strip() for m in models.split(",")])
        if node is not None:
            kept.jailed, kept.secrets = node.jailed, node.secrets
        self.nodes[address] = kept
        self.acct(address).nonce += 1
        return None

    def submit_task(self, task_hash: bytes, sender: str, target: int, model: str | None) -> None:
        fee = self.base_fee + self.fee_per_node * target
        acct = self.acct(sender)
        assert acct.balance >= fee
        acct.balance -= fee
        acct.nonce += 1
        self.tasks[task_hash] = MTask(task_hash, sender, fee, model, target, self.height + 1)

    # secrets (4.12, 4.13)

    def commit_secrets(self, address: str, nonce: int, head: bytes) -> ErrorClass:
        acct = self.acct(address)
        if nonce != acct.nonce:
            return NonceMismatch
        if head == b"\x00" * 32:
            return InvalidParams
        node = self.nodes.get(address)
        if node is None or self.busy(address):
            return NotEligible
        height = self.height + 1
        node.secrets = MSecrets(head, height, height, head)
        acct.nonce += 1
        return None

    def reveal(self, address: str, height: int, secret: bytes) -> ErrorClass:
        node = self.nodes.get(address)
        if node is None or node.secrets is None:
            return NotEligible
        secrets = node.secrets
        last = secrets.revealed_height
        if height <= last or height > self.height + 1 or height - last > 4096:
            return InvalidParams
        value = secret
        for _ in range(height - last):
            value = keccak(value)
        if value != secrets.revealed:
            return InvalidParams
        secrets.revealed_height, secrets.revealed = height, secret
        if not self.canary_rate:
            return None
        now = self.height + 1
        waiting = [
            (r.order, t, r)
            for t in self.tasks.values()
            if t.settlement is None
            for r in t.results
            if r.node == address
        ]
        for _order, task, result in sorted(waiting, key=lambda item: item[0]):
            if task.settlement is not None or result.forced is not None:
                continue
            forced = self.known_forced(address, task)
            if forced is None:
                continue
            result.forced = forced
            self.maybe_settle(task, now, compute_closed=now > self.compute_deadline(task))
        return None

    # results and verdicts (4.3, 4.5, 4.6)

    def result(self, task_hash: bytes, address: str, text: str) -> ErrorClass:
        height = self.height + 1
        task = self.tasks.get(task_hash)
        if task is None:
            return UnknownTask
        if not self.eligible(address, task.model) or not self.may_compute(address, task):
            return NotEligible
        if task.result_of(address) is not None:
            return DuplicateSubmission
        if task.status in FINAL or height > self.compute_deadline(task):
            return TaskClosed
        if task.open_slots() == 0:
            return TaskClosed
        rank = len(task.results) + 1
        self.included += 1
        result = Result(address, text, rank, seed_of(task_hash, address), height, self.included)
        task.results.append(result)
        self.to_assign.append(result)
        self.refresh_status(task)
        return None

    def verdict(self, task_hash: bytes, verifier: str, submitter: str, valid: bool) -> ErrorClass:
        height = self.height + 1
        task = self.tasks.get(task_hash)
        if task is None:
            return UnknownTask
        if verifier == submitter or not self.eligible(verifier, task.model):
            return NotEligible
        result = task.result_of(submitter)
        if result is None:
            return InvalidParams
        if verifier not in result.assigned():
            self.reason = "not assigned"  # data.reason, as PROTOCOL 4.5 names it
            return NotEligible
        if any(v.verifier == verifier for v in result.verdicts):
            return DuplicateSubmission
        if not result.undecided or height > self.verify_deadline(task):
            return TaskClosed
        seq = 1 + sum(len(r.verdicts) for r in task.results)
        result.verdicts.append(Verdict(verifier, valid, seq, height))
        result.status = VERIFYING
        self.decide(task, result, height)
        self.refresh_status(task)
        self.maybe_settle(task, height, compute_closed=height > self.compute_deadline(task))
        return None

    def order(self, task: MTask, result: Result) -> list[str]:
        """The candidates not assigned yet, eligible now, in the result's order (4.5)."""
        assert result.assignment_seed is not None
        taken = result.assigned() | {result.node}
        prefix = result.assignment_seed + task.task_hash + bytes.fromhex(result.node[2:])
        candidates = [a for a in self.nodes if a not in taken and self.eligible(a, task.model)]
        return sorted(candidates, key=lambda a: keccak(prefix + bytes.fromhex(a[2:])))

    def next_round(self, task: MTask, result: Result) -> None:
        """Round len(rounds): `quorum` candidates, or all that are left for the last one; a
        round with nobody left is not opened and the one before it was the last."""
        order = self.order(task, result)
        last = len(result.rounds) == self.dispute_rounds + 1
        members = order if last else order[: self.quorum]
        if members or not result.rounds:
            result.rounds.append(members)
        result.complete = last or len(order) <= self.quorum

    def is_last(self, result: Result) -> bool:
        return result.complete or len(result.rounds) > self.dispute_rounds + 1

    def decide(self, task: MTask, result: Result, height: int) -> None:
        """4.6 on a verdict: a round before the last decides when all its members agree and
        their side holds > 2/3 of the stake of every verdict given; a dispute, or agreement
        short of that, opens the next; the last round decides by > 2/3 of all assigned stake."""
        while not self.is_last(result):
            members = result.rounds[-1]
            votes = {v.verifier: v.valid for v in result.verdicts if v.verifier in members}
            if len(set(votes.values())) == 2:
                self.next_round(task, result)
                continue
            if not votes or len(votes) < len(members):
                return
            agreed = next(iter(votes.values()))
            side = sum(self.acct(v.verifier).stake for v in result.verdicts if v.valid == agreed)
            answering = sum(self.acct(v.verifier).stake for v in result.verdicts)
            if 3 * side > 2 * answering:
                result.status = VERIFIED if agreed else REJECTED
                result.decided_height = height
                return
            self.next_round(task, result)
        assigned = result.assigned()
        total = sum(self.acct(a).stake for a in assigned)
        self.weigh(result, height, total)

    def weigh(self, result: Result, height: int, total: int) -> None:
        for_ = sum(self.acct(v.verifier).stake for v in result.verdicts if v.valid)
        against = sum(self.acct(v.verifier).stake for v in result.verdicts if not v.valid)
        outcome = None
        if 3 * for_ > 2 * total:
            outcome = VERIFIED
        elif 3 * against > 2 * total:
            outcome = REJECTED
        if outcome is not None:
            result.status = outcome
            result.decided_height = height

    def deadline(self, result: Result, height: int) -> None:
        """4.6 at the verify deadline: more than half of the answers and of their stake."""
        valid = [v for v in result.verdicts if v.valid]
        invalid = [v for v in result.verdicts if not v.valid]
        stake_valid = sum(self.acct(v.verifier).stake for v in valid)
        stake_invalid = sum(self.acct(v.verifier).stake for v in invalid)
        result.status = UNVERIFIED
        if len(valid) > len(invalid) and stake_valid > stake_invalid:
            result.status = VERIFIED
        elif len(invalid) > len(valid) and stake_invalid > stake_valid:
            result.status = REJECTED
        result.decided_height = height

    def refresh_status(self, task: MTask) -> None:
        if task.status in FINAL:
            return
        if not task.results:
            task.status = TaskStatus.SUBMITTED
        elif task.open_slots() > 0:
            task.status = TaskStatus.PROCESSING
        else:
            task.status = TaskStatus.COMPLETED

    def waits_for_secret(self, result: Result) -> bool:
        # every result no longer undecided, the unverified included (4.13)
        return bool(self.canary_rate) and not result.undecided and result.forced is None

    def maybe_settle(
        self, task: MTask, height: int, *, compute_closed: bool, reveal_closed: bool = False
    ) -> None:
        """4.7: no undecided result, no open slot or the compute window closed, and every
        decided result revealed or the reveal deadline reached."""
        if task.status in FINAL or any(r.undecided for r in task.results):
            return
        if task.open_slots() > 0 and not compute_closed:
            return
        if not reveal_closed and any(self.waits_for_secret(r) for r in task.results):
            return
        self.settle(task, height)

    # end of block (4.5, 4.6, 4.7, 4.9)

    def assign(self, block_hash: bytes) -> None:
        """End of block: round 0 of each result the block included, ordered by its hash."""
        for result in self.to_assign:
            task = next(t for t in self.tasks.values() if result in t.results)
            if task.status in FINAL:
                continue
            result.assignment_seed = block_hash
            self.next_round(task, result)
        self.to_assign = []

    def end_block(self, height: int, block_hash: bytes) -> None:
        """The block's results assigned (4.5), the deadlines due (4.6, 4.7), the reward (4.9)."""
        self.assign(block_hash)
        for task in self.tasks.values():  # in creation order, as the deadlines came due
            due = [self.compute_deadline(task), self.verify_deadline(task)]
            if self.canary_rate:
                due.append(self.reveal_deadline(task))
            if task.status in FINAL or height not in due:
                continue
            if height >= self.verify_deadline(task):
                for result in task.results:
                    if result.undecided:  # a majority of the answers by count and stake
                        self.deadline(result, height)
                self.refresh_status(task)
            reveal_closed = height >= self.reveal_deadline(task)
            self.maybe_settle(task, height, compute_closed=True, reveal_closed=reveal_closed)
        self.acct(self.validator).balance += self.block_reward
        self.minted += self.block_reward
        self.height = height

    # settlement (4.8)

    def weights(self, count: int) -> list[int]:
        out: list[int] = []
        for _ in range(count):
            out.append(10_000 if not out else out[-1] * (10_000 - self.decay) // 10_000)
        return out

    def shares(self, pool: int, count: int) -> list[int]:
        weights = self.weights(count)
        return [pool * w // sum(weights) for w in weights]

    def slash(self, address: str, bps: int, reason: str, record: list[dict[str, Any]]) -> None:
        acct = self.acct(address)
        amount = acct.stake * bps // 10_000
        acct.stake -= amount
        record.append({"address": address, "amount": amount, "reason": reason})

    def kind(self, result: Result) -> str:
        """unrevealed, forced (a revealed forced error, whatever its status), valid, wrong or
        unverified (4.8)."""
        if self.canary_rate and result.forced is None:
            return "unrevealed"
        if self.canary_rate and result.forced:
            return "forced"
        if result.status == VERIFIED:
            return "valid"
        return "wrong" if result.status == REJECTED else "unverified"

    def settle(self, task: MTask, height: int) -> None:
        by_rank = sorted(task.results, key=lambda r: r.rank)
        kinds = [self.kind(r) for r in by_rank]
        valid = [r for r, k in zip(by_rank, kinds, strict=True) if k == "valid"]
        f = task.fee
        r = self.network_reward if valid else 0

        slashes: list[dict[str, Any]] = []
        winners: list[Verdict] = []
        catchers: list[Verdict] = []
        for result, kind in zip(by_rank, kinds, strict=True):
            if kind in ("wrong", "unrevealed") and self.slashing:
                self.slash(result.node, self.result_slash, "result", slashes)
            if kind in ("unrevealed", "unverified"):
                continue  # its verdicts are on no side
            winning = kind == "valid"
            for v in result.verdicts:
                if v.valid == winning:
                    winners.append(v)
                    if kind == "forced":
                        catchers.append(v)
                elif self.slashing:
                    reason = "lazy" if kind == "forced" else "verdict"
                    self.slash(v.verifier, self.verdict_slash, reason, slashes)
        for address in {s["address"] for s in slashes}:
            if self.acct(address).stake < self.min_stake and address in self.nodes:
                self.nodes[address].jailed = True
        slashed = sum(s["amount"] for s in slashes)

        pool_c = (f + r) * self.alpha // 10_000
        pool_v = f + r - pool_c + slashed
        computers = [res.node for res in valid]
        verifiers = [v.verifier for v in sorted(winners, key=lambda v: v.seq)]
        payouts = []
        paid_c = paid_v = 0
        for role, who, pool in (("compute", computers, pool_c), ("verify", verifiers, pool_v)):
            for rank, (address, amount) in enumerate(
                zip(who, self.shares(pool, len(who)), strict=True), 1
            ):
                self.acct(address).balance += amount
                payouts.append(
                    {"address": address, "amount": str(amount), "role": role, "rank": rank}
                )
                if role == "compute":
                    paid_c += amount
                else:
                    paid_v += amount
        unpaid_c, unpaid_v = pool_c - paid_c, pool_v - paid_v
        burned = unpaid_v * slashed // pool_v if pool_v else 0
        rest = unpaid_c + unpaid_v - burned
        unminted = rest * r // (f + r) if f + r else 0
        refund = rest - unminted
        self.acct(task.sender).balance += refund
        bonus = self.canary_bonus
        for rank, v in enumerate(sorted(catchers, key=lambda v: v.seq), 1):
            self.acct(v.verifier).balance += bonus
            payouts.append(
                {"address": v.verifier, "amount": str(bonus), "role": "canary", "rank": rank}
            )
        minted = r - unminted + bonus * len(catchers)
        self.minted += minted
        self.burned += burned

        task.status = TaskStatus.VERIFIED if valid else TaskStatus.FAILED
        task.response = valid[0].text if valid else None
        task.verification_count = sum(1 for v in valid[0].verdicts if v.valid) if valid else 0
        task.finished = height
        task.settlement = {
            "height": height,
            "fee": str(f),
            "networkReward": str(minted),
            "slashed": [{**s, "amount": str(s["amount"])} for s in slashes],
            "payouts": payouts,
            "refund": str(refund),
            "burned": str(burned),
        }

    # the work open for a node (queryPendingTasks)

    def work(
        self, address: str, committed: set[bytes]
    ) -> list[tuple[bytes, bool, list[str], bool]] | None:
        if not self.standing(address):
            return None
        height = self.height + 1
        out = []
        for task in self.tasks.values():
            if task.task_hash not in committed or task.status in FINAL:
                continue
            if not self.nodes[address].serves(task.model):
                continue
            own = task.result_of(address)
            compute = (
                own is None
                and task.open_slots() > 0
                and height <= self.compute_deadline(task)
                and self.may_compute(address, task)
            )
            verify = []
            if height <= self.verify_deadline(task):
                verify = [
                    r.node
                    for r in task.results
                    if r.undecided
                    and address in r.assigned()
                    and all(v.verifier != address for v in r.verdicts)
                ]
            reveal = own is not None and self.waits_for_secret(own)
            if compute or verify or reveal:
                out.append((task.task_hash, compute, verify, reveal))
        return out


# --- the machine ----------------------------------------------------------------------------

MAX_OPEN_TASKS = 4
MOVES = [
    *["work"] * 16,
    *["task"] * 3,
    "result",
    "verdict",
    "unknown task",
    "stake",
    "unstake",
    "register",
    "query",
    "commit",
    "reveal",
    *["blocks"] * 7,
]
AMOUNT_KINDS = ["to min", "below min", "small", "zero", "all", "all+1"]
STAKE_BASES = [1000 * E18, 1100 * E18, 1500 * E18, 2000 * E18, 3000 * E18]
STAKE_ODD = [0, 0, 1, 9_999, 123_457]
REVEAL_KINDS = ["needed", "now", "now", "old", "future", "bad secret"]


class SettlementMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain: MemChain
        self.model: Reference
        self.task_list: list[bytes] = []
        self.prompt = 0
        self.epochs: dict[str, int] = {}  # the epoch of each node's committed chain
        self.silent: set[str] = set()  # nodes that never reveal when they work

    @initialize(
        quorum=st.sampled_from([1, 2, 2]),
        dispute_rounds=st.sampled_from([0, 1, 2]),
        compute_blocks=st.integers(3, 6),
        verify_blocks=st.integers(3, 6),
        reveal_blocks=st.integers(0, 4),
        canary_rate=st.sampled_from([0, 2500, 5000]),
        canary_bonus=st.sampled_from([0, 10**16, 10**16 + 1]),
        slashing=st.sampled_from([True, True, True, False]),
        stakes=st.lists(
            st.tuples(st.sampled_from(STAKE_BASES), st.sampled_from(STAKE_ODD)),
            min_size=NODE_COUNT,
            max_size=NODE_COUNT,
        ),
        secrets=st.lists(
            st.sampled_from([True, True, True, False]), min_size=NODE_COUNT, max_size=NODE_COUNT
        ),
        silent=st.lists(
            st.sampled_from([False, False, True]), min_size=NODE_COUNT, max_size=NODE_COUNT
        ),
        base_fee=st.sampled_from([10**15, 10**15 + 3]),
        network_reward=st.sampled_from([10**16, 10**16 + 7]),
        compute_share=st.sampled_from([7000, 6667]),
        decay=st.sampled_from([1000, 3333]),
    )
    def start(
        self,
        quorum: int,
        dispute_rounds: int,
        compute_blocks: int,
        verify_blocks: int,
        reveal_blocks: int,
        canary_rate: int,
        canary_bonus: int,
        slashing: bool,
        stakes: list[tuple[int, int]],
        secrets: list[bool],
        silent: list[bool],
        base_fee: int,
        network_reward: int,
        compute_share: int,
        decay: int,
    ) -> None:
        params = Params(
            block_time_ms=0,
            verification_quorum=quorum,
            dispute_rounds=dispute_rounds,
            compute_deadline_blocks=compute_blocks,
            verify_deadline_blocks=verify_blocks,
            reveal_deadline_blocks=reveal_blocks,
            canary_rate_bps=canary_rate,
            canary_bonus=canary_bonus,
            slashing=slashing,
            task_base_fee=base_fee,
            network_reward_per_task=network_reward,
            compute_share_bps=compute_share,
            rank_decay_bps=decay,
        )
        raw = dev_genesis(
            mnemonic=DEV_MNEMONIC, params=params, resource_nodes=NODE_COUNT, dev_accounts=2
        )
        for item, (base, odd), models, has_secrets in zip(
            raw["resourceNodes"], stakes, GENESIS_MODELS, secrets, strict=True
        ):
            item["stake"] = str(base + odd)
            item["models"] = models
            item.pop("secretsHead", None)
            if has_secrets:
                item["secretsHead"] = wire.hex0x(secret_chain(item["address"], 0)[-1])
        self.epochs = {address: 0 for address in NODES}
        self.silent = {address for address, s in zip(NODES, silent, strict=True) if s}
        genesis = parse_genesis(raw)
        self.chain = MemChain(genesis)
        self.model = Reference(raw)
        assert self.model.genesis_supply == genesis.supply
        self.compare()

    # --- helpers ----------------------------------------------------------------------------

    def send(self, msg: Message, expected: ErrorClass) -> bytes:
        tx = self.chain.sign(msg)
        exc = self.chain.submit(tx)
        reason, self.model.reason = self.model.reason, None
        if exc is not None:
            assert expected is not None, f"the rules refused {msg} with {exc!r}; the model accepts"
            assert type(exc) is expected, f"{msg}: rules {exc!r}, model {expected.__name__}"
            assert reason is None or exc.reason == reason, (exc.reason, reason)
        else:
            assert expected is None, f"the rules accepted {msg}; the model: {expected.__name__}"
        return tx.digest

    def pick_task(self, pick: int) -> bytes:
        recent = self.task_list[-6:]
        return recent[pick % len(recent)]

    def nonce(self, address: str) -> int:
        return self.model.acct(address).nonce

    def own_secret(self, node: str, height: int) -> bytes | None:
        """The node's own secret of `height` from the chain it committed last, if any."""
        secrets = self.model.nodes[node].secrets
        if secrets is None or not 0 <= height - secrets.base <= SECRET_CHAIN:
            return None
        return secret_chain(node, self.epochs[node])[SECRET_CHAIN - (height - secrets.base)]

    def forced_for(self, node: str, task_hash: bytes) -> bool:
        """Whether the node's result for the task must be a forced error (4.13)."""
        task = self.model.tasks[task_hash]
        secret = self.own_secret(node, task.created)
        return (
            bool(self.model.canary_rate)
            and secret is not None
            and self.model.is_forced(secret, task_hash)
        )

    # --- one rule, many moves -----------------------------------------------------------------
    # A single rule with a weighted move keeps the mix steady: hypothesis' swarm testing turns
    # whole rules off per example, and an example without blocks or without workers settles
    # nothing. Each move is a method below.

    @rule(
        move=st.sampled_from(MOVES),
        node=st.sampled_from(NODES),
        other=st.sampled_from(NODES),
        sender=st.sampled_from(SENDERS),
        pick=st.integers(0, 2**16),
        target_count=st.integers(1, 3),
        model=st.sampled_from(TASK_MODELS),
        honest=st.sampled_from(["honest", "honest", "honest", "wrong", "ignores forced"]),
        mode=st.sampled_from(["honest", "honest", "honest", "flip", "lazy"]),
        kind=st.sampled_from(AMOUNT_KINDS),
        reveal_kind=st.sampled_from(REVEAL_KINDS),
        count=st.sampled_from([1, 1, 2, 3, 5, 8]),
        block_seed=st.integers(0, 2**32),
    )
    def step(
        self,
        move: str,
        node: str,
        other: str,
        sender: str,
        pick: int,
        target_count: int,
        model: str | None,
        honest: str,
        mode: str,
        kind: str,
        reveal_kind: str,
        count: int,
        block_seed: int,
    ) -> None:
        open_tasks = sum(1 for t in self.model.tasks.values() if t.status not in FINAL)
        if move == "task" and open_tasks < MAX_OPEN_TASKS:
            self.submit_task(sender, target_count, model)
        elif move in ("work", "task"):
            if not self.worker_acts(node, pick, honest, mode, reveal_kind):
                # an idle worker: the world moves on, a user submits a task or time passes
                if (pick % 2 or not open_tasks) and open_tasks < MAX_OPEN_TASKS:
                    self.submit_task(sender, target_count, model)
                else:
                    self.produce_blocks(1, block_seed)
        elif move == "result" and self.task_list:
            self.submit_result(self.pick_task(pick), node, honest, pick)
        elif move == "verdict" and self.task_list:
            self.any_verdict(self.pick_task(pick), node, other, pick, mode)
        elif move == "unknown task":
            self.send(SubmitInferenceResult(UNKNOWN_TASK, node, "x"), UnknownTask)
            self.send(SubmitVerification(UNKNOWN_TASK, node, other, pick % 2 == 0), UnknownTask)
        elif move == "stake":
            self.stake(node, kind)
        elif move == "unstake":
            self.unstake(node, kind)
        elif move == "register":
            self.register(node, REGISTER_MODELS[pick % len(REGISTER_MODELS)])
        elif move == "query":
            self.pending_work(node)
        elif move == "commit":
            self.commit(sender if pick % 5 == 0 else node, zero=pick % 7 == 0)
        elif move == "reveal":
            self.reveal(node, reveal_kind, pick)
        elif move == "blocks":
            self.produce_blocks(count, block_seed)

    def submit_task(self, sender: str, target_count: int, model: str | None) -> None:
        self.prompt += 1
        options = "free-form options" if model is None else json.dumps({"model": model})
        prompts = f"prompt {self.prompt}"
        msg = SubmitTask(sender, self.nonce(sender), "text", target_count, prompts, options)
        task_hash = self.send(msg, None)
        self.model.submit_task(task_hash, sender, target_count, model)
        self.task_list.append(task_hash)

    def submit_result(self, task_hash: bytes, node: str, honest: str, noise: int) -> None:
        """honest: the output, wrong on purpose when it must be a forced error; wrong: made
        up; ignores forced: the output even when it must be a forced error."""
        text = honest_output(task_hash, node)
        if honest == "wrong" or (honest == "honest" and self.forced_for(node, task_hash)):
            text = f"made up by {node[:8]} #{noise}"
        expected = self.model.result(task_hash, node, text)
        self.send(SubmitInferenceResult(task_hash, node, text), expected)

    def submit_verdict(self, task_hash: bytes, verifier: str, submitter: str, mode: str) -> None:
        found = self.model.tasks[task_hash].result_of(submitter)
        correct = found is not None and found.text == honest_output(task_hash, submitter)
        valid = {"honest": correct, "flip": not correct, "lazy": True}[mode]
        expected = self.model.verdict(task_hash, verifier, submitter, valid)
        self.send(SubmitVerification(task_hash, verifier, submitter, valid), expected)

    def any_verdict(
        self, task_hash: bytes, verifier: str, other: str, pick: int, mode: str
    ) -> None:
        """A verdict on one of the task's results (assigned or not), or on any node."""
        results = self.model.tasks[task_hash].results
        submitter = results[pick % len(results)].node if results and pick % 4 else other
        self.submit_verdict(task_hash, verifier, submitter, mode)

    def worker_acts(self, node: str, pick: int, honest: str, mode: str, reveal_kind: str) -> bool:
        """What a resource node's worker does: take one item of the work open to it, as the
        model sees it: compute it, verify a result of it, or reveal the secret its result
        waits for (unless it is a node that never reveals). The drawn node acts if it has work,
        else the next one that has. False when nobody has anything to do."""
        start = NODES.index(node)
        for address in NODES[start:] + NODES[:start]:
            work = self.model.work(address, set(self.model.tasks)) or []
            if address in self.silent:
                work = [item for item in work if item[1] or item[2]]
            if work:
                self.do_work(address, work, pick, honest, mode, reveal_kind)
                return True
        return False

    def do_work(
        self,
        node: str,
        work: list[tuple[bytes, bool, list[str], bool]],
        pick: int,
        honest: str,
        mode: str,
        reveal_kind: str,
    ) -> None:
        reveals = [item for item in work if item[3]]
        verifies = [item for item in work if item[2]]
        if reveals and pick % 4:  # a worker reveals soon after its result is decided
            work = reveals
        elif verifies and pick % 3:  # and verifies before it takes new tasks
            work = verifies
        task_hash, compute, verify, reveal = work[pick % len(work)]
        if reveal and (pick % 4 or not (compute or verify)):
            self.reveal(node, "needed" if reveal_kind == "needed" else "now", pick)
        elif compute and (not verify or pick % 3 == 0):
            self.submit_result(task_hash, node, honest, pick)
        else:
            self.submit_verdict(task_hash, node, verify[pick % len(verify)], mode)

    def stake(self, node: str, kind: str) -> None:
        acct = self.model.acct(node)
        amount = {
            "to min": max(self.model.min_stake - acct.stake, 1),
            "below min": max(self.model.min_stake - acct.stake - 1, 1),
            "small": 10 * E18 + 3,
            "zero": 0,
            "all": acct.balance,
            "all+1": acct.balance + 1,
        }[kind]
        nonce = acct.nonce
        expected = self.model.stake(node, amount)
        self.send(Stake(node, nonce, amount), expected)

    def unstake(self, node: str, kind: str) -> None:
        acct = self.model.acct(node)
        amount = {
            "to min": max(acct.stake - self.model.min_stake, 0),
            "below min": max(acct.stake - self.model.min_stake + 1, 0),
            "small": min(7 * E18, acct.stake),
            "zero": 0,
            "all": acct.stake,
            "all+1": acct.stake + 1,
        }[kind]
        nonce = acct.nonce
        expected = self.model.unstake(node, amount)
        self.send(Unstake(node, nonce, amount), expected)

    def register(self, node: str, models: str) -> None:
        nonce = self.nonce(node)
        self.model.register(node, models)
        self.send(RegisterResourceNode(node, nonce, models, ""), None)

    def commit(self, address: str, *, zero: bool) -> None:
        """CommitSecrets of the node's next chain (or of the zero hash, or by a stranger)."""
        epoch = self.epochs.get(address, 0) + 1
        head = b"\x00" * 32 if zero else secret_chain(address, epoch)[-1]
        nonce = self.nonce(address)
        expected = self.model.commit_secrets(address, nonce, head)
        self.send(CommitSecrets(address, nonce, head), expected)
        if expected is None:
            self.epochs[address] = epoch

    def reveal(self, node: str, kind: str, pick: int) -> None:
        """RevealSecret: of the latest height its results need, of the current height, of a
        height revealed already or to come, or a wrong secret."""
        secrets = self.model.nodes[node].secrets
        last = 0 if secrets is None else secrets.revealed_height
        now = self.model.height + 1
        height = {"needed": now, "now": now, "old": last, "future": now + 1}.get(kind, now)
        if kind == "needed":
            needed = [
                t.created
                for t in self.model.tasks.values()
                for r in t.results
                if r.node == node and self.model.waits_for_secret(r)
            ]
            height = max(needed, default=now)
        secret = self.own_secret(node, height)
        if secret is None or kind == "bad secret":
            secret = keccak(pick.to_bytes(4, "big"))
        expected = self.model.reveal(node, height, secret)
        self.send(RevealSecret(node, height, secret), expected)

    def pending_work(self, node: str) -> None:
        """tasks.pending_work, as queryPendingTasks calls it, against the model's list."""
        committed = set(self.chain.open_task_hashes())
        expected = self.model.work(node, committed)
        try:
            got = tasks.pending_work(
                self.chain.pending, self.chain.params, node, self.chain.height + 1, list(committed)
            )
        except NotEligible:
            assert expected is None, f"pending_work refused {node}; the model lists {expected}"
            return
        assert expected is not None, f"pending_work answered for {node}; the model: not eligible"
        rendered = [
            (w.task.task_hash, w.compute, [e.resource_node for e in w.verify], w.reveal)
            for w in got
        ]
        assert sorted(rendered) == sorted(expected)

    def produce_blocks(self, count: int, block_seed: int) -> None:
        for _ in range(count):
            block_hash = keccak(
                block_seed.to_bytes(8, "big") + self.chain.height.to_bytes(8, "big")
            )
            height = self.chain.produce(block_hash)
            self.model.end_block(height, block_hash)
            assert height == self.model.height
            self.compare()

    # --- comparisons ------------------------------------------------------------------------

    @invariant()
    def pending_agrees(self) -> None:
        """After every step: the next block's pending state holds the model's balances,
        stakes and nonces, and the supply invariant (4.10) holds over it."""
        if not hasattr(self, "chain"):
            return
        pending = self.chain.pending
        total = 0
        for address, acct in self.model.accounts.items():
            real = get_account(pending, address)
            assert (real.balance, real.stake, real.nonce) == (acct.balance, acct.stake, acct.nonce)
            total += real.balance + real.stake
        for task_hash in self.model.tasks:
            task = get_task(pending, task_hash)
            assert task is not None
            total += 0 if task.status in FINAL else task.fee
        genesis_supply, minted, burned = get_supply(pending)
        assert total == genesis_supply + minted - burned
        assert (minted, burned) == (self.model.minted, self.model.burned)

    def compare(self) -> None:
        store = self.chain.store
        seen = {}
        for key, raw in store.iterate(ACCOUNT):
            acct = decode_account(raw)
            seen[wire.checksum(key[len(ACCOUNT) :])] = (acct.balance, acct.stake, acct.nonce)
        expected = {a: (m.balance, m.stake, m.nonce) for a, m in self.model.accounts.items()}
        assert seen == expected
        for address, rnode in self.model.nodes.items():
            info = get_node(store, address)
            assert info is not None
            models = [m.strip() for m in info.models.split(",")]
            assert (info.jailed, models) == (rnode.jailed, rnode.models), address
            s = rnode.secrets
            want = None if s is None else (s.head, s.base, s.revealed_height, s.revealed)
            got = info.secrets
            have = None if got is None else (got.head, got.base, got.revealed_height, got.revealed)
            assert have == want, address
        for task_hash, mtask in self.model.tasks.items():
            self.compare_task(task_hash, mtask)
        open_hashes = set(self.chain.open_task_hashes())
        assert open_hashes == {h for h, t in self.model.tasks.items() if t.status not in FINAL}
        stats = get_task_stats(store)
        for status, count in stats.items():
            assert count == sum(1 for t in self.model.tasks.values() if t.status == status)
        held, expected_supply = self.chain.supply_check()
        assert held == expected_supply
        model = self.model
        assert get_supply(store) == (model.genesis_supply, model.minted, model.burned)
        total = sum(a.balance + a.stake for a in model.accounts.values()) + model.escrow()
        assert total == expected_supply == model.genesis_supply + model.minted - model.burned

    def compare_task(self, task_hash: bytes, mtask: MTask) -> None:
        task = get_task(self.chain.store, task_hash)
        assert task is not None
        assert (task.created_height, task.fee, task.model) == (
            mtask.created,
            mtask.fee,
            mtask.model,
        )
        assert task.status == mtask.status, (task.status, mtask.status)
        assert (task.response, task.verification_count) == (
            mtask.response,
            mtask.verification_count,
        )
        assert task.finished_height == mtask.finished
        # the block's time: TIME0 + its height
        finished_at = None if mtask.finished is None else TIME0 + mtask.finished
        assert (task.created_at, task.finished_at) == (TIME0 + mtask.created, finished_at)
        got = [
            (
                e.rank,
                e.resource_node,
                e.result,
                e.seed,
                e.height,
                e.status,
                e.decided_height,
                [(v.verifier, v.valid, v.seq, v.height) for v in e.verifications],
                e.assignment_seed,
                [list(members) for members in e.rounds],
                e.assignment_complete,
                e.forced_error,
            )
            for e in task.execution_info
        ]
        want = [
            (
                r.rank,
                r.node,
                r.text,
                r.seed,
                r.height,
                r.status,
                r.decided_height,
                [(v.verifier, v.valid, v.seq, v.height) for v in r.verdicts],
                r.assignment_seed,
                r.rounds,
                r.complete,
                r.forced,
            )
            for r in mtask.results
        ]
        assert got == want
        # the model writes the settlement as the wire shows it (amounts as decimal strings)
        settlement = None if task.settlement is None else settlement_to_json(task.settlement)
        assert settlement == mtask.settlement


SettlementMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSettlementMachine = SettlementMachine.TestCase
