"""The one error table: chain exceptions -> JSON-RPC errors (PROTOCOL 5.3).

Every error has a code, a message and a `data` object. Anything not in the table is a bug
and answers -32603 with no details (the traceback goes to the node's log, never to the
client).

Each code is named here once; the client (`rpc.client`) and the resource node import the
names, so this module imports nothing but the chain's exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain.protocol.errors import (
    ChainError,
    DevOnly,
    DuplicateSubmission,
    InsufficientBalance,
    InvalidParams,
    InvalidSignature,
    InvalidTransaction,
    MempoolFull,
    NonceMismatch,
    NotEligible,
    NotFound,
    Overloaded,
    TaskNotFound,
    UnknownTask,
)

# JSON-RPC 2.0
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# The chain's own (PROTOCOL 5.3)
NONCE_MISMATCH = -32000
UNKNOWN_TASK = -32001
INSUFFICIENT_BALANCE = -32002
TASK_NOT_FOUND = -32003
INVALID_SIGNATURE = -32004
NOT_ELIGIBLE = -32005
DUPLICATE_SUBMISSION = -32006
MEMPOOL_FULL = -32007


@dataclass(frozen=True, slots=True)
class RpcErrorSpec:
    code: int
    message: str


# Order matters: the first class in the table that the exception is an instance of wins.
ERROR_TABLE: tuple[tuple[type[ChainError], RpcErrorSpec], ...] = (
    (NonceMismatch, RpcErrorSpec(NONCE_MISMATCH, "Invalid nonce provided")),
    (UnknownTask, RpcErrorSpec(UNKNOWN_TASK, "Invalid requestHash provided")),
    (InsufficientBalance, RpcErrorSpec(INSUFFICIENT_BALANCE, "Insufficient balance")),
    (TaskNotFound, RpcErrorSpec(TASK_NOT_FOUND, "Invalid requestHash")),
    (InvalidSignature, RpcErrorSpec(INVALID_SIGNATURE, "Invalid signature")),
    (NotEligible, RpcErrorSpec(NOT_ELIGIBLE, "Not eligible")),
    (DuplicateSubmission, RpcErrorSpec(DUPLICATE_SUBMISSION, "Duplicate submission")),
    (MempoolFull, RpcErrorSpec(MEMPOOL_FULL, "Mempool full")),
    (Overloaded, RpcErrorSpec(MEMPOOL_FULL, "Mempool full")),
    (DevOnly, RpcErrorSpec(METHOD_NOT_FOUND, "Method not found")),
    (InvalidParams, RpcErrorSpec(INVALID_PARAMS, "Invalid params")),
    (NotFound, RpcErrorSpec(INVALID_PARAMS, "Invalid params")),
    (InvalidTransaction, RpcErrorSpec(INVALID_PARAMS, "Invalid params")),
)


@dataclass(frozen=True, slots=True)
class RpcFailure:
    code: int
    message: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "data": self.data}


def error_for(exc: ChainError) -> RpcFailure:
    """The JSON-RPC error for a chain exception; -32603 for anything outside the table."""
    for cls, spec in ERROR_TABLE:
        if isinstance(exc, cls):
            return RpcFailure(spec.code, spec.message, exc.data())
    return internal_error()


def internal_error() -> RpcFailure:
    return RpcFailure(INTERNAL_ERROR, "Internal error", {"reason": "the node failed; see its log"})


def parse_error(reason: str) -> RpcFailure:
    return RpcFailure(PARSE_ERROR, "Parse error", {"reason": reason})


def invalid_request(reason: str, **extra: Any) -> RpcFailure:
    return RpcFailure(INVALID_REQUEST, "Invalid Request", {"reason": reason, **extra})


def method_not_found(method: str) -> RpcFailure:
    return RpcFailure(
        METHOD_NOT_FOUND, "Method not found", {"method": method, "reason": "no such method"}
    )
