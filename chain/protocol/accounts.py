"""Account transactions and the rules of stake (PROTOCOL 3, 4.1, 4.11): Transfer, Stake,
Unstake, RegisterResourceNode, the Unstake guard, and the release of a jailed node.

Pure functions over a `State`; each checks everything before it writes.
"""

from __future__ import annotations

from dataclasses import replace

from chain.protocol.errors import InsufficientBalance, InvalidParams, NonceMismatch, NotEligible
from chain.protocol.genesis import Params
from chain.protocol.state import (
    State,
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
    if nonce != account.nonce:
        raise NonceMismatch(address, account.nonce, nonce)


def _require_positive(amount: int) -> None:
    if amount == 0:
        raise InvalidParams("amount", "must be greater than 0")


def apply_transfer(state: State, msg: Transfer) -> None:
    account = get_account(state, msg.sender)
    check_nonce(account, msg.sender, msg.nonce)
    _require_positive(msg.amount)
    if account.balance < msg.amount:
        raise InsufficientBalance(msg.sender, msg.amount, account.balance)
    put_account(
        state, msg.sender, Account(account.balance - msg.amount, account.stake, account.nonce + 1)
    )
    receiver = get_account(state, msg.to)
    put_account(
        state, msg.to, Account(receiver.balance + msg.amount, receiver.stake, receiver.nonce)
    )


def apply_stake(state: State, params: Params, msg: Stake) -> None:
    account = get_account(state, msg.sender)
    check_nonce(account, msg.sender, msg.nonce)
    _require_positive(msg.amount)
    if account.balance < msg.amount:
        raise InsufficientBalance(msg.sender, msg.amount, account.balance)
    staked = Account(account.balance - msg.amount, account.stake + msg.amount, account.nonce + 1)
    put_account(state, msg.sender, staked)
    restore_if_restaked(state, params, msg.sender, staked)


def apply_unstake(state: State, params: Params, msg: Unstake) -> None:
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
    put_node(state, msg.sender, ResourceNodeInfo(",".join(models), endpoint, jailed))
    put_account(state, msg.sender, Account(account.balance, account.stake, account.nonce + 1))


def unstake_guard(state: State, params: Params, address: str, remaining: int) -> None:
    """Unstake may not take a node below minNodeStake while it has undecided work (4.11):
    results or verdicts in a task that is not settled yet, since slashes take the stake at
    the settlement."""
    if remaining < params.min_node_stake and get_node(state, address) is not None:
        busy = get_busy(state, address)
        if busy:
            raise NotEligible(
                address,
                f"{busy} undecided results or verdicts: the stake may not drop below "
                f"minNodeStake {params.min_node_stake} until they are decided",
            )


def restore_if_restaked(state: State, params: Params, address: str, account: Account) -> None:
    """A jailed node whose stake is back at minNodeStake is no longer jailed."""
    node = get_node(state, address)
    if node is not None and node.jailed and account.stake >= params.min_node_stake:
        put_node(state, address, replace(node, jailed=False))
