"""The engine: a genesis built with chain.protocol.genesis, then block after block the agents'
transactions, signed, in a real `Block` whose hash orders the verifiers, executed with
`blocks.execute_block` on a `State` over an in-memory store: exactly what a validator runs,
with no process, no network and no disk.

After every block it records what each node earned and lost (from the settlements), its stake,
when it was jailed, and checks the supply invariant (PROTOCOL 4.10).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chain.protocol import blocks, crypto, genesis, state, tasks, wire
from chain.protocol.errors import NotEligible
from chain.protocol.genesis import Genesis, Params
from chain.protocol.state import State
from chain.protocol.types import (
    FINAL_STATUSES,
    ZERO_HASH,
    Block,
    Message,
    SignedTx,
    SubmitTask,
    Task,
)
from sim.agents import Agent, Job, SecretChain, Sender, derived_key, job_of_work
from sim.population import UNIT, Population, checked
from sim.verification import Verification

CHAIN_ID = 7331
GENESIS_TIME = "2026-01-01T00:00:00Z"
SENDER_BALANCE = 1_000_000 * UNIT
# A whale's colluding sender sends this share of the tasks, one per block.
COLLUDER_SHARE = 4


class SupplyError(AssertionError):
    """The supply invariant (PROTOCOL 4.10) broke after a block: a bug of the rules."""


class MemoryStore:
    """The committed state: a dict, the `Reader` the rules read through."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        for key, value in writes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value


@dataclass(frozen=True, slots=True)
class Member:
    """One resource node of the population: its behaviour's label (a sybil pair's two
    addresses both `sybil-pair`), the stake it started with, and its agent's role."""

    address: str
    label: str
    role: str
    stake: int
    group: int


@dataclass
class Ledger:
    """What each node earned, lost and staked, block by block."""

    earned: dict[str, int] = field(default_factory=dict)
    slashed: dict[str, int] = field(default_factory=dict)
    canary: dict[str, int] = field(default_factory=dict)
    jailed_at: dict[str, int] = field(default_factory=dict)
    net_series: dict[str, list[int]] = field(default_factory=dict)
    stake_series: dict[str, list[int]] = field(default_factory=dict)
    heights: list[int] = field(default_factory=list)


@dataclass
class Outcome:
    """The end of a run: the members, the settled tasks in settlement order, the ledger."""

    population: Population
    members: list[Member]
    senders: list[str]
    tasks: list[Task]
    ledger: Ledger
    blocks: int
    params: Params
    false_rejects: int = 0  # honest verdicts `invalid` on a right result (sim.verification)
    false_accepts: int = 0  # honest verdicts `valid` on a wrong result


def build_genesis(
    members: Sequence[tuple[str, int, bytes]],
    senders: Sequence[str],
    validator_key: bytes,
    params: Params,
) -> Genesis:
    """The genesis: one validator, the resource nodes (address, stake, secretsHead), the
    senders funded."""
    seed = crypto.consensus_seed(validator_key)
    pub = crypto.ed25519_public_bytes(crypto.ed25519_private_key(seed))
    raw: dict[str, Any] = {
        "chainId": CHAIN_ID,
        "genesisTime": GENESIS_TIME,
        "symbol": "AEGIS",
        "params": genesis.params_to_json(params),
        "accounts": [{"address": a, "balance": str(SENDER_BALANCE)} for a in senders],
        "validators": [
            {
                "address": crypto.address_of_private_key(validator_key),
                "consensusPubKey": pub.hex(),
                "stake": str(max(params.min_validator_stake, 10_000 * UNIT)),
                "url": "",
            }
        ],
        "resourceNodes": [
            {
                "address": address,
                "stake": str(stake),
                "models": "*",
                "endpoint": "",
                "secretsHead": wire.hex0x(head),
            }
            for address, stake, head in members
        ],
    }
    return genesis.parse_genesis(raw)


class Simulation:
    """One population on one chain. `step()` makes one block; `run()` makes blocks until
    every task is sent and settled."""

    def __init__(
        self,
        population: Population,
        *,
        check_supply: bool = True,
        secret_chain_length: int | None = None,
    ) -> None:
        population = checked(population)
        self.population = population
        params = population.chain_params()
        self.check_supply = check_supply
        seed = population.seed
        length = secret_chain_length or self.blocks_needed(population, params) + 256
        self.validator_key = derived_key(seed, 0)
        self.validator = crypto.address_of_private_key(self.validator_key)
        self.members: list[Member] = []
        self.agents: list[Agent] = []
        self.verification = Verification(population.errors, seed)
        index = 1
        for number, group in enumerate(population.groups):
            roles = (
                [("sybil-junk", "sybil-voter")] * group.count
                if group.behaviour == "sybil-pair"
                else [(group.behaviour,)] * group.count
            )
            for operator in roles:
                keys = [derived_key(seed, index + i) for i in range(len(operator))]
                index += len(operator)
                addresses = [crypto.address_of_private_key(k) for k in keys]
                for i, (role, key) in enumerate(zip(operator, keys, strict=True)):
                    partner = addresses[1 - i] if len(operator) == 2 else None
                    agent = Agent(
                        role,
                        key,
                        SecretChain(key, length),
                        params.canary_rate_bps,
                        verification=self.verification,
                        p=group.p,
                        partner=partner,
                        rng_seed=seed,
                        false_accept=group.false_accept,
                        min_temperature=population.min_temperature,
                    )
                    self.agents.append(agent)
                    self.members.append(
                        Member(agent.address, group.label, role, group.stake * UNIT, number)
                    )
        whales = any(a.behaviour == "whale" for a in self.agents)
        colluded = population.tasks // COLLUDER_SHARE if whales else 0
        self.senders = [
            Sender(
                derived_key(seed, index),
                population.tasks - colluded,
                population.task_rate,
                population.target_count,
                "sender",
                population.temperature,
            )
        ]
        if colluded:
            self.senders.append(
                Sender(
                    derived_key(seed, index + 1), colluded, 1, 1, "colluder", population.temperature
                )
            )
        self.genesis = build_genesis(
            [
                (m.address, m.stake, a.secrets.head)
                for m, a in zip(self.members, self.agents, strict=True)
            ],
            [s.address for s in self.senders],
            self.validator_key,
            params,
        )
        self.params = self.genesis.params
        self.store = MemoryStore()
        genesis_state = State(self.store)
        blocks.apply_genesis(genesis_state, self.genesis)
        self.app_hash = blocks.next_app_hash(ZERO_HASH, genesis_state.write_set())
        self.store.apply(genesis_state.writes())
        self.prev_hash = self.genesis.hash  # the genesis block's hash (chain.node.ledger)
        self.height = 0
        self.time = self.genesis.genesis_time
        self.open: dict[bytes, int] = {}  # open task -> its fee (the escrow)
        self.settled: list[Task] = []
        self.ledger = Ledger()
        for member in self.members:
            self.ledger.net_series[member.address] = []
            self.ledger.stake_series[member.address] = []
        self.keys = {a.address: a.key for a in self.agents}
        self.keys.update({s.address: s.key for s in self.senders})
        self.rng = random.Random(f"{seed}/order")
        self.check_invariant()

    @staticmethod
    def blocks_needed(population: Population, params: Params) -> int:
        rate = population.task_rate
        tail = params.compute_deadline_blocks + params.verify_deadline_blocks
        return -(-population.tasks // rate) + tail + params.reveal_deadline_blocks + 16

    # One block

    def jobs(self, address: str, height: int) -> list[Job]:
        """queryPendingTasks of `address` for the block at `height`, on the committed state."""
        try:
            work = tasks.pending_work(self.store, self.params, address, height, list(self.open))
        except NotEligible:
            return []  # jailed, or below minNodeStake: it can do nothing
        return [job_of_work(w) for w in work]

    def decide(self, height: int) -> list[Message]:
        """Every participant's messages for the block at `height`: the senders' tasks, the
        colluding whales' first, then the nodes in an order drawn for the block."""
        messages: list[Message] = []
        for sender in self.senders:
            messages.extend(sender.decide())
        agents = list(self.agents)
        self.rng.shuffle(agents)
        agents.sort(key=lambda a: not a.first)
        for agent in agents:
            messages.extend(agent.decide(self.jobs(agent.address, height)))
        return messages

    def sign(self, messages: Iterable[Message]) -> list[SignedTx]:
        return [crypto.sign_message(m, CHAIN_ID, self.keys[getattr(m, m.SIGNER)]) for m in messages]

    def step(self) -> Block:
        """Decide, sign and execute the next block."""
        height = self.height + 1
        txs = self.sign(self.decide(height))
        block = Block(
            height=height,
            time=self.time + max(1, self.params.block_time_ms // 1000),
            proposer=self.validator,
            prev_hash=self.prev_hash,
            txs=tuple(tx.hash for tx in txs),
            app_hash=self.app_hash,
        )
        self.execute(block, txs)
        return block

    def execute(self, block: Block, txs: Sequence[SignedTx]) -> None:
        """Execute `block` (its transactions `txs`) as a validator does, then record it."""
        if block.height != self.height + 1 or block.prev_hash != self.prev_hash:
            raise ValueError(f"block {block.height} does not follow {self.height}")
        if block.app_hash != self.app_hash:
            raise ValueError(
                f"block {block.height} commits to appHash {wire.hex0x(block.app_hash)}, "
                f"the simulated state is {wire.hex0x(self.app_hash)}"
            )
        signers = [v.validator for v in block.last_commit]
        if not block.last_commit and block.height > 1:
            signers = [block.proposer]
        work = State(self.store)
        records = blocks.execute_block(work, self.params, blocks.context_of(block), txs, signers)
        self.app_hash = blocks.next_app_hash(self.app_hash, work.write_set())
        self.store.apply(work.writes())
        self.prev_hash = blocks.block_hash(block)
        self.height = block.height
        self.time = block.time
        for tx, status in records:
            if status == "committed" and isinstance(tx.message, SubmitTask):
                task = state.get_task(self.store, tx.digest)
                assert task is not None
                self.open[tx.digest] = task.fee
        self.record(block.height)

    def record(self, height: int) -> None:
        ledger = self.ledger
        for task_hash in list(self.open):
            task = state.get_task(self.store, task_hash)
            assert task is not None
            if task.status not in FINAL_STATUSES:
                continue
            del self.open[task_hash]
            self.settled.append(task)
            settlement = task.settlement
            assert settlement is not None
            for payout in settlement.payouts:
                ledger.earned[payout.address] = ledger.earned.get(payout.address, 0) + payout.amount
                if payout.role == "canary":
                    ledger.canary[payout.address] = (
                        ledger.canary.get(payout.address, 0) + payout.amount
                    )
            for slash in settlement.slashed:
                ledger.slashed[slash.address] = ledger.slashed.get(slash.address, 0) + slash.amount
        ledger.heights.append(height)
        for member in self.members:
            address = member.address
            net = ledger.earned.get(address, 0) - ledger.slashed.get(address, 0)
            ledger.net_series[address].append(net)
            ledger.stake_series[address].append(state.get_account(self.store, address).stake)
            if address not in ledger.jailed_at:
                node = state.get_node(self.store, address)
                if node is not None and node.jailed:
                    ledger.jailed_at[address] = height
        self.check_invariant()

    def check_invariant(self) -> None:
        """held = balances + stakes + escrow equals genesis + minted - burned (4.10)."""
        if not self.check_supply:
            return
        accounts = [
            state.decode_account(raw)
            for key, raw in self.store.data.items()
            if key.startswith(state.ACCOUNT)
        ]
        held, expected = blocks.supply_check(
            accounts, self.open.values(), state.get_supply(self.store)
        )
        if held != expected:
            raise SupplyError(f"after block {self.height}: held {held}, expected {expected}")

    # The whole run

    @property
    def done(self) -> bool:
        return not self.open and all(s.remaining == 0 for s in self.senders)

    def run(self, max_blocks: int | None = None) -> Outcome:
        limit = max_blocks or 4 * self.blocks_needed(self.population, self.params)
        while not self.done:
            if self.height >= limit:
                raise RuntimeError(f"{len(self.open)} tasks still open after {limit} blocks")
            self.step()
        return self.outcome()

    def outcome(self) -> Outcome:
        return Outcome(
            self.population,
            self.members,
            [s.address for s in self.senders],
            self.settled,
            self.ledger,
            self.height,
            self.params,
            self.verification.false_rejects,
            self.verification.false_accepts,
        )


def simulate(population: Population, *, check_supply: bool = True) -> Outcome:
    return Simulation(population, check_supply=check_supply).run()
