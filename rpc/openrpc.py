"""The OpenRPC 1.2.6 document of the validator's JSON-RPC API (PROTOCOL 5.8).

The document is generated from the method table `rpc.methods.METHODS`: each method's params
are the ones the table binds, in positional order, required as the table requires them (a
transaction method's are its message type's EIP-712 fields under their wire names, then
`signature`); its result is a JSON Schema (draft 07) over the shared `components.schemas`;
its errors are references to `components.errors`, which holds every code of `rpc.errors`.
`rpc.discover` answers it; `docs/openrpc.json` is a copy, written by
`python -m rpc.openrpc --write` and compared by `python -m rpc.openrpc --check`.

What the table cannot say (a summary, a description, the result's schema, the errors a
method's rules can raise, the schemas of a read method's params) is in `METHOD_DOCS`, one row
per method; an alias of `api.ALIASES` is described by its method's row. A method in METHODS
without a row makes `build_document` raise, naming it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from chain.protocol.genesis import PARAM_FIELDS, WRITTEN_WHEN_TRUE
from chain.protocol.types import MESSAGE_TYPES, Message, ResultStatus, TaskStatus
from rpc import api, errors
from rpc.methods import (
    MAX_AO_PAGE,
    MAX_DEV_MINE,
    MAX_PENDING_LIMIT,
    MAX_TASKS_PER_CALL,
    MAX_TIME_STEP_S,
    METHODS,
    PENDING_TIMESTAMP_WINDOW_S,
    MethodSpec,
)

OPENRPC_VERSION = "1.2.6"
TITLE = "inferchain validator JSON-RPC"
DISTRIBUTION = "inferchain"
ROOT = Path(__file__).resolve().parents[1]
DOCUMENT_PATH = ROOT / "docs" / "openrpc.json"
# The codes JSON-RPC 2.0 reserves, where every code of `rpc.errors` lies.
RESERVED_CODES = range(-32768, -32000 + 1)
# The service discovery method's result, as the OpenRPC specification gives it.
META_SCHEMA_URL = "https://raw.githubusercontent.com/open-rpc/meta-schema/master/schema.json"

Schema = dict[str, Any]


# JSON Schema helpers


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def obj(properties: Mapping[str, Schema], optional: tuple[str, ...] = ()) -> Schema:
    """An object with exactly these members, all of them present but the `optional` ones."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


INTEGER: Schema = {"type": "integer", "minimum": 0}
STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
DECIMAL_PATTERN = "^(0|[1-9][0-9]{0,77})$"


def limit(maximum: int) -> Schema:
    return {"type": "integer", "minimum": 1, "maximum": maximum, "default": 100}


# The shared schemas (components.schemas)

VOTE: Schema = obj(
    {
        "chainId": INTEGER,
        "height": ref("Height"),
        "round": INTEGER,
        "type": {"enum": ["prevote", "precommit"]},
        "blockHash": ref("HexBytes"),
        "validator": ref("Address"),
        "signature": ref("HexBytes"),
    }
)

BLOCK: Schema = obj(
    {
        "height": ref("Height"),
        "hash": ref("Hash"),
        "time": INTEGER,
        "proposer": ref("Address"),
        "prevHash": ref("Hash"),
        "txs": array(ref("Hash")),
        "appHash": ref("Hash"),
        "lastCommit": array(ref("Vote")),
        "commit": array(ref("Vote")),
    }
)

TRANSACTION: Schema = obj(
    {
        "txHash": ref("Hash"),
        "type": {"enum": sorted(MESSAGE_TYPES)},
        "signer": ref("Address"),
        "tx_type": {"enum": sorted({cls.TX_TYPE for cls in MESSAGE_TYPES.values()})},
        "associated_task": nullable(ref("Hash")),
        "payload": {
            "oneOf": [
                {"type": "object", "maxProperties": 0},
                obj({"inference_result": STRING, "proof_of_inference": STRING}),
            ]
        },
        "blockHeight": nullable(ref("Height")),
        "index": nullable(INTEGER),
        "status": {"enum": ["pending", "committed", "late"]},
        "params": {
            "type": "object",
            "required": ["signature"],
            "description": "the signed params under their wire names, with `signature`",
        },
    }
)

ACCOUNT: Schema = obj(
    {
        "address": ref("Address"),
        "balance": ref("Amount"),
        "stake": ref("Amount"),
        "nonce": INTEGER,
        "jailed": BOOLEAN,
        "resourceNode": nullable(obj({"models": STRING, "endpoint": STRING})),
        "blockHeight": ref("Height"),
        "pendingNonce": INTEGER,
    },
    optional=("pendingNonce",),
)

SECRETS: Schema = obj(
    {
        "base": ref("Height"),
        "head": ref("Hash"),
        "revealed": ref("Hash"),
        "revealedHeight": ref("Height"),
    }
)

VALIDATOR: Schema = obj(
    {
        "address": ref("Address"),
        "consensusPubKey": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "stake": ref("Amount"),
        "url": STRING,
    }
)

RESOURCE_NODE: Schema = obj(
    {
        "address": ref("Address"),
        "stake": ref("Amount"),
        "models": STRING,
        "endpoint": STRING,
        "jailed": BOOLEAN,
        "secrets": nullable(ref("Secrets")),
    }
)

TASK_STATS: Schema = obj({"total": INTEGER, **{str(status): INTEGER for status in TaskStatus}})

_PARAM_KINDS: dict[str, Schema] = {
    "int": INTEGER,
    "amount": ref("Amount"),
    "bps": {"type": "integer", "minimum": 0, "maximum": 10000},
    "bool": BOOLEAN,
}
PARAMS: Schema = obj(
    {key: _PARAM_KINDS[kind] for key, (_attr, kind) in PARAM_FIELDS.items()},
    optional=tuple(WRITTEN_WHEN_TRUE),
)

VERDICT_PROPERTIES: dict[str, Schema] = {
    "height": ref("Height"),
    "seq": INTEGER,
    "txHash": ref("Hash"),
    "valid": BOOLEAN,
    "verifier": ref("Address"),
}

EXECUTION_INFO: Schema = obj(
    {
        "rank": INTEGER,
        "resourceNode": ref("Address"),
        "result": ref("Bytes"),
        "proof": ref("Bytes"),
        "seed": ref("Amount"),
        "txHash": ref("Hash"),
        "height": ref("Height"),
        "status": {"enum": [int(status) for status in ResultStatus]},
        "decidedHeight": nullable(ref("Height")),
        "verifications": array(ref("Verdict")),
        "assignment": obj(
            {
                "seed": nullable(ref("Hash")),
                "rounds": array(array(ref("Address"))),
                "complete": BOOLEAN,
            }
        ),
        "forcedError": nullable(BOOLEAN),
        "postprocessed": obj(
            {"kind": {"enum": ["json", "text"]}, "value": {}, "error": nullable(STRING)}
        ),
    }
)

SETTLEMENT: Schema = obj(
    {
        "height": ref("Height"),
        "fee": ref("Amount"),
        "networkReward": ref("Amount"),
        "slashed": array(
            obj(
                {
                    "address": ref("Address"),
                    "amount": ref("Amount"),
                    "reason": {"enum": ["result", "verdict", "lazy"]},
                }
            )
        ),
        "payouts": array(
            obj(
                {
                    "address": ref("Address"),
                    "amount": ref("Amount"),
                    "role": {"enum": ["compute", "verify", "canary"]},
                    "rank": INTEGER,
                }
            )
        ),
        "refund": ref("Amount"),
        "burned": ref("Amount"),
    }
)

TASK_PROPERTIES: dict[str, Schema] = {
    "taskHash": ref("Hash"),
    "requestHash": ref("Hash"),
    "txHash": ref("Hash"),
    "status": {"enum": [str(status) for status in TaskStatus]},
    "sender": ref("Address"),
    "nonce": INTEGER,
    "schema": ref("Bytes"),
    "targetCount": INTEGER,
    "prompts": ref("Bytes"),
    "modelOptions": ref("Bytes"),
    "SID": ref("Hash"),
    "feeParams": ref("Bytes"),
    "fee": ref("Amount"),
    "model": nullable(STRING),
    "createdHeight": nullable(ref("Height")),
    "createdAt": nullable(INTEGER),
    "finishedHeight": nullable(ref("Height")),
    "finishedAt": nullable(INTEGER),
    "response": nullable(STRING),
    "verificationCount": INTEGER,
    "executionInfo": array(ref("ExecutionInfo")),
    "verificationInfos": array(obj({**VERDICT_PROPERTIES, "submitter": ref("Address")})),
    "settlement": nullable(ref("Settlement")),
}

# What a block changed (getBlockEvents), the events of the subscriptions (PROTOCOL 5.6)

BLOCK_EVENT: Schema = obj(
    {
        "topic": {"enum": ["newBlocks"]},
        "height": ref("Height"),
        "hash": ref("Hash"),
        "time": INTEGER,
        "proposer": ref("Address"),
        "txs": INTEGER,
        "appHash": ref("Hash"),
    }
)

TX_EVENT: Schema = obj(
    {
        "topic": {"enum": ["tx"]},
        "height": ref("Height"),
        "txHash": ref("Hash"),
        "index": INTEGER,
        "status": {"enum": ["committed", "late"]},
        "type": {"enum": sorted(MESSAGE_TYPES)},
        "sender": ref("Address"),
        "taskHash": ref("Hash"),
    },
    optional=("taskHash",),
)

TASK_EVENT: Schema = obj(
    {
        "topic": {"enum": ["task"]},
        "height": ref("Height"),
        "taskHash": ref("Hash"),
        "sender": ref("Address"),
        "event": {"enum": ["submitted", "result", "verdict", "decided", "settled"]},
        "model": nullable(STRING),
        "resourceNode": ref("Address"),
        "rank": INTEGER,
        "result": ref("Bytes"),
        "verifier": ref("Address"),
        "valid": BOOLEAN,
        "seq": INTEGER,
        "status": {
            "oneOf": [
                {"enum": [int(status) for status in ResultStatus]},
                {"enum": [str(status) for status in TaskStatus]},
            ],
            "description": "decided: the result's status; settled: the task's",
        },
        "response": nullable(STRING),
        "verificationCount": INTEGER,
        "settlement": nullable(ref("Settlement")),
    },
    optional=(
        "model",
        "resourceNode",
        "rank",
        "result",
        "verifier",
        "valid",
        "seq",
        "status",
        "response",
        "verificationCount",
        "settlement",
    ),
)

BLOCK_EVENTS: Schema = obj(
    {
        "height": ref("Height"),
        "events": array(
            {"oneOf": [ref("BlockEvent"), ref("TxEvent"), ref("TaskEvent")]},
        ),
    }
)

PENDING_TASK: Schema = obj(
    {
        **TASK_PROPERTIES,
        "seed": ref("Amount"),
        "compute": BOOLEAN,
        "verify": array(
            obj(
                {
                    "submitter": ref("Address"),
                    "result": ref("Bytes"),
                    "seed": ref("Amount"),
                    "rank": INTEGER,
                }
            )
        ),
        "reveal": BOOLEAN,
    }
)

AO_TAGS: Schema = array({"type": "array", "items": STRING, "minItems": 2, "maxItems": 2})

AO_PROCESS: Schema = obj(
    {
        "id": ref("AoId"),
        "owner": STRING,
        "module": STRING,
        "moduleId": nullable(ref("AoId")),
        "scheduler": ref("Address"),
        "memoryLimit": INTEGER,
        "computeLimit": INTEGER,
        "cronInterval": STRING,
        "tags": AO_TAGS,
        "data": STRING,
        "height": ref("Height"),
        "timestamp": INTEGER,
        "slots": INTEGER,
        "terminated": BOOLEAN,
        "cronTicks": INTEGER,
        "spawnId": ref("AoId"),
    },
    optional=("spawnId",),
)

AO_MESSAGE: Schema = obj(
    {
        "id": STRING,
        "process": ref("AoId"),
        "slot": INTEGER,
        "owner": STRING,
        "from": STRING,
        "fromProcess": nullable(STRING),
        "tags": AO_TAGS,
        "data": STRING,
        "height": ref("Height"),
        "timestamp": INTEGER,
        "cron": BOOLEAN,
    }
)

SCHEMAS: dict[str, Schema] = {
    "Address": {
        "type": "string",
        "pattern": "^0x[0-9a-fA-F]{40}$",
        "description": "20 bytes, 0x and 40 hex digits: EIP-55 in answers; any case in "
        "params, where a mixed-case address must carry its right checksum (PROTOCOL 1)",
    },
    "Hash": {
        "type": "string",
        "pattern": "^0x[0-9a-fA-F]{64}$",
        "description": "32 bytes, 0x and 64 hex digits: lowercase in answers, any case in params",
    },
    "HexBytes": {
        "type": "string",
        "pattern": "^0x([0-9a-fA-F]{2})*$",
        "description": "bytes as 0x and two hex digits each",
    },
    "Signature": {
        "type": "string",
        "pattern": "^0x[0-9a-fA-F]{130}$",
        "description": "a 65-byte secp256k1 signature r || s || v (PROTOCOL 3)",
    },
    "Bytes": {
        "type": "string",
        "description": "a bytes field: the bytes it spells when 0x and an even number of hex "
        "digits, else the UTF-8 encoding of the text; echoed back as given (PROTOCOL 1)",
    },
    "Amount": {
        "type": "string",
        "pattern": DECIMAL_PATTERN,
        "description": "an unsigned integer as a decimal string (base units for amounts)",
    },
    "UInt64": {
        "oneOf": [
            {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
            {"type": "string", "pattern": DECIMAL_PATTERN},
        ],
        "description": "an unsigned integer below 2^64, a JSON integer or a decimal string",
    },
    "UInt256": {
        "oneOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": DECIMAL_PATTERN},
        ],
        "description": "an unsigned integer below 2^256, a JSON integer (read exactly at any "
        "size) or a decimal string (PROTOCOL 1)",
    },
    "Height": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    "BlockTag": {
        "oneOf": [ref("Height"), {"enum": ["latest", "earliest"]}],
        "description": "a block height, or latest (the head) or earliest (0)",
    },
    "AoId": {
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]{43}$",
        "description": "an AO id: 43 characters of base64url standing for 32 bytes (PROTOCOL 8.1)",
    },
    "Vote": VOTE,
    "Block": BLOCK,
    "BlockEvent": BLOCK_EVENT,
    "TxEvent": TX_EVENT,
    "TaskEvent": TASK_EVENT,
    "BlockEvents": BLOCK_EVENTS,
    "Transaction": TRANSACTION,
    "Account": ACCOUNT,
    "Secrets": SECRETS,
    "Validator": VALIDATOR,
    "ResourceNode": RESOURCE_NODE,
    "TaskStats": TASK_STATS,
    "Params": PARAMS,
    "Verdict": obj(VERDICT_PROPERTIES),
    "ExecutionInfo": EXECUTION_INFO,
    "Settlement": SETTLEMENT,
    "Task": obj(TASK_PROPERTIES),
    "PendingTask": PENDING_TASK,
    "TaskReceipt": obj(
        {"txHash": ref("Hash"), "taskHash": ref("Hash"), "requestHash": ref("Hash")}
    ),
    "TxReceipt": obj({"txHash": ref("Hash")}),
    "AoReceipt": obj({"txHash": ref("Hash"), "id": ref("AoId")}),
    "AoProcess": AO_PROCESS,
    "AoModule": obj({"id": ref("AoId"), "module": STRING, "type": {"enum": ["Module"]}}),
    "AoMessage": AO_MESSAGE,
    "AoSchedule": obj({"messages": array(ref("AoMessage")), "next": nullable(INTEGER)}),
}


# The params of transaction methods: their message type's fields (PROTOCOL 3)

ABI_SCHEMAS: dict[str, Schema] = {
    "address": ref("Address"),
    "uint64": ref("UInt64"),
    "uint256": ref("UInt256"),
    "bytes": ref("Bytes"),
    "string": STRING,
    "bytes32": ref("Hash"),
    "bool": BOOLEAN,
}

FIELD_DESCRIPTIONS: dict[str, str] = {
    "sender": "the account that signs and pays",
    "nonce": "the sender's next nonce (PROTOCOL 3). Required in a signed call; an unlocked dev "
    "account's unsigned call may leave it out by name, and the node fills the next nonce "
    "counting the mempool (PROTOCOL 5.4). A positional call gives it, as it gives every "
    "param before the last one it sends",
    "schema": "how the results are read: a name (text, json, ...) or a JSON object (PROTOCOL 4)",
    "targetCount": "how many results the task wants, from 1 to maxTargetCount",
    "prompts": "the task's input",
    "modelOptions": "the model and its options; a JSON object's `model` names the model",
    "SID": "a session id; 32 zero bytes when left out",
    "feeParams": "a JSON object, `maxFee` the most the sender pays; empty when left out",
    "taskHash": "the task (its SubmitTask's EIP-712 digest)",
    "resourceNode": "the resource node that signs",
    "result": "the node's result",
    "proof": "a proof of inference; empty when left out",
    "verifier": "the verifier that signs, assigned to the result (PROTOCOL 4.5)",
    "submitter": "the resource node whose result is judged",
    "valid": "the verdict",
    "to": "the receiving account",
    "amount": "base units, more than 0",
    "models": "a comma-separated list of model names, or *",
    "endpoint": "empty, or the node's http(s) URL of at most 256 characters",
    "head": "the head of the node's hash chain of secrets (PROTOCOL 4.13)",
    "height": "the height whose secret this is (PROTOCOL 4.13)",
    "secret": "the secret of `height`, which hashes to the one revealed before it",
    "module": "Lua source, or the id of a published module (PROTOCOL 8.2)",
    "scheduler": "the address that may relay the process's outgoing messages",
    "memoryLimit": "bytes, from 64 KiB to 1 GiB",
    "computeLimit": "instructions, from 1,000 to 10^12",
    "cronInterval": "empty, or N-blocks, N-seconds, N-minutes or N-hours (PROTOCOL 8.4)",
    "tags": "AO's tags, a JSON list of {name, value} strings; [] when left out",
    "data": "text; empty when left out",
    "target": "the process the message goes to",
    "fromProcess": "empty, or the process that sent the message, relayed by its scheduler",
    "item": "an ANS-104 data item, its bytes (PROTOCOL 8.3)",
    "process": "the process to end",
}

SIGNATURE_DESCRIPTION = (
    "the EIP-712 signature of the message (PROTOCOL 3); absent or null for an unsigned call of "
    "an unlocked dev account, which the node signs (PROTOCOL 5.4)"
)


# Each method's row


@dataclass(frozen=True, slots=True)
class Param:
    """A read method's param: its schema and what it is."""

    schema: Schema
    description: str


@dataclass(frozen=True, slots=True)
class MethodDoc:
    """What the method table cannot say of a method: its summary and description, its result
    (a name and a schema), the codes its rules may answer beyond -32602, and for a read
    method the schema of each param it binds."""

    summary: str
    description: str
    result_name: str
    result: Schema
    errors: tuple[int, ...] = ()
    params: Mapping[str, Param] = field(default_factory=dict)


SNAPSHOT_ID = {
    "oneOf": [
        {"type": "string", "pattern": "^0x[0-9a-fA-F]{1,16}$"},
        {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
    ]
}

TX_ERRORS = (errors.INVALID_SIGNATURE, errors.MEMPOOL_FULL)  # every transaction method's

ADDRESS_PARAM = Param(ref("Address"), "the account")


def tx_doc(
    summary: str, description: str, result_name: str, result: Schema, *codes: int
) -> MethodDoc:
    return MethodDoc(summary, description, result_name, result, (*codes, *TX_ERRORS))


METHOD_DOCS: dict[str, MethodDoc] = {
    # Reads
    api.CHAIN_ID: MethodDoc(
        "The chain id",
        "The chain id of the genesis, which every EIP-712 signature commits to (PROTOCOL 5.2).",
        "chainId",
        INTEGER,
    ),
    api.GENESIS_HASH: MethodDoc(
        "The genesis hash",
        "keccak-256 of the canonical genesis JSON (PROTOCOL 2); it changes when a chain is reset.",
        "genesisHash",
        ref("Hash"),
    ),
    api.GET_PARAMS: MethodDoc(
        "The genesis params the chain runs with",
        "Every genesis param, as in genesis.json, amounts as decimal strings (an extension, "
        "PROTOCOL 5.2).",
        "params",
        ref("Params"),
    ),
    api.BLOCK_NUMBER: MethodDoc(
        "The head's height",
        "The height of the last committed block.",
        "height",
        ref("Height"),
    ),
    api.GET_BLOCK: MethodDoc(
        "A committed block",
        "The block at a height, with the precommits that committed it (`commit`). A height "
        "above the head is -32602 naming `height`.",
        "block",
        ref("Block"),
        params={"height": Param(ref("BlockTag"), "the block's height; latest when left out")},
    ),
    api.GET_BLOCK_EVENTS: MethodDoc(
        "What a committed block changed",
        "The block's events as the subscriptions give them (PROTOCOL 5.6): the block, each of "
        "its transactions, then what happened in it to each task it changed (an extension, "
        "PROTOCOL 5.2). A height above the head is -32602 naming `height`.",
        "blockEvents",
        ref("BlockEvents"),
        params={"height": Param(ref("BlockTag"), "the block's height; latest when left out")},
    ),
    api.GET_TRANSACTION: MethodDoc(
        "A transaction, pending or in a block",
        "The GET /tx object plus `txHash`, `type`, the signed `params` and `index` (PROTOCOL "
        "5.2). A hash no transaction has is -32602 naming `txHash`.",
        "transaction",
        ref("Transaction"),
        params={"txHash": Param(ref("Hash"), "the transaction's hash")},
    ),
    api.GET_ACCOUNT: MethodDoc(
        "An account",
        "Balance, stake, nonce and resource-node record, at the head (with `pendingNonce`, the "
        "next nonce counting the mempool) or at the end of a block.",
        "account",
        ref("Account"),
        params={
            "address": ADDRESS_PARAM,
            "blockHeight": Param(
                nullable(ref("BlockTag")),
                "the state at the end of this block; the head's when left out, null or latest",
            ),
        },
    ),
    api.GET_VALIDATORS: MethodDoc(
        "The validators",
        "The genesis validators with their current stake (PROTOCOL 6.1).",
        "validators",
        array(ref("Validator")),
    ),
    api.GET_RESOURCE_NODES: MethodDoc(
        "The registered resource nodes",
        "Every registered resource node, by address, with its committed secrets (PROTOCOL "
        "4.13) or null.",
        "resourceNodes",
        array(ref("ResourceNode")),
    ),
    api.TASK_STATS: MethodDoc(
        "How many committed tasks have each status",
        "The committed tasks counted by status, and their total.",
        "taskStats",
        ref("TaskStats"),
    ),
    api.GET_TASKS_BY_SENDER: MethodDoc(
        "A sender's committed tasks",
        "The sender's committed tasks as queryTask objects, by nonce (an extension, PROTOCOL 5.2).",
        "tasks",
        array(ref("Task")),
        params={
            "address": Param(ref("Address"), "the tasks' sender"),
            "fromNonce": Param(ref("UInt64"), "the first nonce; 0 when left out"),
            "limit": Param(limit(MAX_TASKS_PER_CALL), "at most this many tasks"),
        },
    ),
    api.QUERY_TASK: MethodDoc(
        "A task",
        "A task, committed or waiting in the mempool (then `submitted` with `createdHeight` "
        "null), with its results, verdicts and settlement (PROTOCOL 5.1). A malformed or "
        "unknown hash is -32003.",
        "task",
        ref("Task"),
        (errors.TASK_NOT_FOUND,),
        params={"taskHash": Param(ref("Hash"), "the task's hash; by name also `requestHash`")},
    ),
    api.QUERY_PENDING_TASKS: MethodDoc(
        "The tasks a resource node can act on",
        "The queryTask objects of the open tasks the node may compute, verify or reveal a "
        "secret for, with its seed and its work, in the node's privilege order (PROTOCOL "
        "5.1). A node that cannot act is -32005; a signature that does not recover to "
        "ResourceAddress, or a TimeStamp outside the window, is -32004.",
        "tasks",
        array(ref("PendingTask")),
        (errors.INVALID_SIGNATURE, errors.NOT_ELIGIBLE),
        params={
            "ResourceAddress": Param(ref("Address"), "the resource node"),
            "TimeStamp": Param(
                {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                f"Unix seconds, within {PENDING_TIMESTAMP_WINDOW_S} s of the node's clock "
                "when signed",
            ),
            "Signature": Param(
                nullable(ref("Signature")),
                f"EIP-191 personal_sign of `{api.PENDING_TASKS_TEXT_FORMAT}`; optional",
            ),
            "limit": Param(limit(MAX_PENDING_LIMIT), "at most this many tasks"),
        },
    ),
    # AO (PROTOCOL 8)
    api.AO_PROCESS: MethodDoc(
        "An AO process",
        "A process as the chain scheduled it, with its count of slots; a published module's "
        "id answers {id, module, type}. A malformed or unknown id is -32602 (PROTOCOL 8.1).",
        "process",
        {"oneOf": [ref("AoProcess"), ref("AoModule")]},
        params={"processId": Param(ref("AoId"), "the process (or an alias of it)")},
    ),
    api.AO_PROCESSES: MethodDoc(
        "The AO processes' ids",
        "The ids of the processes in the order they were spawned (PROTOCOL 8.1).",
        "processIds",
        array(ref("AoId")),
        params={
            "from": Param(ref("UInt64"), "the first process's place; 0 when left out"),
            "limit": Param(limit(MAX_AO_PAGE), "at most this many ids"),
        },
    ),
    api.AO_SCHEDULE: MethodDoc(
        "A process's messages in slot order",
        "A page of the process's scheduled messages; `next` is the slot to read from next, "
        "null at the end (PROTOCOL 8.1).",
        "schedule",
        ref("AoSchedule"),
        params={
            "processId": Param(ref("AoId"), "the process (or an alias of it)"),
            "fromSlot": Param(ref("UInt64"), "the first slot; 0 when left out"),
            "limit": Param(limit(MAX_AO_PAGE), "at most this many messages"),
        },
    ),
    api.AO_MESSAGE_BY_ID: MethodDoc(
        "A scheduled AO message",
        "The message with this id, as aoSchedule lists it (PROTOCOL 8.1).",
        "message",
        ref("AoMessage"),
        params={"messageId": Param(ref("AoId"), "the message's id")},
    ),
    # Transactions
    api.SUBMIT_TASK: tx_doc(
        "Submit an inference task",
        "A SubmitTask (PROTOCOL 3, 4.1): the fee moves to the escrow; the answer carries the "
        "task's hash (`requestHash` is the same). Also served as submitRequest.",
        "receipt",
        ref("TaskReceipt"),
        errors.NONCE_MISMATCH,
        errors.INSUFFICIENT_BALANCE,
    ),
    api.TRANSFER: tx_doc(
        "Transfer an amount",
        "A Transfer (PROTOCOL 4.12): the amount moves to `to`, the sender also pays "
        "transferFee, burned.",
        "receipt",
        ref("TxReceipt"),
        errors.NONCE_MISMATCH,
        errors.INSUFFICIENT_BALANCE,
    ),
    api.STAKE: tx_doc(
        "Stake an amount",
        "A Stake (PROTOCOL 4.12): the amount moves from balance to stake; a jailed node staked "
        "back to minNodeStake is released.",
        "receipt",
        ref("TxReceipt"),
        errors.NONCE_MISMATCH,
        errors.INSUFFICIENT_BALANCE,
    ),
    api.UNSTAKE: tx_doc(
        "Unstake an amount",
        "An Unstake (PROTOCOL 4.11, 4.12): the amount moves from stake to balance, within the "
        "unstake guard and a validator's minValidatorStake (-32005).",
        "receipt",
        ref("TxReceipt"),
        errors.NONCE_MISMATCH,
        errors.INSUFFICIENT_BALANCE,
        errors.NOT_ELIGIBLE,
    ),
    api.REGISTER_RESOURCE_NODE: tx_doc(
        "Register a resource node",
        "A RegisterResourceNode (PROTOCOL 4.12): the models it serves and its endpoint; a "
        "validator cannot register (-32005).",
        "receipt",
        ref("TxReceipt"),
        errors.NONCE_MISMATCH,
        errors.NOT_ELIGIBLE,
    ),
    api.SUBMIT_INFERENCE_RESULT: tx_doc(
        "Submit a task's result",
        "A SubmitInferenceResult (PROTOCOL 4.3): true, or false when the task no longer takes "
        "results (then nothing is admitted). Also served as submitResponse.",
        "accepted",
        BOOLEAN,
        errors.UNKNOWN_TASK,
        errors.NOT_ELIGIBLE,
        errors.DUPLICATE_SUBMISSION,
    ),
    api.SUBMIT_VERIFICATION: tx_doc(
        "Submit a verdict on a result",
        "A SubmitVerification (PROTOCOL 4.5) by a verifier assigned to the result: true, or "
        "false when the result no longer takes verdicts (then nothing is admitted).",
        "accepted",
        BOOLEAN,
        errors.UNKNOWN_TASK,
        errors.NOT_ELIGIBLE,
        errors.DUPLICATE_SUBMISSION,
    ),
    api.COMMIT_SECRETS: tx_doc(
        "Commit a resource node's chain of secrets",
        "A CommitSecrets (PROTOCOL 4.12, 4.13), an extension: the chain of secrets starts at "
        "this block; a node with unsettled work cannot commit (-32005).",
        "receipt",
        ref("TxReceipt"),
        errors.NONCE_MISMATCH,
        errors.NOT_ELIGIBLE,
    ),
    api.REVEAL_SECRET: tx_doc(
        "Reveal a resource node's secret",
        "A RevealSecret (PROTOCOL 4.12, 4.13), an extension: the secret of a height, which "
        "hashes to the one revealed before it. It has no nonce.",
        "receipt",
        ref("TxReceipt"),
        errors.NOT_ELIGIBLE,
    ),
    api.AO_SPAWN: tx_doc(
        "Spawn an AO process",
        "An AoSpawn (PROTOCOL 8.2): the process's id is the transaction's AO id; the sender "
        "pays transferFee, burned.",
        "receipt",
        ref("AoReceipt"),
        errors.NONCE_MISMATCH,
        errors.INSUFFICIENT_BALANCE,
        errors.DUPLICATE_SUBMISSION,
    ),
    api.AO_MESSAGE: tx_doc(
        "Send a message to an AO process",
        "An AoMessage (PROTOCOL 8.2): it takes the target's next slot; a relay with "
        "`fromProcess` by another than that process's scheduler is -32005.",
        "receipt",
        ref("AoReceipt"),
        errors.NONCE_MISMATCH,
        errors.INSUFFICIENT_BALANCE,
        errors.NOT_ELIGIBLE,
        errors.DUPLICATE_SUBMISSION,
    ),
    api.AO_DATA_ITEM: tx_doc(
        "Hand in an ANS-104 data item",
        "An AoDataItem (PROTOCOL 8.3): by its Type tag a process spawned, a message scheduled "
        "or a module published, under the item's id.",
        "receipt",
        ref("AoReceipt"),
        errors.NONCE_MISMATCH,
        errors.INSUFFICIENT_BALANCE,
        errors.NOT_ELIGIBLE,
        errors.DUPLICATE_SUBMISSION,
    ),
    api.AO_TERMINATE: tx_doc(
        "End an AO process",
        "An AoTerminate (PROTOCOL 8.2) by the process's owner (else -32005): later messages to "
        "it are refused.",
        "receipt",
        ref("TxReceipt"),
        errors.NONCE_MISMATCH,
        errors.INSUFFICIENT_BALANCE,
        errors.NOT_ELIGIBLE,
    ),
    # Dev controls (PROTOCOL 5.9): a dev chain of one validator; -32601 on any other
    api.DEV_SNAPSHOT: MethodDoc(
        "Keep the whole state",
        "The ledger (head, appHash, nonces, tasks), the mempool and a pinned next block time, "
        "kept in memory; the id to give dev_revert (PROTOCOL 5.9).",
        "snapshotId",
        SNAPSHOT_ID,
        (errors.METHOD_NOT_FOUND,),
    ),
    api.DEV_REVERT: MethodDoc(
        "Restore a snapshot",
        "The state of a snapshot, exactly (the same appHash); the snapshot and every later one "
        "are consumed, as anvil's evm_revert. false when there is no such snapshot.",
        "reverted",
        BOOLEAN,
        (errors.METHOD_NOT_FOUND,),
        params={"id": Param(SNAPSHOT_ID, "a snapshot id as dev_snapshot answered it")},
    ),
    api.DEV_MINE: MethodDoc(
        "Make blocks now",
        "Makes `blocks` blocks at once, whatever the block time or the automine interval; the "
        "new head's height.",
        "height",
        ref("Height"),
        (errors.METHOD_NOT_FOUND,),
        params={
            "blocks": Param(
                {"type": "integer", "minimum": 1, "maximum": MAX_DEV_MINE},
                "how many blocks; 1 when left out",
            )
        },
    ),
    api.DEV_SET_NEXT_BLOCK_TIMESTAMP: MethodDoc(
        "Pin the next block's time",
        "The next block has exactly this time (Unix seconds, not before the head's), and the "
        "blocks after it go on from there; the time.",
        "timestamp",
        INTEGER,
        (errors.METHOD_NOT_FOUND,),
        params={
            "timestamp": Param(
                {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, "Unix seconds"
            )
        },
    ),
    api.DEV_INCREASE_TIME: MethodDoc(
        "Move block times forward",
        "Adds seconds to the clock the next blocks' times are read from (kept in the ledger); "
        "the offset in all, in seconds.",
        "offset",
        INTEGER,
        (errors.METHOD_NOT_FOUND,),
        params={
            "seconds": Param(
                {"type": "integer", "minimum": 0, "maximum": MAX_TIME_STEP_S}, "seconds to add"
            )
        },
    ),
    api.DEV_SET_BALANCE: MethodDoc(
        "Set an account's balance",
        "Written at once, outside any block; the difference is counted as minted or burned, "
        "so the supply invariant holds (PROTOCOL 4.10). true.",
        "done",
        BOOLEAN,
        (errors.METHOD_NOT_FOUND,),
        params={
            "address": ADDRESS_PARAM,
            "balance": Param(ref("Amount"), "the new balance, in wei"),
        },
    ),
    api.DEV_RESET: MethodDoc(
        "Back to the genesis block",
        "A new chain of the same genesis: an empty mempool, no snapshots, no time offset; the "
        "height, 0.",
        "height",
        ref("Height"),
        (errors.METHOD_NOT_FOUND,),
    ),
    # Service discovery
    api.RPC_DISCOVER: MethodDoc(
        "This API's OpenRPC document",
        "Returns an OpenRPC schema as a description of this service: this document, the "
        "same as docs/openrpc.json (PROTOCOL 5.8).",
        "OpenRPC Schema",
        {"$ref": META_SCHEMA_URL},
    ),
}


def method_doc(name: str) -> MethodDoc:
    """The row of `name`; an alias's is its method's, described as the alias it is.
    KeyError, naming the method, when it has none."""
    target = api.ALIASES.get(name)
    if target is None:
        try:
            return METHOD_DOCS[name]
        except KeyError:
            raise KeyError(f"{name}: no row in rpc.openrpc.METHOD_DOCS") from None
    doc = method_doc(target)
    return MethodDoc(
        f"{doc.summary} (alias of {target})",
        f"The name the AegisAI examples use for `{target}`, served as the same method: the same "
        f"params, result and errors (PROTOCOL 5.1). {doc.description}",
        doc.result_name,
        doc.result,
        doc.errors,
        doc.params,
    )


def undescribed(methods: Mapping[str, MethodSpec]) -> list[str]:
    """The methods of `methods` with no row in METHOD_DOCS (an alias counts its method's)."""
    return [name for name in methods if api.ALIASES.get(name, name) not in METHOD_DOCS]


# The document


def _field_abi(cls: type[Message], name: str) -> str:
    return next(abi for wire_name, _attr, abi in cls.FIELDS if wire_name == name)


def method_params(name: str, spec: MethodSpec, doc: MethodDoc) -> list[dict[str, Any]]:
    """The content descriptors of the params `spec` binds, in positional order."""
    aliases: dict[str, list[str]] = {}
    for alias, canonical in spec.aliases.items():
        aliases.setdefault(canonical, []).append(alias)
    out = []
    for param in spec.names:
        cls = spec.message_type
        if cls is not None and param == "signature":
            schema, description = nullable(ref("Signature")), SIGNATURE_DESCRIPTION
        elif cls is not None:
            abi = _field_abi(cls, param)
            schema = ABI_SCHEMAS[abi]
            what = FIELD_DESCRIPTIONS.get(param, f"the {cls.TYPE} field {param}")
            description = f"{what} (EIP-712 type {abi})"
        elif param in doc.params:
            schema, description = doc.params[param].schema, doc.params[param].description
        else:
            raise KeyError(f"{name}: param {param} has no schema in rpc.openrpc.METHOD_DOCS")
        descriptor: dict[str, Any] = {
            "name": param,
            "description": description,
            "required": param in spec.required,
            "schema": schema,
        }
        if param in aliases:
            descriptor["x-aliases"] = sorted(aliases[param])
        out.append(descriptor)
    return out


def error_codes() -> dict[str, int]:
    """Every code `rpc.errors` names, by its component name (INVALID_PARAMS: InvalidParams)."""
    return {
        "".join(part.capitalize() for part in constant.split("_")): value
        for constant, value in vars(errors).items()
        if constant.isupper() and type(value) is int and value in RESERVED_CODES
    }


def error_messages() -> dict[int, str]:
    """The message each code is answered with, as `rpc.errors` builds it."""
    messages: dict[int, str] = {}
    for _cls, spec in errors.ERROR_TABLE:
        messages.setdefault(spec.code, spec.message)
    for failure in (
        errors.parse_error(""),
        errors.invalid_request(""),
        errors.method_not_found(""),
        errors.internal_error(),
    ):
        messages.setdefault(failure.code, failure.message)
    return messages


def error_components() -> dict[str, dict[str, Any]]:
    messages = error_messages()
    return {name: {"code": code, "message": messages[code]} for name, code in error_codes().items()}


def build_document(methods: Mapping[str, MethodSpec], version: str) -> dict[str, Any]:
    """The OpenRPC document of `methods`; KeyError naming a method without a row (or a read
    method's param without a schema)."""
    missing = undescribed(methods)
    if missing:
        raise KeyError(f"no row in rpc.openrpc.METHOD_DOCS for: {', '.join(missing)}")
    error_names = {code: name for name, code in error_codes().items()}
    method_objects = []
    for name, spec in methods.items():
        doc = method_doc(name)
        codes = (errors.INVALID_PARAMS, *doc.errors)
        method_objects.append(
            {
                "name": name,
                "summary": doc.summary,
                "description": doc.description,
                "params": method_params(name, spec, doc),
                "paramStructure": "either",
                "result": {"name": doc.result_name, "schema": doc.result},
                "errors": [
                    {"$ref": f"#/components/errors/{error_names[code]}"}
                    for code in sorted(set(codes), key=codes.index)
                ],
            }
        )
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": TITLE,
            "version": version,
            "description": (
                "The AegisAI validator JSON-RPC API as inferchain serves it: JSON-RPC 2.0 over "
                "HTTP POST / (and /rpc), params by name or by position, the extensions marked "
                "in docs/PROTOCOL.md section 5. Every error carries a `data` object saying "
                "what was wrong (PROTOCOL 5.3); -32602 is also the answer to params a method "
                "does not take."
            ),
            "license": {"name": "MIT"},
        },
        "methods": method_objects,
        "components": {"schemas": SCHEMAS, "errors": error_components()},
    }


def package_version() -> str:
    """inferchain's version: the installed distribution's, else pyproject.toml's."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        with (ROOT / "pyproject.toml").open("rb") as f:
            return str(tomllib.load(f)["project"]["version"])


@cache
def document() -> dict[str, Any]:
    """The document `rpc.discover` answers, built once (callers must not change it)."""
    return build_document(METHODS, package_version())


def render(doc: Mapping[str, Any]) -> str:
    """The text of docs/openrpc.json: indented, keys sorted, a trailing newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rpc.openrpc", description="The OpenRPC document of the JSON-RPC API."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="write the document")
    action.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--path", type=Path, default=DOCUMENT_PATH, help="default: %(default)s")
    args = parser.parse_args(argv)
    text = render(document())
    path: Path = args.path
    if args.write:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        return 0
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        print(
            f"{path} is stale: it is not the document the method table gives; "
            "run python -m rpc.openrpc --write",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
