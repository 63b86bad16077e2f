"""Hypothesis state machines over the real rules of PoS+W (PROTOCOL 4.5 to 4.8, 4.13).

The rules run as a validator runs them: signed transactions admitted to the next block's
pending state and blocks run by `chain.protocol.blocks.execute_block` over an in-memory store
(`MemChain` of test_settlement_machine.py), each block ending with a hash the machine draws.
A population of resource nodes with arbitrary stakes (a whale among them, often the one that
submits) plays one of these parts:

- honest: computes the task (a deliberate forced error when its secret says so, 4.13),
  verifies every result it is assigned to by recomputing it, and reveals its secret once its
  result is decided;
- silent: honest, but never reveals its secrets;
- lazy: computes honestly and reveals, but votes `valid` without computing;
- byzantine: submits wrong or right results, votes anything.

Honest and silent nodes are live: before every block they answer every result they are
assigned to (to a fixpoint: their verdicts may open rounds that assign them more).

The properties, checked by every machine:

1. When a result is decided, the decision is the truth (verified when the result is the
   submitter's honest output, rejected otherwise) whenever honest nodes hold more than 2/3 of
   the stake of the verifiers the rules weigh: the members of the deciding round for a round
   before the last, every assigned verifier for the last round and at the verify deadline
   (PROTOCOL 4.6); whatever the submitter's stake (no self-vote). The guarantee is checked
   with the stakes at the moment of the decision.
2. Slashes fall only on the losing side: an honest node is slashed for a verdict only on a
   result decided without that guarantee, and a node slashed `lazy` voted `valid` on a
   revealed forced error, once per such verdict.
3. After every block the supply invariant holds (balances + stakes + escrow = genesis +
   minted - burned, with minted = block rewards + every settlement's networkReward and burned
   = every settlement's burned), and every settled task's settlement identity holds:
   sum(payouts) + refund + burned = fee + networkReward + sum(slashed), forced errors,
   canary bonuses and unrevealed results included.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from chain.protocol import crypto, tasks, wire
from chain.protocol.errors import ChainError, NotEligible
from chain.protocol.genesis import DEV_MNEMONIC, Params, dev_genesis, parse_genesis
from chain.protocol.state import (
    ACCOUNT,
    Reader,
    decode_account,
    get_account,
    get_supply,
    get_task,
)
from chain.protocol.types import (
    FINAL_STATUSES,
    UNDECIDED,
    ExecutionInfo,
    Message,
    ResultStatus,
    RevealSecret,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    Task,
    signer_of,
)
from tests.property.test_settlement_machine import (
    SECRET_CHAIN,
    MemChain,
    honest_output,
    keccak,
    secret_chain,
)

E18 = 10**18
MIN_STAKE = Params().min_node_stake
MAX_NODES = 8
HONEST_KINDS = ("honest", "silent")

KEYS: dict[str, bytes] = {}
for _index in [0, 1, *range(200, 200 + MAX_NODES)]:
    _key = crypto.dev_private_key(DEV_MNEMONIC, _index)
    KEYS[crypto.address_of_private_key(_key)] = _key
SENDERS = [crypto.address_of_private_key(crypto.dev_private_key(DEV_MNEMONIC, i)) for i in (0, 1)]

MOVES = [
    *["compute"] * 6,
    *["dishonest verdict"] * 4,
    *["task"] * 2,
    "unassigned verdict",
    *["blocks"] * 3,
]

Key = tuple[bytes, str]  # (task hash, submitter): one result


@dataclass(frozen=True)
class Decision:
    """A result as it was decided: whether the guarantee of property 1 held then."""

    status: ResultStatus
    guaranteed: bool


def stakes(reader: Reader, addresses: list[str]) -> dict[str, int]:
    return {a: get_account(reader, a).stake for a in addresses}


class PoswMachine(RuleBasedStateMachine):
    """The population, the moves and the checks; the subclasses draw the population."""

    def __init__(self) -> None:
        super().__init__()
        self.chain: MemChain
        self.nodes: list[str] = []
        self.kinds: dict[str, str] = {}
        self.task_hashes: list[bytes] = []  # in creation order
        self.decisions: dict[Key, Decision] = {}
        self.settled: set[bytes] = set()
        self.minted_rewards = 0  # the networkReward of every settlement
        self.burned = 0
        self.prompt = 0
        self.forced_errors = 0

    def setup_chain(
        self,
        kinds: list[str],
        node_stakes: list[int],
        *,
        quorum: int,
        dispute_rounds: int,
        canary_rate: int,
        verify_blocks: int,
        reveal_blocks: int,
        slashing: bool,
    ) -> None:
        params = Params(
            block_time_ms=0,
            verification_quorum=quorum,
            dispute_rounds=dispute_rounds,
            compute_deadline_blocks=3,
            verify_deadline_blocks=verify_blocks,
            reveal_deadline_blocks=reveal_blocks,
            canary_rate_bps=canary_rate,
            slashing=slashing,
        )
        raw = dev_genesis(
            mnemonic=DEV_MNEMONIC, params=params, resource_nodes=len(kinds), dev_accounts=2
        )
        for item, stake in zip(raw["resourceNodes"], node_stakes, strict=True):
            item["stake"] = str(stake)
            item["secretsHead"] = wire.hex0x(secret_chain(item["address"], 0)[-1])
        self.nodes = [item["address"] for item in raw["resourceNodes"]]
        self.kinds = dict(zip(self.nodes, kinds, strict=True))
        self.chain = MemChain(parse_genesis(raw))
        self.check_supply()

    # --- helpers ----------------------------------------------------------------------------

    @property
    def params(self) -> Params:
        return self.chain.params

    def honest(self, address: str) -> bool:
        return self.kinds[address] in HONEST_KINDS

    def task(self, task_hash: bytes) -> Task:
        task = get_task(self.chain.pending, task_hash)
        assert task is not None
        return task

    def correct(self, task_hash: bytes, entry: ExecutionInfo) -> bool:
        return entry.result == honest_output(task_hash, entry.resource_node)

    def secret(self, address: str, height: int) -> bytes:
        """The node's secret of `height` (its genesis chain, base 0)."""
        return secret_chain(address, 0)[SECRET_CHAIN - height]

    def must_err(self, address: str, task: Task) -> bool:
        assert task.created_height is not None
        secret = self.secret(address, task.created_height)
        rate = self.params.canary_rate_bps
        return bool(rate) and crypto.is_forced_error(secret, task.task_hash, rate)

    def work(self, address: str) -> list[tasks.Work]:
        try:
            return tasks.pending_work(
                self.chain.pending,
                self.params,
                address,
                self.chain.height + 1,
                self.chain.open_task_hashes(),
            )
        except NotEligible:
            return []  # jailed, or staked below the minimum

    def send(self, msg: Message) -> ChainError | None:
        """Admit one transaction, and record the results it decided (at the stakes before
        it: a verdict changes no stake before it decides, the settlement after it does)."""
        before = stakes(self.chain.pending, self.nodes)
        tx = crypto.sign_message(msg, self.chain.genesis.chain_id, KEYS[signer_of(msg)])
        exc = self.chain.submit(tx)
        if exc is None:
            for task_hash in self.task_hashes:
                self.record_decisions(self.task(task_hash), before, at_deadline=False)
            self.record_settlements(self.chain.pending)
        return exc

    def accepted(self, msg: Message) -> None:
        exc = self.send(msg)
        assert exc is None, f"{msg} refused: {exc!r}"

    # --- property 1: at decision --------------------------------------------------------------

    def weighed(self, entry: ExecutionInfo, at_deadline: bool) -> frozenset[str]:
        """The verifiers whose stake the rules weigh for this decision (PROTOCOL 4.6)."""
        last = entry.assignment_complete or len(entry.rounds) > self.params.dispute_rounds + 1
        if at_deadline or last:
            return entry.assigned()
        return frozenset(entry.rounds[-1])

    def record_decisions(self, task: Task, at: dict[str, int], *, at_deadline: bool) -> None:
        for entry in task.execution_info:
            key = (task.task_hash, entry.resource_node)
            if entry.status in UNDECIDED or key in self.decisions:
                continue
            weighed = self.weighed(entry, at_deadline)
            total = sum(at[a] for a in weighed)
            honest_stake = sum(at[a] for a in weighed if self.honest(a))
            answered = {v.verifier for v in entry.verifications}
            live = all(a in answered for a in weighed if self.honest(a))
            guaranteed = 3 * honest_stake > 2 * total and (live or not at_deadline)
            truth = ResultStatus.VERIFIED if self.correct(task.task_hash, entry) else None
            truth = truth or ResultStatus.REJECTED
            if guaranteed:
                assert entry.status == truth, (
                    f"{entry.resource_node} ({self.kinds[entry.resource_node]}): "
                    f"{entry.status.name}, the truth {truth.name}; honest {honest_stake} of "
                    f"{total} weighed in rounds {entry.rounds}, verdicts {entry.verifications}"
                )
            self.decisions[key] = Decision(entry.status, guaranteed)

    # --- properties 2 and 3: at settlement ----------------------------------------------------

    def record_settlements(self, reader: Reader) -> None:
        for task_hash in self.task_hashes:
            if task_hash in self.settled:
                continue
            task = get_task(reader, task_hash)
            assert task is not None
            if task.status not in FINAL_STATUSES:
                continue
            self.settled.add(task_hash)
            self.check_settlement(task)

    def check_settlement(self, task: Task) -> None:
        s = task.settlement
        assert s is not None
        out = sum(p.amount for p in s.payouts) + s.refund + s.burned
        assert out == s.fee + s.network_reward + sum(x.amount for x in s.slashed)
        self.minted_rewards += s.network_reward
        self.burned += s.burned
        lazy_expected: list[str] = []
        for entry in task.execution_info:
            # a revealed forced error catches its valid voters whatever its status (4.13)
            if entry.forced_error and entry.status not in UNDECIDED:
                self.forced_errors += 1
                lazy_expected += [v.verifier for v in entry.verifications if v.valid]
        lazy = [x.address for x in s.slashed if x.reason == "lazy"]
        assert sorted(lazy) == (sorted(lazy_expected) if self.params.slashing else [])
        for slash in s.slashed:
            if slash.reason == "result" or not self.honest(slash.address):
                continue
            # an honest verifier lost a verdict: only on a result decided without the guarantee
            explained = [
                e
                for e in task.execution_info
                if any(v.verifier == slash.address for v in e.verifications)
                and not self.decisions[(task.task_hash, e.resource_node)].guaranteed
            ]
            assert explained, f"honest {slash.address} slashed ({slash.reason}) in {task}"

    def check_supply(self) -> None:
        held, expected = self.chain.supply_check()
        assert held == expected
        genesis_supply, minted, burned = get_supply(self.chain.store)
        rewards = self.chain.height * self.params.block_reward
        assert (minted, burned) == (rewards + self.minted_rewards, self.burned)
        accounts = sum(
            decode_account(raw).balance + decode_account(raw).stake
            for _key, raw in self.chain.store.iterate(ACCOUNT)
        )
        escrow = sum(self.task(h).fee for h in self.task_hashes if h not in self.settled)
        assert accounts + escrow == genesis_supply + minted - burned

    # --- moves --------------------------------------------------------------------------------
    # One rule with a weighted move keeps the mix steady (hypothesis' swarm testing turns
    # whole rules off per example, and an example without results decides nothing).

    @rule(
        move=st.sampled_from(MOVES),
        index=st.integers(0, MAX_NODES - 1),
        pick=st.integers(0, 2**16),
        flag=st.booleans(),
        sender=st.sampled_from(SENDERS),
        count=st.sampled_from([1, 1, 2, 3, 5]),
        seed=st.integers(0, 2**32),
    )
    def step(
        self, move: str, index: int, pick: int, flag: bool, sender: str, count: int, seed: int
    ) -> None:
        node = self.nodes[index % len(self.nodes)]
        if move == "task":
            self.submit_task(sender, 1 + pick % 3)
        elif move == "compute":
            self.compute(node, pick, flag)
        elif move == "dishonest verdict":
            self.dishonest_verdict(node, pick, flag)
        elif move == "unassigned verdict":
            self.unassigned_verdict(node, pick)
        else:
            self.blocks(count, seed)

    def submit_task(self, sender: str, count: int) -> None:
        if sum(1 for h in self.task_hashes if h not in self.settled) >= 4:
            return
        self.prompt += 1
        nonce = get_account(self.chain.pending, sender).nonce
        msg = SubmitTask(sender, nonce, "text", count, f"prompt {self.prompt}", "")
        tx = crypto.sign_message(msg, self.chain.genesis.chain_id, KEYS[sender])
        assert self.chain.submit(tx) is None
        self.task_hashes.append(tx.digest)

    def compute(self, node: str, pick: int, lie: bool) -> None:
        """A node takes a task open to it: the honest output, a forced error when its secret
        says so (every kind but byzantine), or (byzantine) a lie if it likes. The drawn node
        if it can, else the next one that can."""
        start = self.nodes.index(node)
        for node in self.nodes[start:] + self.nodes[:start]:
            open_work = [w for w in self.work(node) if w.compute]
            if open_work:
                break
        else:
            return
        task = open_work[pick % len(open_work)].task
        text = honest_output(task.task_hash, node)
        wrong = lie if self.kinds[node] == "byzantine" else self.must_err(node, task)
        if wrong:
            text = f"wrong {pick}"
        self.accepted(SubmitInferenceResult(task.task_hash, node, text))

    def dishonest_verdict(self, node: str, pick: int, valid: bool) -> None:
        """A lazy node says valid; a byzantine one anything, on a result it is assigned to
        (the drawn node if it has one, else the next dishonest one that has)."""
        start = self.nodes.index(node)
        for node in self.nodes[start:] + self.nodes[:start]:
            if self.honest(node):
                continue
            entries = [(w.task, e) for w in self.work(node) for e in w.verify]
            if entries:
                break
        else:
            return
        task, entry = entries[pick % len(entries)]
        valid = True if self.kinds[node] == "lazy" else valid
        self.accepted(SubmitVerification(task.task_hash, node, entry.resource_node, valid))

    def unassigned_verdict(self, node: str, pick: int) -> None:
        """A standing node that is not assigned to a result (4.5): -32005, "not assigned"."""
        if not self.standing(node):
            return
        entries = [
            (task_hash, e)
            for task_hash in self.chain.open_task_hashes()
            for e in self.task(task_hash).execution_info
            if e.resource_node != node and node not in e.assigned()
        ]
        if not entries:
            return
        task_hash, entry = entries[pick % len(entries)]
        exc = self.send(SubmitVerification(task_hash, node, entry.resource_node, pick % 2 == 0))
        assert isinstance(exc, NotEligible) and exc.reason == "not assigned", exc

    def blocks(self, count: int, seed: int) -> None:
        for _ in range(count):
            self.honest_sweep()
            before = stakes(self.chain.pending, self.nodes)
            open_before = {h for h in self.task_hashes if h not in self.settled}
            block_hash = keccak(seed.to_bytes(8, "big") + self.chain.height.to_bytes(8, "big"))
            self.chain.produce(block_hash)
            # the verify deadlines and settlements of the block's end, in creation order, each
            # at the stakes the settlements before it left
            running = dict(before)
            for task_hash in self.task_hashes:
                if task_hash not in open_before:
                    continue
                task = get_task(self.chain.store, task_hash)
                assert task is not None
                self.record_decisions(task, running, at_deadline=True)
                if task.status in FINAL_STATUSES:
                    assert task.settlement is not None
                    for slash in task.settlement.slashed:
                        running[slash.address] -= slash.amount
            self.record_settlements(self.chain.store)
            self.check_supply()

    def standing(self, node: str) -> bool:
        try:
            tasks.pending_work(self.chain.pending, self.params, node, self.chain.height + 1, [])
        except NotEligible:
            return False
        return True

    def honest_sweep(self) -> None:
        """Honest and silent nodes answer every result assigned to them, to a fixpoint; the
        nodes that reveal (all but silent and byzantine ones) reveal the secret their decided
        results wait for."""
        acted = True
        while acted:
            acted = False
            for node in self.nodes:
                kind = self.kinds[node]
                for item in self.work(node):
                    if kind in HONEST_KINDS:
                        for entry in item.verify:
                            valid = self.correct(item.task.task_hash, entry)
                            msg = SubmitVerification(
                                item.task.task_hash, node, entry.resource_node, valid
                            )
                            self.accepted(msg)
                            acted = True
                if kind in ("honest", "lazy") and self.reveal(node):
                    acted = True

    def reveal(self, node: str) -> bool:
        waiting = [w.task.created_height for w in self.work(node) if w.reveal]
        heights = [h for h in waiting if h is not None]
        if not heights:
            return False
        height = max(heights)
        self.accepted(RevealSecret(node, height, self.secret(node, height)))
        return True


# --- the populations --------------------------------------------------------------------------

STAKE = st.one_of(
    st.integers(MIN_STAKE, 3 * MIN_STAKE),
    st.integers(MIN_STAKE, 20 * MIN_STAKE),
    st.just(MIN_STAKE),
)
WHALE = st.integers(50 * MIN_STAKE, 10_000 * MIN_STAKE)


class VerificationMachine(PoswMachine):
    """Properties 1 and 2: honest and byzantine verifiers of arbitrary stakes, a whale (often
    byzantine) among them; forced errors on or off."""

    @initialize(
        population=st.lists(
            st.tuples(st.sampled_from(["honest", "honest", "byzantine", "lazy"]), STAKE),
            min_size=3,
            max_size=MAX_NODES - 1,
        ),
        whale=st.tuples(st.sampled_from(["byzantine", "byzantine", "honest"]), WHALE),
        quorum=st.integers(1, 3),
        dispute_rounds=st.integers(0, 2),
        canary_rate=st.sampled_from([0, 0, 2500]),
        verify_blocks=st.integers(2, 5),
        slashing=st.sampled_from([True, True, False]),
    )
    def start(
        self,
        population: list[tuple[str, int]],
        whale: tuple[str, int],
        quorum: int,
        dispute_rounds: int,
        canary_rate: int,
        verify_blocks: int,
        slashing: bool,
    ) -> None:
        everyone = [whale, *population]
        self.setup_chain(
            [kind for kind, _ in everyone],
            [stake for _, stake in everyone],
            quorum=quorum,
            dispute_rounds=dispute_rounds,
            canary_rate=canary_rate,
            verify_blocks=verify_blocks,
            reveal_blocks=3,
            slashing=slashing,
        )


class SupplyMachine(PoswMachine):
    """Property 3 (and 1, 2 along): forced errors always on, at a high rate, with honest nodes
    that make them and reveal, lazy nodes that vote valid, and silent nodes that never reveal."""

    @initialize(
        population=st.lists(
            st.tuples(st.sampled_from(["honest", "silent", "lazy", "byzantine"]), STAKE),
            min_size=3,
            max_size=MAX_NODES,
        ),
        quorum=st.integers(1, 2),
        dispute_rounds=st.integers(0, 2),
        canary_rate=st.sampled_from([2500, 5000, 10_000]),
        reveal_blocks=st.integers(0, 3),
    )
    def start(
        self,
        population: list[tuple[str, int]],
        quorum: int,
        dispute_rounds: int,
        canary_rate: int,
        reveal_blocks: int,
    ) -> None:
        self.setup_chain(
            [kind for kind, _ in population],
            [stake for _, stake in population],
            quorum=quorum,
            dispute_rounds=dispute_rounds,
            canary_rate=canary_rate,
            verify_blocks=3,
            reveal_blocks=reveal_blocks,
            slashing=True,
        )


# --- the literal property 1 ---------------------------------------------------------------------


def first_result(chain: MemChain, task_hash: bytes) -> ExecutionInfo:
    task = get_task(chain.pending, task_hash)
    assert task is not None
    return task.execution_info[0]


def test_honest_stake_of_all_assigned_verifiers_decides() -> None:
    """Property 1 read over every assigned verifier: honest H holds 100x the stake of each
    other node; round 0 is H and a byzantine node (they disagree), round 1 two byzantine
    nodes that verify junk. Their agreement holds far less than 2/3 of the stake answered, so
    it does not decide: the last round opens, where H's stake rejects the junk at once."""
    params = Params(block_time_ms=0, verification_quorum=2, dispute_rounds=1, canary_rate_bps=0)
    raw = dev_genesis(mnemonic=DEV_MNEMONIC, params=params, resource_nodes=6, dev_accounts=2)
    for item, stake in zip(raw["resourceNodes"], [1, 100, 1, 1, 1, 1], strict=True):
        item["stake"] = str(stake * MIN_STAKE)
    submitter, honest = raw["resourceNodes"][0]["address"], raw["resourceNodes"][1]["address"]

    def signed(msg: Message) -> None:
        tx = crypto.sign_message(msg, chain.genesis.chain_id, KEYS[signer_of(msg)])
        assert chain.submit(tx) is None

    for attempt in range(100):  # the first block hash that puts H in round 0
        chain = MemChain(parse_genesis(raw))
        task_tx = crypto.sign_message(
            SubmitTask(SENDERS[0], 0, "text", 1, "a prompt", ""),
            chain.genesis.chain_id,
            KEYS[SENDERS[0]],
        )
        assert chain.submit(task_tx) is None
        chain.produce(keccak(b"task"))
        task_hash = task_tx.digest
        signed(SubmitInferenceResult(task_hash, submitter, "junk"))
        chain.produce(keccak(attempt.to_bytes(4, "big")))
        task = get_task(chain.store, task_hash)
        assert task is not None
        if honest in task.execution_info[0].rounds[0]:
            break
    else:
        pytest.fail("no block hash of 100 put the honest node in round 0")
    [byzantine] = set(task.execution_info[0].rounds[0]) - {honest}
    signed(SubmitVerification(task_hash, honest, submitter, False))
    signed(SubmitVerification(task_hash, byzantine, submitter, True))  # a dispute: round 1
    entry = first_result(chain, task_hash)
    assert len(entry.rounds) == 2 and honest not in entry.rounds[1]
    for verifier in entry.rounds[1]:
        signed(SubmitVerification(task_hash, verifier, submitter, True))
    entry = first_result(chain, task_hash)
    at = stakes(chain.pending, list(entry.assigned()))
    assert 3 * at[honest] > 2 * sum(at.values())
    assert entry.status == ResultStatus.REJECTED


SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
VerificationMachine.TestCase.settings = SETTINGS
SupplyMachine.TestCase.settings = SETTINGS
TestVerificationMachine = VerificationMachine.TestCase
TestSupplyMachine = SupplyMachine.TestCase
