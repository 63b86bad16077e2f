"""The OpenRPC document (PROTOCOL 5.8): `rpc.discover` on a real validator answers
docs/openrpc.json; the document names every method of the table with the params it binds and
the codes it answers, is valid under the OpenRPC meta-schema, and the results real calls
return are valid under their methods' schemas.

The meta-schemas are vendored in tests/vectors, so nothing is downloaded:
`openrpc-meta-schema.json` is the `openrpcDocument` export of the npm package
`@open-rpc/meta-schema` 1.14.9 (its index.js; the package ships no schema.json), and
`json-schema-meta-schema.json`, which it refers to as https://meta.json-schema.tools, is
`schema.json` of `@json-schema-tools/meta-schema` 1.8.0.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

from chain.protocol.errors import InvalidParams
from rpc import api, errors, openrpc
from rpc.client import RpcError
from rpc.methods import METHODS, MethodSpec, chain_id
from tests.helpers import LocalChain, local_chain, make_genesis, verify_with_assigned
from tests.rpc.support import (
    DEV0,
    DEV1,
    NODE0,
    STRANGER,
    mine,
    post_json,
    request,
    result_tx,
    rpc_error,
    task_params,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
OPENRPC_META = json.loads((VECTORS / "openrpc-meta-schema.json").read_text())
JSON_SCHEMA_META = json.loads((VECTORS / "json-schema-meta-schema.json").read_text())
COMMITTED = json.loads(openrpc.DOCUMENT_PATH.read_text(encoding="utf-8"))
# The meta-schemas under every address the document and they refer to them by.
REGISTRY: Registry[Any] = Registry().with_resources(
    [
        ("https://meta.json-schema.tools", DRAFT7.create_resource(JSON_SCHEMA_META)),
        ("https://meta.json-schema.tools/", DRAFT7.create_resource(JSON_SCHEMA_META)),
        ("https://meta.open-rpc.org/", DRAFT7.create_resource(OPENRPC_META)),
        (openrpc.META_SCHEMA_URL, DRAFT7.create_resource(OPENRPC_META)),
    ]
)
META_VALIDATOR = Draft7Validator(OPENRPC_META, registry=REGISTRY)


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """A dev chain whose blocks the test produces; its nodes serve "*" and need no secrets."""
    genesis = make_genesis(canary_rate_bps=0)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as running:
        yield running


def method_object(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found = [m for m in doc["methods"] if m["name"] == name]
    assert len(found) == 1, f"{name} is listed {len(found)} times"
    return found[0]


def listed_codes(doc: dict[str, Any], name: str) -> list[int]:
    """The codes of a method's errors, each reference resolved in components.errors."""
    codes = []
    for item in method_object(doc, name)["errors"]:
        prefix = "#/components/errors/"
        assert item["$ref"].startswith(prefix), item
        codes.append(doc["components"]["errors"][item["$ref"][len(prefix) :]]["code"])
    return codes


def result_validator(doc: dict[str, Any], name: str) -> Draft7Validator:
    """A validator of `name`'s result schema, its references resolved in the document."""
    schema = {
        "allOf": [method_object(doc, name)["result"]["schema"]],
        "components": doc["components"],
    }
    return Draft7Validator(schema, registry=REGISTRY)


def check_result(name: str, value: Any) -> None:
    errors_found = [e.message for e in result_validator(COMMITTED, name).iter_errors(value)]
    assert not errors_found, f"{name} answered {value!r}, not its schema: {errors_found[:3]}"


# The document and the table


async def test_discover_over_http_answers_the_committed_document(
    chain: LocalChain, http: aiohttp.ClientSession
) -> None:
    status, body = await post_json(http, chain.url, request(api.RPC_DISCOVER))
    assert status == 200 and body["id"] == 1, body
    assert body["result"] == COMMITTED
    assert await chain.client.discover() == COMMITTED
    # Also positionally with no params, and over /rpc.
    status, body = await post_json(http, chain.url, request(api.RPC_DISCOVER, []), "/rpc")
    assert status == 200 and body["result"] == COMMITTED


def test_the_committed_document_is_the_one_the_table_gives(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert openrpc.main(["--check"]) == 0, capsys.readouterr().err
    text = openrpc.DOCUMENT_PATH.read_text(encoding="utf-8")
    assert text == openrpc.render(openrpc.document()) and text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_check_exits_1_on_a_stale_file_and_write_mends_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "openrpc.json"
    assert openrpc.main(["--check", "--path", str(path)]) == 1
    assert "stale" in capsys.readouterr().err
    stale = dict(COMMITTED, openrpc="1.2.5")
    path.write_text(json.dumps(stale, indent=2, sort_keys=True) + "\n")
    assert openrpc.main(["--check", "--path", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "python -m rpc.openrpc --write" in err
    assert openrpc.main(["--write", "--path", str(path)]) == 0
    assert json.loads(path.read_text()) == COMMITTED
    assert openrpc.main(["--check", "--path", str(path)]) == 0


def test_every_method_of_the_table_is_described() -> None:
    missing = openrpc.undescribed(METHODS)
    assert not missing, (
        f"methods in rpc.methods.METHODS with no row in rpc.openrpc.METHOD_DOCS: {missing}; "
        "add one (summary, description, result schema, errors) and run "
        "python -m rpc.openrpc --write"
    )
    stale = sorted(set(openrpc.METHOD_DOCS) - set(METHODS))
    assert not stale, f"rows in rpc.openrpc.METHOD_DOCS for no method of METHODS: {stale}"
    assert [m["name"] for m in COMMITTED["methods"]] == list(METHODS)
    assert COMMITTED["openrpc"] == "1.2.6"
    assert COMMITTED["info"]["title"] == "inferchain validator JSON-RPC"
    assert COMMITTED["info"]["version"] == openrpc.package_version()


def test_a_method_without_a_row_is_named() -> None:
    table = {**METHODS, "dev_example": MethodSpec(chain_id)}
    assert openrpc.undescribed(table) == ["dev_example"]
    with pytest.raises(KeyError, match="dev_example"):
        openrpc.build_document(table, "0")
    # A read method's param without a schema is named as well.
    table = {api.CHAIN_ID: MethodSpec(chain_id, ("height",))}
    with pytest.raises(KeyError, match=f"{api.CHAIN_ID}: param height"):
        openrpc.build_document(table, "0")


def test_the_aliases_are_described_as_aliases() -> None:
    for alias, target in api.ALIASES.items():
        aliased, original = method_object(COMMITTED, alias), method_object(COMMITTED, target)
        assert f"alias of {target}" in aliased["summary"]
        assert target in aliased["description"]
        for key in ("params", "result", "errors", "paramStructure"):
            assert aliased[key] == original[key], (alias, key)


def test_the_document_is_valid_openrpc() -> None:
    problems = [
        f"{list(e.absolute_path)}: {e.message}" for e in META_VALIDATOR.iter_errors(COMMITTED)
    ]
    assert not problems, problems[:5]
    # The meta-schema does check: a param without a schema, a schema of the wrong shape.
    broken = json.loads(json.dumps(COMMITTED))
    del method_object(broken, api.GET_ACCOUNT)["params"][0]["schema"]
    assert not META_VALIDATOR.is_valid(broken)
    broken = json.loads(json.dumps(COMMITTED))
    broken["components"]["schemas"]["Address"]["type"] = 20
    assert not META_VALIDATOR.is_valid(broken)


def test_params_are_those_the_table_binds() -> None:
    for name, spec in METHODS.items():
        method = method_object(COMMITTED, name)
        assert method["paramStructure"] == "either"
        params = method["params"]
        assert [p["name"] for p in params] == list(spec.names), name
        assert {p["name"] for p in params if p["required"]} == set(spec.required), name
        aliases = {alias: p["name"] for p in params for alias in p.get("x-aliases", [])}
        assert aliases == spec.aliases, name
        if spec.message_type is not None:
            fields = [wire_name for wire_name, _attr, _abi in spec.message_type.FIELDS]
            assert [p["name"] for p in params] == [*fields, "signature"], name
    transfer = method_object(COMMITTED, api.TRANSFER)["params"]
    assert [(p["name"], p["required"]) for p in transfer] == [
        ("sender", True),
        ("nonce", False),
        ("to", True),
        ("amount", True),
        ("signature", False),
    ]
    assert transfer[0]["schema"] == {"$ref": "#/components/schemas/Address"}
    assert transfer[3]["schema"] == {"$ref": "#/components/schemas/UInt256"}


def test_errors_are_the_table_of_rpc_errors() -> None:
    components = COMMITTED["components"]["errors"]
    codes = {
        value
        for constant, value in vars(errors).items()
        if constant.isupper() and type(value) is int
    }
    assert {e["code"] for e in components.values()} == codes
    assert components["NonceMismatch"] == {"code": -32000, "message": "Invalid nonce provided"}
    assert (
        components["InvalidParams"]["message"] == errors.error_for(InvalidParams("x", "y")).message
    )
    for name in METHODS:
        listed = listed_codes(COMMITTED, name)
        assert listed[0] == errors.INVALID_PARAMS and len(set(listed)) == len(listed), name
        if METHODS[name].message_type is not None:
            assert {errors.INVALID_SIGNATURE, errors.MEMPOOL_FULL} <= set(listed), name
    assert listed_codes(COMMITTED, api.QUERY_TASK) == [errors.INVALID_PARAMS, errors.TASK_NOT_FOUND]
    assert errors.NONCE_MISMATCH not in listed_codes(COMMITTED, api.SUBMIT_INFERENCE_RESULT)
    assert errors.UNKNOWN_TASK in listed_codes(COMMITTED, api.SUBMIT_VERIFICATION)


# Real answers against the document


async def test_real_results_are_valid_under_their_schemas(manual: LocalChain) -> None:
    client = manual.client
    for name in (api.CHAIN_ID, api.GENESIS_HASH, api.BLOCK_NUMBER, api.GET_PARAMS):
        check_result(name, await client.call(name))
    for name in (api.GET_VALIDATORS, api.GET_RESOURCE_NODES, api.TASK_STATS):
        check_result(name, await client.call(name))

    receipt = await client.call(api.SUBMIT_TASK, task_params(DEV0.address))
    check_result(api.SUBMIT_TASK, receipt)
    task_hash = receipt["taskHash"]
    waiting = await client.call(api.QUERY_TASK, {"taskHash": task_hash})
    assert waiting["createdHeight"] is None
    check_result(api.QUERY_TASK, waiting)
    check_result(api.GET_TRANSACTION, await client.call(api.GET_TRANSACTION, [receipt["txHash"]]))
    mine(manual)

    pending = await client.call(
        api.QUERY_PENDING_TASKS, {"ResourceAddress": NODE0.address, "TimeStamp": 0}
    )
    assert [item["taskHash"] for item in pending] == [task_hash]
    check_result(api.QUERY_PENDING_TASKS, pending)
    result = result_tx(NODE0, task_hash, '{"answer": 42}', proof="0xc0ffee")
    accepted = await client.send_presigned(result)
    assert accepted is True
    check_result(api.SUBMIT_INFERENCE_RESULT, accepted)
    height = mine(manual)

    task = await client.call(api.QUERY_TASK, [task_hash])
    assert len(task["executionInfo"]) == 1 and task["createdHeight"] is not None
    check_result(api.QUERY_TASK, task)
    # Judged by its assigned verifiers, the task is decided and settled.
    assert await verify_with_assigned(client, task_hash, NODE0.address, True)
    height = mine(manual)
    task = await client.call(api.QUERY_TASK, [task_hash])
    assert task["status"] == "verified" and task["settlement"] is not None, task
    assert task["verificationInfos"] and task["settlement"]["payouts"]
    check_result(api.QUERY_TASK, task)
    check_result(
        api.GET_TASKS_BY_SENDER, await client.call(api.GET_TASKS_BY_SENDER, [DEV0.address])
    )
    included = await client.call(api.GET_TRANSACTION, {"txHash": result.tx_hash})
    assert included["blockHeight"] == height - 1 and included["tx_type"] == "inference"
    check_result(api.GET_TRANSACTION, included)
    for block in ("latest", 0, height):
        check_result(api.GET_BLOCK, await client.call(api.GET_BLOCK, [block]))
    # The blocks of the task: submitted, its result, its verdicts and settlement.
    kinds = set()
    for block in range(1, height + 1):
        changed = await client.call(api.GET_BLOCK_EVENTS, [block])
        check_result(api.GET_BLOCK_EVENTS, changed)
        kinds |= {event["topic"] + ":" + event.get("event", "") for event in changed["events"]}
    assert {"newBlocks:", "tx:", "task:submitted", "task:result", "task:settled"} <= kinds
    check_result(api.GET_ACCOUNT, await client.call(api.GET_ACCOUNT, [DEV0.address]))
    check_result(api.GET_ACCOUNT, await client.call(api.GET_ACCOUNT, [NODE0.address, 0]))
    check_result(api.TASK_STATS, await client.call(api.TASK_STATS))

    transfer = {"sender": DEV0.address, "to": DEV1.address, "amount": "1"}
    check_result(api.TRANSFER, await client.call(api.TRANSFER, transfer))
    spawn = {
        "sender": DEV0.address,
        "module": "",
        "scheduler": DEV0.address,
        "memoryLimit": 1 << 20,
        "computeLimit": 10**6,
        "tags": '[{"name": "Name", "value": "probe"}]',
    }
    spawned = await client.call(api.AO_SPAWN, spawn)
    check_result(api.AO_SPAWN, spawned)
    mine(manual)
    check_result(api.AO_PROCESS, await client.call(api.AO_PROCESS, [spawned["id"]]))
    check_result(api.AO_PROCESSES, await client.call(api.AO_PROCESSES))
    schedule = await client.call(api.AO_SCHEDULE, [spawned["id"]])
    assert len(schedule["messages"]) == 1
    check_result(api.AO_SCHEDULE, schedule)
    check_result(api.AO_MESSAGE_BY_ID, await client.call(api.AO_MESSAGE_BY_ID, [spawned["id"]]))
    # rpc.discover's schema is the OpenRPC meta-schema, resolved to the vendored copy.
    check_result(api.RPC_DISCOVER, await client.call(api.RPC_DISCOVER))

    # The schemas do refuse what the node does not answer.
    task_schema = result_validator(COMMITTED, api.QUERY_TASK)
    for wrong in ({**task, "extra": 1}, {**task, "status": "done"}, {**task, "fee": 10}):
        assert not task_schema.is_valid(wrong), wrong
    missing = {k: v for k, v in task.items() if k != "settlement"}
    assert not task_schema.is_valid(missing)
    with pytest.raises(jsonschema.ValidationError):
        result_validator(COMMITTED, api.CHAIN_ID).validate("7331")


async def test_the_codes_real_refusals_answer_are_listed(manual: LocalChain) -> None:
    client = manual.client
    refusals: list[tuple[str, Any]] = [
        (api.QUERY_TASK, ["0x" + "5a" * 32]),
        (api.QUERY_TASK, ["not a hash"]),
        (api.TRANSFER, {"sender": DEV0.address, "nonce": 9, "to": DEV1.address, "amount": "1"}),
        (api.TRANSFER, {"sender": STRANGER.address, "to": DEV1.address, "amount": "1"}),
        (api.GET_BLOCK, [10**6]),
        (api.RPC_DISCOVER, [1]),
    ]
    answered = []
    for name, params in refusals:
        error = await rpc_error(client, name, params)
        assert error.code in listed_codes(COMMITTED, name), (name, params, error)
        answered.append(error.code)
    assert answered == [-32003, -32003, -32000, -32004, -32602, -32602]
    unknown = result_tx(NODE0, "0x" + "5a" * 32, "r")
    with pytest.raises(RpcError) as info:
        await client.send_presigned(unknown)
    assert info.value.code == errors.UNKNOWN_TASK
    assert info.value.code in listed_codes(COMMITTED, api.SUBMIT_INFERENCE_RESULT)


# Bad input


async def test_discover_takes_no_params(chain: LocalChain, http: aiohttp.ClientSession) -> None:
    error = await rpc_error(chain.client, api.RPC_DISCOVER, [1])
    assert error.code == errors.INVALID_PARAMS and error.data["param"] == "params"
    error = await rpc_error(chain.client, api.RPC_DISCOVER, {"version": "1.2.6"})
    assert error.code == errors.INVALID_PARAMS and error.data["param"] == "version"
    status, body = await post_json(http, chain.url, request(api.RPC_DISCOVER, [None]))
    assert status == 200 and body["error"]["code"] == -32602 and body["error"]["data"], body


async def test_dev_controls_answers_are_valid_under_their_schemas(manual: LocalChain) -> None:
    client = manual.client
    snap = await client.call(api.DEV_SNAPSHOT)
    check_result(api.DEV_SNAPSHOT, snap)
    for method, params in (
        (api.DEV_MINE, {"blocks": 2}),
        (api.DEV_INCREASE_TIME, {"seconds": 5}),
        (api.DEV_SET_NEXT_BLOCK_TIMESTAMP, {"timestamp": 2_000_000_000}),
        (api.DEV_SET_BALANCE, {"address": DEV0.address, "balance": "1"}),
        (api.DEV_REVERT, {"id": snap}),
        (api.DEV_REVERT, {"id": snap}),  # consumed: false
        (api.DEV_RESET, {}),
    ):
        check_result(method, await client.call(method, params))
    refusal = await rpc_error(client, api.DEV_MINE, {"blocks": 0})
    assert refusal.code in listed_codes(openrpc.document(), api.DEV_MINE)
