"""The AO unit against real processes: a dev validator (200 ms blocks) and `python -m ao`
units over it (PROTOCOL 8).

Process A sends to process B and B's handler replies, end to end through the messenger
unit; a cron of 2 blocks over N blocks gives N / 2 messages; a dry run changes nothing; a
data item spawns; every bad request is refused and schedules nothing; a second unit over the
same chain, and the first after a SIGKILL and a restart, reach the same memory byte for
byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chain.protocol import ans104
from rpc.client import InferchainClient, Wallet
from testnet.commands import AO_READY, ao_args
from testnet.process import Process
from tests.conformance.ao.support import CALLER, PING
from tests.helpers import ValidatorProcess, make_genesis, wait_until, write_genesis

pytestmark = pytest.mark.slow

WAIT_S = 60.0
UNKNOWN = "Z" * 42 + "A"  # well-formed ids (canonical: the last character's low bits 0)
OTHER_UNKNOWN = "Y" * 42 + "A"
TICKER = """
Handlers.add("cron", Handlers.utils.hasMatchingTag("Action", "Cron"), function (msg)
  Ticks = (Ticks or 0) + 1
  print("tick " .. Ticks)
end)
"""


@dataclass
class Unit:
    process: Process
    url: str
    http: aiohttp.ClientSession

    async def post(self, path: str, body: Any = None, data: bytes | None = None) -> tuple[int, Any]:
        async with self.http.post(self.url + path, json=body, data=data) as resp:
            return resp.status, await resp.json(content_type=None)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.url + path) as resp:
            if resp.content_type == "application/octet-stream":
                return resp.status, await resp.read()
            return resp.status, await resp.json(content_type=None)

    async def spawn(self, module: str, **extra: Any) -> str:
        status, body = await self.post("/process", {"module": module, **extra})
        assert status == 200, body
        return str(body["process_id"])

    async def send(self, pid: str, action: str, data: str = "") -> str:
        tags = [{"name": "Action", "value": action}]
        status, body = await self.post("/message", {"to": pid, "data": data, "tags": tags})
        assert status == 200, body
        return str(body["message_id"])

    async def processed(self, message_id: str) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            status, body = await self.get(f"/message/{message_id}")
            assert status == 200, body
            return body if body["status"] == "processed" else None

        found: dict[str, Any] = await wait_until(done, f"message {message_id} processed", WAIT_S)
        return found


def start_unit(root: Path, rpc: str, name: str) -> Process:
    process = Process(name, ao_args(rpc, root / name), root / f"{name}.log", ready_prefix=AO_READY)
    process.start()
    return process


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("ao")
    genesis = write_genesis(root / "genesis.json", make_genesis(block_time_ms=200))
    validator = ValidatorProcess(genesis, root / "validator")
    try:
        yield root, validator.start()
    finally:
        validator.close()


@pytest.fixture
async def unit(chain: tuple[Path, str]) -> AsyncIterator[Unit]:
    root, rpc = chain
    process = start_unit(root, rpc, "unit")
    async with aiohttp.ClientSession() as http:
        try:
            yield Unit(process, process.url, http)
        finally:
            process.close()


async def test_a_process_messages_another_and_gets_the_reply(unit: Unit) -> None:
    pinger = await unit.spawn(PING)
    caller = await unit.spawn(CALLER)
    await unit.processed(await unit.send(caller, "Call", pinger))

    async def answered() -> bool:
        status, memory = await unit.get(f"/process/{caller}")
        return status == 200 and b"pong 1" in memory

    await wait_until(answered, "the caller got the pinger's reply", WAIT_S)
    status, schedule = await unit.get(f"/scheduler/{caller}")
    assert status == 200
    reply = schedule[-1]
    assert reply["fromProcess"] == pinger and reply["from"] == pinger
    status, pings = await unit.get(f"/scheduler/{pinger}")
    assert pings[-1]["fromProcess"] == caller
    # the pinger's result shows the reply it sent
    result = await unit.processed(pings[-1]["id"])
    (sent,) = result["result"]["Messages"]
    assert sent["Target"] == caller and sent["Data"] == "pong 1"
    status, again = await unit.get(f"/compute/{pinger}/message/{pings[-1]['id']}")
    assert status == 200 and again == result["result"]


async def test_cron_every_two_blocks(unit: Unit) -> None:
    pid = await unit.spawn(TICKER, cron_interval="2-blocks")

    async def ticks() -> list[Any] | None:
        status, listed = await unit.get(f"/cron/{pid}")
        assert status == 200, listed
        return listed if len(listed) >= 3 else None

    listed = await wait_until(ticks, "three cron ticks", WAIT_S)
    heights = [item["message"]["height"] for item in listed]
    spawned_at = heights[0] - 2
    assert heights[:3] == [spawned_at + 2, spawned_at + 4, spawned_at + 6]
    assert "tick 1" in str(listed[0]["result"]["Output"])
    assert "tick 2" in str(listed[1]["result"]["Output"])
    assert all(item["result"]["Error"] is None for item in listed)


async def test_a_dry_run_changes_nothing(unit: Unit) -> None:
    pid = await unit.spawn(PING)
    await unit.processed(await unit.send(pid, "Ping"))
    _, before = await unit.get(f"/process/{pid}")
    tags = [{"name": "Action", "value": "Ping"}]
    status, body = await unit.post("/message", {"to": pid, "tags": tags, "read_only": True})
    assert status == 200, body
    (reply,) = body["result"]["Messages"]
    assert reply["Data"] == "pong 2"  # as the next Ping would answer
    _, after = await unit.get(f"/process/{pid}")
    assert after == before
    _, schedule = await unit.get(f"/scheduler/{pid}")
    assert len(schedule) == 2  # the spawn and the one Ping


async def test_a_data_item_spawns_a_process(unit: Unit) -> None:
    signer = ans104.EthereumSigner(Wallet.dev(6).private_key)
    item = ans104.create(signer=signer, data=PING.encode(), tags=[ans104.Tag("Type", "Process")])
    status, body = await unit.post("/scheduler", data=ans104.serialize(item))
    assert status == 200, body
    assert body["id"] == item.id

    async def spawned() -> bool:
        status, _memory = await unit.get(f"/process/{item.id}")
        return status == 200

    await wait_until(spawned, "the data item's process", WAIT_S)
    status, body = await unit.post("/scheduler", data=b"not a data item")
    assert status == 400 and "data item" in body["error"]


BAD_POSTS: list[tuple[str, Any, int, str]] = [
    ("/process", {"module": "this is not lua ("}, 400, "does not load"),
    ("/process", {"module": PING, "memory_limit": "lots"}, 400, "memory_limit"),
    ("/process", {"module": PING, "cron_interval": "5-fortnights"}, 400, "cronInterval"),
    ("/process", {"module": "A" * 43}, 400, "module"),
    ("/message", {"to": "short", "data": "x"}, 400, "to"),
    ("/message", {"to": UNKNOWN, "data": "x"}, 404, "no process"),
    ("/message", {"to": UNKNOWN, "data": 5}, 400, "data"),
    ("/messenger", {"message_id": UNKNOWN, "target_process": UNKNOWN}, 404, "no message"),
]


async def test_bad_input_is_refused_and_schedules_nothing(
    unit: Unit, chain: tuple[Path, str]
) -> None:
    async with InferchainClient(chain[1]) as client:
        before = await client.ao_processes(0, 1000)
        for path, body, code, text in BAD_POSTS:
            status, answer = await unit.post(path, body)
            assert status == code and text in answer["error"], (path, body, answer)
        for path, code in (
            ("/process/short", 400),
            ("/process/" + UNKNOWN, 404),
            ("/message/" + UNKNOWN, 404),
            ("/compute/" + UNKNOWN + "/message/" + OTHER_UNKNOWN, 404),
            ("/cron/" + UNKNOWN, 404),
        ):
            status, answer = await unit.get(path)
            assert status == code and answer["error"], (path, answer)
        assert await client.ao_processes(0, 1000) == before


async def test_units_agree_and_a_restart_keeps_the_memory(
    unit: Unit, chain: tuple[Path, str]
) -> None:
    root, rpc = chain
    pid = await unit.spawn(PING)
    for _ in range(3):
        await unit.processed(await unit.send(pid, "Ping"))
    _, memory = await unit.get(f"/process/{pid}")
    assert b"Pings" in memory
    other = start_unit(root, rpc, "other")
    try:
        async with aiohttp.ClientSession() as http:
            second = Unit(other, other.url, http)
            assert (await second.get(f"/process/{pid}"))[1] == memory
    finally:
        other.close()
    unit.process.kill()
    unit.process.start()
    unit.url = unit.process.url
    assert (await unit.get(f"/process/{pid}"))[1] == memory
    status, body = await unit.post("/message", {"to": pid, "data": "", "tags": []})
    assert status == 200, body
    await unit.processed(body["message_id"])
    # the restarted unit evaluated the process again from slot 0: every slot's memory is the
    # one it kept before the kill
    assert "not deterministic" not in unit.process.log_path.read_text()
