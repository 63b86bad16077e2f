"""APUS's AI router on the AO unit, against real processes (PROTOCOL 8.10).

A dev testnet of 4 validators and 3 resource nodes, the last one byzantine (`wrong:1`), and
`python -m ao`, which ships the APUS token and router under the ids of APUS's document:
- the document's Lua examples, pasted unchanged into a process (its Transfer buying
  credits, its `ao.send` Infer with X-Prompt and X-Options, its AcceptResponse handler with
  the `//` line), print a verified answer: an honest node's result, verified by PoS+W, which
  `queryTask` confirms from the attestation;
- a session over three turns, each task's prompts holding the earlier turns;
- the cache routes against the router's memory;
- a SIGKILL of the unit in the middle of an Infer still delivers exactly one Infer-Response.

A second chain, with no resource node, where every task fails at its compute deadline: every
error row of the document's Infer, and credits that add up exactly (bought, spent, given back
for a failed task, and the remainder of a purchase refunded in APUS) while the bridge's
balance pays the task fees and its messages, both shown after every step.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ao.apus import ROUTER_ID, TOKEN_ID
from chain.protocol.genesis import Genesis
from rpc.client import InferchainClient, RpcError
from testnet.network import Network, apus_of
from tests.apus_examples import APUS_BUY_CREDITS, APUS_HANDLER, APUS_INFER
from tests.e2e.network import free_ports, network_genesis
from tests.helpers import dev_node_wallet, wait_until, write_genesis

pytestmark = pytest.mark.slow

WAIT_S = 120.0
APUS = 10**12
RATE = 10**10  # Armstrongs per credit: the router's default
BYZANTINE = 2


def tag(entry: dict[str, Any], name: str) -> str | None:
    for key, value in entry["tags"]:
        if key == name:
            return str(value)
    return None


@dataclass
class Unit:
    """The AO unit of a network, and what the tests read through it."""

    net: Network
    http: aiohttp.ClientSession
    chain: InferchainClient
    url: str
    token: str
    router: str
    bridge: str

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.http.post(self.url + path, json=body) as resp:
            return resp.status, await resp.json(content_type=None)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path) as resp:
            return resp.status, await resp.json(content_type=None)

    async def now(self, pid: str, path: str) -> Any:
        status, body = await self.get(f"/{pid}~process@1.0/now/{path}")
        assert status == 200, (path, body)
        return body

    async def spawn(self, module: str = "") -> str:
        status, body = await self.post("/process", {"module": module})
        assert status == 200, body
        return str(body["process_id"])

    async def send(self, pid: str, tags: list[tuple[str, str]], data: str = "") -> str:
        body = {"to": pid, "data": data, "tags": [{"name": k, "value": v} for k, v in tags]}
        status, answer = await self.post("/message", body)
        assert status == 200, answer
        return str(answer["message_id"])

    async def evaluate(self, pid: str, code: str) -> dict[str, Any]:
        """Eval `code` in `pid` (the owner, dev account 0, sends it) and its result."""
        message_id = await self.send(pid, [("Action", "Eval")], code)

        async def done() -> dict[str, Any] | None:
            status, body = await self.get(f"/message/{message_id}")
            assert status == 200, body
            return body["result"] if body["status"] == "processed" else None

        result: dict[str, Any] = await wait_until(done, f"Eval {message_id}", WAIT_S)
        assert result.get("Error") is None, result
        return result

    async def schedule(self, pid: str) -> list[dict[str, Any]]:
        status, body = await self.get(f"/scheduler/{pid}?limit=1000")
        assert status == 200, body
        return list(body)

    async def responses(self, pid: str) -> list[dict[str, Any]]:
        return [e for e in await self.schedule(pid) if tag(e, "Action") == "Infer-Response"]

    async def output(self, pid: str, message_id: str) -> str:
        status, body = await self.get(f"/compute/{pid}/message/{message_id}")
        assert status == 200, body
        output = body["Output"]
        return str(output["data"] if isinstance(output, dict) else output)

    async def credits(self, pid: str) -> int:
        status, body = await self.get(f"/{self.router}~process@1.0/now/cache/credits/{pid}")
        return int(body) if status == 200 else 0

    async def task(self, pid: str, reference: str) -> dict[str, Any] | None:
        status, body = await self.get(
            f"/{self.router}~process@1.0/now/cache/tasks/{pid}-{reference}"
        )
        return dict(body) if status == 200 else None

    async def final_task(self, pid: str, reference: str) -> dict[str, Any]:
        async def final() -> dict[str, Any] | None:
            task = await self.task(pid, reference)
            return task if task is not None and task["status"] in ("successed", "failed") else None

        found: dict[str, Any] = await wait_until(final, f"task {pid}-{reference} final", WAIT_S)
        return found

    async def apus_balance(self, account: str) -> int:
        status, body = await self.get(f"/{self.token}~process@1.0/now/Balances/{account}")
        return int(body) if status == 200 else 0

    async def bridge_balance(self) -> int:
        return int((await self.chain.get_account(self.bridge))["balance"])

    async def funded_client(self, module: str = "", apus: int = 10) -> str:
        """A process of dev account 0's, holding `apus` APUS from the faucet."""
        pid = await self.spawn(module)
        await self.evaluate(pid, f'Send({{Target = "{self.token}", Action = "Faucet"}})')
        await wait_until(lambda: self._holds(pid, apus * APUS), f"{pid} holds {apus} APUS", WAIT_S)
        return pid

    async def _holds(self, pid: str, amount: int) -> bool:
        return await self.apus_balance(pid) >= amount


@dataclass
class Running:
    """A network started for a module's tests, and its AO unit's APUS ids."""

    net: Network
    apus: dict[str, Any]


def start_network(root: Path, genesis: Genesis, nodes: int, faults: dict[int, str]) -> Running:
    net = Network(genesis, root, free_ports(len(genesis.validators)), node_faults=faults)
    write_genesis(net.genesis_path, genesis)
    try:
        for process in [net.spawn_validator(k) for k in range(net.size)]:
            process.wait_ready()
        for process in [net.spawn_node(i) for i in range(nodes)]:
            process.wait_ready()
        net.spawn_ao(0).wait_ready()
        assert net.ao is not None
        apus = asyncio.run(apus_of(net.ao.url))
        assert apus is not None, "the unit ships no APUS processes"
        asyncio.run(shipped(net.urls[0], apus))
    except BaseException:
        net.stop(20)
        raise
    return Running(net, apus)


async def shipped(url: str, apus: dict[str, Any]) -> None:
    """Until both processes are in a block."""
    chain = InferchainClient(url)

    async def spawned() -> bool:
        for pid in (apus["token"], apus["router"]):
            try:
                await chain.ao_process(pid)
            except RpcError:
                return False
        return True

    try:
        await wait_until(spawned, "the APUS processes spawned", WAIT_S)
    finally:
        await chain.close()


@asynccontextmanager
async def unit_of(running: Running) -> AsyncIterator[Unit]:
    net, apus = running.net, running.apus
    assert net.ao is not None
    chain = InferchainClient(net.urls[0])
    async with aiohttp.ClientSession() as http:
        try:
            yield Unit(net, http, chain, net.ao.url, apus["token"], apus["router"], apus["bridge"])
        finally:
            await chain.close()


@pytest.fixture(scope="module")
def testnet_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The default testnet's shape: 4 validators, 3 resource nodes, the last byzantine."""
    genesis = network_genesis(4, block_time_ms=300, ao_aliases=True)
    running = start_network(tmp_path_factory.mktemp("apus"), genesis, 3, {BYZANTINE: "wrong:1"})
    try:
        yield running
    finally:
        running.net.stop(20)


@pytest.fixture(scope="module")
def nodeless_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One validator and no resource node: every task fails at its compute deadline."""
    genesis = network_genesis(1, block_time_ms=100, ao_aliases=True)
    running = start_network(tmp_path_factory.mktemp("apus-nodeless"), genesis, 0, {})
    try:
        yield running
    finally:
        running.net.stop(20)


@pytest.fixture
async def testnet(testnet_running: Running) -> AsyncIterator[Unit]:
    async with unit_of(testnet_running) as unit:
        yield unit


@pytest.fixture
async def nodeless(nodeless_running: Running) -> AsyncIterator[Unit]:
    async with unit_of(nodeless_running) as unit:
        yield unit


# The default testnet


async def test_the_processes_take_the_documents_ids_and_the_banner_says_so(testnet: Unit) -> None:
    assert (testnet.token, testnet.router) == (TOKEN_ID, ROUTER_ID)
    info = await apus_of(testnet.url)
    assert info is not None and info["documentIds"] is True
    router = await testnet.chain.ao_process(ROUTER_ID)
    assert router["id"] == ROUTER_ID and router["spawnId"] != ROUTER_ID
    # the spawn's own id is an alias of the process
    assert (await testnet.chain.ao_process(router["spawnId"]))["id"] == ROUTER_ID
    assert (await testnet.now(ROUTER_ID, "Router"))["bridge"] == testnet.bridge.lower()


async def test_the_documents_examples_print_a_verified_answer(testnet: Unit) -> None:
    client = await testnet.funded_client(APUS_HANDLER)
    await testnet.evaluate(client, APUS_BUY_CREDITS)
    await wait_until(
        lambda: _equals(testnet.credits(client), APUS // RATE), "100 credits bought", WAIT_S
    )
    infer = await testnet.evaluate(client, APUS_INFER)
    (sent,) = infer["Messages"]  # the unit relays it to the router
    assert sent["Target"] == ROUTER_ID
    (response,) = await wait_until(lambda: testnet.responses(client), "Infer-Response", WAIT_S)
    printed = (await testnet.output(client, response["id"])).split("\n")
    body = json.loads(printed[0])
    reference, session = printed[1], printed[2]
    assert tag(response, "Code") is None
    assert set(body) == {"result", "attestation"}
    attestation = body["attestation"]
    task = await testnet.chain.query_task(attestation["taskHash"])
    assert task["status"] == "verified"
    assert body["result"] == task["response"] and body["result"]
    assert attestation["verificationCount"] == task["verificationCount"] >= 1
    assert attestation["chainId"] == await testnet.chain.chain_id()
    # an honest node's result, verified by the nodes that say so
    cached = await testnet.task(client, reference)
    assert cached is not None and cached["status"] == "successed"
    byzantine = dev_node_wallet(BYZANTINE).address
    assert cached["worker"].lower() != byzantine.lower()
    entry = next(e for e in task["executionInfo"] if e["resourceNode"] == cached["worker"])
    assert entry["result"] == body["result"] and entry["status"] == 2
    valid = [v["verifier"] for v in entry["verifications"] if v["valid"]]
    assert attestation["verifiers"] == valid and len(valid) == task["verificationCount"]
    assert cached["result"] == body["result"] and cached["session_id"] == session
    assert cached["prompt"] == "Who are you?"
    assert json.loads(cached["options"]) == {"temperature": 0.8, "max_tokens": 150}
    assert await testnet.credits(client) == APUS // RATE - 1
    options = json.loads(task["modelOptions"])
    assert options == {"model": "gemma3-27b", "temperature": 0.8, "top_p": 0.9, "max_tokens": 150}


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_a_session_over_three_turns_carries_the_earlier_turns(testnet: Unit) -> None:
    client = await testnet.funded_client()
    await testnet.evaluate(client, APUS_BUY_CREDITS)
    await wait_until(lambda: testnet.credits(client), "credits", WAIT_S)
    prompts = ["Name a colour.", "Name a fruit of that colour.", "How does it taste?"]
    session: str | None = None
    results: list[str] = []
    for turn, prompt in enumerate(prompts):
        tags = [("Target", ROUTER_ID), ("Action", "Infer"), ("X-Prompt", prompt)]
        tags.append(("X-Reference", f"turn-{turn}"))
        if session is not None:
            tags.append(("X-Session", session))
        fields = ", ".join(f'["{k}"] = {json.dumps(v)}' for k, v in tags)
        await testnet.evaluate(client, f"Send({{{fields}}})")
        task = await testnet.final_task(client, f"turn-{turn}")
        assert task["status"] == "successed", task
        session = session or task["session_id"]
        assert task["session_id"] == session
        chain_task = await testnet.chain.query_task(task["task_hash"])
        expected = "".join(
            f"User: {p}\nAssistant: {r}\n" for p, r in zip(prompts, results, strict=False)
        )
        want = prompt if turn == 0 else expected + f"User: {prompt}\nAssistant:"
        assert chain_task["prompts"] == want
        results.append(task["result"])
    assert session is not None and session.startswith("session-")


async def test_the_cache_routes_read_the_routers_memory(testnet: Unit) -> None:
    stats = await testnet.now(ROUTER_ID, "cache/taskStats")
    tasks = await testnet.now(ROUTER_ID, "cache/tasks")
    assert set(stats) == {"total_tasks", "pending", "processing", "successed", "failed"}
    assert stats["total_tasks"] == len(tasks)
    for status in ("pending", "processing", "successed", "failed"):
        assert stats[status] == sum(1 for t in tasks.values() if t["status"] == status)
    key, task = next(iter(sorted(tasks.items())))
    assert await testnet.now(ROUTER_ID, f"cache/tasks/{key}") == task
    assert set(task) >= {
        "status",
        "created_at",
        "processed_at",
        "prompt",
        "options",
        "session_id",
        "result",
        "client",
        "worker",
    }
    credits = await testnet.now(ROUTER_ID, "cache/credits")
    for pid, amount in credits.items():
        assert await testnet.now(ROUTER_ID, f"cache/credits/{pid}") == amount
    # reading sends nothing: the router's slots are as they were
    before = len(await testnet.schedule(ROUTER_ID))
    for _ in range(3):
        await testnet.now(ROUTER_ID, "cache/taskStats")
    assert len(await testnet.schedule(ROUTER_ID)) == before
    status, body = await testnet.get(f"/{ROUTER_ID}~process@1.0/now/cache/tasks/nobody-0")
    assert status == 404 and "nobody-0" in body["error"]
    status, body = await testnet.get(f"/{ROUTER_ID}~process@1.0/now/")
    assert status == 400 and "error" in body
    status, body = await testnet.get(f"/{'Z' * 42}A~process@1.0/now/cache")
    assert status == 404 and "no process" in body["error"]
    status, body = await testnet.get("/not-an-id~process@1.0/now/cache")
    assert status == 400 and "AO id" in body["error"]


async def test_a_unit_killed_in_the_middle_of_an_infer_delivers_one_response(
    testnet: Unit,
) -> None:
    client = await testnet.funded_client()
    await testnet.evaluate(client, APUS_BUY_CREDITS)
    await wait_until(lambda: testnet.credits(client), "credits", WAIT_S)
    send = 'Send({Target = "%s", Action = "Infer", ["X-Prompt"] = "%s", ["X-Reference"] = "%s"})'
    await testnet.evaluate(client, send % (ROUTER_ID, "Before the crash?", "crash"))
    await wait_until(lambda: testnet.task(client, "crash"), "the Infer accepted", WAIT_S)
    assert testnet.net.ao is not None
    testnet.net.ao.kill()
    restarted = testnet.net.spawn_ao(0)
    await asyncio.to_thread(restarted.wait_ready)
    testnet.url = restarted.url
    task = await testnet.final_task(client, "crash")
    assert task["status"] == "successed"
    # a later Infer answered: everything about the first one has been evaluated by then
    await testnet.evaluate(client, send % (ROUTER_ID, "After the crash?", "after"))
    await testnet.final_task(client, "after")

    async def both() -> list[dict[str, Any]] | None:
        found = await testnet.responses(client)
        return found if len(found) >= 2 else None

    responses = await wait_until(both, "both Infer-Responses", WAIT_S)
    references = [tag(r, "X-Reference") for r in responses]
    assert references == ["crash", "after"]


# The chain without resource nodes: errors and exact credits


async def test_every_error_row_answers_its_code_and_changes_nothing(nodeless: Unit) -> None:
    client = await nodeless.funded_client()
    await nodeless.evaluate(client, APUS_BUY_CREDITS)
    await wait_until(lambda: nodeless.credits(client), "credits", WAIT_S)
    rows = [
        ([("X-Options", '{"temperature": 0.8, "colour": "red"}')], "INVALID_OPTIONS", "colour"),
        ([("X-Options", '{"temperature": 2.5}')], "INVALID_OPTIONS", "temperature"),
        ([("X-Options", '{"max_tokens": 0}')], "INVALID_OPTIONS", "max_tokens"),
        ([("X-Options", "{not json")], "INVALID_OPTIONS", "JSON"),
        ([], "INVALID_PROMPT", "X-Prompt"),
    ]
    for extra, code, named in rows:
        before = (await nodeless.credits(client), await nodeless.now(ROUTER_ID, "cache/taskStats"))
        tags = [("Target", ROUTER_ID), ("Action", "Infer"), ("X-Reference", f"bad-{code}-{named}")]
        if code != "INVALID_PROMPT":
            tags.append(("X-Prompt", "hello"))
        fields = ", ".join(f'["{k}"] = {json.dumps(v)}' for k, v in [*tags, *extra])
        await nodeless.evaluate(client, f"Send({{{fields}}})")

        async def answered(reference: str = f"bad-{code}-{named}") -> dict[str, Any] | None:
            for r in await nodeless.responses(client):
                if tag(r, "Request-Reference") == reference:
                    return r
            return None

        response = await wait_until(answered, f"the {code} answer", WAIT_S)
        assert tag(response, "Code") == code
        assert named in str(tag(response, "X-Reference")) and response["data"] == tag(
            response, "X-Reference"
        )
        after = (await nodeless.credits(client), await nodeless.now(ROUTER_ID, "cache/taskStats"))
        assert after == before
        assert await nodeless.task(client, f"bad-{code}-{named}") is None


async def test_credits_and_the_bridges_fees_add_up_after_every_step(nodeless: Unit) -> None:
    params = await nodeless.chain.get_params()
    poor = await nodeless.funded_client()
    # no credits: refused, nothing submitted
    bridge_before = await nodeless.bridge_balance()
    await nodeless.evaluate(
        poor,
        f'Send({{Target = "{ROUTER_ID}", Action = "Infer", ["X-Prompt"] = "hi", '
        '["X-Reference"] = "none"})',
    )

    async def refused() -> bool:
        return any(tag(r, "Code") == "INSUFFICIENT_CREDITS" for r in await nodeless.responses(poor))

    await wait_until(refused, "INSUFFICIENT_CREDITS", WAIT_S)
    assert await nodeless.credits(poor) == 0
    assert await nodeless.bridge_balance() == bridge_before

    # 1 APUS and 5 Armstrongs: 100 credits, 5 Armstrongs sent back
    held = await nodeless.apus_balance(poor)
    quantity = APUS + 5
    await nodeless.evaluate(
        poor,
        f'Send({{Target = "{TOKEN_ID}", Action = "Transfer", Recipient = "{ROUTER_ID}", '
        f'Quantity = "{quantity}", ["X-Reason"] = "Buy-Credits"}})',
    )
    await wait_until(lambda: _equals(nodeless.credits(poor), 100), "100 credits", WAIT_S)
    await wait_until(
        lambda: _equals(nodeless.apus_balance(poor), held - APUS), "5 Armstrongs back", WAIT_S
    )
    # a Transfer without the reason: all of it back, no credits
    await nodeless.evaluate(
        poor,
        f'Send({{Target = "{TOKEN_ID}", Action = "Transfer", Recipient = "{ROUTER_ID}", '
        'Quantity = "7"})',
    )

    async def seven_back() -> bool:
        notices = [
            e
            for e in await nodeless.schedule(poor)
            if tag(e, "Action") == "Credit-Notice"
            and tag(e, "X-Reason") == "Refund"
            and tag(e, "Quantity") == "7"
        ]
        return bool(notices)

    await wait_until(seven_back, "the 7 Armstrongs refunded", WAIT_S)
    assert await nodeless.apus_balance(poor) == held - APUS
    assert await nodeless.credits(poor) == 100

    # an Infer: 1 credit spent; the task fails (no node computes): the credit comes back
    bridge_before = await nodeless.bridge_balance()
    await nodeless.evaluate(
        poor,
        f'Send({{Target = "{ROUTER_ID}", Action = "Infer", ["X-Prompt"] = "hi", '
        '["X-Reference"] = "fails"})',
    )
    await wait_until(lambda: nodeless.task(poor, "fails"), "the Infer accepted", WAIT_S)
    assert await nodeless.credits(poor) in (99, 100)  # 100 only once it failed
    task = await nodeless.final_task(poor, "fails")
    assert task["status"] == "failed"
    assert await nodeless.credits(poor) == 100

    async def failed_responses() -> list[dict[str, Any]]:
        return [r for r in await nodeless.responses(poor) if tag(r, "Code") == "TASK_FAILED"]

    (failed,) = await wait_until(failed_responses, "the TASK_FAILED answer", WAIT_S)
    assert tag(failed, "Request-Reference") == "fails"
    chain_task = await nodeless.chain.query_task(task["task_hash"])
    assert chain_task["status"] == "failed"
    settlement = chain_task["settlement"]
    paid = (
        int(chain_task["fee"]) - int(settlement["refund"]) if settlement else int(chain_task["fee"])
    )
    reports = [
        e
        for e in await nodeless.schedule(ROUTER_ID)
        if tag(e, "Action") == "Task-Status" and tag(e, "Task-Reference") == f"{poor}-fails"
    ]
    assert [tag(e, "Status") for e in reports][-1] == "failed"
    assert all(e["from"].lower() == nodeless.bridge.lower() for e in reports)
    expected = bridge_before - paid - len(reports) * params.transfer_fee
    await wait_until(
        lambda: _equals(nodeless.bridge_balance(), expected), "the bridge paid the fees", WAIT_S
    )
    stats = await nodeless.now(ROUTER_ID, "cache/taskStats")
    assert stats["failed"] >= 1 and stats["pending"] == stats["processing"] == 0


async def test_no_result_of_the_byzantine_node_stands(testnet: Unit) -> None:
    """Every task the bridge submitted ended verified with an honest node's result; each
    result the byzantine node gave was rejected."""
    byzantine = dev_node_wallet(BYZANTINE).address.lower()
    tasks = await testnet.chain.get_tasks_by_sender(testnet.bridge, 0, 100)
    assert tasks
    for task in tasks:
        assert task["status"] == "verified", task["taskHash"]
        for entry in task["executionInfo"]:
            if entry["resourceNode"].lower() == byzantine:
                assert entry["status"] == 3, entry  # rejected
        winners = [e for e in task["executionInfo"] if e["result"] == task["response"]]
        assert winners and all(e["resourceNode"].lower() != byzantine for e in winners)
