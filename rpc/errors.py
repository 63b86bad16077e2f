"""The one error table: chain exceptions -> JSON-RPC errors (PROTOCOL 5.3).

Every error has a code, a message and a `data` object. Anything not in the table is a bug
and answers -32603 with no details (the traceback goes to the node's log, never to the
client).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain.protocol.errors import (
    ChainError,
    DuplicateSubmission,
    InsufficientBalance,
    InvalidParams,
    InvalidSignature,
    InvalidTransaction,
    MempoolFull,
    NonceMismatch,
    NotEligible,
    NotFound,
    TaskNotFound,
    UnknownTask,
)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


@dataclass(frozen=True, slots=True)
class RpcErrorSpec:
    code: int
    message: str


# Order matters: the first class in the table that the exception is an instance of wins.
ERROR_TABLE: tuple[tuple[type[ChainError], RpcErrorSpec], ...] = (
    (NonceMismatch, RpcErrorSpec(-32000, "Invalid nonce provided")),
    (UnknownTask, RpcErrorSpec(-32001, "Invalid requestHash provided")),
    (InsufficientBalance, RpcErrorSpec(-32002, "Insufficient balance")),
    (TaskNotFound, RpcErrorSpec(-32003, "Invalid requestHash")),
    (InvalidSignature, RpcErrorSpec(-32004, "Invalid signature")),
    (NotEligible, RpcErrorSpec(-32005, "Not eligible")),
    (DuplicateSubmission, RpcErrorSpec(-32006, "Duplicate submission")),
    (MempoolFull, RpcErrorSpec(-32007, "Mempool full")),
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
