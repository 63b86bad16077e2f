"""Wrong types for every param of every method: the answer is a JSON-RPC error from the table
of PROTOCOL 5.3 (never -32603, never an HTTP error), with a data object naming the param, the
call changes nothing, and the node keeps serving.

Transaction methods are checked twice. Signed by a key that is not unlocked (resource node 0),
a value of the right type but another content leaves a signature that no longer matches
(-32004), a value of the wrong type is invalid params (-32602). In dev mode (an unlocked
sender, no signature), a value of the wrong type is -32602 and nothing is admitted.

Results and verdicts are signed over a task that exists only once a test submits it (BASE_TASK):
on the fresh chain of the table tests their unchanged base is an unknown task (-32001), which
shows that parsing and the signature check come first. queryPendingTasks is signed (EIP-191)
over ResourceAddress and TimeStamp; its Signature is optional, so null is an unsigned query.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from chain.protocol import ans104, ao, crypto, wire
from chain.protocol.types import (
    AoDataItem,
    AoMessage,
    AoSpawn,
    AoTerminate,
    CommitSecrets,
    RegisterResourceNode,
    RevealSecret,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    Transfer,
    Unstake,
)
from rpc.client import RpcError, Wallet, pending_tasks_params, presign, sign_params
from rpc.methods import AWAITING_METHODS, METHODS
from tests.helpers import LocalChain, dev_secret
from tests.rpc.support import (
    CHAIN_ID,
    DEAD,
    DEV0,
    NODE0,
    NODE1,
    NODE2,
    assert_error_shape,
    committed,
    result_tx,
    snapshot,
    task_params,
)

UNKNOWN_HASH = "0x" + "5a" * 32
# The dev controls change the chain when a call succeeds (a reset, a revert, blocks mined):
# their bad-input rows are in tests/rpc/test_dev_controls.py, each checked to change nothing.
OUT_OF_SCOPE: set[str] = set(AWAITING_METHODS)
NO_PARAMS = (
    "chainId",
    "genesisHash",
    "getParams",
    "blockNumber",
    "getValidators",
    "getResourceNodes",
    "taskStats",
    "rpc.discover",
)

TASK_KINDS = {
    "sender": "address",
    "nonce": "uint64",
    "schema": "bytes",
    "targetCount": "uint256",
    "prompts": "bytes",
    "modelOptions": "bytes",
    "SID": "bytes32",
    "feeParams": "bytes",
    "signature": "signature",
}
RESULT_KINDS = {
    "taskHash": "bytes32",
    "resourceNode": "address",
    "result": "bytes",
    "proof": "bytes",
    "signature": "signature",
}
# method -> param -> kind, params in upstream (positional) order
KINDS: dict[str, dict[str, str]] = {
    "getBlock": {"height": "height"},
    "getBlockEvents": {"height": "height"},
    "getTransaction": {"txHash": "hash"},
    "getAccount": {"address": "address", "blockHeight": "blockHeight"},
    "queryTask": {"taskHash": "taskHash"},
    "getTasksBySender": {"address": "address", "fromNonce": "uint64", "limit": "limit"},
    "submitTask": TASK_KINDS,
    "submitRequest": TASK_KINDS,
    "transfer": {
        "sender": "address",
        "nonce": "uint64",
        "to": "address",
        "amount": "uint256",
        "signature": "signature",
    },
    "stake": {
        "sender": "address",
        "nonce": "uint64",
        "amount": "uint256",
        "signature": "signature",
    },
    "unstake": {
        "sender": "address",
        "nonce": "uint64",
        "amount": "uint256",
        "signature": "signature",
    },
    "registerResourceNode": {
        "sender": "address",
        "nonce": "uint64",
        "models": "string",
        "endpoint": "string",
        "signature": "signature",
    },
    "submitInferenceResult": RESULT_KINDS,
    "submitResponse": RESULT_KINDS,
    "submitVerification": {
        "taskHash": "bytes32",
        "verifier": "address",
        "submitter": "address",
        "valid": "bool",
        "signature": "signature",
    },
    "queryPendingTasks": {
        "ResourceAddress": "address",
        "TimeStamp": "timestamp",
        "Signature": "optional signature",
        "limit": "limit",
    },
    "commitSecrets": {
        "sender": "address",
        "nonce": "uint64",
        "head": "bytes32",
        "signature": "signature",
    },
    "revealSecret": {
        "resourceNode": "address",
        "height": "uint64",
        "secret": "bytes32",
        "signature": "signature",
    },
    "aoSpawn": {
        "sender": "address",
        "nonce": "uint64",
        "module": "string",
        "scheduler": "address",
        "memoryLimit": "uint64",
        "computeLimit": "uint64",
        "cronInterval": "string",
        "tags": "string",
        "data": "string",
        "signature": "signature",
    },
    "aoMessage": {
        "sender": "address",
        "nonce": "uint64",
        "target": "string",
        "data": "string",
        "tags": "string",
        "fromProcess": "string",
        "signature": "signature",
    },
    "aoTerminate": {
        "sender": "address",
        "nonce": "uint64",
        "process": "string",
        "signature": "signature",
    },
    "aoDataItem": {
        "sender": "address",
        "nonce": "uint64",
        "item": "bytes",
        "signature": "signature",
    },
    "aoProcess": {"processId": "aoId"},
    "aoProcesses": {"from": "uint64", "limit": "limit"},
    "aoSchedule": {"processId": "aoId", "fromSlot": "uint64", "limit": "limit"},
    "aoMessageById": {"messageId": "aoId"},
}
KINDS.update({method: {"bogus": "unknown"} for method in NO_PARAMS})
RESULT_METHODS = {"submitInferenceResult", "submitResponse", "submitVerification"}
TX_METHODS = {
    "submitTask",
    "submitRequest",
    "transfer",
    "stake",
    "unstake",
    "registerResourceNode",
    "commitSecrets",
    "revealSecret",
    "aoSpawn",
    "aoMessage",
    "aoTerminate",
    "aoDataItem",
    *RESULT_METHODS,
}
# The params a queryPendingTasks signature covers: changing them breaks the signature.
SIGNED_READ_PARAMS = {"queryPendingTasks": {"ResourceAddress", "TimeStamp"}}


def _signed(msg: Any) -> dict[str, Any]:
    return sign_params(msg, CHAIN_ID, NODE0.private_key)


_TASK = _signed(
    SubmitTask(
        sender=NODE0.address,
        nonce=0,
        schema="text",
        target_count=2,
        prompts="hello",
        model_options='{"temperature":0.5}',
        sid=b"\x11" * 32,
        fee_params='{"maxFee":"100000000000000000"}',
    )
)
# A task of node 1 (nonce 0); the base result and verdict name it. The verdict judges the
# result of node 2, which test_result_and_verdict_bases_are_accepted submits first.
BASE_TASK = presign(
    SubmitTask(NODE1.address, 0, "text", 2, "base task", '{"model":"demo"}'),
    CHAIN_ID,
    NODE1.private_key,
)
_RESULT = _signed(
    SubmitInferenceResult(BASE_TASK.signed.digest, NODE0.address, "Bonjour", proof="0xabcd")
)
_SPAWN = _signed(
    AoSpawn(
        NODE0.address,
        0,
        "-- a bare process",
        NODE0.address,
        1 << 20,
        10**6,
        "2-blocks",
        "[]",
        "spawned",
    )
)
# a process as a data item, signed by dev account 3 (its owner), handed in by node 0
_ITEM = wire.hex0x(
    ans104.serialize(
        ans104.create(
            signer=ans104.EthereumSigner(Wallet.dev(3).private_key),
            data=b"-- a bare process",
            tags=[ans104.Tag("Type", "Process")],
        )
    )
)
# node 0's process, once the spawn above is in: the base message and the base terminate name it
PROCESS = ao.ao_id(bytes.fromhex(_SPAWN["signature"][2:]))
BASE: dict[str, dict[str, Any]] = {
    "getBlock": {"height": 0},
    "getBlockEvents": {"height": 0},
    "getTransaction": {"txHash": UNKNOWN_HASH},
    "getAccount": {"address": DEV0.address, "blockHeight": 0},
    "queryTask": {"taskHash": UNKNOWN_HASH},
    "getTasksBySender": {"address": DEV0.address, "fromNonce": 3, "limit": 5},
    "submitTask": _TASK,
    "submitRequest": _TASK,
    "transfer": _signed(Transfer(NODE0.address, 0, DEAD, 1000)),
    "stake": _signed(Stake(NODE0.address, 0, 1000)),
    "unstake": _signed(Unstake(NODE0.address, 0, 1000)),
    "registerResourceNode": _signed(
        RegisterResourceNode(NODE0.address, 0, "*", "http://127.0.0.1:9300")
    ),
    "submitInferenceResult": _RESULT,
    "submitResponse": _RESULT,
    "submitVerification": _signed(
        SubmitVerification(BASE_TASK.signed.digest, NODE0.address, NODE2.address, False)
    ),
    # refreshed by base_params
    "queryPendingTasks": pending_tasks_params(NODE0, limit=5, chain_id=CHAIN_ID),
    "commitSecrets": _signed(
        CommitSecrets(NODE0.address, 0, crypto.dev_secrets_head(b"\x01" * 32))
    ),
    # node 0's secret of height 1 (its genesis chain, base 0)
    "revealSecret": _signed(RevealSecret(NODE0.address, 1, dev_secret(NODE0.private_key, 1))),
    "aoSpawn": _SPAWN,
    "aoMessage": _signed(
        # relayed from the process to itself: node 0 is its scheduler
        AoMessage(NODE0.address, 1, PROCESS, "ping", '[{"name":"Action","value":"Ping"}]', PROCESS)
    ),
    "aoTerminate": _signed(AoTerminate(NODE0.address, 1, PROCESS)),
    "aoDataItem": _signed(AoDataItem(NODE0.address, 0, _ITEM)),
    # a well-formed id the chain has not scheduled: reads answer -32602 naming it
    "aoProcess": {"processId": "A" * 43},
    "aoProcesses": {"from": 0, "limit": 5},
    "aoSchedule": {"processId": "A" * 43, "fromSlot": 0, "limit": 5},
    "aoMessageById": {"messageId": "A" * 43},
}
BASE.update({method: {} for method in NO_PARAMS})
DEV_BASE: dict[str, dict[str, Any]] = {
    "submitTask": task_params(DEV0.address),
    "submitRequest": task_params(DEV0.address),
    "transfer": {"sender": DEV0.address, "to": DEAD, "amount": "1000"},
    "stake": {"sender": DEV0.address, "amount": "1000"},
    "unstake": {"sender": DEV0.address, "amount": "1000"},
    "registerResourceNode": {"sender": DEV0.address, "models": "*", "endpoint": ""},
    "submitInferenceResult": {
        "taskHash": UNKNOWN_HASH,
        "resourceNode": DEV0.address,
        "result": "r",
    },
    "submitResponse": {"taskHash": UNKNOWN_HASH, "resourceNode": DEV0.address, "result": "r"},
    "submitVerification": {
        "taskHash": UNKNOWN_HASH,
        "verifier": DEV0.address,
        "submitter": NODE1.address,
        "valid": True,
    },
    "commitSecrets": {"sender": DEV0.address, "head": "0x" + "11" * 32},
    # accepted once dev account 0 is a node that committed its chain at height `height - 1`
    "revealSecret": {"resourceNode": DEV0.address, "height": 2, "secret": "0x" + "22" * 32},
    "aoSpawn": {
        "sender": DEV0.address,
        "module": "",
        "scheduler": DEV0.address,
        "memoryLimit": 1 << 20,
        "computeLimit": 10**6,
    },
    # the target and process are filled in by the acceptance test, once dev 0 spawned
    "aoMessage": {"sender": DEV0.address, "target": "A" * 43, "data": "ping"},
    "aoTerminate": {"sender": DEV0.address, "process": "A" * 43},
    "aoDataItem": {
        "sender": DEV0.address,
        "item": wire.hex0x(
            ans104.serialize(
                ans104.create(
                    signer=ans104.EthereumSigner(Wallet.dev(4).private_key),
                    data=b"-- another",
                    tags=[ans104.Tag("Type", "Process")],
                )
            )
        ),
    },
}
# The AO reads whose base id names nothing: a well-typed value of another param still gets
# -32602, naming the id.
AO_UNKNOWN_ID = {"aoProcess": "processId", "aoSchedule": "processId", "aoMessageById": "messageId"}


def base_params(method: str) -> dict[str, Any]:
    """BASE[method]; queryPendingTasks signed now, so its TimeStamp is within the window."""
    if method == "queryPendingTasks":
        return pending_tasks_params(NODE0, limit=5, chain_id=CHAIN_ID)
    return BASE[method]


# None of these equals a base value, so a value of the right type still changes the message.
WRONG_VALUES: list[Any] = [
    None, True, False, 1.5, -1, -(2**63), 2**63, 2**64, 2**256, 10**30 + 0.5,
    "x", "", "0x", "7", "-1", "1e3", " 7", "0x7", "latest", "0x" + "zz" * 20,
    "0x" + "ab" * 20 + "\n", "\u0000", [], [7], {}, {"a": 1},
]  # fmt: skip

HEX = re.compile(r"0x[0-9a-fA-F]*")
DECIMAL = re.compile(r"0|[1-9][0-9]*")


def well_typed(kind: str, value: Any) -> bool:
    """Whether `value` is a valid value of `kind` (PROTOCOL 1, 5.2), independently of the node."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind in ("bytes", "string"):
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "timestamp":
        return is_int and 0 <= value < 2**63
    if kind in ("uint64", "uint256"):
        bits = 64 if kind == "uint64" else 256
        if is_int:  # the server reads JSON integers exactly, at any size
            return 0 <= value < 2**bits
        return isinstance(value, str) and bool(DECIMAL.fullmatch(value)) and int(value) < 2**bits
    if kind == "blockHeight":
        return value is None or value == "latest" or (is_int and value == 0)
    if kind == "height":
        return value == "latest" or (is_int and value == 0)
    if kind == "limit":
        return is_int and 1 <= value <= 1000
    return False  # address, hash, bytes32, taskHash, signature, unknown: none of WRONG_VALUES


def expected_codes(
    method: str, kind: str, value: Any, signed: bool, param: str = "", unchanged: bool = False
) -> set[int] | None:
    """The error codes allowed for `value`; None when the call must succeed. `unchanged`: the
    value is the base's own (a boolean), so the call is the base itself."""
    if kind == "signature":
        return {-32004}
    if kind == "optional signature":
        return None if value is None else {-32004}
    if well_typed(kind, value):
        if method in RESULT_METHODS and (unchanged or not signed):
            return {-32001}  # the base: well-formed, signed, for a task this chain lacks
        if method in TX_METHODS:
            return {-32004} if signed else None
        if param in SIGNED_READ_PARAMS.get(method, ()):
            return {-32004}
        if method in AO_UNKNOWN_ID:
            return {-32602}  # the base's id names nothing on this chain
        return None
    if kind == "taskHash":
        return {-32003} if isinstance(value, str) else {-32003, -32602}
    return {-32602}


def _label(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 40 else text[:37] + "..."


def test_the_table_covers_every_method_in_scope() -> None:
    """A method added to the node without a row here fails this test."""
    assert set(METHODS) - OUT_OF_SCOPE == set(KINDS)
    for method, kinds in KINDS.items():
        params = set(kinds) - {"bogus"}
        assert set(BASE[method]) == params, method  # every param is mutated from a valid base
        if method in DEV_BASE:
            assert set(DEV_BASE[method]) <= params


@pytest.mark.parametrize("method", sorted(TX_METHODS - RESULT_METHODS))
async def test_signed_base_params_are_accepted(chain: LocalChain, method: str) -> None:
    """The bases the table mutates are valid: an error below is caused by the mutation."""
    if method in ("aoMessage", "aoTerminate"):  # node 0's process first
        spawned = await chain.client.call("aoSpawn", BASE["aoSpawn"])
        assert spawned["id"] == PROCESS
    result = await chain.client.call(method, BASE[method])
    assert re.fullmatch(r"0x[0-9a-f]{64}", result["txHash"])
    dev_base = DEV_BASE[method]
    if method in ("aoMessage", "aoTerminate"):  # and dev 0's own
        spawned = await chain.client.call("aoSpawn", DEV_BASE["aoSpawn"])
        key = "target" if method == "aoMessage" else "process"
        dev_base = {**dev_base, key: spawned["id"]}
    if method == "unstake":
        await chain.client.call("stake", DEV_BASE["stake"])
    if method in ("commitSecrets", "revealSecret"):  # a resource node's own transactions
        registered = await chain.client.call(
            "registerResourceNode", DEV_BASE["registerResourceNode"]
        )
        await committed(chain, registered["txHash"])
    if method == "revealSecret":  # dev account 0 commits a chain, then reveals its next secret
        key = DEV0.private_key
        tx_hash = await chain.client.commit_secrets(DEV0, crypto.dev_secrets_head(key))
        base = (await committed(chain, tx_hash))["blockHeight"]
        height = base + 1  # the height of the next block, which includes the reveal
        secret = dev_secret(key, height, base)
        dev_base = {**dev_base, "height": height, "secret": "0x" + secret.hex()}
    result = await chain.client.call(method, dev_base)
    assert re.fullmatch(r"0x[0-9a-f]{64}", result["txHash"])


@pytest.mark.parametrize("method", sorted(RESULT_METHODS))
async def test_result_and_verdict_bases_are_accepted(chain: LocalChain, method: str) -> None:
    """On a fresh chain the bases fail only for their unknown task; once the task (and, for
    the verdict, node 2's result) exists, the signed base answers true."""
    for params in (BASE[method], DEV_BASE[method]):
        with pytest.raises(RpcError) as info:
            await chain.client.call(method, params)
        assert info.value.code == -32001, info.value
    await chain.client.send_presigned(BASE_TASK)
    await committed(chain, BASE_TASK.tx_hash)
    other = result_tx(NODE2, BASE_TASK.digest, "Hallo")
    assert await chain.client.send_presigned(other) is True
    await committed(chain, other.tx_hash)
    assert await chain.client.call(method, BASE[method]) is True


async def test_pending_tasks_base_params_are_accepted(chain: LocalChain) -> None:
    assert await chain.client.call("queryPendingTasks", base_params("queryPendingTasks")) == []
    unsigned = {**base_params("queryPendingTasks"), "Signature": None}
    assert await chain.client.call("queryPendingTasks", unsigned) == []


async def _check_table(
    chain: LocalChain, method: str, param: str, calls: list[tuple[Any, Any, set[int] | None]]
) -> None:
    """Send `calls` (value, params, allowed codes) in one batch and check every answer."""
    client = chain.client
    before = await snapshot(client, NODE0.address, DEV0.address)
    answers = await client.batch([(method, params) for _value, params, _codes in calls])
    problems = []
    for (value, params, codes), answer in zip(calls, answers, strict=True):
        where = f"{method} {param}={_label(value)} params={type(params).__name__}"
        if codes is None:
            if isinstance(answer, RpcError):
                problems.append(f"{where}: expected a result, got {answer}")
            continue
        if not isinstance(answer, RpcError):
            problems.append(f"{where}: expected an error in {codes}, got result {answer!r}")
            continue
        try:
            assert_error_shape(answer)
        except AssertionError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if answer.code not in codes:
            problems.append(f"{where}: code {answer.code} not in {codes}: {answer}")
        elif (
            answer.code == -32602
            and isinstance(params, dict)
            and answer.data is not None
            and answer.data.get("param") not in (param, AO_UNKNOWN_ID.get(method))
        ):
            problems.append(f"{where}: data does not name {param}: {answer.data}")
    assert not problems, "\n".join(problems)
    if all(codes is not None for _v, _p, codes in calls):
        assert await snapshot(client, NODE0.address, DEV0.address) == before
    assert await client.call("chainId") == CHAIN_ID


@pytest.mark.parametrize(("method", "param"), [(m, p) for m, kinds in KINDS.items() for p in kinds])
async def test_wrong_types_by_name(chain: LocalChain, method: str, param: str) -> None:
    kind = KINDS[method][param]
    base = base_params(method)
    calls = [
        (
            value,
            {**base, param: value},
            expected_codes(method, kind, value, True, param, value is base.get(param)),
        )
        for value in WRONG_VALUES
    ]
    await _check_table(chain, method, param, calls)


@pytest.mark.parametrize(
    ("method", "param"),
    [(m, p) for m, kinds in KINDS.items() for p in kinds if m not in NO_PARAMS],
)
async def test_wrong_types_by_position(chain: LocalChain, method: str, param: str) -> None:
    """The same values in upstream positional order (PROTOCOL 5)."""
    kind = KINDS[method][param]
    order = list(KINDS[method])
    base = base_params(method)
    calls = []
    for value in WRONG_VALUES:
        named = {**base, param: value}
        positional = [named.get(name) for name in order]
        codes = expected_codes(method, kind, value, True, param, value is base.get(param))
        calls.append((value, positional, codes))
    await _check_table(chain, method, param, calls)


@pytest.mark.parametrize(
    ("method", "param"),
    [(m, p) for m in sorted(TX_METHODS) for p in KINDS[m] if p != "signature"],
)
async def test_wrong_types_in_dev_mode(chain: LocalChain, method: str, param: str) -> None:
    kind = KINDS[method][param]
    calls = [
        (value, {**DEV_BASE[method], param: value}, {-32602})
        for value in WRONG_VALUES
        if not well_typed(kind, value)
    ]
    await _check_table(chain, method, param, calls)


@pytest.mark.parametrize("method", NO_PARAMS)
async def test_no_param_methods_refuse_positional_values(chain: LocalChain, method: str) -> None:
    calls = [(value, [value], {-32602}) for value in WRONG_VALUES]
    await _check_table(chain, method, "(positional)", calls)


@pytest.mark.parametrize(
    "value",
    [10**400, -(10**400), "\ud800", "a\udfffb"],
    ids=["1e400", "-1e400", "lone high surrogate", "lone low surrogate"],
)
async def test_values_json_parsers_may_refuse(chain: LocalChain, value: Any) -> None:
    """Numbers beyond double range and strings with lone surrogates (RFC 8259 leaves both to
    the parser): a parse error or invalid params, and the node keeps serving."""
    with pytest.raises(RpcError) as info:
        await chain.client.call("submitTask", task_params(DEV0.address, nonce=value, prompts=value))
    assert_error_shape(info.value)
    assert info.value.code in (-32700, -32602)
    assert await chain.client.call("chainId") == CHAIN_ID
