"""AO's own client against the local unit: `@permaweb/aoconnect` in legacy mode (tests/js/
aoconnect.mjs, in node) and arbundles' data items, over a dev validator (200 ms blocks) and
`python -m ao` (PROTOCOL 8.7, `ao/compat.py`).

The script publishes a module, spawns a process of it, messages it from an Arweave JWK and
from an Ethereum signer, reads the results and dry-runs; each answer is checked against the
chain and the unit's own API (the process on chain with its owner, module and scheduler; the
result `GET /compute` answers; a dry run that scheduled nothing). aoconnect's refusals are
clear errors and schedule nothing, and every bad request to the routes is refused in
`{error}` with nothing changed. Items arbundles signs (Ethereum and Arweave) POSTed to
`/scheduler` keep arbundles' id and are scheduled.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chain.protocol import ans104
from rpc.client import InferchainClient, RpcError, Wallet
from testnet.commands import AO_READY, ao_args
from testnet.process import Process
from tests.conformance.ao.support import PING
from tests.helpers import (
    JS_DIR,
    ValidatorProcess,
    make_genesis,
    node_for,
    wait_until,
    write_genesis,
)

pytestmark = pytest.mark.slow

SCRIPT_TIMEOUT_S = 180
WAIT_S = 60.0
ETH_KEY = Wallet.dev(7).private_key


@pytest.fixture(scope="module")
def node() -> str:
    return node_for("aoconnect", ("@permaweb/aoconnect", "arbundles", "ethers"))


@pytest.fixture(scope="module")
def node_arbundles() -> str:
    return node_for("the arbundles row", ("arbundles",))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("aoconnect")
    genesis = write_genesis(root / "genesis.json", make_genesis(block_time_ms=200))
    validator = ValidatorProcess(genesis, root / "validator")
    try:
        yield root, validator.start()
    finally:
        validator.close()


@pytest.fixture(scope="module")
def unit_url(chain: tuple[Path, str]) -> Iterator[str]:
    root, rpc = chain
    process = Process("ao", ao_args(rpc, root / "ao"), root / "ao.log", ready_prefix=AO_READY)
    try:
        process.start()
        yield process.url
    finally:
        process.close()


@pytest.fixture
async def client(chain: tuple[Path, str]) -> AsyncIterator[InferchainClient]:
    async with InferchainClient(chain[1]) as rpc:
        yield rpc


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_aoconnect_spawns_messages_reads_and_dry_runs(
    node: str,
    unit_url: str,
    client: InferchainClient,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    arweave = ans104.ArweaveSigner.generate()
    jwk_file = tmp_path / "wallet.json"
    jwk_file.write_text(json.dumps(arweave.jwk()))
    before = await client.ao_processes(0, 1000)
    done = subprocess.run(
        [node, "aoconnect.mjs", unit_url, str(jwk_file), ETH_KEY.hex()],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    pid, mid, eth_mid = summary["processId"], summary["messageId"], summary["ethMessageId"]

    # the spawn is on chain: its owner the JWK's address, its module the one published, its
    # scheduler the unit, and the only process the script made
    assert await client.ao_processes(0, 1000) == [*before, pid]
    process = await client.ao_process(pid)
    assert process["owner"] == arweave.address
    assert process["moduleId"] == summary["module"]
    assert process["scheduler"].lower() == summary["unit"].lower()
    assert ["Name", "aoconnect-pinger"] in process["tags"]
    assert ["SDK", "aoconnect"] in process["tags"]
    module = await client.ao_process(summary["module"])
    assert module["type"] == "Module" and "pong" in module["module"]

    # the messages are the process's slots 1 and 2, from the JWK and the Ethereum key
    first = await client.ao_message_by_id(mid)
    second = await client.ao_message_by_id(eth_mid)
    assert (first["process"], first["slot"], first["owner"]) == (pid, 1, arweave.address)
    assert (second["process"], second["slot"]) == (pid, 2)
    assert second["owner"].lower() == summary["ethAddress"].lower()
    assert ["Action", "Ping"] in first["tags"] and first["data"] == "ping"

    # each result is the one the unit's own API answers
    for message_id, key, pong in ((mid, "result", "pong 1"), (eth_mid, "ethResult", "pong 2")):
        status, computed = await call(http, "GET", f"{unit_url}/compute/{pid}/message/{message_id}")
        assert status == 200
        assert summary[key] == computed
        assert computed["Error"] is None
        (reply,) = computed["Messages"]
        assert reply["Data"] == pong
    assert summary["ethResult"]["Messages"][0]["Target"].lower() == summary["ethAddress"].lower()
    assert summary["results"]["edges"][0]["cursor"] == "2"
    assert summary["results"]["edges"][0]["node"] == summary["ethResult"]
    assert summary["results"]["edges"][1]["node"] == summary["result"]

    # the dry run answered what the next Ping would, and scheduled nothing
    (peek,) = summary["dryrun"]["Messages"]
    assert peek["Data"] == "pong 3"
    assert peek["Target"] == summary["ethAddress"]
    status, schedule = await call(http, "GET", f"{unit_url}/scheduler/{pid}")
    assert status == 200 and [e["id"] for e in schedule] == [pid, mid, eth_mid]

    # aoconnect's refusals: clear errors, and nothing scheduled
    errors = summary["errors"]
    assert (
        errors["spawnUnknownModule"].startswith("404") and "M" * 43 in errors["spawnUnknownModule"]
    )
    assert "tag Scheduler" in errors["spawnBadScheduler"]
    assert summary["unit"] in errors["spawnBadScheduler"]
    unknown = "P" * 42 + "A"
    assert errors["messageUnknownProcess"] == f'404: {{"error": "no process {unknown}"}}'
    assert errors["resultUnknownMessage"] == {"error": f"no message {'Q' * 43} of this process"}
    assert errors["dryrunUnknownProcess"] == {"error": f"no process {unknown}"}
    assert (await client.ao_process(pid))["slots"] == 3

    # every request went to the unit's routes of aoconnect's legacy mode
    assert {"GET /", "POST /", "POST /graphql", f"GET /result/{mid}"} <= set(summary["requests"])
    assert "POST /dry-run" in summary["requests"]


async def test_the_gateway_answers_modules_processes_and_the_scheduler_location(
    unit_url: str, client: InferchainClient, http: aiohttp.ClientSession
) -> None:
    status, unit = await call(http, "GET", unit_url + "/")
    assert status == 200 and unit["Unit"] == "Scheduler"
    status, body = await call(http, "POST", unit_url + "/process", json={"module": PING})
    assert status == 200, body
    pid = body["process_id"]
    query = "query ($ids: [ID!]!) { transactions(ids: $ids) { edges { node { tags { name } } } } }"
    status, answer = await call(
        http, "POST", unit_url + "/graphql", json={"query": query, "variables": {"ids": [pid]}}
    )
    assert status == 200, answer
    (edge,) = answer["data"]["transactions"]["edges"]
    process = await client.ao_process(pid)
    assert edge["node"]["owner"]["address"] == process["owner"]
    assert edge["node"]["block"]["height"] == process["height"]
    # a module published through POST / answers its own tags and owner; one published
    # through /scheduler, whose tags the chain does not keep, the ones aoconnect requires
    signer = ans104.EthereumSigner(Wallet.dev(5).private_key)
    own = [ans104.Tag("Type", "Module"), ans104.Tag("Module-Format", "mine")]
    mine = ans104.create(signer=signer, data=PING.encode(), tags=own)
    status, body = await call(http, "POST", unit_url + "/", data=ans104.serialize(mine))
    assert status == 200 and body["id"] == mine.id, body
    bare = ans104.create(signer=signer, data=PING.encode(), tags=[ans104.Tag("Type", "Module")])
    status, body = await call(http, "POST", unit_url + "/scheduler", data=ans104.serialize(bare))
    assert status == 200 and body["id"] == bare.id, body
    await wait_until(functools.partial(_published, client, bare.id), "the module published", WAIT_S)
    variables = {"transactionIds": [mine.id, bare.id]}
    status, answer = await call(
        http, "POST", unit_url + "/graphql", json={"query": query, "variables": variables}
    )
    assert status == 200, answer
    first, second = (edge["node"] for edge in answer["data"]["transactions"]["edges"])
    assert first["tags"] == [
        {"name": "Type", "value": "Module"},
        {"name": "Module-Format", "value": "mine"},
    ]
    assert first["owner"]["address"].lower() == signer.address.lower()
    tags = {t["name"]: t["value"] for t in second["tags"]}
    assert tags["Type"] == "Module" and tags["Module-Format"] == "inferchain-lua-5.4"
    assert {"Data-Protocol", "Input-Encoding", "Output-Encoding"} <= set(tags)
    location = "query GetSchedulerLocation ($owner: String!) { Scheduler-Location }"
    status, answer = await call(
        http,
        "POST",
        unit_url + "/graphql",
        json={"query": location, "variables": {"owner": unit["Address"]}},
    )
    assert status == 200, answer
    (edge,) = answer["data"]["transactions"]["edges"]
    tags = {t["name"]: t["value"] for t in edge["node"]["tags"]}
    assert tags["Type"] == "Scheduler-Location" and tags["Url"] == unit_url
    status, answer = await call(
        http,
        "POST",
        unit_url + "/graphql",
        json={"query": location, "variables": {"owner": Wallet.dev(3).address}},
    )
    assert status == 200 and answer["data"]["transactions"]["edges"] == []


async def test_bad_requests_are_refused_and_change_nothing(
    unit_url: str, client: InferchainClient, http: aiohttp.ClientSession
) -> None:
    status, body = await call(http, "POST", unit_url + "/process", json={"module": PING})
    assert status == 200, body
    pid = body["process_id"]
    zed = "Z" * 42 + "A"  # well-formed and canonical, and nothing has it
    rows: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/", {"data": b""}, 400, "body"),
        ("POST", "/", {"data": b"not a data item"}, 400, "data item"),
        ("POST", f"/?process-id={pid}&assign={zed}", {"data": b"x"}, 400, "assign"),
        ("POST", f"/monitor/{pid}", {"data": b"junk"}, 400, "data item"),
        ("DELETE", f"/monitor/{zed}", {"data": b"junk"}, 400, "data item"),
        ("GET", f"/result/short?process-id={pid}", {}, 400, "message id"),
        ("GET", f"/result/{zed}", {}, 400, "process-id"),
        ("GET", f"/result/{zed}?process-id={zed}", {}, 404, f"no process {zed}"),
        ("GET", f"/result/{zed}?process-id={pid}", {}, 404, f"no message {zed}"),
        ("GET", f"/results/{pid}?sort=UP", {}, 400, "sort"),
        ("GET", f"/results/{pid}?limit=0", {}, 400, "limit"),
        ("GET", f"/results/{pid}?from=x", {}, 400, "from"),
        ("GET", f"/results/{zed}", {}, 404, f"no process {zed}"),
        ("POST", f"/dry-run?process-id={pid}", {"data": b"{not json"}, 400, "not JSON"),
        ("POST", f"/dry-run?process-id={pid}", {"json": {"Tags": 5}}, 400, "Tags"),
        ("POST", f"/dry-run?process-id={pid}", {"json": {"Data": 5, "Tags": []}}, 400, "Data"),
        ("POST", f"/dry-run?process-id={pid}", {"json": {"Target": zed}}, 400, "Target"),
        ("POST", "/dry-run", {"json": {"Tags": []}}, 400, "process-id"),
        ("POST", f"/dry-run?process-id={zed}", {"json": {"Tags": []}}, 404, "no process"),
        ("POST", "/graphql", {"json": {}}, 400, "graphql"),
        ("POST", "/graphql", {"json": {"query": "{ blocks }"}}, 400, "graphql"),
        ("POST", "/graphql", {"json": {"query": "q", "variables": {"ids": "x"}}}, 400, "ids"),
        ("POST", "/graphql", {"json": {"query": "q", "variables": {"ids": [zed]}}}, 404, zed),
    ]
    processes = await client.ao_processes(0, 1000)
    for method, path, kwargs, code, text in rows:
        status, answer = await call(http, method, unit_url + path, **kwargs)
        assert status == code and text in answer["error"], (method, path, answer)
    assert await client.ao_processes(0, 1000) == processes
    assert (await client.ao_process(pid))["slots"] == 1


def run_arbundles(node: str, create: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [node, "ans104.mjs"],
        cwd=JS_DIR,
        input=json.dumps({"create": create}),
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    created: list[dict[str, Any]] = json.loads(done.stdout)["created"]
    return created


async def test_arbundles_items_are_scheduled_under_their_ids(
    node_arbundles: str, unit_url: str, client: InferchainClient, http: aiohttp.ClientSession
) -> None:
    arweave = ans104.ArweaveSigner.generate()
    ethereum = ans104.EthereumSigner(ETH_KEY)
    signers = [
        ({"ethereum": ETH_KEY.hex()}, ethereum.address),
        ({"arweave": arweave.jwk()}, arweave.address),
    ]
    status, unit = await call(http, "GET", unit_url + "/")
    spawn_tags = [["Type", "Process"], ["Scheduler", unit["Address"]]]
    spawns = run_arbundles(
        node_arbundles,
        [
            {
                "signer": spec,
                "data": PING.encode().hex(),
                "target": None,
                "anchor": None,
                "tags": spawn_tags,
            }
            for spec, _address in signers
        ],
    )
    for item in spawns:
        status, body = await call(
            http, "POST", unit_url + "/scheduler", data=bytes.fromhex(item["raw"])
        )
        assert status == 200 and body["id"] == item["id"], body

    async def spawned() -> list[dict[str, Any]] | None:
        found = []
        for item in spawns:
            try:
                found.append(await client.ao_process(item["id"]))
            except RpcError:
                return None
        return found

    processes = await wait_until(spawned, "arbundles' spawns on chain", WAIT_S)
    for process, (_spec, address) in zip(processes, signers, strict=True):
        assert process["owner"].lower() == address.lower()
        assert process["module"] == PING
    # each signer messages the other's process
    messages = run_arbundles(
        node_arbundles,
        [
            {
                "signer": spec,
                "data": b"hello".hex(),
                "target": spawns[1 - i]["id"],
                "anchor": None,
                "tags": [["Type", "Message"], ["Action", "Ping"]],
            }
            for i, (spec, _address) in enumerate(signers)
        ],
    )
    for item in messages:
        status, body = await call(
            http, "POST", unit_url + "/scheduler", data=bytes.fromhex(item["raw"])
        )
        assert status == 200 and body["id"] == item["id"], body
    for i, item in enumerate(messages):
        probe = functools.partial(_scheduled, client, item["id"])
        entry = await wait_until(probe, "arbundles' message on chain", WAIT_S)
        assert (entry["process"], entry["slot"]) == (spawns[1 - i]["id"], 1)
        assert entry["owner"].lower() == signers[i][1].lower()
        status, result = await call(
            http, "GET", f"{unit_url}/result/{item['id']}?process-id={entry['process']}"
        )
        assert status == 200 and result["Messages"][0]["Data"] == "pong 1", result


async def _scheduled(client: InferchainClient, message_id: str) -> dict[str, Any] | None:
    try:
        entry: dict[str, Any] = await client.ao_message_by_id(message_id)
    except RpcError:
        return None
    return entry


async def _published(client: InferchainClient, module_id: str) -> bool:
    try:
        return (await client.ao_process(module_id)).get("type") == "Module"
    except RpcError:
        return False
