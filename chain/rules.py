"""The protocol's state transition as pure functions over a `State` (PROTOCOL 3 and 4).

No I/O, no clock: a block's height, time and proposer come in as a `BlockContext`. The same
inputs give the same writes on every validator. Each `apply_*` checks everything before it
writes, and `apply_tx` runs on a scratch overlay, so a rejected transaction changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import orjson

from chain import tasks, wire
from chain.errors import (
    DuplicateSubmission,
    InsufficientBalance,
    InvalidParams,
    InvalidTransaction,
    NonceMismatch,
    NotEligible,
)
from chain.genesis import Genesis, Params
from chain.state import (
    State,
    credit,
    get_account,
    get_node,
    get_supply,
    get_task,
    get_validator,
    put_account,
    put_node,
    put_supply,
    put_validator,
    update_task,
)
from chain.types import (
    Account,
    BlockContext,
    RegisterResourceNode,
    ResourceNodeInfo,
    SignedTx,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    Task,
    Transfer,
    Unstake,
    ValidatorInfo,
)

log = logging.getLogger(__name__)

MAX_MODELS_LENGTH = 1024
MAX_ENDPOINT_LENGTH = 256
MODEL_OPTION_RANGES: dict[str, tuple[float, float, type]] = {
    "temperature": (0.0, 2.0, float),
    "top_p": (0.0, 1.0, float),
    "max_tokens": (1, 8192, int),
}

log = logging.getLogger(__name__)


# Genesis


def apply_genesis(state: State, genesis: Genesis) -> None:
    """Write the initial state: balances, stakes, validators, resource nodes, supply."""
    accounts: dict[str, Account] = {}
    for item in genesis.accounts:
        accounts[item.address] = Account(balance=item.balance)
    for val in genesis.validators:
        acct = accounts.get(val.address, Account())
        accounts[val.address] = Account(acct.balance, acct.stake + val.stake, acct.nonce)
        put_validator(state, ValidatorInfo(val.address, val.consensus_pub_key, val.url))
    for node in genesis.resource_nodes:
        acct = accounts.get(node.address, Account())
        accounts[node.address] = Account(acct.balance, acct.stake + node.stake, acct.nonce)
        put_node(state, node.address, ResourceNodeInfo(node.models, node.endpoint, False))
    for address, acct in accounts.items():
        put_account(state, address, acct)
    put_supply(state, genesis.supply, 0, 0)


# Transactions


def apply_tx(state: State, params: Params, ctx: BlockContext, tx: SignedTx) -> None:
    """Apply one verified transaction; raises InvalidTransaction and then writes nothing."""
    size = tx_size(tx)
    if size > params.max_tx_bytes:
        raise InvalidParams(
            "(transaction)", f"{size} bytes exceeds maxTxBytes {params.max_tx_bytes}"
        )
    scratch = state.child()
    msg = tx.message
    if isinstance(msg, SubmitTask):
        apply_submit_task(scratch, params, ctx, tx, msg)
    elif isinstance(msg, Transfer):
        apply_transfer(scratch, msg)
    elif isinstance(msg, Stake):
        apply_stake(scratch, params, msg)
    elif isinstance(msg, Unstake):
        apply_unstake(scratch, params, msg)
    elif isinstance(msg, RegisterResourceNode):
        apply_register(scratch, msg)
    elif isinstance(msg, SubmitInferenceResult):
        tasks.apply_result(scratch, params, ctx, tx, msg)
    else:
        tasks.apply_verification(scratch, params, ctx, tx, msg)
    state.merge(scratch)


@lru_cache(maxsize=1 << 16)
def tx_size(tx: SignedTx) -> int:
    """Bytes of the transaction's canonical JSON: its wire params plus the signature.
    Cached: admission, block execution and re-admission after a block all ask."""
    params = wire.message_to_params(tx.message)
    params["signature"] = wire.hex0x(tx.signature)
    try:
        return len(orjson.dumps(params, option=orjson.OPT_SORT_KEYS))
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        text = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return len(text.encode())


def check_nonce(account: Account, address: str, nonce: int) -> None:
    if nonce != account.nonce:
        raise NonceMismatch(address, account.nonce, nonce)


def task_fee(params: Params, target_count: int) -> int:
    return params.task_base_fee + params.task_fee_per_node * target_count


def parse_json_object(text: str, param: str) -> dict[str, Any] | None:
    """The JSON object a bytes field holds; None when it holds something else.

    A field that starts like an object (`{`) but is not valid JSON (RFC 8259: no NaN, no
    Infinity, nesting at most 1024 deep) is refused rather than taken as opaque bytes: it is
    almost certainly a mistake, and nodes would read it differently.
    """
    raw = wire.decode_bytes_field(text)
    if not raw.lstrip().startswith(b"{"):
        return None  # not an object, whatever else it may be (and no parse error to build)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = f"starts like a JSON object but is not valid JSON: {exc}"
        raise InvalidParams(param, reason) from exc
    return value if isinstance(value, dict) else None


def validate_model_options(text: str) -> str | None:
    """Check JSON modelOptions (PROTOCOL 4.2) and return the model it names, if any."""
    options = parse_json_object(text, "modelOptions")
    if options is None:
        return None
    for key, (low, high, kind) in MODEL_OPTION_RANGES.items():
        if key not in options:
            continue
        value = options[key]
        param = f"modelOptions.{key}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidParams(param, f"expected a number, got {type(value).__name__}")
        if kind is int and not isinstance(value, int):
            raise InvalidParams(param, "expected an integer")
        if not low <= value <= high:
            raise InvalidParams(param, f"must be between {low} and {high}")
    model = options.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidParams("modelOptions.model", "expected a string")
    return model


def max_fee_of(text: str) -> int | None:
    fee_params = parse_json_object(text, "feeParams")
    if fee_params is None or "maxFee" not in fee_params:
        return None
    return wire.parse_uint(fee_params["maxFee"], "feeParams.maxFee")


def apply_submit_task(
    state: State, params: Params, ctx: BlockContext, tx: SignedTx, msg: SubmitTask
) -> None:
    account = get_account(state, msg.sender)
    check_nonce(account, msg.sender, msg.nonce)
    if not 1 <= msg.target_count <= params.max_target_count:
        raise InvalidParams("targetCount", f"must be between 1 and {params.max_target_count}")
    model = validate_model_options(msg.model_options)
    fee = task_fee(params, msg.target_count)
    max_fee = max_fee_of(msg.fee_params)
    if max_fee is not None and fee > max_fee:
        raise InvalidParams("feeParams.maxFee", f"the fee {fee} exceeds maxFee {max_fee}")
    if get_task(state, tx.digest) is not None:
        raise DuplicateSubmission(wire.hex0x(tx.hash), "this task exists already")
    if account.balance < fee:
        raise InsufficientBalance(msg.sender, fee, account.balance)
    put_account(state, msg.sender, Account(account.balance - fee, account.stake, account.nonce + 1))
    task = new_task(tx, fee, model, ctx)
    update_task(state, task, None)  # new: get_task found no task under this hash
    tasks.schedule_deadlines(state, params, task)


def new_task(tx: SignedTx, fee: int, model: str | None, ctx: BlockContext | None) -> Task:
    """The task a SubmitTask creates; without a block context it is still in the mempool."""
    msg = tx.message
    assert isinstance(msg, SubmitTask)
    return Task(
        task_hash=tx.digest,
        tx_hash=tx.hash,
        sender=msg.sender,
        nonce=msg.nonce,
        schema=msg.schema,
        target_count=msg.target_count,
        prompts=msg.prompts,
        model_options=msg.model_options,
        sid=msg.sid,
        fee_params=msg.fee_params,
        fee=fee,
        model=model,
        created_height=None if ctx is None else ctx.height,
        created_at=None if ctx is None else ctx.time,
    )


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
    tasks.restore_if_restaked(state, params, msg.sender, staked)


def apply_unstake(state: State, params: Params, msg: Unstake) -> None:
    account = get_account(state, msg.sender)
    check_nonce(account, msg.sender, msg.nonce)
    _require_positive(msg.amount)
    if account.stake < msg.amount:
        raise InsufficientBalance(msg.sender, msg.amount, account.stake, what="stake")
    remaining = account.stake - msg.amount
    tasks.unstake_guard(state, params, msg.sender, remaining)
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


# End of block


def end_block(
    state: State, params: Params, ctx: BlockContext, commit_signers: Sequence[str]
) -> None:
    """Close the deadlines due at this height (4.7), then mint the block reward for the
    validators whose precommits the block carries (4.9)."""
    tasks.process_deadlines(state, params, ctx)
    reward = params.block_reward
    if reward == 0:
        return
    signers = sorted(set(commit_signers))
    stakes = [get_account(state, address).stake for address in signers]
    total = sum(stakes)
    paid = 0
    if total > 0:
        for address, stake in zip(signers, stakes, strict=True):
            share = reward * stake // total
            if share:
                credit(state, address, share)
                paid += share
    if reward - paid:
        credit(state, ctx.proposer, reward - paid)
    genesis_supply, minted, burned = get_supply(state)
    put_supply(state, genesis_supply, minted + reward, burned)


def execute_block(
    state: State,
    params: Params,
    ctx: BlockContext,
    txs: Sequence[SignedTx],
    commit_signers: Sequence[str],
) -> list[tuple[SignedTx, str]]:
    """Run a block's transactions in order, then `end_block`; every validator runs exactly
    this. A transaction that no longer applies is kept in the block as "late" and changes
    nothing; the others are "committed"."""
    records: list[tuple[SignedTx, str]] = []
    for tx in txs:
        try:
            apply_tx(state, params, ctx, tx)
            records.append((tx, "committed"))
        except InvalidTransaction as exc:
            log.info("tx 0x%s is late: %s", tx.hash.hex(), exc)
            records.append((tx, "late"))
    end_block(state, params, ctx, commit_signers)
    return records


# The supply invariant (PROTOCOL 4.10)


def supply_check(
    accounts: Iterable[Account], escrowed: Iterable[int], supply: tuple[int, int, int]
) -> tuple[int, int]:
    """(held, expected): held = balances + stakes + escrow; expected = genesis + minted - burned."""
    held = sum(a.balance + a.stake for a in accounts) + sum(escrowed)
    genesis_supply, minted, burned = supply
    return held, genesis_supply + minted - burned
