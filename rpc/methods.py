"""The JSON-RPC methods (PROTOCOL 5.1 and 5.2): parameter binding, calls into the node,
and rendering of ledger values for the wire.

Each method is declared once with its parameters in upstream order (for positional calls)
and its aliases (`requestHash` for `taskHash`, `response` for `result`). Handlers are plain
synchronous functions of (node, params): they never await, so calls in a batch apply in
order and admission never interleaves with block production. The dev controls (PROTOCOL
5.9) are the exception, marked `awaits`: their handler checks the call and returns the
coroutine that does the work, between two blocks, which the server awaits.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from chain.node.devmode import DevProducer
from chain.node.ledger import TxRecord
from chain.node.node import Node
from chain.protocol import ans104, ao, crypto, wire
from chain.protocol import state as st
from chain.protocol.blocks import block_header_json, vote_to_json
from chain.protocol.errors import (
    DevOnly,
    InvalidParams,
    InvalidSignature,
    NotFound,
    TaskClosed,
    TaskNotFound,
)
from chain.protocol.genesis import params_to_json
from chain.protocol.schema import postprocess
from chain.protocol.types import (
    Account,
    AoDataItem,
    AoMessage,
    AoSpawn,
    AoTerminate,
    CommitSecrets,
    Message,
    RegisterResourceNode,
    ResourceNodeInfo,
    RevealSecret,
    SignedTx,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    Task,
    Transfer,
    Unstake,
)
from rpc import api

log = logging.getLogger(__name__)

Params = dict[str, Any]
Handler = Callable[[Node, Params], Any]
SignedHandler = Callable[[Node, SignedTx], Any]


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """A method's parameters in positional order, the required ones, and aliases; for a
    transaction method also its message type and how it answers a verified transaction."""

    handler: Handler
    names: tuple[str, ...] = ()
    required: frozenset[str] = frozenset()
    aliases: dict[str, str] = field(default_factory=dict)
    message_type: type[Message] | None = None
    signed_handler: SignedHandler | None = None
    awaits: bool = False  # the handler returns a coroutine, awaited for the answer

    def bind(self, args: list[Any], kwargs: dict[str, Any]) -> Params:
        if args:
            if len(args) > len(self.names):
                raise InvalidParams(
                    "params", f"at most {len(self.names)} positional params: {list(self.names)}"
                )
            params = dict(zip(self.names, args, strict=False))
        else:
            params = {}
            for key, value in kwargs.items():
                name = self.aliases.get(key, key)
                if name not in self.names:
                    raise InvalidParams(key, f"unknown parameter; expected {list(self.names)}")
                if name in params:
                    raise InvalidParams(key, f"given twice, as {name} and as an alias")
                params[name] = value
        for name in self.names:
            if name in self.required and name not in params:
                raise InvalidParams(name, "missing")
        return params


# Transactions


def _wire_name(cls: type[Message], attr: str) -> str:
    return next(name for name, a, _abi in cls.FIELDS if a == attr)


def signed_call(cls: type[Message], params: Params) -> tuple[Message, bytes] | None:
    """The message and raw signature of a signed transaction call, None for an unsigned one
    (an unlocked dev account's); InvalidParams or InvalidSignature when malformed."""
    fields = dict(params)
    signature = fields.pop("signature", None)
    if signature is None:
        return None
    return wire.message_from_params(cls, fields), wire.parse_signature(signature)


def admit(node: Node, cls: type[Message], params: Params) -> SignedTx:
    """Verify (or, for an unlocked dev account, sign) a transaction and admit it."""
    signed = signed_call(cls, params)
    if signed is None:
        tx = sign_for_dev_account(node, cls, params)
    else:
        msg, signature = signed
        tx = crypto.verify_message(msg, node.genesis.chain_id, signature)
    node.submit(tx)
    return tx


def sign_for_dev_account(node: Node, cls: type[Message], params: Params) -> SignedTx:
    """Sign an unsigned call for an unlocked dev account (PROTOCOL 5.4), filling its nonce."""
    fields = dict(params)
    fields.pop("signature", None)
    signer_param = _wire_name(cls, cls.SIGNER)
    signer = wire.parse_address(fields.get(signer_param), signer_param)
    if signer not in node.dev_keys:
        reason = "missing signature"
        if node.dev_keys:
            reason += f"; {signer} is not an unlocked dev account"
        raise InvalidSignature(reason)
    if "nonce" not in fields and any(name == "nonce" for name, _a, _t in cls.FIELDS):
        fields["nonce"] = node.next_nonce(signer)
    return node.dev_sign(wire.message_from_params(cls, fields))


def submit(node: Node, tx: SignedTx) -> SignedTx:
    node.submit(tx)
    return tx


def tx_method(cls: type[Message], render: Callable[[SignedTx], Any]) -> MethodSpec:
    names = (*(name for name, _a, _t in cls.FIELDS), "signature")
    optional = set(wire.OPTIONAL_DEFAULTS) | {"signature", "nonce"}
    aliases = {"requestHash": "taskHash", "response": "result"}
    return MethodSpec(
        handler=lambda node, params: render(admit(node, cls, params)),
        names=names,
        required=frozenset(n for n in names if n not in optional),
        aliases={a: c for a, c in aliases.items() if c in names},
        message_type=cls,
        signed_handler=lambda node, tx: render(submit(node, tx)),
    )


def bool_tx_method(cls: type[Message]) -> MethodSpec:
    """Results and verdicts answer true, or false when the task no longer takes them."""
    spec = tx_method(cls, lambda _tx: True)
    assert spec.signed_handler is not None
    signed_handler = spec.signed_handler

    def handler(node: Node, params: Params) -> bool:
        try:
            return bool(spec.handler(node, params))
        except TaskClosed:
            return False

    def handle_signed(node: Node, tx: SignedTx) -> bool:
        try:
            return bool(signed_handler(node, tx))
        except TaskClosed:
            return False

    return replace(spec, handler=handler, signed_handler=handle_signed)


def _task_receipt(tx: SignedTx) -> dict[str, str]:
    task_hash = wire.hex0x(tx.digest)
    return {"txHash": wire.hex0x(tx.hash), "taskHash": task_hash, "requestHash": task_hash}


def _tx_receipt(tx: SignedTx) -> dict[str, str]:
    return {"txHash": wire.hex0x(tx.hash)}


# Rendering


def render_task(task: Task) -> dict[str, Any]:
    """The queryTask object: the stored task plus what reads derive from it (the
    postprocessed form of each result, and every verdict in one list)."""
    out = st.task_to_json(task)
    out["requestHash"] = out["taskHash"]
    out["executionInfo"] = [
        {**entry, "postprocessed": postprocess(task.schema, entry["result"]).to_json()}
        for entry in out["executionInfo"]
    ]
    out["verificationInfos"] = [
        {**verdict, "submitter": entry["resourceNode"]}
        for entry in out["executionInfo"]
        for verdict in entry["verifications"]
    ]
    out["verificationInfos"].sort(key=lambda v: v["seq"])
    return out


def render_tx(record: TxRecord) -> dict[str, Any]:
    """The GET /tx/<hash> object (PROTOCOL 5.1)."""
    msg = record.tx.message
    task_hash = getattr(msg, "task_hash", None)
    if isinstance(msg, SubmitTask):
        task_hash = record.tx.digest
    payload: dict[str, Any] = {}
    if msg.TX_TYPE == "inference":
        payload = {"inference_result": msg.result, "proof_of_inference": msg.proof}  # type: ignore[union-attr]
    return {
        "signer": record.tx.signer,
        "tx_type": msg.TX_TYPE,
        "associated_task": None if task_hash is None else wire.hex0x(task_hash),
        "payload": payload,
        "blockHeight": record.height,
        "status": record.status,
    }


def render_block(node: Node, height: int) -> dict[str, Any]:
    stored = node.block(height)
    if stored is None:
        raise NotFound("height", f"no block {height}; the head is {node.head.height}")
    out = block_header_json(stored.block)
    out["hash"] = wire.hex0x(stored.hash)
    out["commit"] = [vote_to_json(v) for v in stored.commit]
    return out


# Handlers


def chain_id(node: Node, _params: Params) -> int:
    return node.genesis.chain_id


def get_params(node: Node, _params: Params) -> dict[str, Any]:
    """The genesis params the chain runs with, every one (an extension, PROTOCOL 5.2)."""
    return params_to_json(node.params)


def genesis_hash(node: Node, _params: Params) -> str:
    return wire.hex0x(node.genesis.hash)


def block_number(node: Node, _params: Params) -> int:
    return node.head.height


def parse_height(node: Node, value: Any, param: str) -> int:
    if value == "latest":
        return node.head.height
    if value == "earliest":
        return 0
    height = wire.parse_int(value, param, 0, 2**63 - 1)
    if height > node.head.height:
        raise NotFound(param, f"no block {height} yet; the head is {node.head.height}")
    return height


def get_block(node: Node, params: Params) -> dict[str, Any]:
    return render_block(node, parse_height(node, params.get("height", "latest"), "height"))


def get_block_events(node: Node, params: Params) -> dict[str, Any]:
    """What a committed block changed (an extension, PROTOCOL 5.2): the events the
    subscriptions give for it (PROTOCOL 5.6), read from the ledger's index of the block."""
    height = parse_height(node, params.get("height", "latest"), "height")
    return {"height": height, "events": node.block_events(height)}


def _tx_hash_param(params: Params) -> bytes:
    return wire.parse_hash(params["txHash"], "txHash")


def get_transaction(node: Node, params: Params) -> dict[str, Any]:
    tx_hash = _tx_hash_param(params)
    record = node.tx_record(tx_hash)
    if record is None:
        raise NotFound("txHash", "no transaction with this hash")
    out = render_tx(record)
    out["txHash"] = wire.hex0x(tx_hash)
    out["type"] = record.tx.message.TYPE
    out["params"] = wire.message_to_params(record.tx.message) | {
        "signature": wire.hex0x(record.tx.signature)
    }
    out["index"] = record.index
    return out


def _render_account(
    address: str, account: Account, node_info: ResourceNodeInfo | None
) -> dict[str, Any]:
    return {
        "address": address,
        "balance": str(account.balance),
        "stake": str(account.stake),
        "nonce": account.nonce,
        "jailed": node_info.jailed if node_info is not None else False,
        "resourceNode": None
        if node_info is None
        else {"models": node_info.models, "endpoint": node_info.endpoint},
    }


def get_account(node: Node, params: Params) -> dict[str, Any]:
    address = wire.parse_address(params["address"], "address")
    height = params.get("blockHeight")
    if height is None or height == "latest":
        out = _render_account(address, *node.account(address))
        out["blockHeight"] = node.head.height
        out["pendingNonce"] = node.next_nonce(address)
        return out
    at = parse_height(node, height, "blockHeight")
    out = _render_account(address, *node.account(address, at))
    out["blockHeight"] = at
    return out


def get_validators(node: Node, _params: Params) -> list[dict[str, Any]]:
    return [
        {
            "address": info.address,
            "consensusPubKey": info.consensus_pub_key.hex(),
            "stake": str(stake),
            "url": info.url,
        }
        for info, stake in node.validators()
    ]


def get_resource_nodes(node: Node, _params: Params) -> list[dict[str, Any]]:
    return [
        {
            "address": address,
            "stake": str(stake),
            "models": info.models,
            "endpoint": info.endpoint,
            "jailed": info.jailed,
            "secrets": None if info.secrets is None else st.secrets_to_json(info.secrets),
        }
        for address, info, stake in node.resource_nodes()
    ]


def task_stats(node: Node, _params: Params) -> dict[str, int]:
    stats = node.task_stats()
    return {"total": sum(stats.values()), **stats}


def query_task(node: Node, params: Params) -> dict[str, Any]:
    raw = params["taskHash"]
    try:
        task_hash = wire.parse_hash(raw, "taskHash")
    except InvalidParams as exc:
        raise TaskNotFound(str(raw)[:80], f"malformed: {exc.detail}") from exc
    task = node.task(task_hash)
    if task is None:
        raise TaskNotFound(wire.hex0x(task_hash))
    return render_task(task)


PENDING_TIMESTAMP_WINDOW_S = 300
MAX_PENDING_LIMIT = 1000


def json_bytes(obj: Any) -> bytes:
    """A value as compact JSON: orjson's, or the standard library's for what orjson refuses
    (an integer beyond 64 bits, e.g. in a postprocessed result). `Encoded` values inside are
    written as their text."""
    try:
        return orjson.dumps(obj, default=_fragment)
    except TypeError:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_value).encode()


class Encoded:
    """A result kept together with its JSON text, for an answer given again and again: the
    server writes `text` as it is instead of encoding `value` once more (`json_bytes`).

    Not a dataclass: orjson writes a dataclass as an object of its fields, without asking
    `default`."""

    __slots__ = ("text", "value")

    def __init__(self, value: Any, text: bytes) -> None:
        self.value = value
        self.text = text

    @classmethod
    def of(cls, value: Any) -> Encoded:
        return cls(value, json_bytes(value))


def _fragment(obj: Any) -> orjson.Fragment:
    if isinstance(obj, Encoded):
        return orjson.Fragment(obj.text)
    raise TypeError(f"{type(obj).__name__} is not JSON")


def _value(obj: Any) -> Any:
    if isinstance(obj, Encoded):
        return obj.value
    raise TypeError(f"{type(obj).__name__} is not JSON")


@dataclass(frozen=True, slots=True)
class PendingTasksAnswer:
    """What queryPendingTasks answers: the task objects (with their JSON text, kept while the
    node's state is the same), and the deprecation warning of a call signed over the previous
    release's text (None otherwise), which the GET route carries in its `data` member
    (PROTOCOL 5.1)."""

    tasks: Encoded
    deprecation: dict[str, Any] | None = None


def check_pending_signature(
    node: Node, address: str, timestamp: int, signature: Any
) -> dict[str, Any] | None:
    """The optional EIP-191 signature of `queryPendingTasks:<chainId>:<address>:<TimeStamp>`.

    The text of the previous release, `queryPendingTasks:<address>:<TimeStamp>`, names no
    chain: on a dev chain it is still accepted, and the answer is the deprecation warning to
    pass on; elsewhere it is refused, with the text to sign. Returns None for the current text.
    """
    raw = wire.parse_signature(signature)
    chain_id = node.genesis.chain_id
    text = api.pending_tasks_message(chain_id, address, timestamp)
    recovered = crypto.recover_digest(crypto.personal_message_hash(text), raw)
    deprecation = None
    if recovered != address:
        legacy = api.legacy_pending_tasks_message(address, timestamp)
        if crypto.recover_digest(crypto.personal_message_hash(legacy), raw) != address:
            raise InvalidSignature(
                f"the signature of {text!r} recovers to another address; "
                f"was it signed for chainId {chain_id}?",
                expected=address,
                recovered=recovered,
                chain_id=chain_id,
                text=text,
                text_format=api.PENDING_TASKS_TEXT_FORMAT,
            )
        if node.genesis.dev is None:
            raise InvalidSignature(
                f"the signed text {legacy!r} names no chain and is accepted on dev chains "
                f"only; sign {text!r}",
                expected=address,
                chain_id=chain_id,
                text=text,
                text_format=api.PENDING_TASKS_TEXT_FORMAT,
            )
        deprecation = {
            "warning": (
                f"deprecated: the signed text {api.LEGACY_PENDING_TASKS_TEXT_FORMAT} names no "
                f"chain and is accepted on dev chains for this release only; sign {text!r}"
            ),
            "deprecated": api.LEGACY_PENDING_TASKS_TEXT_FORMAT,
            "chainId": chain_id,
            "text": text,
            "textFormat": api.PENDING_TASKS_TEXT_FORMAT,
        }
    skew = timestamp - node.now()
    if abs(skew) > PENDING_TIMESTAMP_WINDOW_S:
        raise InvalidSignature(
            f"TimeStamp {timestamp} is {abs(skew):.0f} s "
            f"{'ahead of' if skew > 0 else 'behind'} the node clock; "
            f"at most {PENDING_TIMESTAMP_WINDOW_S} s are allowed"
        )
    return deprecation


# The nodes already told in the log that they sign the deprecated text: once each, and only
# nodes that may act (registered, staked), so the set stays as small as the node registry.
_warned_legacy_signers: set[str] = set()


def pending_tasks_answer(node: Node, params: Params) -> PendingTasksAnswer:
    """queryPendingTasks for both the JSON-RPC method and GET /queryPendingTasks."""
    address = wire.parse_address(params["ResourceAddress"], "ResourceAddress")
    timestamp = wire.parse_int(params["TimeStamp"], "TimeStamp", 0, 2**63 - 1)
    limit = wire.parse_int(params.get("limit", 100), "limit", 1, MAX_PENDING_LIMIT)
    deprecation = None
    if params.get("Signature") is not None:
        deprecation = check_pending_signature(node, address, timestamp, params["Signature"])
    out = kept_work(node, address, limit)
    if deprecation is not None and address not in _warned_legacy_signers:
        _warned_legacy_signers.add(address)
        log.warning("queryPendingTasks from %s: %s", address, deprecation["warning"])
    return PendingTasksAnswer(out, deprecation)


# queryPendingTasks' answers kept per validator, at most this many (address, limit) pairs
# under one read version; a task's rendering is kept while the task is open, and all of them
# are forgotten once they are many more than the open tasks.
MAX_KEPT_ANSWERS = 4096
RENDERED_SLACK = 1024


@dataclass(slots=True)
class PendingReads:
    """What queryPendingTasks keeps of its answers for one validator: the items per (address,
    limit) computed under `version` (`Node.read_version`), all dropped once it changes (a
    block, an admission, a dev control), each with its JSON text; and each task's
    `render_task`, kept while its task is the same decoded value (`state.decode_task` gives
    the same Task for the same stored bytes while it keeps them). The answers kept are shared:
    their callers never change them."""

    version: tuple[int, ...] = ()
    answers: dict[tuple[str, int], Encoded] = field(default_factory=dict)
    rendered: dict[bytes, tuple[Task, dict[str, Any]]] = field(default_factory=dict)

    def render(self, task: Task) -> dict[str, Any]:
        seen = self.rendered.get(task.task_hash)
        if seen is not None and seen[0] is task:
            return seen[1]
        out = render_task(task)
        self.rendered[task.task_hash] = (task, out)
        return out


_pending_reads: weakref.WeakKeyDictionary[Node, PendingReads] = weakref.WeakKeyDictionary()


def _reads_of(node: Node) -> PendingReads:
    reads = _pending_reads.get(node)
    if reads is None:
        reads = _pending_reads[node] = PendingReads()
    return reads


def kept_work(node: Node, address: str, limit: int) -> Encoded:
    """queryPendingTasks' items over every open task, with their JSON text: kept until the
    node's read version changes, and given again as they are (the same list: not to be
    changed)."""
    reads = _reads_of(node)
    version = node.read_version()
    if version != reads.version:
        reads.version = version
        reads.answers.clear()
    kept = reads.answers.get((address, limit))
    if kept is None:
        if len(reads.answers) >= MAX_KEPT_ANSWERS:
            reads.answers.clear()
        kept = Encoded.of(_work_items(reads, node, address, limit))
        reads.answers[(address, limit)] = kept
    return kept


def work_items(
    node: Node, address: str, limit: int, task_hashes: list[bytes] | None = None
) -> list[dict[str, Any]]:
    """queryPendingTasks' items: the node's work (among `task_hashes` only, when given; the
    kept answer, `kept_work`, otherwise)."""
    if task_hashes is None:
        return kept_work(node, address, limit).value  # type: ignore[no-any-return]
    return _work_items(_reads_of(node), node, address, limit, task_hashes)


def _work_items(
    reads: PendingReads,
    node: Node,
    address: str,
    limit: int,
    task_hashes: list[bytes] | None = None,
) -> list[dict[str, Any]]:
    """Each item is the task's rendering, kept while the task stays the same, with the
    node's own members added."""
    if len(reads.rendered) > 2 * node.ledger.open_task_count() + RENDERED_SLACK:
        reads.rendered.clear()
    out = []
    for work in node.pending_work(address, task_hashes)[:limit]:
        item = dict(reads.render(work.task))  # its own members added to a copy
        item["seed"] = str(crypto.task_seed(work.task.task_hash, address))
        item["compute"] = work.compute
        item["verify"] = [
            {"submitter": e.resource_node, "result": e.result, "seed": str(e.seed), "rank": e.rank}
            for e in work.verify
        ]
        item["reveal"] = work.reveal
        out.append(item)
    return out


def query_pending_tasks(node: Node, params: Params) -> Encoded:
    """The JSON-RPC method: the task objects only. A JSON-RPC response has no member for a
    warning and the result stays the list it was (PROTOCOL 5.1, Ambiguity), so the
    deprecation warning of the previous release's text goes to the node's log."""
    return pending_tasks_answer(node, params).tasks


MAX_TASKS_PER_CALL = 1000


def get_tasks_by_sender(node: Node, params: Params) -> list[dict[str, Any]]:
    """The committed tasks of a sender, by nonce (an extension: dApps list their own tasks)."""
    address = wire.parse_address(params["address"], "address")
    from_nonce = wire.parse_uint(params.get("fromNonce", 0), "fromNonce", 64)
    limit = wire.parse_int(params.get("limit", 100), "limit", 1, MAX_TASKS_PER_CALL)
    return [render_task(task) for task in node.tasks_of_sender(address, from_nonce, limit)]


# AO (PROTOCOL 8)

MAX_AO_PAGE = 1000


def _ao_id_param(params: Params, name: str) -> str:
    value = params[name]
    if not isinstance(value, str) or not ao.is_id(value):
        raise InvalidParams(name, "an AO id: 43 characters of base64url")
    return value


def ao_process(node: Node, params: Params) -> dict[str, Any]:
    """A process as the chain scheduled it, with its count of slots; a published module's id
    answers `{module}`."""
    pid = _ao_id_param(params, "processId")
    process = node.ao_process(pid)
    if process is None:
        module = node.ao_module(pid)
        if module is None:
            raise NotFound("processId", f"no process {pid}")
        return {"id": pid, "module": module, "type": "Module"}
    return process


def ao_processes(node: Node, params: Params) -> list[str]:
    start = wire.parse_uint(params.get("from", 0), "from", 64)
    limit = wire.parse_int(params.get("limit", 100), "limit", 1, MAX_AO_PAGE)
    return node.ao_processes(start, limit)


def ao_schedule(node: Node, params: Params) -> dict[str, Any]:
    """The process's messages in slot order, paged: `{messages, next}` (`next` null at the
    end)."""
    pid = _ao_id_param(params, "processId")
    start = wire.parse_uint(params.get("fromSlot", 0), "fromSlot", 64)
    limit = wire.parse_int(params.get("limit", 100), "limit", 1, MAX_AO_PAGE)
    process = node.ao_process(pid)
    if process is None:
        raise NotFound("processId", f"no process {pid}")
    messages = node.ao_slots(pid, start, limit)
    end = start + len(messages)
    return {"messages": messages, "next": end if end < process["slots"] else None}


def ao_message_by_id(node: Node, params: Params) -> dict[str, Any]:
    message_id = _ao_id_param(params, "messageId")
    message = node.ao_message(message_id)
    if message is None:
        raise NotFound("messageId", f"no scheduled message {message_id}")
    return message


def _ao_receipt(tx: SignedTx) -> dict[str, str]:
    """The txHash and the AO id the transaction gives its process or message."""
    msg = tx.message
    if isinstance(msg, AoDataItem):
        item_id = ans104.parse(wire.decode_bytes_field(msg.item)).id
        return {"txHash": wire.hex0x(tx.hash), "id": item_id}
    return {"txHash": wire.hex0x(tx.hash), "id": ao.ao_id(tx.signature)}


# Dev controls (PROTOCOL 5.9)

MAX_DEV_MINE = 1000
MAX_TIME_STEP_S = 100 * 365 * 24 * 3600  # a century, in one call to dev_increaseTime


def _dev_producer(node: Node, method: str) -> DevProducer:
    refusal = node.dev_controls_refusal()
    if refusal is not None:
        raise DevOnly(method, refusal)
    assert node.dev is not None
    return node.dev


async def _answer(work: Awaitable[Any], render: Callable[[Any], Any]) -> Any:
    return render(await work)


def dev_snapshot(node: Node, _params: Params) -> Coroutine[Any, Any, Any]:
    return _answer(_dev_producer(node, api.DEV_SNAPSHOT).snapshot(), hex)


def _snapshot_id(value: Any) -> int:
    """A snapshot id as dev_snapshot answers it ("0x1"), or as an integer."""
    if isinstance(value, str) and value.startswith("0x") and 2 < len(value) <= 18:
        try:
            return int(value, 16)
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    raise InvalidParams("id", 'expected a snapshot id as dev_snapshot answers it, such as "0x1"')


def dev_revert(node: Node, params: Params) -> Coroutine[Any, Any, Any]:
    dev = _dev_producer(node, api.DEV_REVERT)
    return _answer(dev.revert(_snapshot_id(params["id"])), bool)


def dev_mine(node: Node, params: Params) -> Coroutine[Any, Any, Any]:
    dev = _dev_producer(node, api.DEV_MINE)
    count = wire.parse_int(params.get("blocks", 1), "blocks", 1, MAX_DEV_MINE)
    return _answer(dev.mine(count), lambda head: head.height)


def dev_set_next_block_timestamp(node: Node, params: Params) -> Coroutine[Any, Any, Any]:
    dev = _dev_producer(node, api.DEV_SET_NEXT_BLOCK_TIMESTAMP)
    at = wire.parse_int(params["timestamp"], "timestamp", 0, 2**63 - 1)
    return _answer(dev.set_next_block_timestamp(at), int)


def dev_increase_time(node: Node, params: Params) -> Coroutine[Any, Any, Any]:
    dev = _dev_producer(node, api.DEV_INCREASE_TIME)
    seconds = wire.parse_int(params["seconds"], "seconds", 0, MAX_TIME_STEP_S)
    return _answer(dev.increase_time(seconds), int)


def dev_set_balance(node: Node, params: Params) -> Coroutine[Any, Any, Any]:
    dev = _dev_producer(node, api.DEV_SET_BALANCE)
    address = wire.parse_address(params["address"], "address")
    balance = wire.parse_uint(params["balance"], "balance")
    return _answer(dev.set_balance(address, balance), lambda _none: True)


def dev_reset(node: Node, _params: Params) -> Coroutine[Any, Any, Any]:
    return _answer(_dev_producer(node, api.DEV_RESET).reset(), lambda head: head.height)


def rpc_discover(_node: Node, _params: Params) -> dict[str, Any]:
    """The OpenRPC document of this API (PROTOCOL 5.8). `rpc.openrpc` reads this module's
    method table, so it is imported at the first call, once the table exists."""
    from rpc import openrpc

    return openrpc.document()


METHODS: dict[str, MethodSpec] = {
    api.CHAIN_ID: MethodSpec(chain_id),
    api.GENESIS_HASH: MethodSpec(genesis_hash),
    api.GET_PARAMS: MethodSpec(get_params),
    api.BLOCK_NUMBER: MethodSpec(block_number),
    api.GET_BLOCK: MethodSpec(get_block, ("height",)),
    api.GET_BLOCK_EVENTS: MethodSpec(get_block_events, ("height",)),
    api.GET_TRANSACTION: MethodSpec(get_transaction, ("txHash",), frozenset({"txHash"})),
    api.GET_ACCOUNT: MethodSpec(get_account, ("address", "blockHeight"), frozenset({"address"})),
    api.GET_VALIDATORS: MethodSpec(get_validators),
    api.GET_RESOURCE_NODES: MethodSpec(get_resource_nodes),
    api.TASK_STATS: MethodSpec(task_stats),
    api.GET_TASKS_BY_SENDER: MethodSpec(
        get_tasks_by_sender, ("address", "fromNonce", "limit"), frozenset({"address"})
    ),
    api.QUERY_TASK: MethodSpec(
        query_task, ("taskHash",), frozenset({"taskHash"}), {"requestHash": "taskHash"}
    ),
    api.SUBMIT_TASK: tx_method(SubmitTask, _task_receipt),
    api.TRANSFER: tx_method(Transfer, _tx_receipt),
    api.STAKE: tx_method(Stake, _tx_receipt),
    api.UNSTAKE: tx_method(Unstake, _tx_receipt),
    api.REGISTER_RESOURCE_NODE: tx_method(RegisterResourceNode, _tx_receipt),
    api.SUBMIT_INFERENCE_RESULT: bool_tx_method(SubmitInferenceResult),
    api.SUBMIT_VERIFICATION: bool_tx_method(SubmitVerification),
    api.COMMIT_SECRETS: tx_method(CommitSecrets, _tx_receipt),
    api.REVEAL_SECRET: tx_method(RevealSecret, _tx_receipt),
    api.QUERY_PENDING_TASKS: MethodSpec(
        query_pending_tasks,
        ("ResourceAddress", "TimeStamp", "Signature", "limit"),
        frozenset({"ResourceAddress", "TimeStamp"}),
    ),
    api.AO_SPAWN: tx_method(AoSpawn, _ao_receipt),
    api.AO_MESSAGE: tx_method(AoMessage, _ao_receipt),
    api.AO_DATA_ITEM: tx_method(AoDataItem, _ao_receipt),
    api.AO_TERMINATE: tx_method(AoTerminate, _tx_receipt),
    api.AO_PROCESS: MethodSpec(ao_process, ("processId",), frozenset({"processId"})),
    api.AO_PROCESSES: MethodSpec(ao_processes, ("from", "limit")),
    api.AO_SCHEDULE: MethodSpec(
        ao_schedule, ("processId", "fromSlot", "limit"), frozenset({"processId"})
    ),
    api.AO_MESSAGE_BY_ID: MethodSpec(ao_message_by_id, ("messageId",), frozenset({"messageId"})),
    api.DEV_SNAPSHOT: MethodSpec(dev_snapshot, awaits=True),
    api.DEV_REVERT: MethodSpec(dev_revert, ("id",), frozenset({"id"}), awaits=True),
    api.DEV_MINE: MethodSpec(dev_mine, ("blocks",), awaits=True),
    api.DEV_SET_NEXT_BLOCK_TIMESTAMP: MethodSpec(
        dev_set_next_block_timestamp, ("timestamp",), frozenset({"timestamp"}), awaits=True
    ),
    api.DEV_INCREASE_TIME: MethodSpec(
        dev_increase_time, ("seconds",), frozenset({"seconds"}), awaits=True
    ),
    api.DEV_SET_BALANCE: MethodSpec(
        dev_set_balance, ("address", "balance"), frozenset({"address", "balance"}), awaits=True
    ),
    api.DEV_RESET: MethodSpec(dev_reset, awaits=True),
    api.RPC_DISCOVER: MethodSpec(rpc_discover),
}
AWAITING_METHODS = frozenset(name for name, spec in METHODS.items() if spec.awaits)
METHODS.update({alias: METHODS[method] for alias, method in api.ALIASES.items()})
