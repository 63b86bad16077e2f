"""The validator's WebSocket subscriptions (PROTOCOL 5.6) on an in-process validator whose
blocks the test makes: blocks, a task from submission to settlement (result, verdicts,
decision, settlement), a sender's tasks, a transaction from pending to committed, a
resource node's work; a resume from a height that misses nothing and repeats nothing; the
limits (a slow consumer closed 1008, too many subscriptions, too many connections); and
every bad request answered from the error table, changing nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rpc import subscriptions
from rpc.client import RpcError
from tests.helpers import LocalChain, dev_node_by_address, local_chain, wait_until
from tests.rpc.support import DEV0, NODE0, mine
from tests.rpc.test_lifecycle import lifecycle_genesis

WAIT_S = 10.0


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[LocalChain]:
    async with local_chain(tmp_path / "ledger", lifecycle_genesis(), run=False) as running:
        yield running


class Socket:
    """One WebSocket client: requests answered by id, notifications kept in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.answers: dict[int, dict[str, Any]] = {}
        self.notes: dict[str, list[dict[str, Any]]] = {}
        self.closed: tuple[int | None, str] | None = None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                reason = msg.extra if isinstance(msg.extra, str) else ""
                self.closed = (self.ws.close_code, reason)
                return
            body = json.loads(msg.data)
            if body.get("method") == "subscription":
                params = body["params"]
                self.notes.setdefault(params["subscription"], []).append(params["result"])
            else:
                self.answers[body.get("id")] = body

    async def call(self, method: str, params: Any) -> dict[str, Any]:
        self.next_id += 1
        request_id = self.next_id
        await self.ws.send_json(
            {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        )
        answer: dict[str, Any] = await wait_until(
            lambda: _ready(self.answers.get(request_id)), f"answer {request_id}", WAIT_S
        )
        return answer

    async def subscribe(self, **params: Any) -> str:
        answer = await self.call("subscribe", params)
        assert "result" in answer, answer
        return str(answer["result"])

    async def wait_notes(self, sub: str, count: int) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            notes = self.notes.get(sub, [])
            return notes if len(notes) >= count else None

        found: list[dict[str, Any]] = await wait_until(enough, f"{count} notifications", WAIT_S)
        return found


async def _ready(value: Any) -> Any:
    return value


async def connect(chain: LocalChain, http: aiohttp.ClientSession) -> Socket:
    return Socket(await http.ws_connect(chain.url + "/ws"))


async def blocks(chain: LocalChain, count: int = 1) -> int:
    height = mine(chain, count)
    await chain.node.notify_new_block()
    return height


async def settle_one_task(chain: LocalChain) -> tuple[str, int]:
    """A task from DEV0, NODE0's result, both verifiers' valid verdicts: (hash, created)."""
    client = chain.client
    receipt = await client.submit_task(
        DEV0, prompts="2 + 2?", model_options=json.dumps({"model": "demo"})
    )
    created = await blocks(chain)
    assert await client.submit_inference_result(NODE0, receipt.task_hash, "4") is True
    await blocks(chain)
    entry = (await client.query_task(receipt.task_hash))["executionInfo"][0]
    for verifier in entry["assignment"]["rounds"][0]:
        wallet = dev_node_by_address(verifier)
        assert await client.submit_verification(wallet, receipt.task_hash, NODE0.address, True)
    await blocks(chain)
    task = await client.query_task(receipt.task_hash)
    assert task["status"] == "verified", task["status"]
    return receipt.task_hash, created


async def test_new_blocks_are_notified_in_order(manual: LocalChain) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await connect(manual, http)
        sub = await socket.subscribe(topic="newBlocks")
        start = manual.node.head.height
        await blocks(manual, 3)
        notes = await socket.wait_notes(sub, 3)
        assert [n["height"] for n in notes] == [start + 1, start + 2, start + 3]
        block = await manual.client.get_block(start + 2)
        assert notes[1]["hash"] == block["hash"] and notes[1]["proposer"] == block["proposer"]


async def test_a_task_is_followed_from_submission_to_settlement(manual: LocalChain) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await connect(manual, http)
        mine_sub = await socket.subscribe(topic="tasks", sender=DEV0.address)
        task_hash, created = await settle_one_task(manual)
        notes = await socket.wait_notes(mine_sub, 6)
        kinds = [n["event"] for n in notes]
        assert kinds == ["submitted", "result", "verdict", "verdict", "decided", "settled"]
        assert all(n["taskHash"] == task_hash and n["sender"] == DEV0.address for n in notes)
        assert notes[0]["height"] == created and notes[1]["resourceNode"] == NODE0.address
        assert notes[1]["result"] == "4" and all(n["valid"] for n in notes[2:4])
        task = await manual.client.query_task(task_hash)
        assert notes[-1]["status"] == "verified" and notes[-1]["settlement"] == task["settlement"]
        # the same task's events, asked for by hash from its creation: the same, once
        replay = await socket.subscribe(topic="task", taskHash=task_hash, fromHeight=created)
        assert await socket.wait_notes(replay, 6) == notes
        await blocks(manual, 2)
        assert len(socket.notes[replay]) == 6 and len(socket.notes[mine_sub]) == 6


async def test_a_client_that_resumes_from_its_last_height_misses_nothing(
    manual: LocalChain,
) -> None:
    async with aiohttp.ClientSession() as http:
        first = await connect(manual, http)
        sub = await first.subscribe(topic="newBlocks", fromHeight=0)
        await blocks(manual, 2)
        seen = await first.wait_notes(sub, manual.node.head.height + 1)
        await first.ws.close()
        await blocks(manual, 3)  # while it is away
        again = await connect(manual, http)
        resumed = await again.subscribe(topic="newBlocks", fromHeight=seen[-1]["height"] + 1)
        await blocks(manual, 1)
        rest = await again.wait_notes(resumed, 4)
        heights = [n["height"] for n in seen + rest]
        assert heights == list(range(0, manual.node.head.height + 1))


async def test_a_transaction_goes_from_pending_to_committed(manual: LocalChain) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await connect(manual, http)
        tx_hash = await manual.client.transfer(DEV0, NODE0.address, 5)
        sub = await socket.subscribe(topic="tx", txHash=tx_hash)
        (pending,) = await socket.wait_notes(sub, 1)
        assert pending == {"topic": "tx", "txHash": tx_hash, "status": "pending"}
        height = await blocks(manual)
        _, committed = await socket.wait_notes(sub, 2)
        assert committed["status"] == "committed" and committed["height"] == height
        assert committed["type"] == "Transfer" and committed["sender"] == DEV0.address
        # subscribed after it committed: given at once, as it was committed
        later = await socket.subscribe(topic="tx", txHash=tx_hash)
        assert await socket.wait_notes(later, 1) == [committed]


async def test_a_resource_node_is_offered_its_work_as_it_appears(manual: LocalChain) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await connect(manual, http)
        sub = await socket.subscribe(
            topic="pendingTasks", ResourceAddress=NODE0.address, TimeStamp=0
        )
        receipt = await manual.client.submit_task(
            DEV0, prompts="hi", model_options=json.dumps({"model": "demo"})
        )
        (early,) = await socket.wait_notes(sub, 1)  # from the mempool, before its block
        assert early["inMempool"] is True and early["work"]["taskHash"] == receipt.task_hash
        await blocks(manual)
        early, offer = await socket.wait_notes(sub, 2)  # and again from its block
        assert "inMempool" not in offer
        assert offer["work"]["taskHash"] == receipt.task_hash and offer["work"]["compute"]
        expected = await manual.client.query_pending_tasks(NODE0)
        assert offer["work"] in expected
        await blocks(manual)  # nothing new: nothing offered again
        assert len(socket.notes[sub]) == 2


BAD = [
    ({"topic": "weather"}, "topic"),
    ({}, "topic"),
    ({"topic": "task"}, "taskHash"),
    ({"topic": "task", "taskHash": "0x12"}, "taskHash"),
    ({"topic": "tasks", "sender": "nobody"}, "sender"),
    ({"topic": "newBlocks", "fromHeight": -1}, "fromHeight"),
    ({"topic": "newBlocks", "fromHeight": 10**6}, "fromHeight"),
    ({"topic": "newBlocks", "colour": "red"}, "colour"),
    ({"topic": "pendingTasks", "ResourceAddress": "0x12", "TimeStamp": 0}, "ResourceAddress"),
    ({"topic": "pendingTasks", "TimeStamp": 0}, "ResourceAddress"),
]


@pytest.mark.parametrize(("params", "named"), BAD)
async def test_a_bad_subscription_is_refused_naming_the_param(
    manual: LocalChain, params: dict[str, Any], named: str
) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await connect(manual, http)
        answer = await socket.call("subscribe", params)
        error = answer["error"]
        assert error["code"] == -32602 and error["data"]["param"] == named, error
        assert socket.notes == {}
        answer = await socket.call("unsubscribe", {"subscription": "nothing"})
        assert answer["result"] is False


async def test_other_methods_and_bad_frames_over_the_socket(manual: LocalChain) -> None:
    async with aiohttp.ClientSession() as http:
        socket = await connect(manual, http)
        answer = await socket.call("chainId", [])
        assert answer["error"]["code"] == -32601 and "POST /" in answer["error"]["data"]["reason"]
        await socket.ws.send_str("{not json")
        parse = await wait_until(lambda: _ready(socket.answers.get(None)), "parse error", WAIT_S)
        assert parse["error"]["code"] == -32700


async def test_a_consumer_that_falls_behind_is_closed_1008(tmp_path: Path) -> None:
    limits = subscriptions.Limits(queue=2)
    async with (
        local_chain(tmp_path / "l", lifecycle_genesis(), run=False, ws_limits=limits) as chain,
        aiohttp.ClientSession() as http,
    ):
        socket = await connect(chain, http)
        await socket.subscribe(topic="newBlocks")
        await blocks(chain, 10)  # ten at once: more than the queue holds
        closed = await wait_until(lambda: _ready(socket.closed), "closed", WAIT_S)
        assert closed[0] == 1008 and "too slow" in closed[1]


async def test_subscriptions_and_connections_are_capped(tmp_path: Path) -> None:
    limits = subscriptions.Limits(subscriptions=2, connections=2)
    async with (
        local_chain(tmp_path / "l", lifecycle_genesis(), run=False, ws_limits=limits) as chain,
        aiohttp.ClientSession() as http,
    ):
        socket = await connect(chain, http)
        await socket.subscribe(topic="newBlocks")
        await socket.subscribe(topic="newBlocks")
        answer = await socket.call("subscribe", {"topic": "newBlocks"})
        assert (
            answer["error"]["code"] == -32602 and "at most 2" in answer["error"]["data"]["reason"]
        )
        await connect(chain, http)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await connect(chain, http)
        assert refused.value.status == 429


async def test_the_client_library_subscribes_and_says_why_it_was_refused(
    manual: LocalChain,
) -> None:
    await blocks(manual, 2)
    stream = manual.client.subscribe("newBlocks", fromHeight=1)
    try:
        first = await asyncio.wait_for(anext(stream), WAIT_S)
        second = await asyncio.wait_for(anext(stream), WAIT_S)
        assert (first["height"], second["height"]) == (1, 2)
    finally:
        await stream.aclose()
    refused = manual.client.subscribe("task", taskHash="0x12")
    with pytest.raises(RpcError) as info:
        await asyncio.wait_for(anext(refused), WAIT_S)
    assert info.value.code == -32602 and info.value.data["param"] == "taskHash"
