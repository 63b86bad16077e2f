"""Assigned verifiers, dispute rounds and forced errors (PROTOCOL 4.5, 4.6, 4.8, 4.12, 4.13).

The rules run as pure functions (`blocks.apply_tx`, `blocks.end_block`) on a `State` over the
store of a fresh LevelDB ledger written from a dev genesis; each block's writes go to the
store at its end, and the supply invariant (4.10) is checked there. The test picks each
block's hash, so the order of the candidates is known: the test computes it on its own, with
keccak256(blockHash || taskHash || submitter || node) from pycryptodome. Settlements are
written out by hand from PROTOCOL 4.8.

Resource nodes are dev accounts 200 + k (2000 AEGIS staked, 1000 AEGIS balance, models "*",
secrets committed at genesis). Unless a test says otherwise: verificationQuorum 2,
disputeRounds 2, computeDeadlineBlocks 3, verifyDeadlineBlocks 3, revealDeadlineBlocks 3,
canaryRateBps 0 (a test about forced errors sets it), fee = 1e15 + 1e15 * targetCount.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from Crypto.Hash import keccak as Keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.node.ledger import Ledger
from chain.protocol import blocks, crypto, tasks
from chain.protocol.errors import (
    ChainError,
    InvalidParams,
    NonceMismatch,
    NotEligible,
)
from chain.protocol.genesis import DEV_MNEMONIC, Params, dev_genesis, parse_genesis
from chain.protocol.state import (
    ACCOUNT,
    OPEN_TASK,
    State,
    decode_account,
    get_account,
    get_node,
    get_supply,
    get_task,
)
from chain.protocol.types import (
    Account,
    BlockContext,
    CommitSecrets,
    ExecutionInfo,
    Message,
    RegisterResourceNode,
    RevealSecret,
    Secrets,
    SignedTx,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    Task,
    Transfer,
    Unstake,
)
from tests.helpers import settlement_values

E18 = 10**18
NODE_STAKE = 2_000 * E18
NODE_BALANCE = 1_000 * E18
BASE_PARAMS = Params(
    block_time_ms=0,
    compute_deadline_blocks=3,
    verify_deadline_blocks=3,
    reveal_deadline_blocks=3,
    canary_rate_bps=0,
)
KEYS: dict[str, bytes] = {}
for _index in [0, 1, 2, 3, *range(200, 212)]:
    _key = crypto.dev_private_key(DEV_MNEMONIC, _index)
    KEYS[crypto.address_of_private_key(_key)] = _key
ALICE, BOB = (
    crypto.address_of_private_key(crypto.dev_private_key(DEV_MNEMONIC, i)) for i in (0, 1)
)
NODES = [
    crypto.address_of_private_key(crypto.dev_private_key(DEV_MNEMONIC, 200 + k)) for k in range(12)
]
N0 = NODES[0]
SECRETS_TAG = b"inferchain/secrets/v1"


def keccak(data: bytes) -> bytes:
    return Keccak.new(digest_bits=256, data=data).digest()


def by_hand_order(
    block_hash: bytes, task_hash: bytes, submitter: str, candidates: list[str]
) -> list[str]:
    """PROTOCOL 4.5, computed here: smallest keccak256(blockHash||taskHash||submitter||node)."""
    prefix = block_hash + task_hash + bytes.fromhex(submitter[2:])
    return sorted(candidates, key=lambda node: keccak(prefix + bytes.fromhex(node[2:])))


@cache
def dev_secret(node: str, height: int) -> bytes:
    """A dev node's secret of `height` (base 0): keccak^(65536 - height) of its seed
    keccak("inferchain/secrets/v1" || key || epoch 0 as 8 bytes), the seed by hand and the
    long chain by `crypto.hash_steps` (checked against pycryptodome in
    test_hash_steps_is_keccak_applied_again_and_again)."""
    seed = keccak(SECRETS_TAG + KEYS[node] + bytes(8))
    return crypto.hash_steps(seed, 65536 - height)


def hash_up(value: bytes, steps: int) -> bytes:
    for _ in range(steps):
        value = keccak(value)
    return value


def fee(target_count: int) -> int:
    return 10**15 + 10**15 * target_count


class Rules:
    """A dev genesis in LevelDB and the pure rules over it, one block at a time."""

    def __init__(self, path: Path, resource_nodes: int, params: Params) -> None:
        self.genesis = parse_genesis(
            dev_genesis(mnemonic=DEV_MNEMONIC, resource_nodes=resource_nodes, params=params)
        )
        self.params = self.genesis.params
        self.ledger = Ledger.open(path, self.genesis)
        self.store = self.ledger.store
        self.state = State(self.store)
        self.height = 1
        self.block_hash = self.hash_of(1)
        self.nodes = NODES[:resource_nodes]

    @staticmethod
    def hash_of(height: int, salt: int = 0) -> bytes:
        return keccak(b"block" + height.to_bytes(8, "big") + salt.to_bytes(8, "big"))

    @property
    def ctx(self) -> BlockContext:
        return BlockContext(self.height, 1_767_225_600 + self.height, ALICE, self.block_hash)

    def nonce(self, address: str) -> int:
        return get_account(self.state, address).nonce

    def apply(self, msg: Message) -> SignedTx:
        tx = crypto.sign_message(msg, self.genesis.chain_id, KEYS[getattr(msg, msg.SIGNER)])
        blocks.apply_tx(self.state, self.params, self.ctx, tx)
        return tx

    def refused(self, msg: Message, error: type[ChainError]) -> Any:
        """Apply `msg`, expect `error`, and check that nothing was written."""
        before = dict(self.state.writes())
        with pytest.raises(error) as info:
            self.apply(msg)
        assert type(info.value) is error
        assert dict(self.state.writes()) == before
        return info.value

    def end(self, next_hash: bytes | None = None) -> None:
        """End the block, write it to the store, check the supply; the next block gets
        `next_hash` (or a hash of its height)."""
        blocks.end_block(self.state, self.params, self.ctx, [])
        self.store.write(self.state.writes())
        self.state = State(self.store)
        self.check_supply()
        self.height += 1
        self.block_hash = self.hash_of(self.height) if next_hash is None else next_hash

    def until(self, height: int) -> None:
        """End blocks until `height` has ended."""
        while self.height <= height:
            self.end()

    def check_supply(self) -> None:
        accounts = [decode_account(v) for _k, v in self.store.iterate(ACCOUNT)]
        escrow = []
        for key, _v in self.store.iterate(OPEN_TASK):
            task = get_task(self.store, key[len(OPEN_TASK) :])
            assert task is not None and task.settlement is None
            escrow.append(task.fee)
        held, expected = blocks.supply_check(accounts, escrow, get_supply(self.store))
        assert held == expected

    # moves

    def submit_task(self, target_count: int = 1) -> bytes:
        msg = SubmitTask(ALICE, self.nonce(ALICE), "text", target_count, "hello", "options")
        return self.apply(msg).digest

    def result(self, task: bytes, node: str, text: str = "the answer") -> None:
        self.apply(SubmitInferenceResult(task, node, text))

    def verdict(self, task: bytes, verifier: str, submitter: str, valid: bool) -> None:
        self.apply(SubmitVerification(task, verifier, submitter, valid))

    def signed(self, make: Callable[[int], Message], sender: str) -> SignedTx:
        return self.apply(make(self.nonce(sender)))

    # reads

    def task(self, task_hash: bytes) -> Task:
        task = get_task(self.state, task_hash)
        assert task is not None
        return task

    def entry(self, task_hash: bytes, submitter: str) -> ExecutionInfo:
        return next(e for e in self.task(task_hash).execution_info if e.resource_node == submitter)

    def rounds(self, task_hash: bytes, submitter: str) -> list[list[str]]:
        return [list(members) for members in self.entry(task_hash, submitter).rounds]

    def account(self, address: str) -> Account:
        return get_account(self.state, address)

    def order(self, task_hash: bytes, submitter: str, block_hash: bytes) -> list[str]:
        others = [n for n in self.nodes if n != submitter]
        return by_hand_order(block_hash, task_hash, submitter, others)


@pytest.fixture
def make_rules(tmp_path: Path) -> Iterator[Callable[..., Rules]]:
    made: list[Rules] = []

    def make(resource_nodes: int = 3, **params: Any) -> Rules:
        rules = Rules(
            tmp_path / f"ledger{len(made)}", resource_nodes, replace(BASE_PARAMS, **params)
        )
        made.append(rules)
        return rules

    yield make
    for rules in made:
        rules.ledger.close()


def one_result(rules: Rules, target_count: int = 1, text: str = "the answer") -> bytes:
    """A task in block 1, N0's result in block 2 (assigned at its end)."""
    task = rules.submit_task(target_count)
    rules.end()
    rules.result(task, N0, text)
    rules.end()
    return task


def settled(task: Task) -> dict[str, Any]:
    return settlement_values(task, height=False)


def settlement_identity_holds(task: Task) -> bool:
    """sum(payouts) + refund + burned = fee + networkReward + sum(slashed) (PROTOCOL 4.8)."""
    s = task.settlement
    assert s is not None
    paid = sum(p.amount for p in s.payouts)
    return paid + s.refund + s.burned == s.fee + s.network_reward + sum(x.amount for x in s.slashed)


# --- the order (4.5) ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    block_hash=st.binary(min_size=32, max_size=32),
    task_hash=st.binary(min_size=32, max_size=32),
    submitter=st.sampled_from(NODES),
    chosen=st.sets(st.sampled_from(NODES)),
)
def test_the_order_is_a_permutation_of_the_candidates_sorted_by_their_keccak(
    block_hash: bytes, task_hash: bytes, submitter: str, chosen: set[str]
) -> None:
    candidates = sorted(chosen - {submitter})
    order = tasks.verifier_order(block_hash, task_hash, submitter, candidates)
    assert sorted(order) == candidates
    assert order == by_hand_order(block_hash, task_hash, submitter, candidates)


@settings(max_examples=10, deadline=None)
@given(block_hash=st.binary(min_size=32, max_size=32))
def test_round_0_is_the_first_quorum_of_the_order_of_the_including_block(
    tmp_path_factory: pytest.TempPathFactory, block_hash: bytes
) -> None:
    rules = Rules(tmp_path_factory.mktemp("order") / "ledger", 6, BASE_PARAMS)
    try:
        task = rules.submit_task()
        rules.end(next_hash=block_hash)
        rules.result(task, N0)
        assert rules.entry(task, N0).rounds == ()  # not assigned before its block ends
        rules.end()
        entry = rules.entry(task, N0)
        assert entry.assignment_seed == block_hash
        order = rules.order(task, N0, block_hash)
        assert rules.rounds(task, N0) == [order[:2]]
        assert not entry.assignment_complete  # three candidates are left for later rounds
    finally:
        rules.ledger.close()


def test_only_assigned_nodes_may_verify_and_nothing_is_written_otherwise(
    make_rules: Callable[..., Rules],
) -> None:
    rules = make_rules(resource_nodes=5)
    task = rules.submit_task()
    rules.end()
    rules.result(task, N0)
    # in the block that includes the result nobody is assigned yet
    for node in NODES[1:5]:
        exc = rules.refused(SubmitVerification(task, node, N0, True), NotEligible)
        assert (exc.address, exc.reason) == (node, "not assigned")
    included = rules.block_hash
    rules.end()
    order = rules.order(task, N0, included)
    assigned, others = order[:2], order[2:]
    for node in others:
        exc = rules.refused(SubmitVerification(task, node, N0, False), NotEligible)
        assert exc.data() == {"address": node, "reason": "not assigned"}
    # queryPendingTasks lists the result only to the assigned (5.1)
    open_tasks = [task]
    for node in NODES[1:5]:
        work = tasks.pending_work(rules.state, rules.params, node, rules.height, open_tasks)
        listed = [e.resource_node for w in work for e in w.verify]
        assert listed == ([N0] if node in assigned else [])
    # the submitter is refused before the assignment is looked at
    exc = rules.refused(SubmitVerification(task, N0, N0, True), NotEligible)
    assert exc.reason != "not assigned"
    rules.verdict(task, assigned[0], N0, True)
    assert [v.verifier for v in rules.entry(task, N0).verifications] == [assigned[0]]


# --- rounds and deciding (4.5, 4.6) ---------------------------------------------------------


@pytest.mark.parametrize(("valid", "status"), [(True, 2), (False, 3)])
def test_round_0_decides_when_all_its_members_agree(
    make_rules: Callable[..., Rules], valid: bool, status: int
) -> None:
    rules = make_rules(resource_nodes=6)
    task = one_result(rules)
    first, second = rules.rounds(task, N0)[0]
    rules.verdict(task, first, N0, valid)
    assert rules.entry(task, N0).status == 1  # one member of two: undecided
    rules.verdict(task, second, N0, valid)
    entry = rules.entry(task, N0)
    assert (entry.status, entry.decided_height) == (status, rules.height)
    assert len(entry.rounds) == 1  # nobody else was called


def test_a_dispute_opens_the_next_round_at_once_and_it_decides_alone(
    make_rules: Callable[..., Rules],
) -> None:
    rules = make_rules(resource_nodes=8, dispute_rounds=1)
    task = rules.submit_task()
    rules.end()
    rules.result(task, N0)
    included = rules.block_hash
    rules.end()
    order = rules.order(task, N0, included)
    rules.verdict(task, order[0], N0, True)
    rules.verdict(task, order[1], N0, False)  # a dispute in round 0
    assert rules.rounds(task, N0) == [order[0:2], order[2:4]]  # in the same block
    assert rules.entry(task, N0).status == 1
    # round 1 decides by its own members: round 0's invalid verdict does not count
    rules.verdict(task, order[2], N0, True)
    rules.verdict(task, order[3], N0, True)
    entry = rules.entry(task, N0)
    assert entry.status == 2 and len(entry.rounds) == 2
    # but it counts for the settlement: the dissenter of round 0 loses
    rules.until(rules.height)
    done = rules.task(task)
    slashed = settled(done)["slashed"]
    assert slashed == [(order[1], NODE_STAKE * 500 // 10_000, "verdict")]
    assert [p[0] for p in settled(done)["payouts"] if p[2] == "verify"] == [
        order[0],
        order[2],
        order[3],
    ]


def test_after_the_dispute_rounds_the_last_round_holds_every_other_candidate_and_weighs_stake(
    make_rules: Callable[..., Rules],
) -> None:
    rules = make_rules(resource_nodes=8, dispute_rounds=1)  # 7 candidates: 2, 2, then 3
    task = rules.submit_task()
    rules.end()
    rules.result(task, N0)
    included = rules.block_hash
    rules.end()
    order = rules.order(task, N0, included)
    rules.verdict(task, order[0], N0, True)
    rules.verdict(task, order[1], N0, False)  # round 0 disputed
    rules.verdict(task, order[2], N0, False)
    rules.verdict(task, order[3], N0, True)  # round 1 disputed: the last round
    entry = rules.entry(task, N0)
    assert rules.rounds(task, N0) == [order[0:2], order[2:4], order[4:7]]
    assert entry.assignment_complete
    # all 7 assigned hold 14000; valid has 4000, then 6000, 8000: not above 2/3 (9333.3)
    rules.verdict(task, order[4], N0, True)
    rules.verdict(task, order[5], N0, True)
    assert rules.entry(task, N0).status == 1
    rules.verdict(task, order[6], N0, True)  # 10000 of 14000: 30000 > 28000
    assert rules.entry(task, N0).status == 2


def test_the_last_round_needs_more_than_two_thirds_of_the_assigned_stake_exactly_is_not(
    make_rules: Callable[..., Rules],
) -> None:
    """Four nodes, quorum 3: round 0 holds all three candidates and is the last round."""
    rules = make_rules(resource_nodes=4, verification_quorum=3)
    task = one_result(rules)
    (members,) = rules.rounds(task, N0)
    assert sorted(members) == sorted(NODES[1:4]) and rules.entry(task, N0).assignment_complete
    rules.verdict(task, members[0], N0, True)
    rules.verdict(task, members[1], N0, True)  # 4000 of 6000: exactly 2/3, not above
    assert rules.entry(task, N0).status == 1
    rules.verdict(task, members[2], N0, False)
    assert rules.entry(task, N0).status == 1
    # at the verify deadline: two of the three answers and 4000 of their 6000, a majority
    # by count and by stake: verified, and the dissenter is on the losing side
    rules.until(1 + 3 + 3)
    assert rules.entry(task, N0).status == 2
    done = rules.task(task)
    assert done.status == "verified"
    assert [address for address, _amount, _reason in settled(done)["slashed"]] == [members[2]]


@pytest.mark.parametrize(
    ("votes", "status"),
    [
        ([True], 2),  # 2000 of the 2000 answering
        ([False], 3),
        ([True, False], 4),  # 2000 of 4000
        ([], 4),  # no verdict
    ],
)
def test_at_the_verify_deadline_the_majority_of_the_answers_decides(
    make_rules: Callable[..., Rules], votes: list[bool], status: int
) -> None:
    rules = make_rules(resource_nodes=3)  # round 0 is both others, the last round
    task = one_result(rules)
    (members,) = rules.rounds(task, N0)
    for member, valid in zip(members, votes, strict=False):
        rules.verdict(task, member, N0, valid)
    rules.until(1 + 3 + 2)
    assert rules.entry(task, N0).status in (0, 1)  # undecided until the deadline
    rules.end()  # the verify deadline, createdHeight + 3 + 3
    entry = rules.entry(task, N0)
    assert (entry.status, entry.decided_height) == (status, 7)


@pytest.mark.parametrize(
    ("stakes", "votes", "status"),
    [
        ((2000, 1000, 2000), (True, False, None), 4),  # more stake valid, one answer each
        ((1000, 1000, 3000), (True, True, False), 4),  # more answers valid, less stake
        ((2000, 2000, 2000), (True, True, False), 2),  # both majorities
        ((2000, 2000, 2000), (False, False, True), 3),
    ],
)
def test_the_deadline_needs_a_majority_of_the_answers_by_count_and_by_stake(
    make_rules: Callable[..., Rules],
    stakes: tuple[int, int, int],
    votes: tuple[bool | None, ...],
    status: int,
) -> None:
    """Four nodes, quorum 3: the last round holds the three others, and no side reaches 2/3
    of the assigned stake before the deadline. There the side with more than half of the
    answers and more than half of their stake decides; one majority without the other is
    unverified."""
    rules = make_rules(resource_nodes=4, verification_quorum=3)
    nodes = sorted(NODES[1:4])
    for node, stake in zip(nodes, stakes, strict=True):
        if stake < 2000:
            rules.apply(Unstake(node, 0, (2000 - stake) * E18))
        elif stake > 2000:
            rules.apply(Transfer(ALICE, 0, node, (stake - 2000) * E18))
            rules.apply(Stake(node, 0, (stake - 2000) * E18))
    task = one_result(rules)
    for node, valid in zip(nodes, votes, strict=True):
        if valid is not None:
            rules.verdict(task, node, N0, valid)
    rules.until(6)
    assert rules.entry(task, N0).status == 1
    rules.end()  # the verify deadline
    assert rules.entry(task, N0).status == status


def test_a_whale_assigned_beside_an_honest_node_does_not_decide(
    make_rules: Callable[..., Rules],
) -> None:
    """4.6: 5000 staked behind a lie against an honest 2000 in round 0 is a dispute, not a
    decision; the last round (every other candidate) decides for the honest side."""
    rules = make_rules(resource_nodes=8, dispute_rounds=0)
    whale, honest = NODES[1], NODES[2]
    rules.signed(lambda n: Transfer(ALICE, n, whale, 3_000 * E18), ALICE)
    rules.end()
    rules.signed(lambda n: Stake(whale, n, 3_000 * E18), whale)
    task = rules.submit_task()
    # pick the hash of the including block so that round 0 is {whale, honest}
    salt = 0
    while set(rules.order(task, N0, Rules.hash_of(2, salt))[:2]) != {whale, honest}:
        salt += 1
    rules.end(next_hash=Rules.hash_of(2, salt))
    rules.result(task, N0)
    included = rules.block_hash
    rules.end()
    assert rules.account(whale).stake == 5_000 * E18
    order = rules.order(task, N0, included)
    assert set(rules.rounds(task, N0)[0]) == {whale, honest}
    rules.verdict(task, whale, N0, False)  # 5000 of the pair's 7000: 71%
    rules.verdict(task, honest, N0, True)
    entry = rules.entry(task, N0)
    assert entry.status == 1  # not rejected: a dispute
    assert rules.rounds(task, N0)[1] == order[2:]  # the other five: the last round
    # 17000 assigned: the honest side needs more than 11333.3, six honest nodes hold 12000
    for node in order[2:-1]:
        rules.verdict(task, node, N0, True)
        assert rules.entry(task, N0).status == 1
    rules.verdict(task, order[-1], N0, True)
    assert rules.entry(task, N0).status == 2
    rules.end()
    done = rules.task(task)
    assert done.status == "verified"
    assert settled(done)["slashed"] == [(whale, 5_000 * E18 * 500 // 10_000, "verdict")]


def test_a_small_network_runs_out_of_candidates(make_rules: Callable[..., Rules]) -> None:
    # one other node: round 0 holds it, and it is complete, so it weighs stake
    rules = make_rules(resource_nodes=2)
    task = one_result(rules)
    entry = rules.entry(task, N0)
    assert rules.rounds(task, N0) == [[NODES[1]]] and entry.assignment_complete
    rules.verdict(task, NODES[1], N0, True)
    assert rules.entry(task, N0).status == 2
    # nobody else: an empty round 0, and the verify deadline finds no verdict
    alone = make_rules(resource_nodes=1)
    task = one_result(alone)
    assert alone.rounds(task, N0) == [[]] and alone.entry(task, N0).assignment_complete
    alone.until(7)
    assert alone.entry(task, N0).status == 4
    # three candidates, quorum 2: the dispute round takes the one left, and is the last
    four = make_rules(resource_nodes=4)
    task = four.submit_task()
    four.end()
    four.result(task, N0)
    included = four.block_hash
    four.end()
    order = four.order(task, N0, included)
    assert not four.entry(task, N0).assignment_complete
    four.verdict(task, order[0], N0, True)
    four.verdict(task, order[1], N0, False)
    assert four.rounds(task, N0) == [order[:2], order[2:]]
    assert four.entry(task, N0).assignment_complete
    four.verdict(task, order[2], N0, True)  # 4000 of 6000: exactly 2/3
    assert four.entry(task, N0).status == 1


# --- CommitSecrets (4.12) -------------------------------------------------------------------


def test_commit_secrets_checks_in_order_and_sets_the_chain(
    make_rules: Callable[..., Rules],
) -> None:
    rules = make_rules(resource_nodes=3, canary_rate_bps=100)
    head = keccak(b"a head")
    # nonce first, even with a zero head
    exc = rules.refused(CommitSecrets(BOB, 1, b"\x00" * 32), NonceMismatch)
    assert (exc.expected, exc.got) == (0, 1)
    # then the head, even from an account that is no node
    exc = rules.refused(CommitSecrets(BOB, 0, b"\x00" * 32), InvalidParams)
    assert exc.param == "head"
    exc = rules.refused(CommitSecrets(BOB, 0, head), NotEligible)
    assert exc.address == BOB and "registered" in exc.reason
    # a node with a result in an unsettled task
    task = one_result(rules)
    exc = rules.refused(CommitSecrets(N0, 0, head), NotEligible)
    assert exc.address == N0 and "unsettled" in exc.reason
    # and one with a verdict in one
    verifier = rules.rounds(task, N0)[0][0]
    rules.verdict(task, verifier, N0, True)
    exc = rules.refused(CommitSecrets(verifier, 0, head), NotEligible)
    assert "unsettled" in exc.reason
    # the third node may: base = revealedHeight = the block's height, revealed = head
    (idle,) = [n for n in NODES[1:3] if n != verifier]  # assigned but silent: not busy
    rules.apply(CommitSecrets(idle, 0, head))
    node = get_node(rules.state, idle)
    assert node is not None
    assert node.secrets == Secrets(head, rules.height, rules.height, head)
    assert rules.account(idle).nonce == 1


def test_a_task_created_at_or_before_the_commitment_is_not_computed(
    make_rules: Callable[..., Rules],
) -> None:
    # quorum 3: round 0 of N0's result holds N1, N2 and BOB
    rules = make_rules(resource_nodes=3, canary_rate_bps=100, verification_quorum=3)
    rules.apply(RegisterResourceNode(BOB, 0, "*", ""))
    rules.apply(Stake(BOB, 1, 1_000 * E18))
    before = rules.submit_task(target_count=2)
    exc = rules.refused(SubmitInferenceResult(before, BOB, "x"), NotEligible)
    assert exc.reason == "no secrets committed before the task"
    rules.apply(CommitSecrets(BOB, 2, keccak(b"bob")))
    same = rules.submit_task(target_count=2)
    rules.end()
    for task in (before, same):  # created at the height of the commitment: too late
        exc = rules.refused(SubmitInferenceResult(task, BOB, "x"), NotEligible)
        assert exc.reason == "no secrets committed before the task"
    rules.result(same, N0)
    later = rules.submit_task()
    rules.end()
    rules.result(later, BOB)  # created after the commitment
    assert [e.resource_node for e in rules.task(later).execution_info] == [BOB]
    # verifying needs no secrets older than the task
    assert BOB in rules.rounds(same, N0)[0]
    rules.verdict(same, BOB, N0, True)
    assert [v.verifier for v in rules.entry(same, N0).verifications] == [BOB]


# --- RevealSecret (4.12, 4.13) --------------------------------------------------------------


def test_reveal_secret_checks_each_field(make_rules: Callable[..., Rules]) -> None:
    rules = make_rules(resource_nodes=3, canary_rate_bps=100)
    n1 = NODES[1]
    s1 = dev_secret(N0, 1)
    exc = rules.refused(RevealSecret(BOB, 1, s1), NotEligible)
    assert "registered" in exc.reason
    rules.apply(RegisterResourceNode(BOB, 0, "*", ""))
    exc = rules.refused(RevealSecret(BOB, 1, s1), NotEligible)
    assert exc.reason == "no secrets committed"
    exc = rules.refused(RevealSecret(N0, 0, dev_secret(N0, 0)), InvalidParams)
    assert exc.param == "height"  # not above revealedHeight 0
    exc = rules.refused(RevealSecret(N0, 2, dev_secret(N0, 2)), InvalidParams)
    assert exc.param == "height"  # beyond the current height, 1
    exc = rules.refused(RevealSecret(N0, 1, keccak(b"not it")), InvalidParams)
    assert exc.param == "secret"
    exc = rules.refused(RevealSecret(N0, 1, dev_secret(n1, 1)), InvalidParams)
    assert exc.param == "secret"  # another node's secret of the same height
    rules.apply(RevealSecret(N0, 1, s1))
    node = get_node(rules.state, N0)
    assert node is not None and node.secrets is not None
    assert (node.secrets.revealed_height, node.secrets.revealed) == (1, s1)
    assert hash_up(s1, 1) == node.secrets.head  # keccak^(1 - 0)(s_1) = H
    exc = rules.refused(RevealSecret(N0, 1, s1), InvalidParams)  # revealed already
    assert exc.param == "height"


def test_a_reveal_walks_at_most_4096_heights(make_rules: Callable[..., Rules]) -> None:
    rules = make_rules(resource_nodes=2, canary_rate_bps=100)
    rules.height = 5000  # the pure rules take the height from the block context
    exc = rules.refused(RevealSecret(N0, 4097, dev_secret(N0, 4097)), InvalidParams)
    assert exc.param == "height" and "4096" in exc.reason
    rules.apply(RevealSecret(N0, 4096, dev_secret(N0, 4096)))
    rules.apply(RevealSecret(N0, 4097, dev_secret(N0, 4097)))  # one step from 4096


def forced_task(rules: Rules, node: str, forced: bool, created: int) -> bytes:
    """Submit tasks (prompts "p0", "p1", ...) until one created at `created` is, for `node`,
    a forced error or not as asked; the others are never answered."""
    secret = dev_secret(node, created)
    salt = 0
    while True:
        msg = SubmitTask(ALICE, rules.nonce(ALICE), "text", 1, f"p{salt}", "options")
        digest = crypto.sign_message(msg, rules.genesis.chain_id, KEYS[ALICE]).digest
        draw = int.from_bytes(keccak(secret + digest), "big")
        if (draw * 10_000 < rules.params.canary_rate_bps << 256) == forced:
            return rules.apply(msg).digest
        salt += 1


def test_a_reveal_learns_the_forced_errors_it_covers_and_settles(
    make_rules: Callable[..., Rules],
) -> None:
    rules = make_rules(resource_nodes=3, canary_rate_bps=5000)
    honest_task = forced_task(rules, N0, False, 1)
    forced_one = forced_task(rules, N0, True, 1)
    rules.end()
    rules.result(honest_task, N0, "the answer")
    rules.result(forced_one, N0, "wrong on purpose")
    rules.end()
    for task, valid in ((honest_task, True), (forced_one, False)):
        for verifier in rules.rounds(task, N0)[0]:
            rules.verdict(task, verifier, N0, valid)
    assert [rules.entry(t, N0).status for t in (honest_task, forced_one)] == [2, 3]
    rules.end()
    assert rules.task(honest_task).settlement is None  # waits for N0's secret
    work = tasks.pending_work(rules.state, rules.params, N0, rules.height, [honest_task])
    assert [w.reveal for w in work] == [True]
    rules.apply(RevealSecret(N0, 2, dev_secret(N0, 2)))  # a later height covers height 1
    assert rules.entry(honest_task, N0).forced_error is False
    assert rules.task(honest_task).status == "verified"  # settled by the reveal
    assert rules.entry(forced_one, N0).forced_error is True
    assert rules.task(forced_one).settlement is None  # its slot is open until the deadline
    rules.until(1 + 3)
    assert rules.task(forced_one).status == "failed"


def test_a_revealed_forced_error_pays_the_catchers_and_slashes_the_lazy(
    make_rules: Callable[..., Rules],
) -> None:
    # canaryRateBps 10000: every result is a forced error; 5 nodes, quorum 4: round 0 holds
    # the four others and is the last round (8000 assigned)
    rules = make_rules(resource_nodes=5, verification_quorum=4, canary_rate_bps=10_000)
    task = one_result(rules, text="wrong on purpose")
    (members,) = rules.rounds(task, N0)
    lazy, catchers = members[0], members[1:]
    rules.verdict(task, lazy, N0, True)  # seq 1
    for catcher in catchers:  # seq 2, 3, 4: 6000 of 8000 invalid, rejected at the third
        rules.verdict(task, catcher, N0, False)
    assert rules.entry(task, N0).status == 3
    rules.apply(RevealSecret(N0, 1, dev_secret(N0, 1)))
    assert rules.entry(task, N0).forced_error is True
    rules.until(1 + 3)  # the compute deadline: the freed slot closes
    done = rules.task(task)
    assert (done.status, done.response, done.verification_count) == ("failed", None, 0)
    # PROTOCOL 4.8 by hand: F = 2e15, R = 0; the lazy verdict loses 5% of 2000
    f, slash, bonus = fee(1), NODE_STAKE * 500 // 10_000, 10**16
    pool_c = f * 7000 // 10_000  # nobody to pay
    pool_v = f - pool_c + slash
    weights = [10_000, 9_000, 8_100]
    v = [pool_v * w // sum(weights) for w in weights]
    unpaid_v = pool_v - sum(v)
    burned = unpaid_v * slash // pool_v
    refund = pool_c + unpaid_v - burned
    assert settled(done) == {
        "fee": f,
        "networkReward": 3 * bonus,
        "slashed": [(lazy, slash, "lazy")],
        "payouts": [
            *[
                (c, amount, "verify", rank)
                for rank, (c, amount) in enumerate(zip(catchers, v, strict=True), 1)
            ],
            *[(c, bonus, "canary", rank) for rank, c in enumerate(catchers, 1)],
        ],
        "refund": refund,
        "burned": burned,
    }
    assert settlement_identity_holds(done)
    assert rules.account(N0) == Account(NODE_BALANCE, NODE_STAKE, 0)  # neither paid nor slashed
    assert rules.account(lazy).stake == NODE_STAKE - slash
    for catcher, amount in zip(catchers, v, strict=True):
        assert rules.account(catcher) == Account(NODE_BALANCE + amount + bonus, NODE_STAKE, 0)


def test_a_forced_error_voted_valid_is_never_the_response(
    make_rules: Callable[..., Rules],
) -> None:
    rules = make_rules(resource_nodes=3, canary_rate_bps=10_000)
    task = one_result(rules, text="wrong on purpose")
    for member in rules.rounds(task, N0)[0]:
        rules.verdict(task, member, N0, True)  # both lazy: verified
    assert rules.entry(task, N0).status == 2
    rules.apply(RevealSecret(N0, 2, dev_secret(N0, 2)))
    done = rules.task(task)  # settled by the reveal: no slot open, nothing undecided
    assert (done.status, done.response) == ("failed", None)
    slash = NODE_STAKE * 500 // 10_000
    assert sorted(settled(done)["slashed"]) == sorted(
        (m, slash, "lazy") for m in rules.rounds(task, N0)[0]
    )
    assert settled(done)["payouts"] == []  # no winning side, no catcher, no valid result
    assert settlement_identity_holds(done)


def test_an_unrevealed_result_is_slashed_as_wrong_at_the_reveal_deadline(
    make_rules: Callable[..., Rules],
) -> None:
    rules = make_rules(resource_nodes=3, canary_rate_bps=100)
    task = forced_task(rules, N0, False, 1)
    rules.end()
    rules.result(task, N0)
    rules.end()
    for member in rules.rounds(task, N0)[0]:
        rules.verdict(task, member, N0, True)
    assert rules.entry(task, N0).status == 2
    rules.until(1 + 3 + 3 + 2)
    assert rules.task(task).settlement is None  # waits for the secret
    rules.end()  # the reveal deadline, createdHeight + 3 + 3 + 3
    done = rules.task(task)
    assert (done.status, done.response, done.finished_height) == ("failed", None, 10)
    assert rules.entry(task, N0).forced_error is None
    slash = NODE_STAKE * 1000 // 10_000
    f = fee(1)
    pool_c = f * 7000 // 10_000
    pool_v = f - pool_c + slash  # nobody wins: the verdicts are on no side
    assert settled(done) == {
        "fee": f,
        "networkReward": 0,
        "slashed": [(N0, slash, "result")],
        "payouts": [],
        "refund": f,  # everything unpaid: the slash is burned, the fee refunded
        "burned": slash,
    }
    assert pool_c + pool_v == f + slash
    assert settlement_identity_holds(done)
    for member in rules.rounds(task, N0)[0]:
        assert rules.account(member) == Account(NODE_BALANCE, NODE_STAKE, 0)


def test_canary_rate_zero_needs_no_secrets_and_no_reveal(make_rules: Callable[..., Rules]) -> None:
    rules = make_rules(resource_nodes=3, canary_rate_bps=0)
    rules.apply(RegisterResourceNode(BOB, 0, "*", ""))
    rules.apply(Stake(BOB, 1, 1_000 * E18))
    task = rules.submit_task()
    rules.end()
    rules.result(task, BOB)  # no secrets committed, and none needed
    rules.end()
    for member in rules.rounds(task, BOB)[0]:
        rules.verdict(task, member, BOB, True)
    done = rules.task(task)  # settled at once: no reveal to wait for
    assert done.status == "verified" and done.execution_info[0].forced_error is None
    work = tasks.pending_work(rules.state, rules.params, N0, rules.height, [task])
    assert work == []
    assert settlement_identity_holds(done)


# --- is_forced_error (4.13) -----------------------------------------------------------------


@settings(max_examples=300)
@given(
    secret=st.binary(min_size=32, max_size=32),
    task_hash=st.binary(min_size=32, max_size=32),
    rate=st.integers(min_value=0, max_value=10_000),
    more=st.integers(min_value=0, max_value=10_000),
)
def test_is_forced_error_is_the_draw_below_the_rate(
    secret: bytes, task_hash: bytes, rate: int, more: int
) -> None:
    draw = int.from_bytes(keccak(secret + task_hash), "big")
    forced = crypto.is_forced_error(secret, task_hash, rate)
    assert forced == (draw * 10_000 < rate * 2**256)
    if forced:  # a higher rate keeps every forced error
        assert crypto.is_forced_error(secret, task_hash, min(10_000, rate + more))
    assert not crypto.is_forced_error(secret, task_hash, 0)
    assert crypto.is_forced_error(secret, task_hash, 10_000)


def test_is_forced_error_hits_about_its_rate() -> None:
    secret = keccak(b"a secret")
    hits = sum(
        crypto.is_forced_error(secret, keccak(i.to_bytes(4, "big")), 2_500) for i in range(4000)
    )
    assert 863 <= hits <= 1137  # 1000 expected, within 5 standard deviations (27.4 each)


@settings(max_examples=50)
@given(value=st.binary(min_size=32, max_size=32), steps=st.integers(min_value=0, max_value=300))
def test_hash_steps_is_keccak_applied_again_and_again(value: bytes, steps: int) -> None:
    assert crypto.hash_steps(value, steps) == hash_up(value, steps)


def test_the_dev_secrets_head_is_the_seed_hashed_65536_times() -> None:
    key = KEYS[N0]
    seed = keccak(SECRETS_TAG + key + bytes(8))
    assert crypto.secrets_seed(key, 0) == seed
    assert crypto.dev_secrets_head(key) == crypto.hash_steps(seed, 65536)
    assert hash_up(dev_secret(N0, 7), 7) == crypto.dev_secrets_head(key)  # 4.13: s_h -> H
