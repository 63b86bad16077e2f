"""Shared pieces of the AO unit's conformance suite: an HTTP client of the unit's routes, the
result shapes of AO's document and PROTOCOL 8.7, the Lua modules the rows spawn, and a
snapshot of what bad input must leave unchanged.

Everything here talks HTTP to the unit under test (and, for the list of processes, to the
chain behind it through the client library): the suite can check any AO unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp

from chain.protocol import ao as ao_rules
from rpc.client import InferchainClient
from tests.helpers import wait_until

WAIT_S = 30.0
AO_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
RESULT_KEYS = {"Output", "Messages", "Spawns", "Error"}
# an id in its canonical form (the SHA-256 of something never signed) that nothing has
UNKNOWN_ID = ao_rules.ao_id(b"inferchain conformance: an id nothing has")
PROCESS_PAGE = 1000

COUNTER = """
Count = Count or 0
Handlers.add("increment", Handlers.utils.hasMatchingTag("Action", "Increment"), function (msg)
  Count = Count + tonumber(msg.Data or "1")
  msg.reply({ Action = "Count", Data = tostring(Count) })
end)
Handlers.add("fail", Handlers.utils.hasMatchingTag("Action", "Fail"), function (msg)
  Count = Count + 100
  Scratch = { touched = true }
  error("the handler failed on purpose")
end)
Handlers.add("tick", Handlers.utils.hasMatchingTag("Action", "Cron"), function ()
  Ticks = (Ticks or 0) + 1
  print("tick " .. Ticks)
end)
"""
PING = """
Handlers.add("ping", Handlers.utils.hasMatchingTag("Action", "Ping"), function (msg)
  Pings = (Pings or 0) + 1
  msg.reply({ Data = "pong " .. Pings })
end)
"""
CALLER = """
Handlers.add("call", Handlers.utils.hasMatchingTag("Action", "Call"), function (msg)
  ao.send({ Target = msg.Data, Action = "Ping" })
end)
Handlers.add("answer", function (msg) return msg.Data and msg.Data:find("^pong") end,
  function (msg) Answers = (Answers or 0) + 1; LastAnswer = msg.Data end)
"""


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: its status, content type and body (JSON decoded, or the bytes)."""

    status: int
    content_type: str
    body: Any


@dataclass
class AoUnit:
    """The unit under test, over HTTP: the routes of PROTOCOL 8.7 and small flows on them."""

    url: str
    http: aiohttp.ClientSession

    async def request(
        self, method: str, path: str, *, json: Any = None, data: bytes | None = None
    ) -> Answer:
        async with self.http.request(method, self.url + path, json=json, data=data) as resp:
            raw = await resp.read()
            if resp.content_type == "application/json":
                return Answer(resp.status, resp.content_type, await resp.json())
            return Answer(resp.status, resp.content_type, raw)

    async def get(self, path: str) -> Answer:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any = None, *, data: bytes | None = None) -> Answer:
        return await self.request("POST", path, json=body, data=data)

    async def delete(self, path: str, body: Any = None) -> Answer:
        return await self.request("DELETE", path, json=body)

    # Flows

    async def spawn(self, module: str, **extra: Any) -> str:
        answer = await self.post("/process", {"module": module, **extra})
        assert answer.status == 200, answer
        assert set(answer.body) == {"process_id"}, answer.body
        pid = str(answer.body["process_id"])
        assert AO_ID.fullmatch(pid), pid
        return pid

    async def send(self, pid: str, action: str, data: str = "", **extra: Any) -> str:
        tags = [{"name": "Action", "value": action}]
        answer = await self.post("/message", {"to": pid, "data": data, "tags": tags, **extra})
        assert answer.status == 200, answer
        assert set(answer.body) == {"message_id"}, answer.body
        mid = str(answer.body["message_id"])
        assert AO_ID.fullmatch(mid), mid
        return mid

    async def processed(self, mid: str) -> dict[str, Any]:
        """`GET /message/{mid}` once it is processed: its result."""

        async def done() -> dict[str, Any] | None:
            answer = await self.get(f"/message/{mid}")
            assert answer.status == 200, answer
            assert set(answer.body) == {"status", "result"}, answer.body
            assert answer.body["status"] in ("pending", "processed"), answer.body
            if answer.body["status"] == "pending":
                assert answer.body["result"] is None, answer.body
                return None
            return dict(answer.body)

        found: dict[str, Any] = await wait_until(done, f"message {mid} processed", WAIT_S)
        result = found["result"]
        assert isinstance(result, dict) and set(result) == RESULT_KEYS, result
        return dict(result)

    async def run(self, pid: str, action: str, data: str = "") -> dict[str, Any]:
        """A message sent and its result once processed."""
        return await self.processed(await self.send(pid, action, data))

    async def memory(self, pid: str, query: str = "") -> bytes:
        answer = await self.get(f"/process/{pid}{query}")
        assert answer.status == 200, answer
        assert answer.content_type == "application/octet-stream", answer
        assert isinstance(answer.body, bytes) and answer.body.startswith(b"AOMEM/1\n")
        return answer.body

    async def schedule(self, pid: str, query: str = "") -> list[dict[str, Any]]:
        answer = await self.get(f"/scheduler/{pid}{query}")
        assert answer.status == 200, answer
        assert isinstance(answer.body, list), answer.body
        return list(answer.body)


def error_text(answer: Answer) -> str:
    """The `{error}` of a refused request (asserting the shape)."""
    assert answer.content_type == "application/json", answer
    assert isinstance(answer.body, dict) and set(answer.body) == {"error"}, answer.body
    text = answer.body["error"]
    assert isinstance(text, str) and text, answer.body
    return text


def tag_value(entry: dict[str, Any], name: str) -> str | None:
    """A scheduled message's tag (`tags` as `[name, value]` pairs or `{name, value}`)."""
    for tag in entry["tags"]:
        key, value = (tag["name"], tag["value"]) if isinstance(tag, dict) else tag
        if key == name:
            return str(value)
    return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What bad input must not change: a process's schedule, and (when the chain is known)
    the chain's list of processes and its record of the process (slots, terminated, ...)."""

    schedule: list[dict[str, Any]]
    processes: list[str] | None
    record: dict[str, Any] | None


async def all_processes(chain: InferchainClient) -> list[str]:
    """Every process id the chain lists (`aoProcesses`), page by page."""
    out: list[str] = []
    while page := await chain.ao_processes(len(out), PROCESS_PAGE):
        out.extend(page)
    return out


async def snapshot(unit: AoUnit, pid: str, chain: InferchainClient | None) -> Snapshot:
    if chain is None:
        return Snapshot(await unit.schedule(pid), None, None)
    processes = await all_processes(chain)
    return Snapshot(await unit.schedule(pid), processes, await chain.ao_process(pid))


@dataclass(frozen=True, slots=True)
class Reference:
    """The processes the bad-input rows point at: `pid` (a counter with one message `mid`)
    and `other`, a second process."""

    pid: str
    mid: str
    other: str

    def fill(self, text: str) -> str:
        for name, value in (
            ("{pid}", self.pid),
            ("{mid}", self.mid),
            ("{other}", self.other),
            ("{unknown}", UNKNOWN_ID),
        ):
            text = text.replace(name, value)
        return text
