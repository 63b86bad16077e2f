"""chain.protocol.tasks: the PoS+W task lifecycle (PROTOCOL 4.2 to 4.8, 4.11) on a real node.

Every test drives a `Node` over LevelDB in tmp_path: signed transactions go through
`node.submit` (the mempool applies them to its pending state, so the answer a node gets is
the answer of the next block) and blocks are committed with `node.produce_block`. After every
block the supply invariant (4.10) must hold. Expected settlements are written out by hand from
PROTOCOL 4.8, never by calling chain.protocol.tasks.

Resource nodes are dev accounts 200 + k (2000 AEGIS staked, 1000 AEGIS balance, models "*").
Unless a test says otherwise: minNodeStake 1000, verificationQuorum 2, disputeRounds 2,
computeDeadlineBlocks 5, verifyDeadlineBlocks 5, fee = 1e15 + 1e15 * targetCount,
networkRewardPerTask 1e16, canaryRateBps 0 (forced errors are tests/unit/test_assignment.py's).

With three nodes and quorum 2, round 0 of a result holds both other nodes, and no candidate is
left after it: it is the last round, decided by more than 2/3 of the stake of both, so both
must agree (4.5, 4.6). A result is assigned at the end of the block that includes it, so its
verdicts come in a later block. Where a test's outcome would depend on the order of the
candidates, it reads the rounds the chain assigned (`Chain.rounds`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chain.node.node import Node, dev_validator_key
from chain.protocol import crypto, tasks, wire
from chain.protocol.errors import (
    ChainError,
    DuplicateSubmission,
    InvalidParams,
    NotEligible,
    TaskClosed,
    UnknownTask,
)
from chain.protocol.genesis import DEV_MNEMONIC, Params, dev_genesis, parse_genesis
from chain.protocol.state import get_account, get_busy, get_node, get_supply
from chain.protocol.types import (
    Account,
    Message,
    RegisterResourceNode,
    RevealSecret,
    Settlement,
    SignedTx,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    Task,
    Transfer,
    Unstake,
    signer_of,
)
from rpc.methods import METHODS
from tests.helpers import settlement_values

E18 = 10**18
CLOCK = 1_767_226_000.0  # a fixed node clock, after the dev genesis time
# canaryRateBps 0: these tests are not about forced errors (tests/unit/test_assignment.py is),
# so no node needs secrets and no result waits for a reveal.
BASE_PARAMS = Params(
    block_time_ms=0, compute_deadline_blocks=5, verify_deadline_blocks=5, canary_rate_bps=0
)
DEV_BALANCE = 10_000 * E18
NODE_BALANCE = 1_000 * E18
NODE_STAKE = 2_000 * E18
MIN_STAKE = 1_000 * E18
BLOCK_REWARD = 10**16
NETWORK_REWARD = 10**16

KEYS: dict[str, bytes] = {}
for _index in [0, 1, 2, 3, *range(200, 206)]:
    _key = crypto.dev_private_key(DEV_MNEMONIC, _index)
    KEYS[crypto.address_of_private_key(_key)] = _key
ALICE, BOB, CAROL, DAVE = (
    crypto.address_of_private_key(crypto.dev_private_key(DEV_MNEMONIC, i)) for i in range(4)
)
NODES = [
    crypto.address_of_private_key(crypto.dev_private_key(DEV_MNEMONIC, 200 + k)) for k in range(6)
]
N0, N1, N2 = NODES[:3]
UNKNOWN_TASK = b"\x42" * 32


def fee(target_count: int) -> int:
    return 10**15 + 10**15 * target_count


def honest(task_hash: bytes, node: str) -> str:
    """A deterministic inference output: a function of the task and the node's seed (4.4)."""
    seed = int.from_bytes(crypto.keccak(task_hash + bytes.fromhex(node[2:]))[:8], "big")
    return f"answer of {task_hash.hex()[:12]} with seed {seed}"


class Chain:
    """A node and the moves of its users: sign, submit, produce blocks, read back."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.params = node.params
        self.blocks = 0

    @property
    def height(self) -> int:
        return self.node.head.height

    def sign(self, msg: Message) -> SignedTx:
        return crypto.sign_message(msg, self.node.genesis.chain_id, KEYS[signer_of(msg)])

    def send(self, msg: Message) -> SignedTx:
        tx = self.sign(msg)
        self.node.submit(tx)
        return tx

    def refused(self, msg: Message, error: type[ChainError]) -> Any:
        """Submit `msg`, expect `error`, and check that the mempool did not take it."""
        tx = self.sign(msg)
        pending = len(self.node.mempool)
        resent = tx.hash in self.node.mempool  # the very same tx again (signatures are RFC 6979)
        with pytest.raises(error) as info:
            self.node.submit(tx)
        assert type(info.value) is error
        assert (tx.hash in self.node.mempool) == resent and len(self.node.mempool) == pending
        return info.value

    def nonce(self, address: str) -> int:
        return self.node.mempool.next_nonce(address)

    # transactions

    def submit_task(
        self, target_count: int = 1, model: str | None = "llama-3", sender: str = ALICE
    ) -> bytes:
        options = "plain options" if model is None else json.dumps({"model": model})
        msg = SubmitTask(sender, self.nonce(sender), "text", target_count, "hello", options)
        return self.send(msg).digest

    def result_msg(self, task_hash: bytes, node: str, text: str | None = None) -> Message:
        return SubmitInferenceResult(
            task_hash, node, honest(task_hash, node) if text is None else text
        )

    def result(self, task_hash: bytes, node: str, text: str | None = None) -> SignedTx:
        return self.send(self.result_msg(task_hash, node, text))

    def verdict(self, task_hash: bytes, verifier: str, submitter: str, valid: bool) -> SignedTx:
        return self.send(SubmitVerification(task_hash, verifier, submitter, valid))

    def stake(self, address: str, amount: int) -> SignedTx:
        return self.send(Stake(address, self.nonce(address), amount))

    def unstake_msg(self, address: str, amount: int) -> Message:
        return Unstake(address, self.nonce(address), amount)

    def transfer(self, sender: str, to: str, amount: int) -> SignedTx:
        return self.send(Transfer(sender, self.nonce(sender), to, amount))

    def register(self, address: str, models: str) -> SignedTx:
        return self.send(RegisterResourceNode(address, self.nonce(address), models, ""))

    def rpc(self, method: str, msg: Message) -> Any:
        """A signed call through the JSON-RPC method table (PROTOCOL 5.1)."""
        params = wire.message_to_params(msg) | {"signature": wire.hex0x(self.sign(msg).signature)}
        return METHODS[method].handler(self.node, params)

    # blocks

    def block(self, count: int = 1) -> int:
        for _ in range(count):
            pending = len(self.node.mempool)
            head = self.node.produce_block()
            self.blocks += 1
            stored = self.node.ledger.get_block(head.height)
            assert stored is not None and len(stored.block.txs) == pending
            for tx_hash in stored.block.txs:  # the mempool's answer was the block's answer
                record = self.node.ledger.get_tx(tx_hash)
                assert record is not None and record.status == "committed"
            held, expected = self.node.ledger.supply_check()
            assert held == expected
        return self.height

    def until(self, height: int) -> None:
        """Produce blocks until `height` is the last committed one."""
        assert height >= self.height
        self.block(height - self.height)

    # reads of the committed state

    def task(self, task_hash: bytes) -> Task:
        task = self.node.ledger.get_task(task_hash)
        assert task is not None
        return task

    def account(self, address: str) -> Account:
        return get_account(self.node.ledger.store, address)

    def jailed(self, address: str) -> bool:
        info = get_node(self.node.ledger.store, address)
        assert info is not None
        return info.jailed

    def statuses(self, task_hash: bytes) -> list[int]:
        return [e.status for e in self.task(task_hash).execution_info]

    def supply(self) -> tuple[int, int, int]:
        return get_supply(self.node.ledger.store)

    def rounds(self, task_hash: bytes, submitter: str) -> list[list[str]]:
        """The verifiers the chain assigned to a committed result, round by round (4.5)."""
        entry = next(e for e in self.task(task_hash).execution_info if e.resource_node == submitter)
        return [list(members) for members in entry.rounds]

    def work(self, address: str) -> list[tasks.Work]:
        """tasks.pending_work as queryPendingTasks asks it: for the next block's height."""
        return tasks.pending_work(
            self.node.mempool.pending_state,
            self.params,
            address,
            self.height + 1,
            list(self.node.ledger.open_task_hashes()),
        )


@pytest.fixture
def make_chain(tmp_path: Path) -> Iterator[Callable[..., Chain]]:
    nodes: list[Node] = []

    def make(*, resource_nodes: int = 3, **params: Any) -> Chain:
        genesis = parse_genesis(
            dev_genesis(
                mnemonic=DEV_MNEMONIC,
                resource_nodes=resource_nodes,
                params=replace(BASE_PARAMS, **params),
            )
        )
        node = Node(
            genesis,
            tmp_path / f"ledger{len(nodes)}",
            dev_validator_key(genesis, None),
            check_invariants=True,
            clock=lambda: CLOCK,
        )
        asyncio.run(node.setup())
        nodes.append(node)
        return Chain(node)

    yield make
    for node in nodes:
        asyncio.run(node.cleanup())


@pytest.fixture
def chain(make_chain: Callable[..., Chain]) -> Chain:
    return make_chain()


# --- eligibility (4.2) ---------------------------------------------------------------------


def test_unregistered_account_may_neither_compute_nor_verify(chain: Chain) -> None:
    task = chain.submit_task()
    chain.block()
    exc = chain.refused(chain.result_msg(task, ALICE), NotEligible)
    assert exc.address == ALICE
    chain.result(task, N0)
    chain.block()
    exc = chain.refused(SubmitVerification(task, ALICE, N0, True), NotEligible)
    assert exc.address == ALICE


def test_stake_one_below_min_node_stake_is_not_eligible_exactly_min_is(chain: Chain) -> None:
    task = chain.submit_task(target_count=2)
    chain.register(DAVE, "*")
    chain.stake(DAVE, MIN_STAKE - 1)
    chain.block()
    assert chain.account(DAVE).stake == MIN_STAKE - 1
    chain.refused(chain.result_msg(task, DAVE), NotEligible)
    chain.stake(DAVE, 1)
    chain.result(task, DAVE)  # the pending state already has the stake
    chain.block()
    (entry,) = chain.task(task).execution_info
    assert entry.resource_node == DAVE and entry.rank == 1


def test_registration_needs_no_genesis_entry_but_a_stake(chain: Chain) -> None:
    task = chain.submit_task()
    chain.register(DAVE, "llama-3")
    chain.block()
    chain.refused(chain.result_msg(task, DAVE), NotEligible)  # registered, stake 0
    chain.stake(DAVE, 1500 * E18)
    chain.block()
    chain.result(task, DAVE)
    chain.block()
    assert chain.task(task).execution_info[0].resource_node == DAVE


def test_only_nodes_serving_the_task_model_compute_and_verify(chain: Chain) -> None:
    chain.register(N1, "llama-3, mistral")
    chain.register(N2, "mistral")
    llama = chain.submit_task(target_count=3, model="llama-3")
    other = chain.submit_task(target_count=3, model="gpt-x")
    no_model = chain.submit_task(target_count=3, model=None)
    chain.block()
    # "*" serves every model, also a task that names none
    for task in (llama, other, no_model):
        chain.result(task, N0)
    chain.result(llama, N1)
    chain.refused(chain.result_msg(llama, N2), NotEligible)
    chain.refused(chain.result_msg(other, N1), NotEligible)
    chain.refused(chain.result_msg(no_model, N1), NotEligible)
    chain.block()
    # only the nodes serving the model are candidates: N0's llama result has N1 alone
    assert chain.rounds(llama, N0) == [[N1]] and chain.rounds(llama, N1) == [[N0]]
    assert chain.rounds(other, N0) == chain.rounds(no_model, N0) == [[]]
    chain.refused(SubmitVerification(other, N1, N0, True), NotEligible)
    chain.refused(SubmitVerification(llama, N2, N0, True), NotEligible)
    chain.verdict(llama, N1, N0, True)  # 2000 of the 2000 assigned
    chain.block()
    assert [e.resource_node for e in chain.task(llama).execution_info] == [N0, N1]
    assert chain.statuses(llama) == [2, 0]
    assert chain.statuses(other) == chain.statuses(no_model) == [0]


def test_result_or_verdict_for_an_unknown_task(chain: Chain) -> None:
    exc = chain.refused(chain.result_msg(UNKNOWN_TASK, N0), UnknownTask)
    assert exc.task_hash == "0x" + UNKNOWN_TASK.hex()
    chain.refused(SubmitVerification(UNKNOWN_TASK, N0, N1, True), UnknownTask)


# --- one result per node, one verdict per (verifier, result) (3, 4.5) -------------------------


def test_second_result_of_a_node_is_a_duplicate_even_once_the_task_is_closed(
    chain: Chain,
) -> None:
    task = chain.submit_task(target_count=2)
    chain.block()
    chain.result(task, N0)
    chain.refused(chain.result_msg(task, N0, "something else"), DuplicateSubmission)
    chain.block()
    chain.refused(chain.result_msg(task, N0, "again"), DuplicateSubmission)
    chain.result(task, N1)
    chain.verdict(task, N1, N0, True)
    chain.verdict(task, N2, N0, True)
    chain.block()
    chain.verdict(task, N0, N1, True)
    chain.verdict(task, N2, N1, True)
    chain.block()
    assert chain.task(task).status == "verified"
    # the task takes no result any more, but a repeated one is still called a duplicate
    chain.refused(chain.result_msg(task, N0, "late"), DuplicateSubmission)
    chain.refused(chain.result_msg(task, N2), TaskClosed)


def test_second_verdict_on_the_same_result_is_a_duplicate_even_once_decided(
    chain: Chain,
) -> None:
    # N1 holds more than 2/3 of the stake assigned to N0's result: 5000 of 7000 (4.6)
    chain.transfer(ALICE, N1, 3000 * E18)
    chain.block()
    chain.stake(N1, 3000 * E18)
    task = chain.submit_task(target_count=1)
    chain.block()
    chain.result(task, N0)
    chain.block()
    ((first, second),) = chain.rounds(task, N0)  # round 0 holds both candidates
    assert sorted([first, second]) == sorted([N1, N2])
    chain.verdict(task, N1, N0, True)  # decides the result alone, and the task
    chain.refused(SubmitVerification(task, N1, N0, True), DuplicateSubmission)
    chain.refused(SubmitVerification(task, N1, N0, False), DuplicateSubmission)
    chain.refused(SubmitVerification(task, N2, N0, False), TaskClosed)
    assert chain.rpc("submitVerification", SubmitVerification(task, N2, N0, False)) is False
    chain.block()
    assert chain.statuses(task) == [2]
    chain.refused(SubmitVerification(task, N1, N0, False), DuplicateSubmission)
    assert chain.account(N1).stake == 5000 * E18


def test_verdict_on_its_own_result_is_not_eligible(chain: Chain) -> None:
    task = chain.submit_task(target_count=2)
    chain.block()
    chain.result(task, N0)
    chain.block()
    for valid in (True, False):
        exc = chain.refused(SubmitVerification(task, N0, N0, valid), NotEligible)
        assert exc.address == N0
    assert chain.statuses(task) == [0]


def test_verdict_on_a_node_without_a_result_is_invalid_params(chain: Chain) -> None:
    task = chain.submit_task(target_count=2)
    chain.block()
    chain.result(task, N0)
    for submitter in (N2, ALICE):
        exc = chain.refused(SubmitVerification(task, N1, submitter, False), InvalidParams)
        assert exc.param == "submitter"
    chain.block()
    chain.refused(SubmitVerification(task, N1, N2, True), InvalidParams)


# --- slots (4.3) ---------------------------------------------------------------------------


def test_results_fill_the_slots_then_task_closed_and_rpc_false(chain: Chain) -> None:
    task = chain.submit_task(target_count=2)
    chain.block()
    assert chain.rpc("submitInferenceResult", chain.result_msg(task, N0)) is True
    second = chain.result(task, N1)
    exc = chain.refused(chain.result_msg(task, N2), TaskClosed)
    assert exc.task_hash == wire.hex0x(task)
    assert chain.rpc("submitInferenceResult", chain.result_msg(task, N2)) is False
    assert len(chain.node.mempool) == 2
    height = chain.block()
    info = chain.task(task).execution_info
    assert [(e.rank, e.resource_node, e.height) for e in info] == [
        (1, N0, height),
        (2, N1, height),
    ]
    assert info[1].tx_hash == wire.hex0x(second.hash)
    assert info[1].result == honest(task, N1) and info[1].proof == ""
    assert chain.task(task).status == "completed"
    chain.refused(chain.result_msg(task, N2), TaskClosed)


def test_rejected_result_frees_its_slot(chain: Chain) -> None:
    task = chain.submit_task(target_count=1)
    chain.block()
    chain.result(task, N0, "garbage")
    chain.block()
    chain.refused(chain.result_msg(task, N1), TaskClosed)
    chain.verdict(task, N1, N0, False)  # 2000 of the 4000 assigned: not above 2/3, waits
    chain.block()
    assert chain.statuses(task) == [1]
    chain.refused(chain.result_msg(task, N1), TaskClosed)
    chain.verdict(task, N2, N0, False)  # 4000 of 4000 against: rejected
    chain.result(task, N1)  # the slot is open again
    height = chain.block()
    info = chain.task(task).execution_info
    assert [(e.rank, e.resource_node, e.status) for e in info] == [(1, N0, 3), (2, N1, 0)]
    assert info[0].decided_height == height
    assert chain.task(task).status == "completed"
    assert sorted(chain.rounds(task, N1)[0]) == sorted([N0, N2])  # N0 is still a candidate
    chain.verdict(task, N2, N1, True)
    chain.verdict(task, N0, N1, True)
    chain.block()
    done = chain.task(task)
    assert done.status == "verified" and done.response == honest(task, N1)


# --- statuses (4.3, 4.7) ---------------------------------------------------------------------


def test_statuses_submitted_processing_completed_verified(chain: Chain) -> None:
    task = chain.submit_task(target_count=2)
    created = chain.block()
    seen = [chain.task(task).status]
    chain.result(task, N0)
    chain.block()
    seen.append(chain.task(task).status)
    chain.result(task, N1)
    chain.block()
    seen.append(chain.task(task).status)
    assert chain.statuses(task) == [0, 0]
    chain.verdict(task, N1, N0, True)
    chain.verdict(task, N2, N0, True)
    chain.block()
    seen.append(chain.task(task).status)
    assert chain.statuses(task) == [2, 0]
    chain.verdict(task, N0, N1, True)
    chain.verdict(task, N2, N1, True)
    finished = chain.block()
    done = chain.task(task)
    seen.append(done.status)
    assert seen == ["submitted", "processing", "completed", "completed", "verified"]
    assert (done.created_height, done.finished_height) == (created, finished)
    assert done.finished_at == int(CLOCK)
    assert done.response == honest(task, N0)  # the earliest-ranked valid result
    assert done.verification_count == 2
    assert task not in set(chain.node.ledger.open_task_hashes())


def test_verification_count_counts_the_valid_verdicts_of_the_response(
    make_chain: Callable[..., Chain],
) -> None:
    # four candidates, quorum 2, no dispute round: round 0 is two of them, the last round the
    # other two (4.5)
    chain = make_chain(resource_nodes=5, dispute_rounds=0)
    task = chain.submit_task(target_count=1)
    chain.block()
    chain.result(task, NODES[0])
    chain.block()
    ((a, b),) = chain.rounds(task, NODES[0])
    chain.verdict(task, a, NODES[0], True)
    chain.verdict(task, b, NODES[0], False)  # a dispute: the last round is opened at once
    chain.block()
    assert chain.statuses(task) == [1]
    (_round0, (c, d)) = chain.rounds(task, NODES[0])
    assert sorted([a, b, c, d]) == sorted(NODES[1:5])
    chain.verdict(task, c, NODES[0], True)  # valid 4000 of the 8000 assigned
    chain.block()
    assert chain.statuses(task) == [1]
    chain.verdict(task, d, NODES[0], True)  # valid 6000 of 8000: above 2/3
    chain.block()
    done = chain.task(task)
    assert done.status == "verified" and done.response == honest(task, NODES[0])
    assert done.verification_count == 3
    assert [(v.verifier, v.valid, v.seq) for v in done.execution_info[0].verifications] == [
        (a, True, 1),
        (b, False, 2),
        (c, True, 3),
        (d, True, 4),
    ]
    slashed = settlement_values(done)["slashed"]
    assert slashed == [(b, NODE_STAKE * 500 // 10_000, "verdict")]


def test_task_with_only_a_rejected_result_fails_at_the_compute_deadline(chain: Chain) -> None:
    task = chain.submit_task(target_count=1)
    created = chain.block()
    chain.result(task, N0, "garbage")
    chain.block()
    chain.verdict(task, N1, N0, False)
    chain.verdict(task, N2, N0, False)  # 4000 of the 4000 assigned against
    chain.block()
    assert chain.statuses(task) == [3]
    assert chain.task(task).status == "processing"  # its slot is open again
    chain.until(created + 4)
    assert chain.task(task).status == "processing"
    chain.block()  # the end of block createdHeight + computeDeadlineBlocks
    done = chain.task(task)
    assert (done.status, done.response, done.verification_count) == ("failed", None, 0)
    assert done.finished_height == created + 5
    # PROTOCOL 4.8 by hand: F = 2e15, R = 0, N0 loses 10% of 2000e18
    f, slashed = 2 * 10**15, 200 * E18
    pool_c = f * 7000 // 10_000  # 1.4e15, nobody to pay
    pool_v = f - pool_c + slashed  # 0.6e15 + 200e18
    v1 = pool_v * 10_000 // 19_000  # N1, seq 1
    v2 = pool_v * 9_000 // 19_000  # N2, seq 2
    unpaid_v = pool_v - v1 - v2
    burned = unpaid_v * slashed // pool_v
    refund = pool_c + unpaid_v - burned  # R = 0: nothing of it is unminted
    assert settlement_values(done) == {
        "height": created + 5,
        "fee": f,
        "networkReward": 0,
        "slashed": [(N0, slashed, "result")],
        "payouts": [(N1, v1, "verify", 1), (N2, v2, "verify", 2)],
        "refund": refund,
        "burned": burned,
    }
    assert chain.account(N0) == Account(NODE_BALANCE, NODE_STAKE - slashed, 0)
    assert chain.account(N1).balance == NODE_BALANCE + v1
    assert chain.account(N2).balance == NODE_BALANCE + v2
    assert chain.account(ALICE).balance == DEV_BALANCE - f + refund
    assert chain.supply()[2] == burned


# --- deadlines (4.3, 4.5, 4.6, 4.7) ----------------------------------------------------------


def test_result_at_exactly_the_compute_deadline_is_accepted_one_later_is_late(
    chain: Chain,
) -> None:
    task = chain.submit_task(target_count=3)
    created = chain.block()
    chain.until(created + 4)
    chain.result(task, N0)  # in block createdHeight + 5
    assert chain.block() == created + 5
    (entry,) = chain.task(task).execution_info
    assert entry.height == created + 5
    exc = chain.refused(chain.result_msg(task, N1), TaskClosed)
    assert "deadline" in exc.reason
    assert chain.rpc("submitInferenceResult", chain.result_msg(task, N1)) is False
    assert chain.task(task).status == "processing"


def test_verdict_at_exactly_the_verify_deadline_is_accepted_one_later_is_late(
    make_chain: Callable[..., Chain],
) -> None:
    chain = make_chain(verification_quorum=2)
    task = chain.submit_task(target_count=2)
    created = chain.block()
    chain.result(task, N0)
    chain.result(task, N1)
    chain.block()
    chain.until(created + 9)
    chain.verdict(task, N2, N0, True)  # in block createdHeight + 5 + 5, below quorum
    chain.block()
    done = chain.task(task)
    # at the verify deadline: N0's result by weight without quorum, N1's has no verdict
    assert chain.statuses(task) == [2, 4]
    assert [e.decided_height for e in done.execution_info] == [created + 10] * 2
    assert done.status == "verified" and done.verification_count == 1
    assert done.finished_height == created + 10
    chain.refused(SubmitVerification(task, N2, N1, True), TaskClosed)
    chain.refused(SubmitVerification(task, N0, N1, True), TaskClosed)
    assert chain.rpc("submitVerification", SubmitVerification(task, N0, N1, True)) is False
    # the unverified result is neither paid nor slashed (4.6)
    payouts = settlement_values(done)["payouts"]
    assert [(a, role) for a, _amount, role, _rank in payouts] == [(N0, "compute"), (N2, "verify")]


def test_tie_at_the_verify_deadline_is_unverified_and_nobody_is_paid_or_slashed(
    chain: Chain,
) -> None:
    task = chain.submit_task(target_count=1)
    created = chain.block()
    chain.result(task, N0)
    chain.block()
    chain.verdict(task, N1, N0, False)
    chain.verdict(task, N2, N0, True)  # 2000 against 2000: neither above 2/3
    chain.block()
    # all three are busy until the result is decided (4.11)
    for node in (N0, N1, N2):
        chain.refused(chain.unstake_msg(node, NODE_STAKE), NotEligible)
    chain.until(created + 10)
    done = chain.task(task)
    assert chain.statuses(task) == [4]
    assert (done.status, done.finished_height) == ("failed", created + 10)
    assert settlement_values(done) == {
        "height": created + 10,
        "fee": fee(1),
        "networkReward": 0,
        "slashed": [],
        "payouts": [],
        "refund": fee(1),
        "burned": 0,
    }
    for node in (N0, N1, N2):
        assert chain.account(node) == Account(NODE_BALANCE, NODE_STAKE, 0)
        assert get_busy(chain.node.ledger.store, node) == 0
    assert chain.account(ALICE).balance == DEV_BALANCE


def test_the_last_round_counts_the_silent_stake_until_the_verify_deadline(chain: Chain) -> None:
    """4.6: the last round weighs the stake of all its assigned nodes, answered or not; at the
    verify deadline the answers decide by more than 2/3 of the answering stake."""
    task = chain.submit_task(target_count=1)
    created = chain.block()
    chain.result(task, N0, "garbage")
    chain.block()
    chain.verdict(task, N1, N0, False)  # 2000 against, of the 4000 assigned
    chain.block()
    chain.until(created + 9)
    assert chain.statuses(task) == [1]
    assert chain.task(task).status == "completed"
    chain.block()  # the verify deadline: 2000 of the 2000 answering
    done = chain.task(task)
    assert chain.statuses(task) == [3] and done.status == "failed"
    assert done.execution_info[0].decided_height == created + 10
    assert settlement_values(done)["slashed"] == [(N0, 200 * E18, "result")]
    assert chain.account(N2) == Account(NODE_BALANCE, NODE_STAKE, 0)  # silent: on no side


def test_no_result_at_the_compute_deadline_fails_at_once_with_the_fee_refunded(
    chain: Chain,
) -> None:
    task = chain.submit_task(target_count=4)
    created = chain.block()
    assert chain.account(ALICE).balance == DEV_BALANCE - fee(4)
    chain.until(created + 4)
    assert chain.task(task).status == "submitted"
    chain.block()
    done = chain.task(task)
    assert (done.status, done.finished_height, done.response) == ("failed", created + 5, None)
    assert settlement_values(done)["refund"] == fee(4)
    assert chain.account(ALICE).balance == DEV_BALANCE


def test_task_for_a_model_nobody_serves_fails_with_the_full_fee_refunded(chain: Chain) -> None:
    for node in (N0, N1, N2):
        chain.register(node, "llama-3")
    chain.block()
    before = chain.account(ALICE).balance
    task = chain.submit_task(target_count=3, model="mistral")
    created = chain.block()
    assert chain.account(ALICE).balance == before - fee(3)
    for node in (N0, N1, N2):
        chain.refused(chain.result_msg(task, node), NotEligible)
        assert chain.work(node) == []
    chain.until(created + 5)
    done = chain.task(task)
    assert done.status == "failed" and done.execution_info == ()
    assert done.settlement == Settlement(
        height=created + 5,
        fee=fee(3),
        network_reward=0,
        slashed=(),
        payouts=(),
        refund=fee(3),
        burned=0,
    )
    assert chain.account(ALICE).balance == before
    _genesis_supply, minted, burned = chain.supply()
    assert (minted, burned) == (chain.blocks * BLOCK_REWARD, 0)


def test_verified_result_with_an_open_slot_is_settled_at_the_compute_deadline(
    make_chain: Callable[..., Chain],
) -> None:
    chain = make_chain(resource_nodes=2)  # N1 is the only candidate for N0's result
    task = chain.submit_task(target_count=2)
    created = chain.block()
    chain.result(task, N0)
    chain.block()
    assert chain.rounds(task, N0) == [[N1]]
    chain.verdict(task, N1, N0, True)
    chain.block()
    assert chain.task(task).status == "processing"  # a slot is still open
    chain.until(created + 4)
    assert chain.task(task).settlement is None
    chain.block()
    done = chain.task(task)
    assert (done.status, done.finished_height) == ("verified", created + 5)
    f, r = fee(2), NETWORK_REWARD
    pool_c = (f + r) * 7000 // 10_000  # 9.1e15, all to the only valid result
    pool_v = f + r - pool_c  # 3.9e15, all to the only winning verifier
    assert (pool_c, pool_v) == (9_100_000_000_000_000, 3_900_000_000_000_000)
    assert settlement_values(done) == {
        "height": created + 5,
        "fee": f,
        "networkReward": r,
        "slashed": [],
        "payouts": [(N0, pool_c, "compute", 1), (N1, pool_v, "verify", 1)],
        "refund": 0,
        "burned": 0,
    }
    assert chain.account(ALICE).balance == DEV_BALANCE - f


def test_task_is_decided_when_its_last_result_is_decided_after_the_compute_deadline(
    chain: Chain,
) -> None:
    """4.7: once the compute deadline has passed, the verdict that decides the last undecided
    result decides the task in its block (with a slot still open), not at the verify deadline.
    """
    task = chain.submit_task(target_count=2)
    created = chain.block()
    chain.result(task, N0)
    chain.until(created + 5)  # compute window closed with N0's result undecided
    assert chain.task(task).status == "processing"
    chain.verdict(task, N1, N0, True)
    chain.verdict(task, N2, N0, True)
    decided = chain.block()  # createdHeight + 6, before the verify deadline (+ 10)
    assert chain.statuses(task) == [2]
    done = chain.task(task)
    assert (done.status, done.finished_height) == ("verified", decided)


# --- settlement by hand (4.6, 4.8) -----------------------------------------------------------


# Five equal nodes, quorum 4: round 0 of every result holds the four other nodes and is the
# last round, so a result is decided by more than 2/3 of 8000 staked: three verdicts of four.
BYZANTINE: dict[str, Any] = {"resource_nodes": 5, "verification_quorum": 4}


def byzantine_run(chain: Chain) -> tuple[bytes, int]:
    """Five equal nodes (`BYZANTINE`); N2 is byzantine: it answers first, wrongly, and votes
    against N0.

    Returns the task hash and the height of its settlement.
    """
    n3, n4 = NODES[3], NODES[4]
    task = chain.submit_task(target_count=2)
    chain.block()
    chain.result(task, N2, "a wrong answer")  # rank 1
    chain.result(task, N0)  # rank 2
    chain.block()
    assert chain.task(task).status == "completed"
    assert sorted(chain.rounds(task, N0)[0]) == sorted([N1, N2, n3, n4])
    chain.verdict(task, N0, N2, False)  # seq 1
    chain.verdict(task, N2, N0, False)  # seq 2: the submitter's stake is not on its side
    chain.verdict(task, N1, N2, False)  # seq 3: 4000 of the 8000 assigned: not above 2/3
    chain.verdict(task, N1, N0, True)  # seq 4: 2000 for, 2000 against
    chain.block()
    assert chain.statuses(task) == [1, 1]
    chain.refused(chain.result_msg(task, N1), TaskClosed)
    chain.verdict(task, n3, N2, False)  # seq 5: 6000 of 8000 against: rejected
    chain.verdict(task, n3, N0, True)  # seq 6: 4000 for
    chain.verdict(task, n4, N0, True)  # seq 7: 6000 of 8000 for: verified
    chain.result(task, N1)  # rank 3, in the freed slot
    chain.block()
    assert chain.statuses(task) == [3, 2, 0]
    assert chain.task(task).status == "completed"
    chain.verdict(task, N0, N1, True)  # seq 8
    chain.verdict(task, n3, N1, True)  # seq 9
    chain.verdict(task, n4, N1, True)  # seq 10: verified; nothing undecided, no slot open
    return task, chain.block()


# winning verdicts by seq: N0 (1), N1 (3), N1 (4), n3 (5), n3 (6), n4 (7), N0 (8), n3 (9),
# n4 (10); w(i+1) = w(i) * 9000 // 10000
BYZANTINE_WEIGHTS = [10_000, 9_000, 8_100, 7_290, 6_561, 5_904, 5_313, 4_781, 4_302]
BYZANTINE_WINNERS = [N0, N1, N1, NODES[3], NODES[3], NODES[4], N0, NODES[3], NODES[4]]


def test_five_equal_nodes_and_one_byzantine(make_chain: Callable[..., Chain]) -> None:
    chain = make_chain(**BYZANTINE)
    task, height = byzantine_run(chain)
    done = chain.task(task)
    assert chain.statuses(task) == [3, 2, 2]
    assert (done.status, done.finished_height) == ("verified", height)
    assert done.response == honest(task, N0)  # rank 2: the earliest-ranked valid result
    assert done.verification_count == 3

    # PROTOCOL 4.8, by hand. F = 1e15 + 2e15, R = 1e16 (verified).
    f, r = 3 * 10**15, 10**16
    # Slashes at settlement, in rank order, each on the stake left: N2's result (10% of 2000),
    # then N2's losing verdict on N0's result (5% of the 1800 left).
    slash_result = 2000 * E18 * 1000 // 10_000  # 200e18
    slash_verdict = (2000 * E18 - slash_result) * 500 // 10_000  # 90e18
    slashed = slash_result + slash_verdict  # 290e18
    pool_c = (f + r) * 7000 // 10_000  # 9.1e15
    pool_v = f + r - pool_c + slashed  # 3.9e15 + 290e18
    assert pool_c == 9_100_000_000_000_000
    assert pool_v == 290_003_900_000_000_000_000
    # valid results by rank: N0 (w 10000), N1 (w 9000); sum 19000
    c_n0 = pool_c * 10_000 // 19_000
    c_n1 = pool_c * 9_000 // 19_000
    assert (c_n0, c_n1) == (4_789_473_684_210_526, 4_310_526_315_789_473)
    weights = BYZANTINE_WEIGHTS
    assert sum(weights) == 61_251
    v = [pool_v * w // sum(weights) for w in weights]
    unpaid_c = pool_c - c_n0 - c_n1  # 1
    unpaid_v = pool_v - sum(v)
    burned = unpaid_v * slashed // pool_v
    rest = unpaid_c + unpaid_v - burned
    unminted = rest * r // (f + r)
    refund = rest - unminted
    assert settlement_values(done) == {
        "height": height,
        "fee": f,
        "networkReward": r - unminted,
        "slashed": [(N2, slash_result, "result"), (N2, slash_verdict, "verdict")],
        "payouts": [
            (N0, c_n0, "compute", 1),
            (N1, c_n1, "compute", 2),
            *[
                (node, amount, "verify", rank)
                for rank, (node, amount) in enumerate(zip(BYZANTINE_WINNERS, v, strict=True), 1)
            ],
        ],
        "refund": refund,
        "burned": burned,
    }
    n3, n4 = NODES[3], NODES[4]
    assert chain.account(N0) == Account(NODE_BALANCE + c_n0 + v[0] + v[6], NODE_STAKE, 0)
    assert chain.account(N1) == Account(NODE_BALANCE + c_n1 + v[1] + v[2], NODE_STAKE, 0)
    assert chain.account(n3) == Account(NODE_BALANCE + v[3] + v[4] + v[7], NODE_STAKE, 0)
    assert chain.account(n4) == Account(NODE_BALANCE + v[5] + v[8], NODE_STAKE, 0)
    assert chain.account(N2) == Account(NODE_BALANCE, 1710 * E18, 0)
    assert not chain.jailed(N2)  # 1710 is still above minNodeStake 1000
    assert chain.account(ALICE).balance == DEV_BALANCE - f + refund
    genesis_supply, minted, burned_total = chain.supply()
    assert minted == chain.blocks * BLOCK_REWARD + r - unminted
    assert burned_total == burned
    held, expected = chain.node.ledger.supply_check()
    assert held == expected == genesis_supply + minted - burned


def test_without_slashing_nobody_is_slashed_and_losers_are_still_unpaid(
    make_chain: Callable[..., Chain],
) -> None:
    chain = make_chain(**BYZANTINE, slashing=False)
    task, height = byzantine_run(chain)
    done = chain.task(task)
    assert chain.statuses(task) == [3, 2, 2] and done.status == "verified"
    f, r = 3 * 10**15, 10**16
    pool_c = (f + r) * 7000 // 10_000  # 9.1e15
    pool_v = f + r - pool_c  # 3.9e15, no slashes
    c_n0, c_n1 = pool_c * 10_000 // 19_000, pool_c * 9_000 // 19_000
    v = [pool_v * w // 61_251 for w in BYZANTINE_WEIGHTS]
    rest = (pool_c - c_n0 - c_n1) + (pool_v - sum(v))  # nothing to burn
    unminted = rest * r // (f + r)
    assert settlement_values(done) == {
        "height": height,
        "fee": f,
        "networkReward": r - unminted,
        "slashed": [],
        "payouts": [
            (N0, c_n0, "compute", 1),
            (N1, c_n1, "compute", 2),
            *[
                (node, amount, "verify", rank)
                for rank, (node, amount) in enumerate(zip(BYZANTINE_WINNERS, v, strict=True), 1)
            ],
        ],
        "refund": rest - unminted,
        "burned": 0,
    }
    # the byzantine node keeps its stake and earns nothing for its rejected result
    assert chain.account(N2) == Account(NODE_BALANCE, NODE_STAKE, 0)
    assert not chain.jailed(N2)
    assert chain.supply()[2] == 0


def test_two_liars_outweighed_are_slashed_in_verdict_order_and_winners_paid_by_seq(
    make_chain: Callable[..., Chain],
) -> None:
    chain = make_chain(resource_nodes=5, verification_quorum=4)  # round 0: all four others
    n0, n1, n2, n3, n4 = NODES[:5]
    for honest_node in (n3, n4):  # 5000 staked each: 10000 of the 14000 assigned
        chain.transfer(ALICE, honest_node, 3000 * E18)
    chain.block()
    for honest_node in (n3, n4):
        chain.stake(honest_node, 3000 * E18)
    task = chain.submit_task(target_count=1)
    chain.block()
    chain.result(task, n0)
    chain.block()
    chain.verdict(task, n1, n0, False)  # seq 1
    chain.verdict(task, n2, n0, False)  # seq 2
    chain.verdict(task, n3, n0, True)  # seq 3: 5000 for, 4000 against, of 14000
    chain.block()
    assert chain.statuses(task) == [1]
    chain.verdict(task, n4, n0, True)  # seq 4: 10000 for, above 2/3 of 14000
    height = chain.block()
    done = chain.task(task)
    assert (done.status, done.verification_count) == ("verified", 2)
    f, r = fee(1), NETWORK_REWARD
    slash = NODE_STAKE * 500 // 10_000  # 100e18 each
    pool_c = (f + r) * 7000 // 10_000  # 8.4e15, all to n0
    pool_v = f + r - pool_c + 2 * slash  # 3.6e15 + 200e18
    v3, v4 = pool_v * 10_000 // 19_000, pool_v * 9_000 // 19_000
    unpaid_v = pool_v - v3 - v4
    burned = unpaid_v * (2 * slash) // pool_v
    rest = unpaid_v - burned
    unminted = rest * r // (f + r)
    assert settlement_values(done) == {
        "height": height,
        "fee": f,
        "networkReward": r - unminted,
        "slashed": [(n1, slash, "verdict"), (n2, slash, "verdict")],
        "payouts": [(n0, pool_c, "compute", 1), (n3, v3, "verify", 1), (n4, v4, "verify", 2)],
        "refund": rest - unminted,
        "burned": burned,
    }
    for liar in (n1, n2):
        assert chain.account(liar) == Account(NODE_BALANCE, NODE_STAKE - slash, 0)
        assert not chain.jailed(liar)


def test_rank_weights_decay_with_rank_decay_bps(make_chain: Callable[..., Chain]) -> None:
    # quorum 3 of four nodes: each result is verified by the three others
    chain = make_chain(
        resource_nodes=4, verification_quorum=3, rank_decay_bps=2500, compute_share_bps=10_000
    )
    task = chain.submit_task(target_count=3)
    chain.block()
    for node in NODES[:3]:
        chain.result(task, node)
    chain.block()
    verdicts = [(v, node) for node in NODES[:3] for v in NODES[:4] if v != node]
    for verifier, node in verdicts:
        chain.verdict(task, verifier, node, True)
    chain.block()
    done = chain.task(task)
    assert done.status == "verified"
    pool_c = fee(3) + NETWORK_REWARD  # computeShareBps 10000: everything to computation
    weights = [10_000, 7_500, 5_625]  # w(i+1) = w(i) * 7500 // 10000
    shares = [pool_c * w // sum(weights) for w in weights]
    s = settlement_values(done)
    assert [p for p in s["payouts"] if p[2] == "compute"] == [
        (node, share, "compute", rank)
        for rank, (node, share) in enumerate(zip(NODES[:3], shares, strict=True), 1)
    ]
    # pool_v is 0: the nine verify payouts are zero and still listed, in seq order
    assert [p for p in s["payouts"] if p[2] == "verify"] == [
        (verifier, 0, "verify", rank) for rank, (verifier, _node) in enumerate(verdicts, 1)
    ]


# --- jailing and restaking (4.2, 4.8) -------------------------------------------------------


def test_slashed_below_min_node_stake_is_jailed_and_restaking_unjails(
    make_chain: Callable[..., Chain],
) -> None:
    chain = make_chain(min_node_stake=1900 * E18)
    first = chain.submit_task(target_count=1)
    chain.block()
    chain.result(first, N2, "garbage")
    chain.block()
    chain.verdict(first, N0, N2, False)
    chain.verdict(first, N1, N2, False)  # rejected
    chain.result(first, N0)
    chain.block()
    chain.verdict(first, N1, N0, True)
    chain.verdict(first, N2, N0, True)  # verified: the task settles, N2 loses 200
    chain.block()
    assert chain.task(first).status == "verified"
    n2_paid = sum(p[1] for p in settlement_values(chain.task(first))["payouts"] if p[0] == N2)
    assert n2_paid > 0  # its valid verdict on N0's result won
    assert chain.account(N2).stake == 1800 * E18
    assert chain.jailed(N2)
    assert not chain.jailed(N0) and not chain.jailed(N1)

    second = chain.submit_task(target_count=2)
    chain.block()
    exc = chain.refused(chain.result_msg(second, N2), NotEligible)
    assert "jailed" in exc.reason
    chain.result(second, N0)
    chain.block()
    chain.refused(SubmitVerification(second, N2, N0, True), NotEligible)
    with pytest.raises(NotEligible):
        chain.work(N2)
    assert [(w.task.task_hash, w.compute) for w in chain.work(N1)] == [(second, True)]
    assert chain.rounds(second, N0) == [[N1]]  # a jailed node is no candidate

    chain.stake(N2, 50 * E18)  # 1850: still below 1900
    chain.block()
    assert chain.jailed(N2)
    chain.refused(chain.result_msg(second, N2), NotEligible)
    chain.stake(N2, 50 * E18)  # 1900: back at minNodeStake
    chain.block()
    assert not chain.jailed(N2)
    assert chain.account(N2) == Account(NODE_BALANCE + n2_paid - 100 * E18, 1900 * E18, 2)
    chain.result(second, N2)
    chain.block()
    assert [e.resource_node for e in chain.task(second).execution_info] == [N0, N2]


def test_node_slashed_twice_is_jailed_on_what_is_left_after_both(
    make_chain: Callable[..., Chain],
) -> None:
    # 1800 after the first slash, 1710 after both
    chain = make_chain(**BYZANTINE, min_node_stake=1750 * E18)
    task, _height = byzantine_run(chain)
    assert chain.account(N2).stake == 1710 * E18
    assert chain.jailed(N2)
    assert not chain.jailed(N0) and not chain.jailed(N1)
    assert settlement_values(chain.task(task))["slashed"] == [
        (N2, 200 * E18, "result"),
        (N2, 90 * E18, "verdict"),
    ]


# --- the Unstake guard (4.11) ---------------------------------------------------------------


def test_unstake_guard_while_a_result_is_undecided(chain: Chain) -> None:
    task = chain.submit_task(target_count=1)
    chain.block()
    chain.result(task, N0)
    chain.block()
    exc = chain.refused(chain.unstake_msg(N0, NODE_STAKE - MIN_STAKE + 1), NotEligible)
    assert exc.address == N0
    chain.send(chain.unstake_msg(N0, NODE_STAKE - MIN_STAKE))  # down to exactly the minimum
    chain.block()
    assert chain.account(N0) == Account(NODE_BALANCE + 1000 * E18, MIN_STAKE, 1)
    chain.refused(chain.unstake_msg(N0, 1), NotEligible)
    chain.verdict(task, N1, N0, True)
    chain.verdict(task, N2, N0, True)  # decided, and the task settles
    chain.send(chain.unstake_msg(N0, MIN_STAKE))
    chain.block()
    assert chain.account(N0).stake == 0
    # a node without undecided work may leave at any time; it is then not eligible
    chain.send(chain.unstake_msg(N2, NODE_STAKE))
    later = chain.submit_task()
    chain.block()
    chain.refused(chain.result_msg(later, N2), NotEligible)
    chain.refused(chain.result_msg(later, N0), NotEligible)


def test_unstake_guard_while_a_verdict_is_undecided(
    make_chain: Callable[..., Chain],
) -> None:
    chain = make_chain(resource_nodes=4)  # three candidates: round 0 is two of them
    task = chain.submit_task(target_count=1)
    chain.block()
    chain.result(task, NODES[0])
    chain.block()
    ((first, second),) = chain.rounds(task, NODES[0])
    chain.verdict(task, first, NODES[0], True)  # one of round 0: undecided
    chain.block()
    chain.refused(chain.unstake_msg(first, 1500 * E18), NotEligible)
    chain.send(chain.unstake_msg(first, 500 * E18))  # stays above the minimum
    chain.verdict(task, second, NODES[0], True)  # round 0 agrees: decided
    chain.send(chain.unstake_msg(first, 1500 * E18))
    chain.block()
    assert chain.statuses(task) == [2]
    assert chain.account(first).stake == 0
    assert get_busy(chain.node.ledger.store, first) == 0


# --- the per-node seed (4.4) ---------------------------------------------------------------


def test_seed_in_execution_info_is_the_task_seed_of_the_node(chain: Chain) -> None:
    first = chain.submit_task(target_count=3)
    second = chain.submit_task(target_count=3)
    chain.block()
    for task in (first, second):
        for node in (N0, N1, N2):
            chain.result(task, node)
    chain.block()
    seeds = set()
    for task in (first, second):
        for entry in chain.task(task).execution_info:
            node = entry.resource_node
            by_hand = int.from_bytes(crypto.keccak(task + bytes.fromhex(node[2:]))[:8], "big")
            assert entry.seed == by_hand == crypto.task_seed(task, node)
            seeds.add(entry.seed)
    assert len(seeds) == 6


# --- pending work (queryPendingTasks, 5.1) --------------------------------------------------


def test_pending_work_offers_open_slots_and_undecided_results_of_others(
    make_chain: Callable[..., Chain],
) -> None:
    chain = make_chain(verification_quorum=2)
    task = chain.submit_task(target_count=2)
    chain.block()

    def work(node: str) -> tuple[bool, list[str]]:
        items = [(w.compute, w.verify) for w in chain.work(node) if w.task.task_hash == task]
        if not items:
            return (False, [])
        ((compute, verify),) = items
        return compute, [e.resource_node for e in verify]

    assert [work(n) for n in (N0, N1, N2)] == [(True, [])] * 3
    chain.result(task, N0)
    chain.block()
    assert work(N0) == (False, [])  # answered: nothing to compute, nothing of its own to verify
    assert work(N1) == (True, [N0])
    chain.verdict(task, N1, N0, True)  # below quorum: N0's result stays undecided
    chain.block()
    assert work(N1) == (True, [])  # no second verdict on the same result
    assert work(N2) == (True, [N0])
    chain.result(task, N1)  # no slot left
    chain.block()
    assert work(N2) == (False, [N0, N1])
    assert work(N0) == (False, [N1])
    chain.verdict(task, N2, N0, True)  # decided: no longer offered
    chain.block()
    assert work(N0) == (False, [N1])
    assert work(N2) == (False, [N1])
    assert work(N1) == (False, [])
    chain.verdict(task, N0, N1, True)
    chain.verdict(task, N2, N1, True)
    chain.block()
    assert chain.task(task).status == "verified"
    assert [work(n) for n in (N0, N1, N2)] == [(False, [])] * 3


def test_pending_work_stops_offering_compute_after_the_compute_deadline(chain: Chain) -> None:
    task = chain.submit_task(target_count=2)
    created = chain.block()
    chain.result(task, N0)
    chain.until(created + 4)  # the next block is the compute deadline
    assert [(w.task.task_hash, w.compute) for w in chain.work(N1)] == [(task, True)]
    chain.block()
    (offered,) = chain.work(N1)
    assert offered.task.task_hash == task and not offered.compute and not offered.reveal
    assert [e.resource_node for e in offered.verify] == [N0]
    with pytest.raises(NotEligible):
        chain.work(DAVE)  # not a resource node at all


def test_rejected_node_cannot_unstake_its_slash_away_before_settlement(chain: Chain) -> None:
    task = chain.submit_task(target_count=2)
    created = chain.block()
    chain.result(task, N2, "garbage")
    chain.result(task, N0)
    chain.block()
    chain.verdict(task, N0, N2, False)
    chain.verdict(task, N1, N2, False)  # N2's result is rejected; the task waits
    chain.verdict(task, N1, N0, True)
    chain.verdict(task, N2, N0, True)
    chain.block()
    assert chain.statuses(task) == [3, 2] and chain.task(task).settlement is None
    with pytest.raises(NotEligible):  # the guard holds until the settlement
        chain.send(chain.unstake_msg(N2, NODE_STAKE))
    chain.until(created + 5)  # the slot stays open: the task settles at the compute deadline
    done = chain.task(task)
    assert done.status == "verified"
    assert settlement_values(done)["slashed"] == [(N2, NODE_STAKE * 1000 // 10_000, "result")]


def test_a_stake_change_counts_at_the_next_weighing(chain: Chain) -> None:
    """A result is weighed when a verdict arrives and at its verify deadline (PROTOCOL 4.6:
    a departure from "as soon as"): a Stake and an Unstake count from the next weighing on."""
    task = chain.submit_task(target_count=1)
    chain.block()
    chain.result(task, N0, "garbage")
    chain.block()
    chain.verdict(task, N1, N0, False)  # 2000 of the 4000 assigned: not above 2/3
    chain.block()
    chain.stake(N1, 1000 * E18)  # now 3000 against
    chain.send(chain.unstake_msg(N2, 1000 * E18))  # of 4000 assigned: above 2/3
    chain.block()
    chain.block()
    assert chain.statuses(task) == [1]  # still verifying: nothing weighed it again
    chain.verdict(task, N2, N0, True)  # the next weighing, with the new stakes
    chain.block()
    assert chain.statuses(task) == [3]


# --- assignment and reveals through the node (4.5, 4.13) -----------------------------------


def test_a_verdict_waiting_beside_its_result_in_the_mempool_is_not_assigned(
    chain: Chain,
) -> None:
    task = chain.submit_task(target_count=1)
    chain.block()
    chain.result(task, N0)
    # the result has no assignment until the end of the block that includes it (4.5)
    exc = chain.refused(SubmitVerification(task, N1, N0, True), NotEligible)
    assert (exc.address, exc.reason) == (N1, "not assigned")
    included = chain.block()
    block = chain.node.ledger.get_block(included)
    assert block is not None
    (entry,) = chain.task(task).execution_info
    assert entry.assignment_seed == block.hash  # the including block's hash orders them
    assert sorted(entry.rounds[0]) == sorted([N1, N2])
    chain.verdict(task, N1, N0, True)
    chain.block()
    assert chain.statuses(task) == [1]


def test_a_dev_node_reveals_its_secret_and_the_task_settles(
    make_chain: Callable[..., Chain],
) -> None:
    """The default canaryRateBps (100): dev nodes have secrets from genesis, a decided result
    waits for its secret, offered as `reveal` work, and the revealSecret method settles it."""
    chain = make_chain(canary_rate_bps=100)
    task = chain.submit_task(target_count=1)
    created = chain.block()
    key = KEYS[N0]
    secret = crypto.hash_steps(crypto.secrets_seed(key, 0), crypto.SECRET_CHAIN_LENGTH - created)
    forced = crypto.is_forced_error(secret, task, 100)
    chain.result(task, N0, "wrong on purpose" if forced else None)
    chain.block()
    for verifier in (N1, N2):
        chain.verdict(task, verifier, N0, not forced)
    chain.block()
    assert chain.statuses(task) == [3 if forced else 2]
    assert chain.task(task).settlement is None  # waiting for N0's secret
    assert [(w.task.task_hash, w.reveal) for w in chain.work(N0)] == [(task, True)]
    answer = chain.rpc("revealSecret", RevealSecret(N0, created, secret))
    assert answer == {"txHash": wire.hex0x(chain.sign(RevealSecret(N0, created, secret)).hash)}
    chain.block()
    done = chain.task(task)
    assert done.execution_info[0].forced_error is forced
    if not forced:
        assert (done.status, done.response) == ("verified", honest(task, N0))
    assert chain.work(N0) == []
    node = get_node(chain.node.ledger.store, N0)
    assert node is not None and node.secrets is not None
    assert (node.secrets.revealed_height, node.secrets.revealed) == (created, secret)
