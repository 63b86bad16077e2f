"""JSON-RPC 2.0 over HTTP (PROTOCOL 5): batches, notifications, body limits.

Mixed batches, notifications and oversize bodies cannot be produced by the client library,
so these tests post raw bodies; the expected transaction hashes come from signing the same
messages locally (dev-mode signatures are deterministic, RFC 6979: see test_transactions).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from chain.protocol.types import Transfer
from rpc.client import RpcError, presign
from tests.helpers import LocalChain
from tests.rpc.support import (
    CHAIN_ID,
    DEAD,
    DEV0,
    DEV1,
    DEV_BALANCE,
    assert_error_shape,
    committed,
    post_json,
    post_raw,
    request,
    snapshot,
    task_params,
)

MAX_BODY = 5 * 1024 * 1024


def dev_transfer(amount: int, request_id: Any = None, sender: Any = DEV0) -> dict[str, Any]:
    params = {"sender": sender.address, "to": DEAD, "amount": str(amount)}
    return request("transfer", params, request_id)


def expected_hash(nonce: int, amount: int, sender: Any = DEV0) -> str:
    msg = Transfer(sender.address, nonce, DEAD, amount)
    return presign(msg, CHAIN_ID, sender.private_key).tx_hash


async def test_mixed_batch_answered_in_order(
    chain: LocalChain, http: aiohttp.ClientSession
) -> None:
    head = await chain.client.block_number()
    batch = [
        request("chainId", request_id=1),
        {"jsonrpc": "2.0", "method": 5, "id": 2},  # invalid request
        dev_transfer(7),  # notification: not answered, but executed
        request("nope", {"a": 1}, request_id="three"),
        request("getBlock", {"height": head + 100}, request_id=4.5),
        request("getAccount", {"address": DEV0.address}, request_id=0),
        request("blockNumber", request_id=None),  # notification of a read
        request("genesisHash", request_id=None)
        | {"id": None},  # id null: a call, not a notification
        dev_transfer(8, request_id=6),
    ]
    status, answers = await post_json(http, chain.url, batch)
    assert status == 200 and isinstance(answers, list)
    assert [a["id"] for a in answers] == [1, 2, "three", 4.5, 0, None, 6]
    assert all(a["jsonrpc"] == "2.0" for a in answers)
    assert answers[0]["result"] == CHAIN_ID
    codes = [RpcError.from_response(answers[i]["error"]).code for i in (1, 2, 3)]
    assert codes == [-32600, -32601, -32602]
    for i in (1, 2, 3):
        assert_error_shape(RpcError.from_response(answers[i]["error"]))
    # The notification before it was admitted first: the getAccount in between sees it.
    assert answers[4]["result"]["pendingNonce"] == 1
    assert answers[5]["result"] == await chain.client.genesis_hash()
    assert answers[6]["result"]["txHash"] == expected_hash(1, 8)

    await committed(chain, expected_hash(0, 7))
    await committed(chain, expected_hash(1, 8))
    assert (await chain.client.get_account(DEAD))["balance"] == "15"


async def test_all_notification_batch_is_204_and_takes_effect(
    chain: LocalChain, http: aiohttp.ClientSession
) -> None:
    batch = [dev_transfer(amount) for amount in (1, 2, 3)]
    batch += [
        request("nope", request_id=None),
        request("getBlock", {"height": -1}, request_id=None),
        request("chainId", request_id=None),
    ]
    async with http.post(chain.url + "/", data=json.dumps(batch)) as resp:
        assert resp.status == 204
        assert await resp.read() == b""
    for nonce, amount in enumerate((1, 2, 3)):
        await committed(chain, expected_hash(nonce, amount))
    assert (await chain.client.get_account(DEAD))["balance"] == "6"
    assert (await chain.client.get_account(DEV0.address))["nonce"] == 3


@pytest.mark.parametrize("path", ["/", "/rpc"])
async def test_single_notification_is_204(
    chain: LocalChain, http: aiohttp.ClientSession, path: str
) -> None:
    status, body = await post_json(http, chain.url, dev_transfer(11), path=path)
    assert (status, body) == (204, None)
    await committed(chain, expected_hash(0, 11))
    assert (await chain.client.get_account(DEAD))["balance"] == "11"


@pytest.mark.parametrize(
    "notification",
    [
        request("nope", {"a": 1}, None),
        request("transfer", {"sender": DEV0.address, "to": DEAD, "amount": "0"}, None),
        request("transfer", {"sender": DEV0.address, "nonce": 9, "to": DEAD, "amount": "1"}, None),
        request("stake", {"sender": DEV0.address, "amount": str(DEV_BALANCE + 1)}, None),
        request("getBlock", {"height": "x"}, None),
    ],
    ids=["unknown method", "invalid params", "wrong nonce", "insufficient balance", "bad read"],
)
async def test_failing_notification_is_204_and_changes_nothing(
    chain: LocalChain, http: aiohttp.ClientSession, notification: dict[str, Any]
) -> None:
    before = await snapshot(chain.client, DEV0.address, DEAD)
    status, body = await post_json(http, chain.url, notification)
    assert (status, body) == (204, None)
    assert await snapshot(chain.client, DEV0.address, DEAD) == before


async def test_batch_is_executed_in_order(chain: LocalChain, http: aiohttp.ClientSession) -> None:
    """Explicit nonces out of order: the first is refused (the second is not admitted yet)."""
    batch = [
        request("submitTask", task_params(DEV1.address, nonce=1, prompts="b"), request_id="b"),
        request("submitTask", task_params(DEV1.address, nonce=0, prompts="a"), request_id="a"),
        request("submitTask", task_params(DEV1.address, nonce=1, prompts="b"), request_id="b2"),
        request("submitTask", task_params(DEV1.address, nonce=2, prompts="c"), request_id="c"),
    ]
    status, answers = await post_json(http, chain.url, batch)
    assert status == 200 and [a["id"] for a in answers] == ["b", "a", "b2", "c"]
    refused = RpcError.from_response(answers[0]["error"])
    assert refused.code == -32000 and refused.data is not None and refused.data["expected"] == 0
    for answer in answers[1:]:
        await committed(chain, answer["result"]["txHash"])
    tasks = [await chain.client.query_task(a["result"]["taskHash"]) for a in answers[1:]]
    assert [(t["nonce"], t["prompts"]) for t in tasks] == [(0, "a"), (1, "b"), (2, "c")]


async def test_the_same_transaction_twice_in_one_batch(chain: LocalChain) -> None:
    item = ("transfer", {"sender": DEV0.address, "nonce": 0, "to": DEAD, "amount": "4"})
    first, second = await chain.client.batch([item, item])
    assert isinstance(first, dict) and isinstance(second, RpcError)
    assert second.code == -32000 and second.data is not None and second.data["expected"] == 1
    await committed(chain, first["txHash"])
    assert (await chain.client.get_account(DEAD))["balance"] == "4"


async def test_repeated_ids_are_each_answered(
    chain: LocalChain, http: aiohttp.ClientSession
) -> None:
    batch = [request("chainId", request_id=1), request("blockNumber", request_id=1)]
    status, answers = await post_json(http, chain.url, batch)
    assert status == 200
    assert answers == [
        {"jsonrpc": "2.0", "result": CHAIN_ID, "id": 1},
        {"jsonrpc": "2.0", "result": 0, "id": 1},
    ]


# Body size (5 MiB)


async def test_oversize_body_is_413_with_a_jsonrpc_error(
    chain: LocalChain, http: aiohttp.ClientSession
) -> None:
    before = await snapshot(chain.client, DEV0.address)
    params = task_params(DEV0.address, prompts="x" * MAX_BODY)
    status, answer = await post_json(http, chain.url, request("submitTask", params))
    assert status == 413 and isinstance(answer, dict)
    assert answer["jsonrpc"] == "2.0" and answer["id"] is None
    error = RpcError.from_response(answer["error"])
    assert_error_shape(error)
    assert await snapshot(chain.client, DEV0.address) == before


@pytest.mark.parametrize(("size", "status"), [(MAX_BODY, 200), (MAX_BODY + 1, 413)])
async def test_body_limit_boundary(
    chain: LocalChain, http: aiohttp.ClientSession, size: int, status: int
) -> None:
    call = json.dumps(request("chainId", request_id=1)).encode()
    body = call + b" " * (size - len(call))
    assert len(body) == size
    got, answer = await post_raw(http, chain.url, body)
    assert got == status
    if status == 200:
        assert answer == {"jsonrpc": "2.0", "result": CHAIN_ID, "id": 1}
    else:
        assert_error_shape(RpcError.from_response(answer["error"]))
    assert await chain.client.call("chainId") == CHAIN_ID


async def test_malformed_batch_is_one_parse_error(
    chain: LocalChain, http: aiohttp.ClientSession
) -> None:
    body = json.dumps([request("chainId"), request("blockNumber")])[:-3]
    status, answer = await post_raw(http, chain.url, body)
    assert status == 200 and answer["id"] is None
    error = RpcError.from_response(answer["error"])
    assert error.code == -32700
    assert_error_shape(error)
