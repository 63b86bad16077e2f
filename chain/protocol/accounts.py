"""Account transactions and the rules of stake (PROTOCOL 3, 4.11, 4.12): Transfer, Stake,
Unstake, RegisterResourceNode, the Unstake guard, and the release of a jailed node.

Pure functions over a `State`; each checks everything before it writes. Their twins are the
reference models of tests/property/test_accounts_machine.py (class `Model`) and, for stake and
jailing, tests/property/test_settlement_machine.py (class `Reference`); each rule's docstring
names its own.
"""

from __future__ import annotations

from dataclasses import replace

from chain.protocol.errors import InsufficientBalance, InvalidParams, NonceMismatch, NotEligible
from chain.protocol.genesis import Params
from chain.protocol.state import (
    State,
    burn,
    get_account,
    get_busy,
    get_node,
    get_validator,
    put_account,
    put_node,
)
from chain.protocol.types import (
    Account,
    RegisterResourceNode,
    ResourceNodeInfo,
    Stake,
    Transfer,
    Unstake,
)

MAX_MODELS_LENGTH = 1024
MAX_ENDPOINT_LENGTH = 256


def check_nonce(account: Account, address: str, nonce: int) -> None:
    """The nonce comes first (PROTOCOL 3, 4.12).

    Twins: the nonce check that opens each method of `Model` in
    tests/property/test_accounts_machine.py must change with it."""
    if nonce != account.nonce:
        raise NonceMismatch(address, account.nonce, nonce)


def _require_positive(amount: int) -> None:
    if amount == 0:
        raise InvalidParams("amount", "must be greater than 0")


def apply_transfer(state: State, params: Params, msg: Transfer) -> None:
    """A Transfer (PROTOCOL 4.12): the amount moves from the sender's balance to `to`'s, and
    the sender pays `transferFee` on top, which is burned.

    Twins: `Model.transfer` in tests/property/test_accounts_machine.py and PROTOCOL 4.12 must
    change with it; it keeps the supply invariant of PROTOCOL 4.10 (the amount moves, the fee
    leaves the supply as burned)."""
    account = get_account(state, msg.sender)
    check_nonce(account, msg.sender, msg.nonce)
    _require_positive(msg.amount)
    fee = params.transfer_fee
    needed = msg.amount + fee
    if account.balance < needed:
        raise InsufficientBalance(msg.sender, needed, account.balance)
    put_account(
        state, msg.sender, Account(account.balance - needed, account.stake, account.nonce + 1)
    )
    receiver = get_account(state, msg.to)
    put_account(
        state, msg.to, Account(receiver.balance + msg.amount, receiver.stake, receiver.nonce)
    )
    burn(state, fee)


def apply_stake(state: State, params: Params, msg: Stake) -> None:
    """A Stake (PROTOCOL 4.12): the amount moves from balance to stake; a jailed node staked
    back to minNodeStake is released.

    Twins: `Model.stake` in tests/property/test_accounts_machine.py, `Reference.stake` in
    tests/property/test_settlement_machine.py and PROTOCOL 4.12 must change with it; it keeps
    the supply invariant of PROTOCOL 4.10."""
    account = get_account(state, msg.sender)
    check_nonce(account, msg.sender, msg.nonce)
    _require_positive(msg.amount)
    if account.balance < msg.amount:
        raise InsufficientBalance(msg.sender, msg.amount, account.balance)
    staked = Account(account.balance - msg.amount, account.stake + msg.amount, account.nonce + 1)
    put_account(state, msg.sender, staked)
    restore_if_restaked(state, params, msg.sender, staked)


def apply_unstake(state: State, params: Params, msg: Unstake) -> None:
    """An Unstake (PROTOCOL 4.12): the amount moves from stake to balance at once, within the
    guard of 4.11 and a validator's minValidatorStake.

    Twins: `Model.unstake` in tests/property/test_accounts_machine.py, `Reference.unstake` in
    tests/property/test_settlement_machine.py and PROTOCOL 4.11 and 4.12 must change with it;
    it keeps the supply invariant of PROTOCOL 4.10."""
    account = get_account(state, msg.sender)
    check_nonce(account, msg.sender, msg.nonce)
    _require_positive(msg.amount)
    if account.stake < msg.amount:
        raise InsufficientBalance(msg.sender, msg.amount, account.stake, what="stake")
    remaining = account.stake - msg.amount
    unstake_guard(state, params, msg.sender, remaining)
    if get_validator(state, msg.sender) is not None and remaining < params.min_validator_stake:
        raise NotEligible(
            msg.sender,
            f"a validator keeps at least minValidatorStake {params.min_validator_stake} staked",
        )
    put_account(
        state,
        msg.sender,
        Account(account.balance + msg.amount, remaining, account.nonce + 1),
    )


def apply_register(state: State, msg: RegisterResourceNode) -> None:
    """A RegisterResourceNode (PROTOCOL 4.12): models stored trimmed, the jailed flag
    and the committed secrets kept.

    Twins: `Model.register` in tests/property/test_accounts_machine.py, `Reference.register`
    in tests/property/test_settlement_machine.py and PROTOCOL 4.12 must change with it."""
    account = get_account(state, msg.sender)
    check_nonce(account, msg.sender, msg.nonce)
    models = [m.strip() for m in msg.models.split(",")]
    if len(msg.models) > MAX_MODELS_LENGTH or not models or any(not m for m in models):
        raise InvalidParams("models", "a comma-separated list of model names, or *")
    endpoint = msg.endpoint
    if len(endpoint) > MAX_ENDPOINT_LENGTH or (
        endpoint and not endpoint.startswith(("http://", "https://"))
    ):
        raise InvalidParams("endpoint", "empty, or an http(s) URL of at most 256 characters")
    if get_validator(state, msg.sender) is not None:
        raise NotEligible(msg.sender, "a validator cannot also be a resource node")
    existing = get_node(state, msg.sender)
    jailed = existing.jailed if existing is not None else False
    secrets = existing.secrets if existing is not None else None
    put_node(state, msg.sender, ResourceNodeInfo(",".join(models), endpoint, jailed, secrets))
    put_account(state, msg.sender, Account(account.balance, account.stake, account.nonce + 1))


def unstake_guard(state: State, params: Params, address: str, remaining: int) -> None:
    """Unstake may not take a node below minNodeStake while it has undecided work (4.11):
    results or verdicts in a task that is not settled yet, since slashes take the stake at
    the settlement.

    Twins: `Reference.unstake` and `Reference.busy` in
    tests/property/test_settlement_machine.py and PROTOCOL 4.11 must change with it."""
    if remaining < params.min_node_stake and get_node(state, address) is not None:
        busy = get_busy(state, address)
        if busy:
            raise NotEligible(
                address,
                f"{busy} undecided results or verdicts: the stake may not drop below "
                f"minNodeStake {params.min_node_stake} until they are decided",
            )


def restore_if_restaked(state: State, params: Params, address: str, account: Account) -> None:
    """A jailed node whose stake is back at minNodeStake is no longer jailed (PROTOCOL 4.12).

    Twins: the release in `Reference.stake` in tests/property/test_settlement_machine.py and
    PROTOCOL 4.12 (Stake) must change with it."""
    node = get_node(state, address)
    if node is not None and node.jailed and account.stake >= params.min_node_stake:
        put_node(state, address, replace(node, jailed=False))
