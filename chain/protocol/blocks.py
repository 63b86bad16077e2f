"""This chain's blocks and its state transition (PROTOCOL 3, 4 and 6), to read top to bottom.

- **Encoding**: votes and block headers as JSON, the block hash, the appHash chain.
- **Validity**: `validate_block`, everything a validator checks of a proposed or synced block
  before it executes it (the local time is passed in; the rules never read a clock).
- **Execution**: `apply_genesis`, then per block `execute_block`: each transaction through
  `apply_tx` (the account rules of `accounts`, the task rules of `tasks`), then `end_block`
  (deadlines, the block reward).
- **The supply invariant** (4.10) over any state.

Pure functions: the same inputs give the same writes on every validator. Each rule checks
everything before it writes, and `apply_tx` runs on a scratch overlay, so a rejected
transaction changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from chain.protocol import accounts, ao, crypto, tasks, wire
from chain.protocol.errors import InvalidParams, InvalidPeerMessage, InvalidTransaction
from chain.protocol.genesis import Genesis, Params
from chain.protocol.state import (
    State,
    credit,
    encode_write_set,
    get_account,
    get_supply,
    put_account,
    put_node,
    put_supply,
    put_validator,
)
from chain.protocol.types import (
    Account,
    AoDataItem,
    AoMessage,
    AoSpawn,
    AoTerminate,
    Block,
    BlockContext,
    CommitSecrets,
    RegisterResourceNode,
    ResourceNodeInfo,
    RevealSecret,
    Secrets,
    SignedTx,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    Transfer,
    Unstake,
    ValidatorInfo,
    Vote,
)

# A block may be at most this far ahead of the local clock of the validator that checks it.
MAX_CLOCK_DRIFT_S = 30
# A proposal travels with its transactions in one request to each peer (bodies up to 5 MiB).
MAX_BLOCK_TX_BYTES = 3 * 1024 * 1024


# Encoding


def vote_to_json(vote: Vote) -> dict[str, Any]:
    return {
        "chainId": vote.chain_id,
        "height": vote.height,
        "round": vote.round,
        "type": vote.type,
        "blockHash": wire.hex0x(vote.block_hash),
        "validator": vote.validator,
        "signature": wire.hex0x(vote.signature),
    }


def vote_from_json(obj: dict[str, Any]) -> Vote:
    return Vote(
        chain_id=obj["chainId"],
        height=obj["height"],
        round=obj["round"],
        type=obj["type"],
        block_hash=bytes.fromhex(obj["blockHash"][2:]),
        validator=obj["validator"],
        signature=bytes.fromhex(obj["signature"][2:]),
    )


def block_header_json(block: Block) -> dict[str, Any]:
    return {
        "height": block.height,
        "time": block.time,
        "proposer": block.proposer,
        "prevHash": wire.hex0x(block.prev_hash),
        "txs": [wire.hex0x(h) for h in block.txs],
        "appHash": wire.hex0x(block.app_hash),
        "lastCommit": [vote_to_json(v) for v in block.last_commit],
    }


def block_hash(block: Block) -> bytes:
    return header_hash(block_header_json(block))


def context_of(block: Block) -> BlockContext:
    """What the rules know of `block` while executing it, its hash included (PROTOCOL 4.5)."""
    return BlockContext(block.height, block.time, block.proposer, block_hash(block))


def header_hash(header: dict[str, Any]) -> bytes:
    return crypto.keccak(orjson.dumps(header, option=orjson.OPT_SORT_KEYS))


def block_from_json(obj: dict[str, Any]) -> Block:
    return Block(
        height=obj["height"],
        time=obj["time"],
        proposer=obj["proposer"],
        prev_hash=bytes.fromhex(obj["prevHash"][2:]),
        txs=tuple(bytes.fromhex(h[2:]) for h in obj["txs"]),
        app_hash=bytes.fromhex(obj["appHash"][2:]),
        last_commit=tuple(vote_from_json(v) for v in obj["lastCommit"]),
    )


def next_app_hash(prev_app_hash: bytes, write_set: Sequence[tuple[bytes, bytes | None]]) -> bytes:
    """appHash(h) = keccak256(appHash(h-1) || keccak256(canonical write set of block h))."""
    return crypto.keccak(prev_app_hash + crypto.keccak(encode_write_set(write_set)))


# Validity


@dataclass(frozen=True, slots=True)
class Head:
    """The committed tip of the chain: the last block and the state after it."""

    height: int
    hash: bytes
    app_hash: bytes
    time: int


CommitCheck = Callable[[int, bytes, Sequence[Vote]], None]


def follows(block: Block, head: Head, now: float) -> str | None:
    """Why `block` cannot come next now (it does not follow the head, or its time is ahead
    of the clock `now`), or None. These may change as the head and the clock move on."""
    if block.height != head.height + 1 or block.prev_hash != head.hash:
        return f"it does not follow the head {head.height}"
    if block.time > now + MAX_CLOCK_DRIFT_S:
        return f"its time {block.time} is ahead of this node's clock"
    return None


def validate_block(
    block: Block,
    txs: Sequence[SignedTx],
    head: Head,
    params: Params,
    *,
    now: float,
    proposers: Container[str],
    in_chain: Callable[[bytes], bool],
    check_commit: CommitCheck,
) -> str | None:
    """Why `block` (with `txs`, its transactions) cannot be the block after `head`, or None
    (PROTOCOL 6). `in_chain` tells a transaction already committed; `check_commit(height,
    hash, votes)` raises InvalidPeerMessage unless the votes commit that block. Past `follows`,
    a problem found here is for good: the same block never becomes valid."""
    problem = follows(block, head, now)
    if problem is not None:
        return problem
    if block.app_hash != head.app_hash:
        return "its appHash differs from this validator's state"
    if block.time < head.time:
        return f"its time {block.time} is before the head's {head.time}"
    if block.proposer not in proposers:
        return f"its proposer {block.proposer} is not a validator"
    if len(block.txs) > params.max_block_txs:
        return f"it holds {len(block.txs)} transactions, more than maxBlockTxs"
    size = sum(tx_size(tx) for tx in txs)
    if size > MAX_BLOCK_TX_BYTES:
        return f"its transactions take {size} bytes, more than {MAX_BLOCK_TX_BYTES}"
    if any(in_chain(h) for h in block.txs):
        return "it holds a transaction that is already in the chain"
    if block.height == 1:
        return "block 1 carries a lastCommit" if block.last_commit else None
    try:
        check_commit(head.height, head.hash, block.last_commit)
    except InvalidPeerMessage as exc:
        return f"its lastCommit is not valid: {exc.reason}"
    return None


# Execution


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
        head = node.secrets_head
        secrets = None if head is None else Secrets(head, 0, 0, head)
        put_node(state, node.address, ResourceNodeInfo(node.models, node.endpoint, False, secrets))
    for address, acct in accounts.items():
        put_account(state, address, acct)
    put_supply(state, genesis.supply, 0, 0)


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
        tasks.apply_submit_task(scratch, params, ctx, tx, msg)
    elif isinstance(msg, Transfer):
        accounts.apply_transfer(scratch, params, msg)
    elif isinstance(msg, Stake):
        accounts.apply_stake(scratch, params, msg)
    elif isinstance(msg, Unstake):
        accounts.apply_unstake(scratch, params, msg)
    elif isinstance(msg, RegisterResourceNode):
        accounts.apply_register(scratch, msg)
    elif isinstance(msg, SubmitInferenceResult):
        tasks.apply_result(scratch, params, ctx, tx, msg)
    elif isinstance(msg, CommitSecrets):
        tasks.apply_commit_secrets(scratch, ctx, msg)
    elif isinstance(msg, RevealSecret):
        tasks.apply_reveal(scratch, params, ctx, msg)
    elif isinstance(msg, AoSpawn):
        ao.apply_spawn(scratch, params, ctx, tx, msg)
    elif isinstance(msg, AoMessage):
        ao.apply_message(scratch, params, ctx, tx, msg)
    elif isinstance(msg, AoDataItem):
        ao.apply_data_item(scratch, params, ctx, tx, msg)
    elif isinstance(msg, AoTerminate):
        ao.apply_terminate(scratch, params, msg)
    else:
        tasks.apply_verification(scratch, params, ctx, tx, msg)
    state.merge(scratch)


# The sizes of recent transactions by hash: admission, block execution and re-admission after
# a block all ask. A hash and an integer per entry, never the transaction itself (an
# lru_cache keyed by the transaction held the last 65,536 of them, finished or not); at most
# TX_SIZE_CACHE entries, the oldest dropped first, more than a full mempool holds.
TX_SIZE_CACHE = 1 << 15
_tx_sizes: dict[bytes, int] = {}


def tx_size(tx: SignedTx) -> int:
    """Bytes of the transaction's canonical JSON: its wire params plus the signature.
    Cached by `tx.hash`, which `crypto` computes from the digest and the signature."""
    size = _tx_sizes.get(tx.hash)
    if size is None:
        size = _encoded_size(tx)
        while len(_tx_sizes) >= TX_SIZE_CACHE:
            del _tx_sizes[next(iter(_tx_sizes))]
        _tx_sizes[tx.hash] = size
    return size


def tx_size_cache_len() -> int:
    """How many sizes `tx_size` holds (at most TX_SIZE_CACHE)."""
    return len(_tx_sizes)


def _encoded_size(tx: SignedTx) -> int:
    params = wire.message_to_params(tx.message)
    params["signature"] = wire.hex0x(tx.signature)
    try:
        return len(orjson.dumps(params, option=orjson.OPT_SORT_KEYS))
    except TypeError:  # an integer beyond 64 bits, which orjson does not write
        text = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return len(text.encode())


def execute_block(
    state: State,
    params: Params,
    ctx: BlockContext,
    txs: Sequence[SignedTx],
    commit_signers: Sequence[str],
    on_late: Callable[[SignedTx, InvalidTransaction], None] | None = None,
) -> list[tuple[SignedTx, str]]:
    """Run a block's transactions in order, then `end_block`; every validator runs exactly
    this. A transaction that no longer applies is kept in the block as "late" and changes
    nothing (`on_late` hears why); the others are "committed"."""
    records: list[tuple[SignedTx, str]] = []
    for tx in txs:
        try:
            apply_tx(state, params, ctx, tx)
            records.append((tx, "committed"))
        except InvalidTransaction as exc:
            if on_late is not None:
                on_late(tx, exc)
            records.append((tx, "late"))
    end_block(state, params, ctx, commit_signers)
    return records


def end_block(
    state: State, params: Params, ctx: BlockContext, commit_signers: Sequence[str]
) -> None:
    """Assign the verifiers of the results the block included (4.5), close the deadlines due
    at this height (4.7), then mint the block reward for the validators whose precommits the
    block carries (4.9)."""
    tasks.assign_verifiers(state, params, ctx)
    tasks.process_deadlines(state, params, ctx)
    ao.schedule_cron(state, ctx)
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


# The supply invariant (PROTOCOL 4.10)


def supply_check(
    accounts: Iterable[Account], escrowed: Iterable[int], supply: tuple[int, int, int]
) -> tuple[int, int]:
    """(held, expected): held = balances + stakes + escrow; expected = genesis + minted - burned."""
    held = sum(a.balance + a.stake for a in accounts) + sum(escrowed)
    genesis_supply, minted, burned = supply
    return held, genesis_supply + minted - burned
