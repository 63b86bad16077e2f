"""JSON-RPC 2.0 over HTTP: the examples of section 7 of the specification
(https://www.jsonrpc.org/specification), translated into methods of this API, and the limits
of PROTOCOL 5 (batches of at most 1000 calls, bodies of at most 5 MiB).

The specification's `subtract` and `sum` become `getAccount` (positional and named params,
where the order matters), `chainId` and `genesisHash`; `update`, `notify_hello` and
`notify_sum` become notifications of real reads; `foobar` and `foo.get` stay unknown.
Every error carries `code`, `message` and a `data` object (PROTOCOL 5.3); a notification
is answered with HTTP 204 and no body.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conformance.support import (
    DEV_WALLETS,
    Api,
    check_error_object,
    check_error_response,
    check_result_response,
    post_raw,
    request,
)

ADDRESS = DEV_WALLETS[0].address
MAX_BATCH = 1000
MAX_BODY = 5 * 1024 * 1024


async def genesis_account(api: Api) -> dict[str, Any]:
    result: dict[str, Any] = await api.client.get_account(ADDRESS, 0)
    return result


# rpc call with positional parameters


@pytest.mark.parametrize("path", ["/", "/rpc"])
async def test_positional_params(api: Api, path: str) -> None:
    """`subtract [42, 23]`: params bound by position, in the upstream order (address,
    blockHeight); the swapped order binds 0 to the address and is refused."""
    status, answer = await api.raw(request("getAccount", [ADDRESS, 0], 1), path)
    assert status == 200
    account = check_result_response(answer, 1)
    assert account["address"] == ADDRESS
    assert account == await genesis_account(api)

    status, answer = await api.raw(request("getAccount", [0, ADDRESS], 2), path)
    assert status == 200
    check_error_response(answer, -32602, 2, mentions=("address",))


# rpc call with named parameters


async def test_named_params_in_any_order(api: Api) -> None:
    """`subtract {"subtrahend": 23, "minuend": 42}` and the reverse give the same result."""
    first = await api.result("getAccount", {"blockHeight": 0, "address": ADDRESS}, 3)
    second = await api.result("getAccount", {"address": ADDRESS, "blockHeight": 0}, 4)
    assert first == second == await api.result("getAccount", [ADDRESS, 0], 5)


# The id of the Response: "It MUST be the same as the value of the id member in the
# Request Object" (section 5).


@pytest.mark.parametrize(
    "request_id",
    [0, -1, 2**53 + 1, 2**63 - 1, "", "x" * 100, 1.5],
    ids=["zero", "negative", "2**53+1", "2**63-1", "empty-string", "long-string", "fraction"],
)
async def test_id_is_echoed_as_given(api: Api, request_id: Any) -> None:
    status, raw = await post_raw(api.http, api.url, json.dumps(request("chainId", [], request_id)))
    assert status == 200
    check_result_response(json.loads(raw), request_id)


async def test_null_id_is_a_call_not_a_notification(api: Api) -> None:
    status, answer = await api.raw({"jsonrpc": "2.0", "method": "chainId", "id": None})
    assert status == 200
    assert check_result_response(answer, None) == await api.client.chain_id()


async def test_id_beyond_64_bits_is_echoed_as_given(api: Api) -> None:
    request_id = 2**64 + 1
    status, raw = await post_raw(api.http, api.url, json.dumps(request("chainId", [], request_id)))
    assert status == 200
    answer = json.loads(raw)  # the stdlib parser keeps big integers exact
    assert answer.get("id") == request_id and type(answer.get("id")) is int, raw


# a Notification


@pytest.mark.parametrize(
    "notification",
    [request("getAccount", [ADDRESS, 0], None), request("foobar", request_id=None)],
    ids=["update-as-getAccount", "foobar"],
)
async def test_notification_has_no_response(api: Api, notification: dict[str, Any]) -> None:
    status, raw = await post_raw(api.http, api.url, json.dumps(notification))
    assert (status, raw) == (204, b"")


# rpc call of non-existent method


async def test_unknown_method(api: Api) -> None:
    status, answer = await api.raw(request("foobar", request_id="1"))
    assert status == 200
    check_error_response(answer, -32601, "1", mentions=("foobar",))


# rpc call with invalid JSON


async def test_invalid_json(api: Api) -> None:
    body = '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]'
    status, raw = await post_raw(api.http, api.url, body)
    assert status == 200
    check_error_response(json.loads(raw), -32700, None)


# rpc call with invalid Request object


async def test_invalid_request_object(api: Api) -> None:
    status, answer = await api.raw({"jsonrpc": "2.0", "method": 1, "params": "bar"})
    assert status == 200
    check_error_response(answer, -32600, None)


# rpc call Batch, invalid JSON


async def test_batch_with_invalid_json_is_one_parse_error(api: Api) -> None:
    body = (
        '[\n  {"jsonrpc": "2.0", "method": "chainId", "params": [], "id": "1"},\n'
        '  {"jsonrpc": "2.0", "method"\n]'
    )
    status, raw = await post_raw(api.http, api.url, body)
    assert status == 200
    check_error_response(json.loads(raw), -32700, None)


# rpc call with an empty Array


async def test_empty_batch_is_one_invalid_request(api: Api) -> None:
    status, answer = await api.raw([])
    assert status == 200
    check_error_response(answer, -32600, None)


# rpc call with an invalid Batch (but not empty), and with invalid Batch


@pytest.mark.parametrize("batch", [[1], [1, 2, 3]], ids=["[1]", "[1,2,3]"])
async def test_batch_of_invalid_items(api: Api, batch: list[int]) -> None:
    status, answers = await api.raw(batch)
    assert status == 200
    assert isinstance(answers, list) and len(answers) == len(batch), answers
    for answer in answers:
        check_error_response(answer, -32600, None)


# rpc call Batch


def mixed_batch() -> list[dict[str, Any]]:
    return [
        request("getAccount", [ADDRESS, 0], "1"),  # sum [1,2,4]
        request("getBlock", [0], None),  # notify_hello [7]
        request("chainId", [], "2"),  # subtract [42,23]
        {"foo": "boo"},
        request("foo.get", {"name": "myself"}, "5"),
        request("genesisHash", request_id="9"),  # get_data
    ]


async def test_mixed_batch(api: Api) -> None:
    """Five answers (the notification has none), matched by id as the specification asks."""
    status, answers = await api.raw(mixed_batch())
    assert status == 200
    assert isinstance(answers, list) and len(answers) == 5, answers
    by_id: dict[Any, dict[str, Any]] = {}
    for answer in answers:
        assert answer["id"] not in by_id, f"two answers with id {answer['id']!r}"
        by_id[answer["id"]] = answer
    assert set(by_id) == {"1", "2", None, "5", "9"}
    assert check_result_response(by_id["1"], "1") == await genesis_account(api)
    assert check_result_response(by_id["2"], "2") == await api.client.chain_id()
    check_error_response(by_id[None], -32600, None)
    check_error_response(by_id["5"], -32601, "5", mentions=("foo.get",))
    assert check_result_response(by_id["9"], "9") == await api.client.genesis_hash()


async def test_batch_answers_follow_the_request_order(api: Api) -> None:
    """This API runs batch items one after another, in order, and answers in that order."""
    status, answers = await api.raw(mixed_batch())
    assert status == 200
    assert [answer["id"] for answer in answers] == ["1", "2", None, "5", "9"]


# rpc call Batch (all notifications)


async def test_all_notification_batch_has_no_response(api: Api) -> None:
    batch = [request("getAccount", [ADDRESS, 0], None), request("getBlock", [0], None)]
    status, raw = await post_raw(api.http, api.url, json.dumps(batch))
    assert (status, raw) == (204, b"")


# PROTOCOL 5: batch and body limits


async def test_batch_of_1000_calls_is_answered_and_1001_is_refused(api: Api) -> None:
    calls = [request("chainId", request_id=i) for i in range(MAX_BATCH + 1)]
    status, answers = await api.raw(calls[:MAX_BATCH])
    assert status == 200 and isinstance(answers, list)
    chain_id = await api.client.chain_id()
    assert sorted(a["id"] for a in answers) == list(range(MAX_BATCH))
    assert all(a["result"] == chain_id for a in answers)

    status, answer = await api.raw(calls)
    assert status == 200
    check_error_response(answer, -32600, None)


async def test_body_of_5_mib_is_served_and_larger_is_refused(api: Api) -> None:
    call = json.dumps(request("chainId", request_id=1)).encode()
    status, raw = await post_raw(api.http, api.url, call + b" " * (MAX_BODY - len(call)))
    assert status == 200
    assert check_result_response(json.loads(raw), 1) == await api.client.chain_id()

    status, raw = await post_raw(api.http, api.url, call + b" " * (MAX_BODY + 1 - len(call)))
    assert status != 200
    if raw.startswith(b"{"):  # this node answers 413 with a JSON-RPC error
        check_error_object(json.loads(raw)["error"], -32600)
