"""Arbitrary JSON as the params of every JSON-RPC method (hypothesis), sent to a real
validator: positional lists, named objects, and named objects made from a valid call with one
param turned into junk (often of its own JSON type) or left out.

Every answer is HTTP 200 with a result or an error whose code is in the table of PROTOCOL 5.3
(rpc.errors) and fits the method (a read is never -32000, a transfer never -32003, ...), never
-32603; -32700 only for a body the JSON parser refuses (a lone surrogate in a string). A
rejected call changes nothing: the accounts (with their pending nonces), the resource nodes,
the task counters, the task on the chain and the mempool are compared before and after every
call. An accepted call adds exactly what it says: one transaction to the mempool for a txHash
or `true`, nothing for a read or `false`.

The validator runs in its own process (`python -m rpc`), so a crash there fails the test
instead of taking the run down, and the hypothesis tests stay synchronous: requests go
through an event loop in a thread. Its chain holds a committed task with one result (made
with automine), then the validator is restarted with a block time of a day, so no block
changes the state between two snapshots. Valid calls are signed by resource node 1 (not an
unlocked account) or made in dev mode by dev account 0: mutations that keep them valid are
accepted, and the snapshot after them is the next baseline.

`INFERCHAIN_LONG=1` runs the `long` variant with LONG_FACTOR times the examples;
`--hypothesis-show-statistics` shows how often each code was answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chain.protocol.types import (
    RegisterResourceNode,
    Stake,
    SubmitInferenceResult,
    SubmitTask,
    SubmitVerification,
    Transfer,
    Unstake,
)
from rpc import api, errors
from rpc.client import InferchainClient, RpcError, Wallet, pending_tasks_params, sign_params
from rpc.methods import AWAITING_METHODS, METHODS
from tests.helpers import ValidatorProcess, make_genesis, write_genesis
from tests.rpc.support import (
    CHAIN_ID,
    DEAD,
    DEV0,
    NODE0,
    NODE1,
    NODES,
    STRANGER,
    VALIDATOR,
    assert_error_shape,
    batched_snapshot,
    post_json,
    request,
    result_tx,
    task_params,
    wrong_checksum,
)

LONG = os.environ.get("INFERCHAIN_LONG") == "1"
LONG_FACTOR = 20
EXAMPLES = 20  # per method and shape: 21 methods x 3 shapes x 20 = 1260 calls by default
A_DAY_MS = 86_400_000

WATCHED = (
    *(Wallet.dev(i).address for i in range(10)),
    *(n.address for n in NODES),
    VALIDATOR.address,
    STRANGER.address,
    DEAD,
)

# The error table of PROTOCOL 5.3, as rpc/errors.py has it.
TABLE_CODES = {spec.code for _cls, spec in errors.ERROR_TABLE} | {
    errors.PARSE_ERROR,
    errors.INVALID_REQUEST,
    errors.METHOD_NOT_FOUND,
    errors.INVALID_PARAMS,
}
# What each kind of method may answer, by the "when" column of the table.
READ_CODES = {errors.INVALID_PARAMS}
ACCOUNT_TX_CODES = {errors.INVALID_PARAMS, -32000, -32002, -32004, -32005, -32007}
RESULT_CODES = {errors.INVALID_PARAMS, -32001, -32004, -32005, -32006, -32007}
ACCOUNT_TX_METHODS = {
    "submitTask",
    "submitRequest",
    "transfer",
    "stake",
    "unstake",
    "registerResourceNode",
}
RESULT_METHODS = {"submitInferenceResult", "submitResponse", "submitVerification"}
# The other transactions (secrets, AO): what an account transaction answers, and -32006 for
# an AO id scheduled already.
OTHER_TX_METHODS = set(api.METHOD_OF_TYPE.values()) - ACCOUNT_TX_METHODS - RESULT_METHODS
OTHER_TX_CODES = ACCOUNT_TX_CODES | {-32006}
# The dev controls change the chain by design (mine, revert, reset): they are left out of this
# run, whose chain must not move; tests/rpc/test_dev_controls.py has their bad-input rows.
FUZZED = sorted(set(METHODS) - AWAITING_METHODS)
METHOD_CODES: dict[str, set[int]] = {method: READ_CODES for method in FUZZED}
METHOD_CODES.update({method: ACCOUNT_TX_CODES for method in ACCOUNT_TX_METHODS})
METHOD_CODES.update({method: RESULT_CODES for method in RESULT_METHODS})
METHOD_CODES.update({method: OTHER_TX_CODES for method in OTHER_TX_METHODS})
METHOD_CODES["queryTask"] = {errors.INVALID_PARAMS, -32003}
METHOD_CODES["queryPendingTasks"] = {errors.INVALID_PARAMS, -32004, -32005}

T = TypeVar("T")


class LoopThread:
    """An event loop in a thread, so synchronous hypothesis tests can drive aiohttp."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class FuzzTarget:
    """The validator under fuzzing, what its chain holds, and the last state seen."""

    url: str
    loop: LoopThread
    client: InferchainClient
    session: aiohttp.ClientSession
    task_hash: str
    task_tx: str
    result_tx: str
    state: dict[str, Any] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return self.loop.run(batched_snapshot(self.client, *WATCHED, task_hashes=(self.task_hash,)))


async def _prepare_chain(url: str) -> tuple[str, str, str]:
    """A committed task of dev account 0 for two nodes, with node 0's result committed."""
    async with InferchainClient(url) as client:
        receipt = await client.submit_task(
            DEV0, prompts="fuzz", target_count=2, model_options='{"model":"demo"}'
        )
        await client.wait_for_tx(receipt.tx_hash)
        result = result_tx(NODE0, receipt.task_hash, "r0")
        assert await client.send_presigned(result) is True
        await client.wait_for_tx(result.tx_hash)
        return receipt.task_hash, receipt.tx_hash, result.tx_hash


async def _open_session(url: str) -> tuple[InferchainClient, aiohttp.ClientSession]:
    return InferchainClient(url, timeout=30.0), aiohttp.ClientSession()


async def _close_session(client: InferchainClient, session: aiohttp.ClientSession) -> None:
    await client.close()
    await session.close()


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    genesis = write_genesis(
        root / "genesis.json",
        make_genesis(compute_deadline_blocks=10_000, verify_deadline_blocks=10_000),
    )
    loop = LoopThread()
    setup = ValidatorProcess(genesis, root / "data")
    try:
        task_hash, task_tx, result_hash = loop.run(_prepare_chain(setup.start()))
        assert setup.terminate() == 0
    finally:
        setup.close()
    validator = ValidatorProcess(genesis, root / "data", "--block-time", str(A_DAY_MS))
    try:
        url = validator.start()
        client, session = loop.run(_open_session(url))
        target = FuzzTarget(url, loop, client, session, task_hash, task_tx, result_hash)
        target.state = target.snapshot()
        yield target
        assert validator.proc is not None and validator.proc.poll() is None, "validator exited"
        assert loop.run(client.call("chainId")) == CHAIN_ID
        loop.run(_close_session(client, session))
    finally:
        validator.close()
        loop.close()


# Strategies


# Numbers beyond the range of a double are left out: the parser refuses the whole body
# (test_param_types checks that once); they would drown every other answer in -32700.
HUGE = [2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**128, 2**256 - 1, 2**256, 10**308]
ints = st.one_of(
    st.integers(min_value=-3, max_value=2**16),
    st.integers(min_value=-(2**1000), max_value=2**1000),
    st.sampled_from(HUGE),
    st.sampled_from(HUGE).map(lambda n: -n),
)
floats = st.floats(allow_nan=False, allow_infinity=False)
hex_strings = st.one_of(
    st.binary(max_size=80).map(lambda b: "0x" + b.hex()),
    st.from_regex(r"0[xX][0-9a-fA-FgG]{0,140}", fullmatch=True),
    st.binary(min_size=20, max_size=20).map(lambda b: b.hex()),
)


def _known_strings() -> list[str]:
    addresses = [*WATCHED, NODE0.address.lower(), "0x" + NODE1.address[2:].upper()]
    addresses.append(wrong_checksum(DEV0.address))
    return [
        *addresses,
        "latest",
        "earliest",
        "pending",
        "0x",
        "0x0",
        "0",
        "-0",
        "00",
        "1e3",
        "*",
        "http://127.0.0.1:1",
        '{"model":"demo"}',
        '{"maxFee":"1"}',
        "{",
        "[" * 50,
        "0x" + "00" * 32,
        "0x" + "ff" * 65,
    ]


strings = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0x80), max_size=20),
    hex_strings,
    st.integers(min_value=-(2**260), max_value=2**260).map(str),
    st.sampled_from(_known_strings()),
    st.just(""),
)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, strings)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=8,
)


def param_names(method: str) -> list[str]:
    spec = METHODS[method]
    return sorted({*spec.names, *spec.aliases})


def positional_params(method: str) -> st.SearchStrategy[list[Any]]:
    return st.lists(json_values, max_size=len(METHODS[method].names) + 2)


def named_params(method: str) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.one_of(
        st.sampled_from(param_names(method) or ["bogus"]),
        st.sampled_from(["", "bogus", "signature", "nonce", "params", "id"]),
        st.text(max_size=10),
    )
    return st.dictionaries(keys, json_values, max_size=len(METHODS[method].names) + 2)


def _signed(msg: Any) -> dict[str, Any]:
    return sign_params(msg, CHAIN_ID, NODE1.private_key)


def valid_calls(target: FuzzTarget, method: str) -> list[dict[str, Any]]:
    """Valid named params for `method` on the fuzzed chain: signed by node 1 and, for
    transactions, in dev mode by dev account 0."""
    task = bytes.fromhex(target.task_hash[2:])
    task_msg = SubmitTask(NODE1.address, 0, "text", 1, "p", '{"model":"demo"}')
    dev_task = task_params(DEV0.address)
    result = _signed(SubmitInferenceResult(task, NODE1.address, "r1", ""))
    dev_result = {"taskHash": target.task_hash, "resourceNode": DEV0.address, "result": "r"}
    calls: dict[str, list[dict[str, Any]]] = {
        "getBlock": [{"height": 1}],
        "getBlockEvents": [{"height": 1}],
        "getTransaction": [{"txHash": target.task_tx}, {"txHash": target.result_tx}],
        "getAccount": [{"address": DEV0.address, "blockHeight": 1}],
        "queryTask": [{"taskHash": target.task_hash}],
        "getTasksBySender": [{"address": DEV0.address, "fromNonce": 0, "limit": 5}],
        "submitTask": [_signed(task_msg), dev_task],
        "submitRequest": [_signed(task_msg), dev_task],
        "transfer": [
            _signed(Transfer(NODE1.address, 0, DEAD, 1000)),
            {"sender": DEV0.address, "to": DEAD, "amount": "1000"},
        ],
        "stake": [
            _signed(Stake(NODE1.address, 0, 1000)),
            {"sender": DEV0.address, "amount": "1000"},
        ],
        "unstake": [
            _signed(Unstake(NODE1.address, 0, 1000)),
            {"sender": DEV0.address, "amount": "1000"},
        ],
        "registerResourceNode": [
            _signed(RegisterResourceNode(NODE1.address, 0, "*", "http://127.0.0.1:9301")),
            {"sender": DEV0.address, "models": "*", "endpoint": ""},
        ],
        "submitInferenceResult": [result, dev_result],
        "submitResponse": [result, dev_result],
        "submitVerification": [
            _signed(SubmitVerification(task, NODE1.address, NODE0.address, True)),
            {
                "taskHash": target.task_hash,
                "verifier": DEV0.address,
                "submitter": NODE0.address,
                "valid": False,
            },
        ],
        "queryPendingTasks": [pending_tasks_params(NODE1, limit=5, chain_id=CHAIN_ID)],
    }
    return calls.get(method, [{}])


def like(value: Any) -> st.SearchStrategy[Any]:
    """Values of the JSON type of `value`: junk that gets past the first type check."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return ints
    if isinstance(value, str):
        return strings
    return json_values


@st.composite
def mutated_params(draw: st.DrawFn, target: FuzzTarget, method: str) -> dict[str, Any]:
    """A valid call with one param (or an alias, or an unknown name) set to junk of its own
    type or any other, or left out."""
    params = dict(draw(st.sampled_from(valid_calls(target, method))))
    key = draw(st.sampled_from(sorted({*params, *param_names(method), "bogus"})))
    if key in params and draw(st.integers(0, 4)) == 0:
        del params[key]
    else:
        params[key] = draw(st.one_of(like(params.get(key)), json_values))
    return params


def draw_params(data: st.DataObject, target: FuzzTarget, method: str, shape: str) -> Any:
    if shape == "positional":
        return data.draw(positional_params(method), label="params")
    if shape == "named":
        return data.draw(named_params(method), label="params")
    return data.draw(mutated_params(target, method), label="params")


# The check


def parser_refuses(payload: Any) -> bool:
    """Whether the validator's JSON parser (orjson) refuses the request body: numbers beyond
    the range of a double (RFC 8259 leaves their handling to the parser)."""
    try:
        orjson.loads(json.dumps(payload))
    except orjson.JSONDecodeError:
        return True
    return False


def admitted_by(method: str, result: Any) -> int:
    """How many transactions an accepted call adds to the mempool, checked for its shape."""
    if method in ACCOUNT_TX_METHODS or method in OTHER_TX_METHODS:
        assert isinstance(result, dict) and isinstance(result.get("txHash"), str), result
        return 1
    if method in RESULT_METHODS:
        assert isinstance(result, bool), result
        return int(result)
    return 0


def check_call(target: FuzzTarget, method: str, params: Any) -> None:
    payload = request(method, params, request_id=1)
    status, answer = target.loop.run(post_json(target.session, target.url, payload))
    assert status == 200, f"HTTP {status} for {method} {params!r}: {answer!r}"
    assert isinstance(answer, dict) and answer.get("jsonrpc") == "2.0", answer
    assert ("result" in answer) != ("error" in answer), answer
    before = target.state
    after = target.snapshot()
    target.state = after
    assert after["height"] == before["height"], "a block was made during the fuzz run"
    if "error" in answer:
        error = RpcError.from_response(answer["error"])
        event(f"error {error.code}")
        assert_error_shape(error)
        assert error.code in TABLE_CODES, f"{method}: {error} is not in the table"
        if error.code == errors.PARSE_ERROR:
            assert parser_refuses(payload), f"{method} {params!r}: {error}"
            assert answer.get("id") is None
        else:
            assert answer.get("id") == 1, answer
            assert error.code in METHOD_CODES[method], f"{method} {params!r}: {error}"
        assert after == before, f"the rejected call {method} {params!r} ({error}) changed state"
        return
    assert answer.get("id") == 1, answer
    admitted = admitted_by(method, answer["result"])
    event("accepted" if admitted else "answered")
    assert after["mempool"] == before["mempool"] + admitted, (method, params, answer)
    if not admitted:
        assert after == before, f"{method} {params!r} answered {answer['result']!r} and changed"


SHAPES = ["positional", "named", "mutated"]
FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_every_method_is_fuzzed_and_has_codes() -> None:
    assert set(METHOD_CODES) == set(FUZZED)
    for codes in METHOD_CODES.values():
        assert codes <= TABLE_CODES and errors.INTERNAL_ERROR not in codes


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", FUZZED)
@settings(FUZZ_SETTINGS, max_examples=EXAMPLES)
@given(data=st.data())
def test_arbitrary_params(
    fuzz_target: FuzzTarget, method: str, shape: str, data: st.DataObject
) -> None:
    check_call(fuzz_target, method, draw_params(data, fuzz_target, method, shape))


@pytest.mark.long
@pytest.mark.skipif(not LONG, reason="the long fuzz run: INFERCHAIN_LONG=1")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", FUZZED)
@settings(FUZZ_SETTINGS, max_examples=EXAMPLES * LONG_FACTOR)
@given(data=st.data())
def test_arbitrary_params_long(
    fuzz_target: FuzzTarget, method: str, shape: str, data: st.DataObject
) -> None:
    check_call(fuzz_target, method, draw_params(data, fuzz_target, method, shape))
