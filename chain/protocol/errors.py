"""The one exception tree of the chain.

Every failure the chain can report derives from `ChainError`. Each class carries typed
attributes and a `data()` dict that tells a caller what was wrong; `rpc/errors.py` maps the
classes to JSON-RPC codes (PROTOCOL 5.3) in one table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ChainError(Exception):
    """Root of every error the chain raises on purpose."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def data(self) -> dict[str, Any]:
        return {"reason": self.reason}


class InvalidTransaction(ChainError):
    """A transaction or call that breaks a rule. It changes nothing."""


class InvalidParams(InvalidTransaction):
    """A parameter is missing, of the wrong type, or out of range."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f"{param}: {reason}")
        self.param = param
        self.detail = reason

    def data(self) -> dict[str, Any]:
        return {"param": self.param, "reason": self.detail}


class NonceMismatch(InvalidTransaction):
    def __init__(self, address: str, expected: int, got: int) -> None:
        super().__init__(f"nonce {got} is not the next nonce {expected} of {address}")
        self.address = address
        self.expected = expected
        self.got = got

    def data(self) -> dict[str, Any]:
        return {"address": self.address, "expected": self.expected, "got": self.got}


class UnknownTask(InvalidTransaction):
    """A result or verdict names a task the chain does not know."""

    def __init__(self, task_hash: str) -> None:
        super().__init__(f"no task {task_hash}")
        self.task_hash = task_hash

    def data(self) -> dict[str, Any]:
        return {"taskHash": self.task_hash, "reason": self.reason}


class InsufficientBalance(InvalidTransaction):
    def __init__(self, address: str, needed: int, available: int, what: str = "balance") -> None:
        super().__init__(f"{address} needs {needed} but has {available} in {what}")
        self.address = address
        self.needed = needed
        self.available = available
        self.what = what

    def data(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "needed": str(self.needed),
            "available": str(self.available),
            "of": self.what,
        }


class InvalidSignature(InvalidTransaction):
    """A signature that is missing, malformed, or recovers to another address than it must.

    For another address it says what the node signed over: the chain (`chain_id`) and, for
    an EIP-712 message, the `domain` and its `domain_type`; for a personal_sign text, the
    `text` expected and its `text_format`."""

    def __init__(
        self,
        reason: str,
        expected: str | None = None,
        recovered: str | None = None,
        *,
        chain_id: int | None = None,
        domain: Mapping[str, Any] | None = None,
        domain_type: str | None = None,
        text: str | None = None,
        text_format: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.expected = expected
        self.recovered = recovered
        self.chain_id = chain_id
        self.domain = dict(domain) if domain is not None else None
        self.domain_type = domain_type
        self.text = text
        self.text_format = text_format

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason}
        named = {
            "expected": self.expected,
            "recovered": self.recovered,
            "chainId": self.chain_id,
            "domain": self.domain,
            "domainType": self.domain_type,
            "text": self.text,
            "textFormat": self.text_format,
        }
        out.update((key, value) for key, value in named.items() if value is not None)
        return out


class NotEligible(InvalidTransaction):
    def __init__(self, address: str, reason: str) -> None:
        super().__init__(reason)
        self.address = address

    def data(self) -> dict[str, Any]:
        return {"address": self.address, "reason": self.reason}


class DuplicateSubmission(InvalidTransaction):
    def __init__(self, tx_hash: str, reason: str) -> None:
        super().__init__(reason)
        self.tx_hash = tx_hash

    def data(self) -> dict[str, Any]:
        return {"txHash": self.tx_hash, "reason": self.reason}


class TaskClosed(InvalidTransaction):
    """A well-formed result or verdict that comes too late: no open slot, the result is
    decided, or the deadline passed. The RPC answers `false`; in a block the tx is `late`."""

    def __init__(self, task_hash: str, reason: str) -> None:
        super().__init__(reason)
        self.task_hash = task_hash

    def data(self) -> dict[str, Any]:
        return {"taskHash": self.task_hash, "reason": self.reason}


class TaskNotFound(ChainError):
    """queryTask for a hash that is malformed or names no task."""

    def __init__(self, task_hash: str, reason: str = "no such task") -> None:
        super().__init__(reason)
        self.task_hash = task_hash

    def data(self) -> dict[str, Any]:
        return {"requestHash": self.task_hash, "reason": self.reason}


class NotFound(ChainError):
    """A block or transaction that does not exist (reads answer with invalid params)."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(reason)
        self.param = param

    def data(self) -> dict[str, Any]:
        return {"param": self.param, "reason": self.reason}


class DevOnly(ChainError):
    """A dev control called on a chain that has none: answered as a method it does not
    have, with the reason (PROTOCOL 5.9)."""

    def __init__(self, method: str, reason: str) -> None:
        super().__init__(reason)
        self.method = method

    def data(self) -> dict[str, Any]:
        return {"method": self.method, "reason": self.reason}


class MempoolFull(ChainError):
    """The mempool is at one of its limits: a count of transactions, their bytes, or the
    transactions one sender may have waiting (`sender` set)."""

    def __init__(
        self,
        capacity: int,
        held: int,
        capacity_bytes: int,
        held_bytes: int,
        by_bytes: bool,
        *,
        sender: str | None = None,
        max_per_sender: int = 0,
        pending: int = 0,
    ) -> None:
        if sender is not None:
            reason = (
                f"{sender} has {pending} transactions waiting in the mempool, the most one "
                f"sender may have ({max_per_sender}); send more once some are in a block"
            )
        elif by_bytes:
            reason = (
                f"the mempool's transactions take {held_bytes} of its {capacity_bytes} bytes; "
                "this one does not fit"
            )
        else:
            reason = f"the mempool holds its maximum of {capacity} transactions"
        super().__init__(reason)
        self.capacity = capacity
        self.held = held
        self.capacity_bytes = capacity_bytes
        self.held_bytes = held_bytes
        self.by_bytes = by_bytes
        self.sender = sender
        self.max_per_sender = max_per_sender
        self.pending = pending

    @property
    def limit(self) -> str:
        if self.sender is not None:
            return "perSender"
        return "bytes" if self.by_bytes else "transactions"

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "limit": self.limit,
            "capacity": self.capacity,
            "held": self.held,
            "capacityBytes": self.capacity_bytes,
            "heldBytes": self.held_bytes,
        }
        if self.sender is not None:
            out |= {"sender": self.sender, "max": self.max_per_sender, "pending": self.pending}
        return out | {"reason": self.reason, "retry": True}


class Overloaded(ChainError):
    """The tasks open would take longer to verify than a new one may wait (PROTOCOL 5.11):
    the validator takes no new task now; retry after `retry_after_s`."""

    def __init__(self, open_tasks: int, max_open: int, verified_per_s: float, retry_s: float):
        super().__init__(
            f"overloaded: {open_tasks} tasks are open, at most {max_open} may be while this "
            f"network verifies {verified_per_s:.1f} per second, or a new task would not be "
            f"verified before its deadline; retry in {retry_s:.1f} s"
        )
        self.open_tasks = open_tasks
        self.max_open = max_open
        self.verified_per_s = verified_per_s
        self.retry_after_s = retry_s

    def data(self) -> dict[str, Any]:
        return {
            "limit": "openTasks",
            "openTasks": self.open_tasks,
            "maxOpenTasks": self.max_open,
            "verifiedPerS": round(self.verified_per_s, 2),
            "retryAfterMs": int(self.retry_after_s * 1000),
            "reason": self.reason,
            "retry": True,
        }


class GenesisError(ChainError):
    """genesis.json is missing a field or holds a bad value; the node does not start."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"genesis field '{field}': {reason}")
        self.field = field


class StorageError(ChainError):
    """The ledger cannot be opened or is inconsistent."""


class AppHashMismatch(ChainError):
    """Re-executing a block gave another state than the block commits to."""


class InvalidPeerMessage(ChainError):
    """A message from another validator that is malformed, badly signed or not for us.

    It is dropped and logged; it never reaches the consensus state machine.
    """


class ConflictingVote(ChainError):
    """This validator already signed a different vote at this (height, round, type)."""

    def __init__(self, height: int, round_: int, vote_type: str, signed: bytes, asked: bytes):
        super().__init__(
            f"refusing to sign a {vote_type} for {_hash_or_nil(asked)} at height {height} "
            f"round {round_}: this validator already signed one for {_hash_or_nil(signed)}"
        )
        self.height = height
        self.round = round_
        self.vote_type = vote_type


def _hash_or_nil(value: bytes) -> str:
    return "0x" + value.hex() if value else "nil"
