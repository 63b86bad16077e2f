"""A hypothesis state machine: a real validator node against a reference model of accounts.

The node is the real thing: a `Node` over LevelDB in a fresh temp directory per example,
admitting signed transactions with `submit` and committing blocks with `produce_block`.
The model is a few plain dicts (balance, stake, nonce per account, escrow of open tasks,
resource-node records), read from the genesis document and written from PROTOCOL 3-4 without
calling chain.protocol. After every step the node's admission decisions (accepted, or which
error class) agree with the model, the node's pending state equals the model, and after a
block the committed state does; the supply invariant (4.10) holds throughout.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from chain.node.node import Node, dev_validator_key
from chain.protocol import crypto, wire
from chain.protocol.errors import (
    ChainError,
    InsufficientBalance,
    InvalidParams,
    NonceMismatch,
    NotEligible,
)
from chain.protocol.genesis import DEV_MNEMONIC, Params, dev_genesis, parse_genesis
from chain.protocol.state import ACCOUNT, decode_account, get_account, get_node
from chain.protocol.types import Message, RegisterResourceNode, Stake, SubmitTask, Transfer, Unstake

# Tasks here only escrow their fee: their deadlines lie beyond any run of this machine (the
# task lifecycle has its own machine in test_settlement_machine.py).
RAW_GENESIS = dev_genesis(
    mnemonic=DEV_MNEMONIC,
    params=Params(block_time_ms=0, compute_deadline_blocks=10**6),
    resource_nodes=2,
)
GENESIS = parse_genesis(RAW_GENESIS)
VALIDATOR_KEY = dev_validator_key(GENESIS, None)

KEYS: dict[str, bytes] = {}
for _index in (0, 1, 2, 3, 100, 200):
    _key = crypto.dev_private_key(DEV_MNEMONIC, _index)
    KEYS[crypto.address_of_private_key(_key)] = _key
SENDERS = sorted(KEYS)
FRESH = "0x000000000000000000000000000000000000dEaD"
RECIPIENTS = [*SENDERS, FRESH]

ErrorClass = type[ChainError] | None


@dataclass
class ModelAccount:
    balance: int = 0
    stake: int = 0
    nonce: int = 0


@dataclass
class Model:
    """The accounts part of PROTOCOL 2-4, from the raw genesis document."""

    params: dict[str, Any]
    accounts: dict[str, ModelAccount] = field(default_factory=dict)
    nodes: dict[str, tuple[str, str, bool]] = field(default_factory=dict)
    validators: set[str] = field(default_factory=set)
    escrow: int = 0
    open_tasks: int = 0
    genesis_supply: int = 0
    burned: int = 0

    @classmethod
    def from_genesis(cls, raw: dict[str, Any]) -> Model:
        model = cls(params=raw["params"])
        for item in raw["accounts"]:
            model.account(item["address"]).balance += int(item["balance"])
        for item in raw["validators"]:
            model.account(item["address"]).stake += int(item["stake"])
            model.validators.add(item["address"])
        for item in raw["resourceNodes"]:
            model.account(item["address"]).stake += int(item["stake"])
            model.nodes[item["address"]] = (item["models"], item["endpoint"], False)
        model.genesis_supply = model.total()
        return model

    def amount_param(self, name: str) -> int:
        return int(self.params[name])  # decimal strings on the wire

    def account(self, address: str) -> ModelAccount:
        return self.accounts.setdefault(address, ModelAccount())

    def peek(self, address: str) -> ModelAccount:
        return self.accounts.get(address, ModelAccount())

    def total(self) -> int:
        return sum(a.balance + a.stake for a in self.accounts.values()) + self.escrow

    # Each method decides like PROTOCOL (nonce first), applies on success, returns the error.

    def transfer(self, sender: str, nonce: int, to: str, amount: int) -> ErrorClass:
        acct = self.peek(sender)
        if nonce != acct.nonce:
            return NonceMismatch
        if amount == 0:
            return InvalidParams
        fee = self.amount_param("transferFee")
        if amount + fee > acct.balance:
            return InsufficientBalance
        self.account(sender).balance -= amount + fee
        self.account(sender).nonce += 1
        self.account(to).balance += amount
        self.burned += fee
        return None

    def stake(self, sender: str, nonce: int, amount: int) -> ErrorClass:
        acct = self.peek(sender)
        if nonce != acct.nonce:
            return NonceMismatch
        if amount == 0:
            return InvalidParams
        if amount > acct.balance:
            return InsufficientBalance
        acct = self.account(sender)
        acct.balance -= amount
        acct.stake += amount
        acct.nonce += 1
        return None

    def unstake(self, sender: str, nonce: int, amount: int) -> ErrorClass:
        acct = self.peek(sender)
        if nonce != acct.nonce:
            return NonceMismatch
        if amount == 0:
            return InvalidParams
        if amount > acct.stake:
            return InsufficientBalance
        if sender in self.validators and acct.stake - amount < self.amount_param(
            "minValidatorStake"
        ):
            return NotEligible
        acct = self.account(sender)
        acct.stake -= amount
        acct.balance += amount
        acct.nonce += 1
        return None

    def submit_task(
        self, sender: str, nonce: int, target_count: int, options_ok: bool, max_fee: int | None
    ) -> ErrorClass:
        acct = self.peek(sender)
        if nonce != acct.nonce:
            return NonceMismatch
        if not 1 <= target_count <= int(self.params["maxTargetCount"]):
            return InvalidParams
        if not options_ok:
            return InvalidParams
        fee = self.fee(target_count)
        if max_fee is not None and fee > max_fee:
            return InvalidParams
        if fee > acct.balance:
            return InsufficientBalance
        acct = self.account(sender)
        acct.balance -= fee
        acct.nonce += 1
        self.escrow += fee
        self.open_tasks += 1
        return None

    def fee(self, target_count: int) -> int:
        return self.amount_param("taskBaseFee") + self.amount_param("taskFeePerNode") * target_count

    def register(
        self,
        sender: str,
        nonce: int,
        models: str,
        models_ok: bool,
        endpoint: str,
        endpoint_ok: bool,
    ) -> ErrorClass:
        acct = self.peek(sender)
        if nonce != acct.nonce:
            return NonceMismatch
        if not models_ok or not endpoint_ok:
            return InvalidParams
        if sender in self.validators:
            return NotEligible
        jailed = self.nodes[sender][2] if sender in self.nodes else False
        self.nodes[sender] = (",".join(m.strip() for m in models.split(",")), endpoint, jailed)
        self.account(sender).nonce += 1
        return None

    def end_block(self, proposer: str) -> None:
        # one validator: it gets the whole reward, signer or not (PROTOCOL 4.9)
        self.account(proposer).balance += self.amount_param("blockReward")


AMOUNT_KINDS = st.sampled_from(
    ["zero", "one", "half", "all-fee", "all-fee+1", "all", "all+1", "random", "huge"]
)
NONCE_SKEW = st.sampled_from([0, 0, 0, 0, 0, 1, -1, 5])
OPTIONS = [
    ('{"model": "llama-3", "temperature": 0.7}', True),
    ("free text options", True),
    ('{"max_tokens": 8192, "top_p": 1}', True),
    ('{"temperature": 2.5}', False),
    ('{"max_tokens": 0}', False),
    ('{"top_p": -0.5}', False),
]
MODELS = [("*", True), ("llama-3", True), (" a , b ", True), ("", False), ("a,,b", False)]
ENDPOINTS = [("", True), ("http://node.example:9000", True), ("https://x", True)]
ENDPOINTS += [("ftp://x", False), ("node:9000", False)]


def pick_amount(kind: str, available: int, noise: int) -> int:
    """An amount of `kind`; "all-fee" is the most a Transfer can move (PROTOCOL 4.12)."""
    fee = int(RAW_GENESIS["params"]["transferFee"])
    return {
        "zero": 0,
        "one": 1,
        "half": available // 2,
        "all-fee": max(available - fee, 0),
        "all-fee+1": max(available - fee, 0) + 1,
        "all": available,
        "all+1": available + 1,
        "random": noise % (2 * available + 2),
        "huge": 2**200 + noise,
    }[kind]


class AccountsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.data_dir = tempfile.mkdtemp(prefix="accounts-machine-")
        self.node = Node(GENESIS, self.data_dir, VALIDATOR_KEY, check_invariants=True)
        asyncio.run(self.node.setup())
        self.model = Model.from_genesis(RAW_GENESIS)
        self.blocks = 0
        self.burned_committed = 0  # the model's burned fees as of the last block
        self.decisions: list[tuple[str, ErrorClass]] = []

    def teardown(self) -> None:
        asyncio.run(self.node.cleanup())
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @initialize()
    def genesis_matches_the_model(self) -> None:
        assert self.model.genesis_supply == GENESIS.supply
        self.compare_committed()

    # --- helpers ----------------------------------------------------------------------------

    def nonce_for(self, sender: str, skew: int) -> int:
        nonce = self.model.peek(sender).nonce + skew
        return nonce if nonce >= 0 else nonce + 3

    def send(self, msg: Message, expected: ErrorClass) -> None:
        tx = crypto.sign_message(msg, GENESIS.chain_id, KEYS[getattr(msg, msg.SIGNER)])
        try:
            self.node.submit(tx)
        except ChainError as exc:
            assert expected is not None, f"the node refused {msg} with {exc!r}; model accepts"
            assert type(exc) is expected, f"{msg}: node {exc!r}, model {expected.__name__}"
        else:
            assert expected is None, f"the node accepted {msg}; model: {expected.__name__}"
            assert tx.hash in self.node.mempool
        self.decisions.append((msg.TYPE, expected))
        self.compare_pending()

    def compare_pending(self) -> None:
        pending = self.node.mempool.pending_state
        for address, acct in self.model.accounts.items():
            got = get_account(pending, address)
            assert (got.balance, got.stake, got.nonce) == (acct.balance, acct.stake, acct.nonce)
            assert self.node.mempool.next_nonce(address) == acct.nonce

    def compare_committed(self) -> None:
        store = self.node.ledger.store
        seen = {}
        for key, raw in store.iterate(ACCOUNT):
            acct = decode_account(raw)
            seen[wire.checksum(key[len(ACCOUNT) :])] = (acct.balance, acct.stake, acct.nonce)
        expected = {a: (m.balance, m.stake, m.nonce) for a, m in self.model.accounts.items()}
        assert seen == expected
        for address, (models, endpoint, jailed) in self.model.nodes.items():
            node = get_node(store, address)
            assert node is not None
            assert (node.models, node.endpoint, node.jailed) == (models, endpoint, jailed)
        fees = [self.node.ledger.get_task(h) for h in self.node.ledger.open_task_hashes()]
        assert sum(t.fee for t in fees if t is not None) == self.model.escrow
        assert len(fees) == self.model.open_tasks

    # --- rules ------------------------------------------------------------------------------

    @rule(
        sender=st.sampled_from(SENDERS),
        to=st.sampled_from(RECIPIENTS),
        kind=AMOUNT_KINDS,
        noise=st.integers(0, 2**80),
        skew=NONCE_SKEW,
    )
    def transfer(self, sender: str, to: str, kind: str, noise: int, skew: int) -> None:
        amount = pick_amount(kind, self.model.peek(sender).balance, noise)
        nonce = self.nonce_for(sender, skew)
        expected = self.model.transfer(sender, nonce, to, amount)
        self.send(Transfer(sender, nonce, to, amount), expected)

    @rule(
        sender=st.sampled_from(SENDERS),
        kind=AMOUNT_KINDS,
        noise=st.integers(0, 2**80),
        skew=NONCE_SKEW,
    )
    def stake(self, sender: str, kind: str, noise: int, skew: int) -> None:
        amount = pick_amount(kind, self.model.peek(sender).balance, noise)
        nonce = self.nonce_for(sender, skew)
        expected = self.model.stake(sender, nonce, amount)
        self.send(Stake(sender, nonce, amount), expected)

    @rule(
        sender=st.sampled_from(SENDERS),
        kind=AMOUNT_KINDS,
        noise=st.integers(0, 2**80),
        skew=NONCE_SKEW,
    )
    def unstake(self, sender: str, kind: str, noise: int, skew: int) -> None:
        amount = pick_amount(kind, self.model.peek(sender).stake, noise)
        nonce = self.nonce_for(sender, skew)
        expected = self.model.unstake(sender, nonce, amount)
        self.send(Unstake(sender, nonce, amount), expected)

    @rule(
        sender=st.sampled_from(SENDERS),
        target_count=st.integers(0, 17),
        options=st.sampled_from(OPTIONS),
        max_fee_kind=st.sampled_from(["none", "none", "exact", "below", "above", "text"]),
        prompt=st.integers(0, 3),
        skew=NONCE_SKEW,
    )
    def submit_task(
        self,
        sender: str,
        target_count: int,
        options: tuple[str, bool],
        max_fee_kind: str,
        prompt: int,
        skew: int,
    ) -> None:
        fee = self.model.fee(target_count)
        max_fee = {"none": None, "exact": fee, "below": fee - 1, "above": fee + 10**18}.get(
            max_fee_kind
        )
        fee_params = {
            "none": "",
            "text": "no limit here",
            "exact": f'{{"maxFee": "{fee}"}}',
            "below": f'{{"maxFee": {fee - 1}}}',
            "above": f'{{"maxFee": "{fee + 10**18}"}}',
        }[max_fee_kind]
        nonce = self.nonce_for(sender, skew)
        expected = self.model.submit_task(sender, nonce, target_count, options[1], max_fee)
        msg = SubmitTask(
            sender, nonce, "", target_count, f"prompt {prompt}", options[0], fee_params=fee_params
        )
        self.send(msg, expected)

    @rule(
        sender=st.sampled_from(SENDERS),
        models=st.sampled_from(MODELS),
        endpoint=st.sampled_from(ENDPOINTS),
        skew=NONCE_SKEW,
    )
    def register(
        self, sender: str, models: tuple[str, bool], endpoint: tuple[str, bool], skew: int
    ) -> None:
        nonce = self.nonce_for(sender, skew)
        expected = self.model.register(
            sender, nonce, models[0], models[1], endpoint[0], endpoint[1]
        )
        self.send(RegisterResourceNode(sender, nonce, models[0], endpoint[0]), expected)

    @rule()
    def produce_block(self) -> None:
        pending = len(self.node.mempool)
        head = self.node.produce_block()
        self.blocks += 1
        self.burned_committed = self.model.burned
        self.model.end_block(VALIDATOR_KEY.address)
        assert head.height == self.blocks
        stored = self.node.ledger.get_block(head.height)
        assert stored is not None and len(stored.block.txs) == pending
        for tx_hash in stored.block.txs:
            record = self.node.ledger.get_tx(tx_hash)
            assert record is not None and record.status == "committed"
        assert len(self.node.mempool) == 0
        self.compare_committed()
        self.compare_pending()

    @precondition(lambda self: self.blocks > 0)
    @rule()
    def resubmit_a_committed_tx(self) -> None:
        """Replaying a committed transaction is refused for its used nonce."""
        stored = self.node.ledger.get_block(self.node.head.height)
        assert stored is not None
        for tx_hash in stored.block.txs:
            record = self.node.ledger.get_tx(tx_hash)
            assert record is not None
            try:
                self.node.submit(record.tx)
            except NonceMismatch:
                continue
            raise AssertionError(f"a committed tx was admitted again: {record.tx.message}")

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def supply_is_conserved(self) -> None:
        held, expected = self.node.ledger.supply_check()
        assert held == expected
        minted = self.blocks * self.model.amount_param("blockReward")
        assert self.model.total() == self.model.genesis_supply + minted - self.model.burned
        assert expected == self.model.genesis_supply + minted - self.burned_committed


AccountsMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestAccountsMachine = AccountsMachine.TestCase
