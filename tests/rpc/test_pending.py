"""queryPendingTasks (PROTOCOL 5.1) over JSON-RPC and as GET /queryPendingTasks: what a
resource node is offered (compute until it answers, verification of the undecided results
it is assigned to and has not judged, the reveal its decided results wait for), in AegisAI
privilege order, the optional EIP-191 signature with its 300 s window, and the errors.
Blocks are produced by the tests (run=False); forced errors are off (canaryRateBps 0) but in
the tests of `reveal`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chain.protocol import crypto
from chain.protocol.crypto import personal_message_hash, sign_digest
from chain.protocol.genesis import Params, dev_genesis, parse_genesis
from rpc.client import Wallet, pending_tasks_message, pending_tasks_params
from tests.helpers import (
    LocalChain,
    assigned_rounds,
    dev_node_wallet,
    dev_secret,
    local_chain,
    make_genesis,
    reveal_dev_secret,
    verify_with_assigned,
)
from tests.rpc.support import (
    CHAIN_ID,
    DEV0,
    DEV1,
    E18,
    NODE0,
    NODE1,
    NODE2,
    NODES,
    STRANGER,
    mine,
    node_seed,
    privilege_key,
    result_tx,
    rpc_error,
    snapshot,
    verdict_tx,
    wrong_checksum,
)

CDB = 4
VDB = 4
NOW = 1_900_000_000  # the node clock of the signature-window tests
EXTRA_KEYS = {"seed", "compute", "verify", "reveal"}
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """Three dev nodes: a result's assigned verifiers are the two other nodes (PROTOCOL 4.5)."""
    genesis = make_genesis(
        compute_deadline_blocks=CDB, verify_deadline_blocks=VDB, canary_rate_bps=0
    )
    async with local_chain(tmp_path / "ledger", genesis, run=False) as running:
        yield running


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """A chain whose node clock stands still at NOW, for exact TimeStamp windows."""
    async with local_chain(tmp_path / "ledger", run=False, clock=lambda: float(NOW)) as running:
        yield running


def signed_query(
    wallet: Wallet, timestamp: int | None = None, limit: int | None = None
) -> dict[str, Any]:
    """queryPendingTasks params signed by `wallet` for this chain (CHAIN_ID)."""
    return pending_tasks_params(wallet, timestamp, limit, chain_id=CHAIN_ID)


async def open_tasks(
    chain: LocalChain, count: int, target_count: int = 1, **fields: Any
) -> list[str]:
    """Submit `count` tasks from DEV0 and commit them in one block; their taskHashes."""
    hashes = []
    for i in range(count):
        receipt = await chain.client.submit_task(
            DEV0,
            prompts=f"prompt {i}",
            target_count=target_count,
            model_options=json.dumps({"model": fields.get("model", "demo")}),
        )
        hashes.append(receipt.task_hash)
    mine(chain)
    return hashes


async def pending(
    chain: LocalChain, wallet: Wallet, limit: int | None = None
) -> list[dict[str, Any]]:
    return await chain.client.query_pending_tasks(wallet, limit=limit)


async def offered(chain: LocalChain, wallet: Wallet) -> dict[str, dict[str, Any]]:
    """taskHash -> the pending-task object, from a signed query."""
    return {item["taskHash"]: item for item in await pending(chain, wallet)}


def verify_entry(task_hash: str, node: Wallet, result: str, rank: int) -> dict[str, Any]:
    return {
        "submitter": node.address,
        "result": result,
        "seed": str(node_seed(task_hash, node.address)),
        "rank": rank,
    }


async def accept(chain: LocalChain, tx: Any) -> None:
    assert await chain.client.send_presigned(tx) is True


async def get_pending(
    http: aiohttp.ClientSession, chain: LocalChain, query: dict[str, Any]
) -> tuple[int, Any]:
    async with http.get(chain.url + "/queryPendingTasks", params=query) as resp:
        return resp.status, await resp.json()


# What is offered


async def test_signed_and_unsigned_answers_carry_every_query_task_field(
    manual: LocalChain,
) -> None:
    client = manual.client
    shared, single = await open_tasks(manual, 2, target_count=2)
    await accept(manual, result_tx(NODE0, shared, "r0"))
    mine(manual)

    signed = await client.query_pending_tasks(NODE1)
    assert signed == await client.query_pending_tasks(NODE1, signed=False)
    assert signed == await client.call("queryPendingTasks", [NODE1.address, int(time.time())])
    lowercase = signed_query(NODE1) | {"ResourceAddress": NODE1.address.lower()}
    assert signed == await client.call("queryPendingTasks", lowercase)
    assert {item["taskHash"] for item in signed} == {shared, single}

    for item in signed:
        task = await client.query_task(item["taskHash"])
        assert set(item) == set(task) | EXTRA_KEYS
        assert {key: item[key] for key in task} == task
        assert item["seed"] == str(node_seed(item["taskHash"], NODE1.address))
        assert item["compute"] is True and item["reveal"] is False
    by_hash = {item["taskHash"]: item for item in signed}
    assert by_hash[shared]["verify"] == [verify_entry(shared, NODE0, "r0", 1)]
    assert by_hash[single]["verify"] == []
    # the submitter's seed in `verify` is the one its executionInfo entry carries
    entry = (await client.query_task(shared))["executionInfo"][0]
    assert by_hash[shared]["verify"][0]["seed"] == entry["seed"]


async def test_compute_is_offered_until_the_node_answers(manual: LocalChain) -> None:
    (task_hash,) = await open_tasks(manual, 1, target_count=2)
    for node in NODES:
        item = (await offered(manual, node))[task_hash]
        assert item["compute"] is True and item["verify"] == []

    await accept(manual, result_tx(NODE0, task_hash, "a"))
    mine(manual)
    assert task_hash not in await offered(manual, NODE0)  # answered, and nothing to verify
    item = (await offered(manual, NODE1))[task_hash]
    assert item["compute"] is True
    assert item["verify"] == [verify_entry(task_hash, NODE0, "a", 1)]

    await accept(manual, result_tx(NODE1, task_hash, "b"))
    mine(manual)
    item = (await offered(manual, NODE2))[task_hash]  # every slot is taken
    assert item["compute"] is False
    assert item["verify"] == [
        verify_entry(task_hash, NODE0, "a", 1),
        verify_entry(task_hash, NODE1, "b", 2),
    ]
    item = (await offered(manual, NODE0))[task_hash]
    assert item["compute"] is False and item["verify"] == [verify_entry(task_hash, NODE1, "b", 2)]


async def test_compute_is_no_longer_offered_after_the_compute_deadline(
    manual: LocalChain,
) -> None:
    (task_hash,) = await open_tasks(manual, 1, target_count=2)
    created = manual.node.head.height
    await accept(manual, result_tx(NODE0, task_hash, "a"))
    mine(manual, CDB - 1)  # the next block is the last that takes results
    assert (await offered(manual, NODE1))[task_hash]["compute"] is True
    assert mine(manual) == created + CDB
    item = (await offered(manual, NODE1))[task_hash]
    assert item["compute"] is False and item["verify"] == [verify_entry(task_hash, NODE0, "a", 1)]
    assert await manual.client.submit_inference_result(NODE1, task_hash, "b") is False


async def test_verify_lists_only_undecided_results_of_others_not_yet_judged(
    manual: LocalChain,
) -> None:
    (task_hash,) = await open_tasks(manual, 1, target_count=3)
    await accept(manual, result_tx(NODE0, task_hash, "a"))
    await accept(manual, result_tx(NODE1, task_hash, "b"))
    mine(manual)
    first, second = verify_entry(task_hash, NODE0, "a", 1), verify_entry(task_hash, NODE1, "b", 2)
    assert (await offered(manual, NODE2))[task_hash]["verify"] == [first, second]

    # node 2 judges node 0's result (one of its two verifiers: still undecided); it is no
    # longer offered to node 2
    await accept(manual, verdict_tx(NODE2, task_hash, NODE0.address, False))
    mine(manual)
    item = (await offered(manual, NODE2))[task_hash]
    assert item["compute"] is True and item["verify"] == [second]
    assert (await offered(manual, NODE1))[task_hash]["verify"] == [first]

    # node 1 disagrees: both assigned verifiers have answered, it is offered to nobody
    await accept(manual, verdict_tx(NODE1, task_hash, NODE0.address, True))
    mine(manual)
    assert (await offered(manual, NODE0))[task_hash]["verify"] == [second]
    assert task_hash not in await offered(manual, NODE1)  # answered, nothing left to judge
    assert (await offered(manual, NODE2))[task_hash]["verify"] == [second]


async def test_verify_lists_only_the_results_a_node_is_assigned_to(tmp_path: Path) -> None:
    """Five nodes: a result has four candidates and round 0 takes two of them (PROTOCOL 4.5);
    only those two are offered it, until a dispute opens round 1 for the other two."""
    params = Params(block_time_ms=0, compute_deadline_blocks=CDB, verify_deadline_blocks=VDB,
                    canary_rate_bps=0)  # fmt: skip
    genesis = parse_genesis(dev_genesis(params=params, resource_nodes=5))
    nodes = [dev_node_wallet(k) for k in range(5)]
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        (task_hash,) = await open_tasks(chain, 1, target_count=2)
        await accept(chain, result_tx(nodes[0], task_hash, "a"))
        mine(chain)
        (round0,) = await assigned_rounds(chain.client, task_hash, nodes[0].address)
        entry = verify_entry(task_hash, nodes[0], "a", 1)
        for node in nodes[1:]:
            item = (await offered(chain, node))[task_hash]
            assert item["compute"] is True  # a slot is open for every node
            assert item["verify"] == ([entry] if node.address in round0 else [])
        # round 0 disagrees: round 1 is opened, and offered to its members only
        votes = dict(zip(round0, (True, False), strict=True))
        assert await verify_with_assigned(chain.client, task_hash, nodes[0].address, votes)
        mine(chain)
        rounds = await assigned_rounds(chain.client, task_hash, nodes[0].address)
        assert len(rounds) == 2 and set(rounds[1]) == {n.address for n in nodes[1:]} - set(round0)
        for node in nodes[1:]:
            item = (await offered(chain, node))[task_hash]
            assert item["verify"] == ([entry] if node.address in rounds[1] else [])


async def test_reveal_is_offered_once_the_result_is_decided(tmp_path: Path) -> None:
    """With forced errors on (canaryRateBps 100), a decided result waits for its submitter's
    secret: queryPendingTasks says `reveal` to that node only, until it reveals (PROTOCOL 5.1,
    4.13)."""
    genesis = make_genesis(compute_deadline_blocks=CDB, verify_deadline_blocks=VDB)
    assert genesis.params.canary_rate_bps == 100
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        (task_hash,) = await open_tasks(chain, 1)
        created = chain.node.head.height
        await accept(chain, result_tx(NODE0, task_hash, "4"))
        mine(chain)
        item = (await offered(chain, NODE1))[task_hash]
        assert item["reveal"] is False and item["verify"]
        assert task_hash not in await offered(chain, NODE0)  # undecided: nothing to reveal yet
        await verify_with_assigned(chain.client, task_hash, NODE0.address, True)
        mine(chain)
        task = await chain.client.query_task(task_hash)
        assert task["status"] == "completed" and task["executionInfo"][0]["status"] == 2
        item = (await offered(chain, NODE0))[task_hash]
        assert (item["compute"], item["verify"], item["reveal"]) == (False, [], True)
        assert task_hash not in await offered(chain, NODE1)

        await reveal_dev_secret(chain.client, NODE0, created)
        mine(chain)
        assert task_hash not in await offered(chain, NODE0)
        task = await chain.client.query_task(task_hash)
        secret = dev_secret(NODE0.private_key, created)
        forced = crypto.is_forced_error(secret, bytes.fromhex(task_hash[2:]), 100)
        assert task["executionInfo"][0]["forcedError"] is forced
        assert task["status"] == ("failed" if forced else "verified")


async def test_a_result_waiting_in_the_mempool_ends_the_compute_offer(
    manual: LocalChain,
) -> None:
    (task_hash,) = await open_tasks(manual, 1, target_count=2)
    assert (await offered(manual, NODE0))[task_hash]["compute"] is True
    await accept(manual, result_tx(NODE0, task_hash, "a"))  # not in a block yet
    assert task_hash not in await offered(manual, NODE0)
    item = (await offered(manual, NODE1))[task_hash]
    # the result has no verifiers before the end of the block that includes it (PROTOCOL 4.5)
    assert item["compute"] is True and item["verify"] == []
    # what is offered is what admission accepts
    error = await rpc_error(
        manual.client,
        "submitVerification",
        verdict_tx(NODE1, task_hash, NODE0.address, True).params,
    )
    assert error.code == -32005 and error.data["reason"] == "not assigned"
    mine(manual)
    item = (await offered(manual, NODE1))[task_hash]
    assert item["verify"] == [verify_entry(task_hash, NODE0, "a", 1)]
    assert await manual.client.submit_verification(NODE1, task_hash, NODE0.address, True)
    assert task_hash in await offered(manual, NODE1)  # its own slot is still open


async def test_only_tasks_for_a_served_model_are_offered(manual: LocalChain) -> None:
    client = manual.client
    await client.register_resource_node(DEV1, "m1", "")
    await client.stake(DEV1, 1000 * E18)
    mine(manual)
    (m1,) = await open_tasks(manual, 1, model="m1")
    (m2,) = await open_tasks(manual, 1, model="m2")
    assert set(await offered(manual, DEV1)) == {m1}
    assert set(await offered(manual, NODE0)) == {m1, m2}  # "*" serves every model


# Order and limit


async def test_order_is_by_keccak_of_address_and_task_hash(manual: LocalChain) -> None:
    hashes = await open_tasks(manual, 6)
    orders = []
    for node in NODES:
        got = [item["taskHash"] for item in await pending(manual, node)]
        assert got == sorted(hashes, key=lambda h, node=node: privilege_key(node.address, h))
        orders.append(got)
        for limit in (1, 4, 6, 1000):
            limited = await pending(manual, node, limit=limit)
            assert [item["taskHash"] for item in limited] == got[:limit]
    assert len({tuple(order) for order in orders}) > 1, "each node has its own order"


@pytest.mark.parametrize("limit", [0, -1, 1001, "5", 2.5, True, None])
async def test_limit_out_of_range(manual: LocalChain, limit: Any) -> None:
    error = await rpc_error(
        manual.client, "queryPendingTasks", signed_query(NODE0) | {"limit": limit}
    )
    assert error.code == -32602 and error.data is not None and error.data["param"] == "limit"


# GET /queryPendingTasks


async def test_get_route_answers_as_the_json_rpc_method(
    manual: LocalChain, http: aiohttp.ClientSession
) -> None:
    hashes = await open_tasks(manual, 3, target_count=2)
    await accept(manual, result_tx(NODE1, hashes[0], "r"))
    mine(manual)
    stamp = int(time.time())
    for node in NODES:
        unsigned = {"ResourceAddress": node.address, "TimeStamp": stamp}
        expected = await manual.client.call("queryPendingTasks", unsigned)
        assert len(expected) == (2 if node == NODE1 else 3)  # node 1 answered one of them
        status, body = await get_pending(http, manual, unsigned)
        assert status == 200
        assert body == {"code": 0, "message": "success", "result": expected}

        signed = signed_query(node, stamp, limit=2)
        status, body = await get_pending(http, manual, signed)
        assert status == 200
        assert body == {"code": 0, "message": "success", "result": expected[:2]}

    status, body = await get_pending(
        http, manual, {"ResourceAddress": NODE0.address.lower(), "TimeStamp": stamp}
    )
    assert status == 200 and len(body["result"]) == 3


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"ResourceAddress": NODE0.address, "TimeStamp": "soon"}, "TimeStamp"),
        ({"ResourceAddress": NODE0.address, "TimeStamp": "1.5"}, "TimeStamp"),
        ({"ResourceAddress": NODE0.address, "TimeStamp": "-1"}, "TimeStamp"),
        ({"ResourceAddress": NODE0.address, "TimeStamp": ""}, "TimeStamp"),
        ({"ResourceAddress": NODE0.address, "TimeStamp": "9" * 30}, "TimeStamp"),
        ({"ResourceAddress": NODE0.address}, "TimeStamp"),
        ({"TimeStamp": "1"}, "ResourceAddress"),
        ({"ResourceAddress": "0x1234", "TimeStamp": "1"}, "ResourceAddress"),
        ({"ResourceAddress": NODE0.address, "TimeStamp": "1", "limit": "many"}, "limit"),
        ({"ResourceAddress": NODE0.address, "TimeStamp": "1", "limit": "0"}, "limit"),
    ],
    ids=["word", "decimal", "negative", "empty", "30 digits", "missing", "no address",
         "short address", "limit word", "limit 0"],
)  # fmt: skip
async def test_get_route_with_bad_params_is_400(
    manual: LocalChain, http: aiohttp.ClientSession, query: dict[str, Any], param: str
) -> None:
    status, body = await get_pending(http, manual, query)
    assert status == 400
    assert body["code"] == -32602 and isinstance(body["message"], str) and body["message"]
    assert isinstance(body["data"], dict) and body["data"]["param"] == param


async def test_get_route_errors_carry_the_json_rpc_code(
    manual: LocalChain, http: aiohttp.ClientSession
) -> None:
    stamp = int(time.time())
    foreign = {
        "ResourceAddress": NODE0.address,
        "TimeStamp": stamp,
        "Signature": personal_signature(NODE1, NODE0.address, stamp),
    }
    status, body = await get_pending(http, manual, foreign)
    assert status != 200 and body["code"] == -32004 and body["data"]["recovered"] == NODE1.address
    status, body = await get_pending(
        http, manual, {"ResourceAddress": STRANGER.address, "TimeStamp": stamp}
    )
    assert status != 200 and body["code"] == -32005
    assert body["data"]["address"] == STRANGER.address


async def test_the_deprecated_text_is_answered_with_a_warning_on_a_dev_chain(
    manual: LocalChain, http: aiohttp.ClientSession
) -> None:
    """A query signed over `queryPendingTasks:<address>:<TimeStamp>` (no chainId) is answered
    on a dev chain as before; the GET route adds the deprecation warning in `data`, and the
    JSON-RPC result stays the same list (PROTOCOL 5.1)."""
    await open_tasks(manual, 2)
    stamp = int(time.time())
    legacy = {
        "ResourceAddress": NODE0.address,
        "TimeStamp": stamp,
        "Signature": personal_signature(NODE0, NODE0.address, stamp, chain_id=None),
    }
    current = signed_query(NODE0, stamp)
    expected = await manual.client.call("queryPendingTasks", current)
    assert len(expected) == 2
    assert await manual.client.call("queryPendingTasks", legacy) == expected

    status, body = await get_pending(http, manual, legacy)
    assert status == 200
    assert {k: body[k] for k in ("code", "message", "result")} == {
        "code": 0,
        "message": "success",
        "result": expected,
    }
    warning = body["data"]
    assert warning["deprecated"] == "queryPendingTasks:<address>:<TimeStamp>"
    assert warning["textFormat"] == "queryPendingTasks:<chainId>:<address>:<TimeStamp>"
    assert warning["text"] == f"queryPendingTasks:{CHAIN_ID}:{NODE0.address}:{stamp}"
    assert warning["chainId"] == CHAIN_ID and "deprecated" in warning["warning"]
    status, body = await get_pending(http, manual, current)  # the current text: no warning
    assert status == 200 and body == {"code": 0, "message": "success", "result": expected}


async def test_a_signature_for_another_chain_names_the_text_expected(
    manual: LocalChain, http: aiohttp.ClientSession
) -> None:
    stamp = int(time.time())
    params = {
        "ResourceAddress": NODE0.address,
        "TimeStamp": stamp,
        "Signature": personal_signature(NODE0, NODE0.address, stamp, chain_id=CHAIN_ID + 1),
    }
    data = await pending_error(manual, params, -32004)
    assert data["chainId"] == CHAIN_ID
    assert data["text"] == f"queryPendingTasks:{CHAIN_ID}:{NODE0.address}:{stamp}"
    assert data["textFormat"] == "queryPendingTasks:<chainId>:<address>:<TimeStamp>"
    assert data["expected"] == NODE0.address and data["recovered"] != NODE0.address
    status, body = await get_pending(http, manual, params)
    assert status == 400 and body["code"] == -32004 and body["result"] is None
    assert body["data"] == data


# Errors


def personal_signature(
    wallet: Wallet, address: str, stamp: int, chain_id: int | None = CHAIN_ID
) -> str:
    """`wallet`'s EIP-191 signature of the query text of `address` for `chain_id` (None: the
    deprecated text that names no chain)."""
    text = (
        f"queryPendingTasks:{address}:{stamp}"
        if chain_id is None
        else pending_tasks_message(address, stamp, chain_id)
    )
    return "0x" + sign_digest(personal_message_hash(text), wallet.private_key).hex()


async def pending_error(chain: LocalChain, params: Any, code: int) -> dict[str, Any]:
    """The call fails with `code`, a data object, and changes nothing."""
    before = await snapshot(chain.client, *(n.address for n in NODES))
    error = await rpc_error(chain.client, "queryPendingTasks", params)
    assert error.code == code, error
    assert await snapshot(chain.client, *(n.address for n in NODES)) == before
    assert error.data is not None
    return error.data


async def test_signature_by_another_key(manual: LocalChain) -> None:
    stamp = int(time.time())
    params = {
        "ResourceAddress": NODE0.address,
        "TimeStamp": stamp,
        "Signature": personal_signature(NODE1, NODE0.address, stamp),
    }
    data = await pending_error(manual, params, -32004)
    assert data["expected"] == NODE0.address and data["recovered"] == NODE1.address
    # signed for another TimeStamp than the one sent
    params = signed_query(NODE0, stamp) | {"TimeStamp": stamp + 1}
    data = await pending_error(manual, params, -32004)
    assert data["recovered"] != NODE0.address


def _tampered(signature: str, kind: str) -> str:
    raw = bytearray(bytes.fromhex(signature[2:]))
    if kind == "v=0":
        raw[64] = 0
    elif kind == "v=29":
        raw[64] = 29
    elif kind == "r=0":
        raw[:32] = bytes(32)
    elif kind == "s=0":
        raw[32:64] = bytes(32)
    elif kind == "high s":
        s = int.from_bytes(raw[32:64], "big")
        raw[32:64] = (SECP256K1_N - s).to_bytes(32, "big")
        raw[64] = 55 - raw[64]
    elif kind == "64 bytes":
        raw = raw[:64]
    return "0x" + bytes(raw).hex()


@pytest.mark.parametrize("kind", ["v=0", "v=29", "r=0", "s=0", "high s", "64 bytes"])
async def test_malformed_signatures(manual: LocalChain, kind: str) -> None:
    params = signed_query(NODE0)
    params["Signature"] = _tampered(params["Signature"], kind)
    data = await pending_error(manual, params, -32004)
    assert data["reason"]


@pytest.mark.parametrize("skew", [-300, -1, 0, 1, 300])
async def test_timestamp_within_300_seconds_is_accepted(clocked: LocalChain, skew: int) -> None:
    params = signed_query(NODE0, NOW + skew)
    assert await clocked.client.call("queryPendingTasks", params) == []


@pytest.mark.parametrize("skew", [-301, 301, -86_400, 86_400, -NOW])
async def test_timestamp_beyond_300_seconds_is_refused(clocked: LocalChain, skew: int) -> None:
    params = signed_query(NODE0, NOW + skew)
    data = await pending_error(clocked, params, -32004)
    assert isinstance(data["reason"], str) and "300" in data["reason"]
    # unsigned, the TimeStamp is not checked (PROTOCOL 5.1: the window applies to a signature)
    unsigned = {k: v for k, v in params.items() if k != "Signature"}
    assert await clocked.client.call("queryPendingTasks", unsigned) == []


@pytest.mark.parametrize(
    "address",
    ["0x1234", NODE0.address[2:], NODE0.address + "00", "0x" + "g" * 40, "",
     wrong_checksum(NODE0.address)],
    ids=["short", "no 0x", "long", "not hex", "empty", "wrong checksum"],
)  # fmt: skip
async def test_malformed_address(manual: LocalChain, address: str) -> None:
    data = await pending_error(
        manual, {"ResourceAddress": address, "TimeStamp": int(time.time())}, -32602
    )
    assert data["param"] == "ResourceAddress"


async def test_nodes_that_may_not_act_are_refused(manual: LocalChain) -> None:
    client = manual.client
    stamp = int(time.time())
    # no resource node at all: unsigned, signed, and an unlocked dev account
    for wallet in (STRANGER, DEV0):
        data = await pending_error(
            manual, {"ResourceAddress": wallet.address, "TimeStamp": stamp}, -32005
        )
        assert data["address"] == wallet.address and data["reason"]
        data = await pending_error(manual, signed_query(wallet, stamp), -32005)
        assert data["address"] == wallet.address
    # registered, but without stake
    await client.register_resource_node(DEV1, "*", "")
    mine(manual)
    data = await pending_error(manual, signed_query(DEV1, stamp), -32005)
    assert data["address"] == DEV1.address and "stake" in data["reason"]


async def test_a_jailed_node_is_refused(tmp_path: Path) -> None:
    genesis = make_genesis(
        compute_deadline_blocks=2, verify_deadline_blocks=2, result_slash_bps=6000,
        canary_rate_bps=0,
    )  # fmt: skip
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        (task_hash,) = await open_tasks(chain, 1)
        await accept(chain, result_tx(NODE2, task_hash, "wrong"))
        mine(chain)
        await accept(chain, verdict_tx(NODE0, task_hash, NODE2.address, False))
        await accept(chain, verdict_tx(NODE1, task_hash, NODE2.address, False))
        mine(chain)
        task = await chain.client.query_task(task_hash)
        assert (
            task["status"] == "failed"
            and task["settlement"]["slashed"][0]["address"] == NODE2.address
        )
        assert (await chain.client.get_account(NODE2.address))["jailed"] is True
        data = await pending_error(chain, signed_query(NODE2), -32005)
        assert data["address"] == NODE2.address and "jailed" in data["reason"]
        unsigned = {"ResourceAddress": NODE2.address, "TimeStamp": int(time.time())}
        await pending_error(chain, unsigned, -32005)
        # its peers still query
        assert await chain.client.query_pending_tasks(NODE0) == []


# Kept answers: the answer is kept until a block, an admission or a dev control changes it


async def test_a_kept_answer_changes_at_the_admission_and_the_block_that_change_it(
    manual: LocalChain,
) -> None:
    (task_hash,) = await open_tasks(manual, 1, target_count=2)
    created = manual.node.head.height
    for _ in range(2):  # the second answer is the kept one
        assert (await offered(manual, NODE1))[task_hash]["compute"] is True

    await accept(manual, result_tx(NODE1, task_hash, "b"))  # admitted: no block yet
    assert task_hash not in await offered(manual, NODE1)
    assert task_hash not in await offered(manual, NODE1)
    item = (await offered(manual, NODE0))[task_hash]
    assert item["compute"] is True and item["verify"] == []  # verifiers come with its block

    mine(manual)
    for _ in range(2):
        item = (await offered(manual, NODE0))[task_hash]
        assert item["verify"] == [verify_entry(task_hash, NODE1, "b", 1)]
    while manual.node.head.height < created + CDB - 1:  # the next block still takes results
        assert (await offered(manual, NODE0))[task_hash]["compute"] is True
        mine(manual)
        assert (await offered(manual, NODE0))[task_hash]["compute"] is True
    assert mine(manual) == created + CDB  # the last block that took results
    for _ in range(2):
        item = (await offered(manual, NODE0))[task_hash]
        assert item["compute"] is False
        assert item["verify"] == [verify_entry(task_hash, NODE1, "b", 1)]


async def test_a_kept_answer_changes_when_a_dev_revert_moves_the_head_back(
    manual: LocalChain,
) -> None:
    client = manual.client
    (task_hash,) = await open_tasks(manual, 1, target_count=2)
    snap = await client.dev_snapshot()
    await accept(manual, result_tx(NODE1, task_hash, "b"))
    mine(manual)
    assert task_hash not in await offered(manual, NODE1)
    assert task_hash not in await offered(manual, NODE1)
    assert await client.dev_revert(snap) is True  # the result is gone with its block
    assert (await offered(manual, NODE1))[task_hash]["compute"] is True
