"""The state as the rules see it: typed records over a key-value view with a write set.

`State` reads through to a base reader (the committed LevelDB store, or another State) and
keeps its own writes. `child()` gives a scratch overlay for one transaction: merged on
success, dropped on failure, so a rejected transaction changes nothing. The sorted write set
of a block is what the appHash commits to (PROTOCOL 6).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any, Final, Protocol

import orjson

from chain.protocol.types import (
    OPEN_STATUSES,
    Account,
    ExecutionInfo,
    Payout,
    ResourceNodeInfo,
    ResultStatus,
    Secrets,
    Settlement,
    Slash,
    Task,
    TaskStatus,
    ValidatorInfo,
    Verdict,
)

# State keys (everything under b"s/" is consensus state and enters the appHash).
STATE_PREFIX = b"s/"
ACCOUNT = b"s/acct/"
NODE = b"s/node/"
VALIDATOR = b"s/val/"
TASK = b"s/task/"
OPEN_TASK = b"s/open/"
SUPPLY = b"s/supply"
TASK_STATS = b"s/stats"
DUE = b"s/due/"  # <h:8>: how many tasks are due at h; <h:8><i:4>: the i-th one
BUSY = b"s/busy/"
NODE_LIST = b"s/nodes"  # every registered resource node's address, sorted (PROTOCOL 4.5)
AWAIT = b"s/await/"  # <address>: the unsettled tasks holding a result of the node (4.13)
ASSIGN = b"s/assign"  # the results this block included, assigned at its end (4.5)

# A status as the stored JSON holds it -> the enum member, by a dict lookup (cheaper than the
# enum's own call, and decoding a task is on the path of every task transaction).
_TASK_STATUS: Final = {status.value: status for status in TaskStatus}
_RESULT_STATUS: Final = {status.value: status for status in ResultStatus}


class _Absent(Enum):
    """What a write set's `get` gives for a key it does not hold (None there is a delete)."""

    KEY = 0


_ABSENT: Final = _Absent.KEY


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class State:
    """A view over `base` that records writes; `None` in the write set is a delete."""

    __slots__ = ("_base", "_writes")

    def __init__(self, base: Reader) -> None:
        self._base = base
        self._writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        value = self._writes.get(key, _ABSENT)  # one dict lookup per overlay a read crosses
        if value is not _ABSENT:
            return value
        return self._base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._writes[key] = value

    def delete(self, key: bytes) -> None:
        self._writes[key] = None

    def child(self) -> State:
        return State(self)

    def rebase(self, base: Reader) -> None:
        """Read through `base` from now on: one that answers every key as the old base did
        (the ledger, once the old base's writes are committed)."""
        self._base = base

    def merge(self, child: State) -> None:
        self._writes.update(child._writes)

    def writes(self) -> dict[bytes, bytes | None]:
        return self._writes

    def write_set(self) -> list[tuple[bytes, bytes | None]]:
        return sorted(self._writes.items())


def encode_write_set(pairs: Iterable[tuple[bytes, bytes | None]]) -> bytes:
    """Canonical encoding: per pair, len(key) u32 || key || (0x00 | 0x01 len u32 value)."""
    parts: list[bytes] = []
    append = parts.append  # one join of the parts: no copy of a value into a temporary
    for key, value in pairs:
        append(len(key).to_bytes(4, "big"))
        append(key)
        if value is None:
            append(b"\x00")
        else:
            append(b"\x01" + len(value).to_bytes(4, "big"))
            append(value)
    return b"".join(parts)


def _addr_key(prefix: bytes, address: str) -> bytes:
    return prefix + bytes.fromhex(address[2:])


def _load(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else orjson.loads(raw)


def _dump(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


# Accounts


def account_key(address: str) -> bytes:
    return _addr_key(ACCOUNT, address)


def get_account(state: Reader, address: str) -> Account:
    raw = state.get(account_key(address))
    return Account() if raw is None else decode_account(raw)


def decode_account(raw: bytes) -> Account:
    obj = orjson.loads(raw)
    return Account(int(obj["balance"]), int(obj["stake"]), obj["nonce"])


def encode_account(account: Account) -> bytes:
    return _dump(
        {"balance": str(account.balance), "stake": str(account.stake), "nonce": account.nonce}
    )


def put_account(state: State, address: str, account: Account) -> None:
    state.put(account_key(address), encode_account(account))


def credit(state: State, address: str, amount: int) -> None:
    """Add `amount` to the balance of `address` (rewards, payouts, refunds)."""
    key = account_key(address)
    raw = state.get(key)
    account = Account() if raw is None else decode_account(raw)
    state.put(key, encode_account(Account(account.balance + amount, account.stake, account.nonce)))


def burn(state: State, amount: int) -> None:
    """Count `amount` as burned: it leaves the supply (PROTOCOL 4.10); nothing for 0."""
    if amount:
        genesis_supply, minted, burned = get_supply(state)
        put_supply(state, genesis_supply, minted, burned + amount)


# Resource nodes and validators


def node_key(address: str) -> bytes:
    return _addr_key(NODE, address)


def get_node(state: Reader, address: str) -> ResourceNodeInfo | None:
    raw = state.get(node_key(address))
    return None if raw is None else decode_node(raw)


def decode_node(raw: bytes) -> ResourceNodeInfo:
    obj = orjson.loads(raw)
    secrets = obj.get("secrets")
    return ResourceNodeInfo(
        obj["models"],
        obj["endpoint"],
        obj["jailed"],
        None if secrets is None else secrets_from_json(secrets),
    )


def secrets_to_json(secrets: Secrets) -> dict[str, Any]:
    """A node's chain of secrets in its stored and wire form (getResourceNodes)."""
    return {
        "base": secrets.base,
        "head": "0x" + secrets.head.hex(),
        "revealed": "0x" + secrets.revealed.hex(),
        "revealedHeight": secrets.revealed_height,
    }


def secrets_from_json(obj: dict[str, Any]) -> Secrets:
    return Secrets(
        bytes.fromhex(obj["head"][2:]),
        obj["base"],
        obj["revealedHeight"],
        bytes.fromhex(obj["revealed"][2:]),
    )


def put_node(state: State, address: str, node: ResourceNodeInfo) -> None:
    """Write a node's record; a node written for the first time joins the node list."""
    key = node_key(address)
    if state.get(key) is None:
        addresses = get_node_list(state)
        addresses.append(address)
        addresses.sort()
        state.put(NODE_LIST, _dump({"nodes": addresses}))
    obj: dict[str, Any] = {"endpoint": node.endpoint, "jailed": node.jailed, "models": node.models}
    if node.secrets is not None:  # a node without secrets keeps the record it always had
        obj["secrets"] = secrets_to_json(node.secrets)
    state.put(key, _dump(obj))


def get_node_list(state: Reader) -> list[str]:
    """Every registered resource node, by address (the candidates of PROTOCOL 4.5)."""
    obj = _load(state.get(NODE_LIST))
    return [] if obj is None else list(obj["nodes"])


# The tasks that wait on a node's secrets (PROTOCOL 4.13), and the results to assign (4.5)


def await_key(address: str) -> bytes:
    return _addr_key(AWAIT, address)


def get_awaiting(state: Reader, address: str) -> list[bytes]:
    """The unsettled tasks in which the node has a result, in the order its results came."""
    raw = state.get(await_key(address))
    return [] if raw is None else [raw[i : i + 32] for i in range(0, len(raw), 32)]


def add_awaiting(state: State, address: str, task_hash: bytes) -> None:
    """Append a task to the node's unsettled ones: the value `put_awaiting` would write for
    the list with it at the end, without splitting the list."""
    state.put(await_key(address), (state.get(await_key(address)) or b"") + task_hash)


def put_awaiting(state: State, address: str, task_hashes: list[bytes]) -> None:
    if task_hashes:
        state.put(await_key(address), b"".join(task_hashes))
    else:
        state.delete(await_key(address))


def get_to_assign(state: Reader) -> list[tuple[bytes, str]]:
    """(taskHash, submitter) of each result included in the block being executed, in order."""
    return [(raw[:32], raw[32:].decode()) for raw in _list_items(state, ASSIGN, ASSIGN + b"/")]


def add_to_assign(state: State, task_hash: bytes, submitter: str) -> None:
    """Append a result to the block's list."""
    _list_append(state, ASSIGN, ASSIGN + b"/", task_hash + submitter.encode())


def clear_to_assign(state: State) -> None:
    _list_clear(state, ASSIGN, ASSIGN + b"/")


def validator_key(address: str) -> bytes:
    return _addr_key(VALIDATOR, address)


def get_validator(state: Reader, address: str) -> ValidatorInfo | None:
    obj = _load(state.get(validator_key(address)))
    if obj is None:
        return None
    return ValidatorInfo(address, bytes.fromhex(obj["consensusPubKey"]), obj["url"])


def put_validator(state: State, info: ValidatorInfo) -> None:
    state.put(
        validator_key(info.address),
        _dump({"consensusPubKey": info.consensus_pub_key.hex(), "url": info.url}),
    )


# Tasks


def task_key(task_hash: bytes) -> bytes:
    return TASK + task_hash


def task_to_json(task: Task) -> dict[str, Any]:
    """A task in its wire form (PROTOCOL 5.1 queryTask), which is also how it is stored."""
    return {
        "status": str(task.status),  # the word, a plain str (as `status` below, a plain int)
        "response": task.response,
        "verificationCount": task.verification_count,
        "taskHash": "0x" + task.task_hash.hex(),
        "sender": task.sender,
        "nonce": task.nonce,
        "schema": task.schema,
        "targetCount": task.target_count,
        "prompts": task.prompts,
        "modelOptions": task.model_options,
        "SID": "0x" + task.sid.hex(),
        "feeParams": task.fee_params,
        "fee": str(task.fee),
        "model": task.model,
        "createdHeight": task.created_height,
        "createdAt": task.created_at,
        "finishedHeight": task.finished_height,
        "finishedAt": task.finished_at,
        "executionInfo": [execution_info_to_json(entry) for entry in task.execution_info],
        "txHash": "0x" + task.tx_hash.hex(),
        "settlement": None if task.settlement is None else settlement_to_json(task.settlement),
    }


# The parts of a task below are built with their keys in sorted order: the order a stored task
# reads back in, and so the order of the wire form queryTask has always answered with.


def execution_info_to_json(entry: ExecutionInfo) -> dict[str, Any]:
    """A result entry in its stored and wire form (`seed` a decimal string)."""
    seed = entry.assignment_seed
    return {
        "assignment": {
            "complete": entry.assignment_complete,
            "rounds": [list(members) for members in entry.rounds],
            "seed": None if seed is None else "0x" + seed.hex(),
        },
        "decidedHeight": entry.decided_height,
        "forcedError": entry.forced_error,
        "height": entry.height,
        "proof": entry.proof,
        "rank": entry.rank,
        "resourceNode": entry.resource_node,
        "result": entry.result,
        "seed": str(entry.seed),
        "status": int(entry.status),
        "txHash": entry.tx_hash,
        "verifications": [verdict_to_json(verdict) for verdict in entry.verifications],
    }


def verdict_to_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "height": verdict.height,
        "seq": verdict.seq,
        "txHash": verdict.tx_hash,
        "valid": verdict.valid,
        "verifier": verdict.verifier,
    }


def settlement_to_json(settlement: Settlement) -> dict[str, Any]:
    """A settlement in its stored and wire form (amounts as decimal strings)."""
    return {
        "burned": str(settlement.burned),
        "fee": str(settlement.fee),
        "height": settlement.height,
        "networkReward": str(settlement.network_reward),
        "payouts": [
            {"address": p.address, "amount": str(p.amount), "rank": p.rank, "role": p.role}
            for p in settlement.payouts
        ],
        "refund": str(settlement.refund),
        "slashed": [
            {"address": s.address, "amount": str(s.amount), "reason": s.reason}
            for s in settlement.slashed
        ],
    }


def encode_task(task: Task) -> bytes:
    return _dump(task_to_json(task))


# TASK_CACHE decoded tasks by their ledger value, the oldest dropped first: more than the
# tasks a loaded network has open (each resource node's queryPendingTasks reads every open
# task: the overload guard's cap holds a few hundred near the capacity).
TASK_CACHE = 4096
_tasks: dict[bytes, Task] = {}


def decode_task(raw: bytes) -> Task:
    """The task a ledger value holds. A Task is a value, so the same bytes give the same
    (shared) object: the open tasks are read again by every transaction that touches them,
    by each resource node's `queryPendingTasks` and by the deadline passes, and a hit costs
    the hash of the bytes instead of a decode (a tenth to a fiftieth of it)."""
    task = _tasks.get(raw)
    if task is None:
        task = _task_from_json(orjson.loads(raw))
        while len(_tasks) >= TASK_CACHE:
            del _tasks[next(iter(_tasks))]
        _tasks[raw] = task
    return task


def task_cache_len() -> int:
    """How many decoded tasks `decode_task` holds (at most TASK_CACHE)."""
    return len(_tasks)


def _task_from_json(obj: dict[str, Any]) -> Task:
    settlement = obj["settlement"]
    return Task(  # by position, in the order of Task's fields: a third cheaper than by keyword
        bytes.fromhex(obj["taskHash"][2:]),
        bytes.fromhex(obj["txHash"][2:]),
        obj["sender"],
        obj["nonce"],
        obj["schema"],
        obj["targetCount"],
        obj["prompts"],
        obj["modelOptions"],
        bytes.fromhex(obj["SID"][2:]),
        obj["feeParams"],
        int(obj["fee"]),
        obj["model"],
        obj["createdHeight"],
        obj["createdAt"],
        _TASK_STATUS[obj["status"]],
        obj["finishedHeight"],
        obj["finishedAt"],
        obj["response"],
        obj["verificationCount"],
        tuple([_execution_info_from_json(entry) for entry in obj["executionInfo"]]),
        None if settlement is None else _settlement_from_json(settlement),
    )


def _execution_info_from_json(obj: dict[str, Any]) -> ExecutionInfo:
    assignment = obj["assignment"]
    seed = assignment["seed"]
    return ExecutionInfo(
        obj["rank"],
        obj["resourceNode"],
        obj["result"],
        obj["proof"],
        int(obj["seed"]),
        obj["txHash"],
        obj["height"],
        _RESULT_STATUS[obj["status"]],
        obj["decidedHeight"],
        tuple(
            [
                Verdict(v["verifier"], v["valid"], v["txHash"], v["height"], v["seq"])
                for v in obj["verifications"]
            ]
        ),
        None if seed is None else bytes.fromhex(seed[2:]),
        tuple([tuple(members) for members in assignment["rounds"]]),
        assignment["complete"],
        obj["forcedError"],
    )


def _settlement_from_json(obj: dict[str, Any]) -> Settlement:
    return Settlement(
        height=obj["height"],
        fee=int(obj["fee"]),
        network_reward=int(obj["networkReward"]),
        slashed=tuple([Slash(s["address"], int(s["amount"]), s["reason"]) for s in obj["slashed"]]),
        payouts=tuple(
            [Payout(p["address"], int(p["amount"]), p["role"], p["rank"]) for p in obj["payouts"]]
        ),
        refund=int(obj["refund"]),
        burned=int(obj["burned"]),
    )


def get_task(state: Reader, task_hash: bytes) -> Task | None:
    raw = state.get(task_key(task_hash))
    return None if raw is None else decode_task(raw)


def get_open_task(state: Reader, task_hash: bytes) -> Task | None:
    """The task while it is open; None once it is verified or failed, or if unknown (a
    finished task is not decoded: the deadline pass meets every task once more after it
    is settled)."""
    raw = state.get(task_key(task_hash))
    if raw is None:
        return None
    obj = orjson.loads(raw)
    return _task_from_json(obj) if obj["status"] in OPEN_STATUSES else None


def put_task(state: State, task: Task) -> None:
    """Write a task, keeping the open-task index and the per-status counts in step."""
    old = state.get(task_key(task.task_hash))
    update_task(state, task, None if old is None else _TASK_STATUS[orjson.loads(old)["status"]])


def update_task(state: State, task: Task, stored_status: TaskStatus | None) -> None:
    """`put_task` for a caller that knows the status `state` holds for the task (None: the
    task is new), which spares reading and parsing the stored task again."""
    if stored_status != task.status:
        stats = get_task_stats(state)
        if stored_status is not None:
            stats[stored_status] -= 1
        stats[task.status] += 1
        state.put(TASK_STATS, _dump(stats))
    state.put(task_key(task.task_hash), encode_task(task))
    if task.status in OPEN_STATUSES:
        state.put(OPEN_TASK + task.task_hash, b"")
    else:
        state.delete(OPEN_TASK + task.task_hash)


def get_task_stats(state: Reader) -> dict[str, int]:
    """Tasks by status (PROTOCOL 5.2 taskStats, without the total)."""
    obj = _load(state.get(TASK_STATS))
    return {status.value: 0 for status in TaskStatus} if obj is None else obj


# Deadlines: the tasks whose compute or verify deadline is a given height


def due_key(height: int, index: int | None = None) -> bytes:
    """The count of tasks due at `height`, or (with `index`) the hash of one of them."""
    key = DUE + height.to_bytes(8, "big")
    return key if index is None else key + index.to_bytes(4, "big")


# A list kept one key per item (appending is O(1)): `count_key` holds the count, item i is at
# `prefix + i` (4 bytes, big-endian). The deadlines and the results to assign are such lists.


def _list_count(state: Reader, count_key: bytes) -> int:
    raw = state.get(count_key)
    return 0 if raw is None else int.from_bytes(raw, "big")


def _list_items(state: Reader, count_key: bytes, prefix: bytes) -> list[bytes]:
    items = (state.get(prefix + i.to_bytes(4, "big")) for i in range(_list_count(state, count_key)))
    return [item for item in items if item is not None]


def _list_append(state: State, count_key: bytes, prefix: bytes, item: bytes) -> None:
    count = _list_count(state, count_key)
    state.put(prefix + count.to_bytes(4, "big"), item)
    state.put(count_key, (count + 1).to_bytes(4, "big"))


def _list_clear(state: State, count_key: bytes, prefix: bytes) -> None:
    for i in range(_list_count(state, count_key)):
        state.delete(prefix + i.to_bytes(4, "big"))
    state.delete(count_key)


# The tasks due at a height are the list under due_key(height), its items under the same
# prefix: due_key(height, i) == due_key(height) + i.to_bytes(4, "big").


def get_due(state: Reader, height: int) -> list[bytes]:
    """The tasks due at `height`, in the order they were added."""
    key = due_key(height)
    return _list_items(state, key, key)


def add_due(state: State, height: int, task_hash: bytes) -> None:
    """Append a task to the ones due at `height`."""
    key = due_key(height)
    _list_append(state, key, key, task_hash)


def clear_due(state: State, height: int) -> None:
    key = due_key(height)
    _list_clear(state, key, key)


# Undecided work per node (PROTOCOL 4.11: the Unstake guard)


def busy_key(address: str) -> bytes:
    return _addr_key(BUSY, address)


def get_busy(state: Reader, address: str) -> int:
    raw = state.get(busy_key(address))
    return 0 if raw is None else int(raw)


def add_busy(state: State, address: str, delta: int) -> None:
    count = get_busy(state, address) + delta
    assert count >= 0, f"undecided work of {address} below zero"
    if count:
        state.put(busy_key(address), str(count).encode())
    else:
        state.delete(busy_key(address))


# Supply counters (PROTOCOL 4.10)


def get_supply(state: Reader) -> tuple[int, int, int]:
    """(genesis supply, minted, burned)."""
    obj = _load(state.get(SUPPLY))
    if obj is None:
        return (0, 0, 0)
    return (int(obj["genesis"]), int(obj["minted"]), int(obj["burned"]))


def put_supply(state: State, genesis: int, minted: int, burned: int) -> None:
    state.put(
        SUPPLY,
        _dump({"genesis": str(genesis), "minted": str(minted), "burned": str(burned)}),
    )
