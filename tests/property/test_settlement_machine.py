"""A hypothesis state machine: a real validator node against a reference model of PoS+W.

The node is the real thing: a `Node` over LevelDB in a fresh temp directory per example,
admitting signed transactions with `submit` and committing blocks with `produce_block`.
Five resource nodes of different stakes and models compute (honestly: a fixed function of the
task and the node's seed; or not) and verify (honestly: compare with the honest output; or
lie, or lazily say true), while tasks come and go and runs of empty blocks cross deadlines.

The reference model below is written from PROTOCOL 4 with plain dicts and lists; it never
calls chain.protocol. Where PROTOCOL is open it follows this implementation's
choices: rank weights go to valid results in rank order and to winning verdicts in `seq`
order (a verifier with two winning verdicts is paid twice); unpaid amounts go back pool by
pool (burned = unpaid_verify * slashed // pool_verify, the rest split between refund and
unminted reward pro rata to F and R); slashes take the stake at settlement, one after another
in rank order (a rejected result's own slash, then the losing verdicts on that result), and
jailing follows all of them; a result is weighed when a verdict arrives and at the verify
deadline (stakes as at that moment), not when a stake changes (see the strict xfail in
tests/unit/test_tasks.py); checks report errors in the node's order (eligibility, duplicate,
then closed). Every admission decision (accepted, or which error class) must agree with the
model; after every block every account's balance, stake and nonce, every node's jailed flag
and models, and every task (status, response, verificationCount, executionInfo, settlement to
the base unit) must equal the model's, and the supply invariant (4.10) must hold.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from chain.node.node import Node, dev_validator_key
from chain.protocol import crypto, tasks, wire
from chain.protocol.errors import (
    ChainError,
    DuplicateSubmission,
    InsufficientBalance,
    InvalidParams,
    NotEligible,
    TaskClosed,
    UnknownTask,
)
from chain.protocol.genesis import DEV_MNEMONIC, Params, dev_genesis, parse_genesis
from chain.protocol.state import (
    ACCOUNT,
    decode_account,
    get_node,
    get_supply,
    get_task_stats,
    settlement_to_json,
)
from chain.protocol.types import (
    FINAL_STATUSES,
    Message,
    RegisterResourceNode,
    ResultStatus,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    TaskStatus,
    Unstake,
    signer_of,
)

E18 = 10**18
CLOCK = 1_767_226_000.0
NODE_COUNT = 5

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

# Models each node serves at genesis: nobody but node 0 serves "phi" or a task naming none.
GENESIS_MODELS = ["*", "llama-3,gpt-x", "llama-3", "llama-3, mistral", "mistral"]
TASK_MODELS = ["llama-3", "llama-3", "mistral", "mistral", "gpt-x", "phi", None]
REGISTER_MODELS = ["*", "llama-3", "mistral , gpt-x", "phi"]

PENDING, VERIFYING, VERIFIED, REJECTED, UNVERIFIED = ResultStatus  # 0 to 4, in this order
FINAL = FINAL_STATUSES

ErrorClass = type[ChainError] | None


def seed_of(task_hash: bytes, address: str) -> int:
    """PROTOCOL 4.4: int(keccak256(taskHash || nodeAddress)[:8]), big-endian."""
    return int.from_bytes(crypto.keccak(task_hash + bytes.fromhex(address[2:]))[:8], "big")


def honest_output(task_hash: bytes, address: str) -> str:
    return f"output {seed_of(task_hash, address)}"


# --- the reference model ----------------------------------------------------------------------


@dataclass
class Acct:
    balance: int = 0
    stake: int = 0
    nonce: int = 0


@dataclass
class RNode:
    models: list[str]
    jailed: bool = False

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
    status: int = PENDING
    decided_height: int | None = None
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def undecided(self) -> bool:
        return self.status in (PENDING, VERIFYING)


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
    """PROTOCOL 4 over plain values. Each transaction method checks in the order the node
    reports errors, applies on success, and returns the error class (None when accepted)."""

    def __init__(self, raw: dict[str, Any]) -> None:
        p = raw["params"]
        self.min_stake = int(p["minNodeStake"])
        self.base_fee = int(p["taskBaseFee"])
        self.fee_per_node = int(p["taskFeePerNode"])
        self.network_reward = int(p["networkRewardPerTask"])
        self.block_reward = int(p["blockReward"])
        self.alpha = p["computeShareBps"]
        self.decay = p["rankDecayBps"]
        self.quorum = p["verificationQuorum"]
        self.compute_blocks = p["computeDeadlineBlocks"]
        self.verify_blocks = p["verifyDeadlineBlocks"]
        self.result_slash = p["resultSlashBps"]
        self.verdict_slash = p["verifierSlashBps"]
        self.slashing = p["slashing"]
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
            self.nodes[item["address"]] = RNode([m.strip() for m in item["models"].split(",")])
        self.genesis_supply = sum(a.balance + a.stake for a in self.accounts.values())
        self.minted = 0
        self.burned = 0
        self.height = 0  # the last committed block; transactions go into height + 1

    def acct(self, address: str) -> Acct:
        return self.accounts.setdefault(address, Acct())

    def escrow(self) -> int:
        return sum(t.fee for t in self.tasks.values() if t.settlement is None)

    def compute_deadline(self, task: MTask) -> int:
        return task.created + self.compute_blocks

    def verify_deadline(self, task: MTask) -> int:
        return self.compute_deadline(task) + self.verify_blocks

    def standing(self, address: str) -> bool:
        """Registered, not jailed, staked (4.2, without the model)."""
        node = self.nodes.get(address)
        return node is not None and not node.jailed and self.acct(address).stake >= self.min_stake

    def eligible(self, address: str, model: str | None) -> bool:
        return self.standing(address) and self.nodes[address].serves(model)

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
        jailed = node.jailed if node is not None else False
        self.nodes[address] = RNode([m.strip() for m in models.split(",")], jailed)
        self.acct(address).nonce += 1
        return None

    def submit_task(self, task_hash: bytes, sender: str, target: int, model: str | None) -> None:
        fee = self.base_fee + self.fee_per_node * target
        acct = self.acct(sender)
        assert acct.balance >= fee
        acct.balance -= fee
        acct.nonce += 1
        self.tasks[task_hash] = MTask(task_hash, sender, fee, model, target, self.height + 1)

    # results and verdicts (4.3, 4.5, 4.6)

    def result(self, task_hash: bytes, address: str, text: str) -> ErrorClass:
        height = self.height + 1
        task = self.tasks.get(task_hash)
        if task is None:
            return UnknownTask
        if not self.eligible(address, task.model):
            return NotEligible
        if task.result_of(address) is not None:
            return DuplicateSubmission
        if task.status in FINAL or height > self.compute_deadline(task):
            return TaskClosed
        if task.open_slots() == 0:
            return TaskClosed
        rank = len(task.results) + 1
        task.results.append(Result(address, text, rank, seed_of(task_hash, address), height))
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
        if any(v.verifier == verifier for v in result.verdicts):
            return DuplicateSubmission
        if not result.undecided or height > self.verify_deadline(task):
            return TaskClosed
        seq = 1 + sum(len(r.verdicts) for r in task.results)
        result.verdicts.append(Verdict(verifier, valid, seq, height))
        result.status = VERIFYING
        if len(result.verdicts) >= self.quorum:
            self.decide(result, height, at_deadline=False)
        self.refresh_status(task)
        # after the compute deadline no result can come: deciding the last one decides the task
        self.maybe_settle(task, height, compute_closed=height > self.compute_deadline(task))
        return None

    def decide(self, result: Result, height: int, *, at_deadline: bool) -> None:
        """Stake for (submitter + valid verifiers) against stake against, as of now (4.6)."""
        stake_for = self.acct(result.node).stake
        stake_for += sum(self.acct(v.verifier).stake for v in result.verdicts if v.valid)
        against = sum(self.acct(v.verifier).stake for v in result.verdicts if not v.valid)
        outcome = None
        if result.verdicts and stake_for > against:
            outcome = VERIFIED
        elif result.verdicts and against > stake_for:
            outcome = REJECTED
        elif at_deadline:
            outcome = UNVERIFIED  # no verdict, or a tie
        if outcome is not None:
            result.status = outcome
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

    def maybe_settle(self, task: MTask, height: int, *, compute_closed: bool) -> None:
        """4.7: no undecided result, and no open slot or the compute window closed."""
        if task.status in FINAL or any(r.undecided for r in task.results):
            return
        if task.open_slots() > 0 and not compute_closed:
            return
        self.settle(task, height)

    # end of block (4.6, 4.7, 4.9)

    def end_block(self, height: int) -> None:
        for task in self.tasks.values():  # in creation order, as the deadlines came due
            if task.status in FINAL:
                continue
            if height == self.verify_deadline(task):
                for result in task.results:
                    if result.undecided:
                        self.decide(result, height, at_deadline=True)
                self.refresh_status(task)
                self.maybe_settle(task, height, compute_closed=True)
            elif height == self.compute_deadline(task):
                self.maybe_settle(task, height, compute_closed=True)
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

    def settle(self, task: MTask, height: int) -> None:
        by_rank = sorted(task.results, key=lambda r: r.rank)
        valid = [r for r in by_rank if r.status == VERIFIED]
        f = task.fee
        r = self.network_reward if valid else 0

        slashes: list[dict[str, Any]] = []
        winners: list[Verdict] = []
        for result in by_rank:
            if result.status not in (VERIFIED, REJECTED):
                continue  # unverified: no reward, no slash, its verifiers untouched
            if result.status == REJECTED and self.slashing:
                self.slash(result.node, self.result_slash, "result", slashes)
            for v in result.verdicts:
                if v.valid == (result.status == VERIFIED):
                    winners.append(v)
                elif self.slashing:
                    self.slash(v.verifier, self.verdict_slash, "verdict", slashes)
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
        self.minted += r - unminted
        self.burned += burned

        task.status = TaskStatus.VERIFIED if valid else TaskStatus.FAILED
        task.response = valid[0].text if valid else None
        task.verification_count = sum(1 for v in valid[0].verdicts if v.valid) if valid else 0
        task.finished = height
        task.settlement = {
            "height": height,
            "fee": str(f),
            "networkReward": str(r - unminted),
            "slashed": [{**s, "amount": str(s["amount"])} for s in slashes],
            "payouts": payouts,
            "refund": str(refund),
            "burned": str(burned),
        }

    # the work open for a node (queryPendingTasks)

    def work(
        self, address: str, committed: set[bytes]
    ) -> list[tuple[bytes, bool, list[str]]] | None:
        if not self.standing(address):
            return None
        height = self.height + 1
        out = []
        for task in self.tasks.values():
            if task.task_hash not in committed or task.status in FINAL:
                continue
            if not self.nodes[address].serves(task.model):
                continue
            compute = (
                task.result_of(address) is None
                and task.open_slots() > 0
                and height <= self.compute_deadline(task)
            )
            verify = []
            if height <= self.verify_deadline(task):
                verify = [
                    r.node
                    for r in task.results
                    if r.undecided
                    and r.node != address
                    and all(v.verifier != address for v in r.verdicts)
                ]
            if compute or verify:
                out.append((task.task_hash, compute, verify))
        return out


# --- the machine ----------------------------------------------------------------------------

MAX_OPEN_TASKS = 4
MOVES = [
    *["work"] * 10,
    *["task"] * 3,
    "result",
    "verdict",
    "unknown task",
    "stake",
    "unstake",
    "register",
    "query",
    *["blocks"] * 5,
]
AMOUNT_KINDS = ["to min", "below min", "small", "zero", "all", "all+1"]
STAKE_BASES = [1000 * E18, 1100 * E18, 1500 * E18, 2000 * E18, 3000 * E18]
STAKE_ODD = [0, 0, 1, 9_999, 123_457]


class SettlementMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.data_dir = tempfile.mkdtemp(prefix="settlement-machine-")
        self.node: Node | None = None
        self.model: Reference
        self.task_list: list[bytes] = []
        self.prompt = 0

    def teardown(self) -> None:
        if self.node is not None:
            asyncio.run(self.node.cleanup())
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @initialize(
        quorum=st.sampled_from([1, 1, 2]),
        compute_blocks=st.integers(3, 6),
        verify_blocks=st.integers(3, 6),
        slashing=st.sampled_from([True, True, True, False]),
        stakes=st.lists(
            st.tuples(st.sampled_from(STAKE_BASES), st.sampled_from(STAKE_ODD)),
            min_size=NODE_COUNT,
            max_size=NODE_COUNT,
        ),
        base_fee=st.sampled_from([10**15, 10**15 + 3]),
        network_reward=st.sampled_from([10**16, 10**16 + 7]),
        compute_share=st.sampled_from([7000, 6667]),
        decay=st.sampled_from([1000, 3333]),
    )
    def start(
        self,
        quorum: int,
        compute_blocks: int,
        verify_blocks: int,
        slashing: bool,
        stakes: list[tuple[int, int]],
        base_fee: int,
        network_reward: int,
        compute_share: int,
        decay: int,
    ) -> None:
        params = Params(
            block_time_ms=0,
            verification_quorum=quorum,
            compute_deadline_blocks=compute_blocks,
            verify_deadline_blocks=verify_blocks,
            slashing=slashing,
            task_base_fee=base_fee,
            network_reward_per_task=network_reward,
            compute_share_bps=compute_share,
            rank_decay_bps=decay,
        )
        raw = dev_genesis(
            mnemonic=DEV_MNEMONIC, params=params, resource_nodes=NODE_COUNT, dev_accounts=2
        )
        for item, (base, odd), models in zip(
            raw["resourceNodes"], stakes, GENESIS_MODELS, strict=True
        ):
            item["stake"] = str(base + odd)
            item["models"] = models
        genesis = parse_genesis(raw)
        self.node = Node(
            genesis,
            self.data_dir,
            dev_validator_key(genesis, None),
            check_invariants=True,
            clock=lambda: CLOCK,
        )
        asyncio.run(self.node.setup())
        self.model = Reference(raw)
        assert self.model.genesis_supply == genesis.supply
        self.compare()

    # --- helpers ----------------------------------------------------------------------------

    @property
    def chain(self) -> Node:
        assert self.node is not None
        return self.node

    def send(self, msg: Message, expected: ErrorClass) -> bytes:
        tx = crypto.sign_message(msg, self.chain.genesis.chain_id, KEYS[signer_of(msg)])
        try:
            self.chain.submit(tx)
        except ChainError as exc:
            assert expected is not None, f"the node refused {msg} with {exc!r}; the model accepts"
            assert type(exc) is expected, f"{msg}: node {exc!r}, model {expected.__name__}"
        else:
            assert expected is None, f"the node accepted {msg}; the model: {expected.__name__}"
        return tx.digest

    def pick_task(self, pick: int) -> bytes:
        recent = self.task_list[-6:]
        return recent[pick % len(recent)]

    def nonce(self, address: str) -> int:
        return self.model.acct(address).nonce

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
        honest=st.sampled_from([True, True, False]),
        mode=st.sampled_from(["honest", "honest", "honest", "flip", "lazy"]),
        kind=st.sampled_from(AMOUNT_KINDS),
        count=st.sampled_from([1, 1, 1, 2, 3, 5]),
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
        honest: bool,
        mode: str,
        kind: str,
        count: int,
    ) -> None:
        open_tasks = sum(1 for t in self.model.tasks.values() if t.status not in FINAL)
        if move == "task" and open_tasks < MAX_OPEN_TASKS:
            self.submit_task(sender, target_count, model)
        elif move in ("work", "task"):
            if not self.worker_acts(node, pick, honest, mode):
                # an idle worker: the world moves on, a user submits a task or time passes
                if pick % 2 and open_tasks < MAX_OPEN_TASKS:
                    self.submit_task(sender, target_count, model)
                else:
                    self.produce_blocks(1)
        elif move == "result" and self.task_list:
            self.submit_result(self.pick_task(pick), node, honest, pick)
        elif move == "verdict" and self.task_list:
            self.any_verdict(self.pick_task(pick), node, other, pick, mode)
        elif move == "unknown task":
            self.send(SubmitInferenceResult(UNKNOWN_TASK, node, "x"), UnknownTask)
            self.send(SubmitVerification(UNKNOWN_TASK, node, other, honest), UnknownTask)
        elif move == "stake":
            self.stake(node, kind)
        elif move == "unstake":
            self.unstake(node, kind)
        elif move == "register":
            self.register(node, REGISTER_MODELS[pick % len(REGISTER_MODELS)])
        elif move == "query":
            self.pending_work(node)
        elif move == "blocks":
            self.produce_blocks(count)

    def submit_task(self, sender: str, target_count: int, model: str | None) -> None:
        self.prompt += 1
        options = "free-form options" if model is None else json.dumps({"model": model})
        prompts = f"prompt {self.prompt}"
        msg = SubmitTask(sender, self.nonce(sender), "text", target_count, prompts, options)
        task_hash = self.send(msg, None)
        self.model.submit_task(task_hash, sender, target_count, model)
        self.task_list.append(task_hash)

    def submit_result(self, task_hash: bytes, node: str, honest: bool, noise: int) -> None:
        text = honest_output(task_hash, node) if honest else f"made up by {node[:8]} #{noise}"
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
        """A verdict on one of the task's results, or on any node (maybe without a result)."""
        results = self.model.tasks[task_hash].results
        submitter = results[pick % len(results)].node if results and pick % 4 else other
        self.submit_verdict(task_hash, verifier, submitter, mode)

    def worker_acts(self, node: str, pick: int, honest: bool, mode: str) -> bool:
        """What a resource node's worker does: take one item of the work open to it, as the
        model sees it, and compute it or verify a result of it (honestly or not). False when
        it has nothing to do."""
        work = self.model.work(node, set(self.model.tasks))
        if not work:
            return False
        task_hash, compute, verify = work[pick % len(work)]
        if compute and (not verify or pick % 3 == 0):
            self.submit_result(task_hash, node, honest, pick)
        else:
            self.submit_verdict(task_hash, node, verify[pick % len(verify)], mode)
        return True

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

    def pending_work(self, node: str) -> None:
        """tasks.pending_work, as queryPendingTasks calls it, against the model's list."""
        committed = set(self.chain.ledger.open_task_hashes())
        expected = self.model.work(node, committed)
        try:
            got = tasks.pending_work(
                self.chain.mempool.pending_state,
                self.chain.params,
                node,
                self.chain.head.height + 1,
                list(committed),
            )
        except NotEligible:
            assert expected is None, f"pending_work refused {node}; the model lists {expected}"
            return
        assert expected is not None, f"pending_work answered for {node}; the model: not eligible"
        rendered = [
            (t.task_hash, compute, [e.resource_node for e in verify]) for t, compute, verify in got
        ]
        assert sorted(rendered) == sorted(expected)

    def produce_blocks(self, count: int) -> None:
        for _ in range(count):
            pending = len(self.chain.mempool)
            head = self.chain.produce_block()
            self.model.end_block(head.height)
            assert head.height == self.model.height
            stored = self.chain.ledger.get_block(head.height)
            assert stored is not None and len(stored.block.txs) == pending
            for tx_hash in stored.block.txs:  # the mempool's answers were the block's answers
                record = self.chain.ledger.get_tx(tx_hash)
                assert record is not None and record.status == "committed"
            self.compare()

    # --- comparisons ------------------------------------------------------------------------

    def compare(self) -> None:
        store = self.chain.ledger.store
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
        for task_hash, mtask in self.model.tasks.items():
            self.compare_task(task_hash, mtask)
        open_hashes = set(self.chain.ledger.open_task_hashes())
        assert open_hashes == {h for h, t in self.model.tasks.items() if t.status not in FINAL}
        stats = get_task_stats(store)
        for status, count in stats.items():
            assert count == sum(1 for t in self.model.tasks.values() if t.status == status)
        held, expected_supply = self.chain.ledger.supply_check()
        assert held == expected_supply
        model = self.model
        assert get_supply(store) == (model.genesis_supply, model.minted, model.burned)
        total = sum(a.balance + a.stake for a in model.accounts.values()) + model.escrow()
        assert total == expected_supply == model.genesis_supply + model.minted - model.burned

    def compare_task(self, task_hash: bytes, mtask: MTask) -> None:
        task = self.chain.ledger.get_task(task_hash)
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
            )
            for r in mtask.results
        ]
        assert got == want
        # the model writes the settlement as the wire shows it (amounts as decimal strings)
        settlement = None if task.settlement is None else settlement_to_json(task.settlement)
        assert settlement == mtask.settlement


SettlementMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSettlementMachine = SettlementMachine.TestCase
