"""The AO unit's HTTP API (PROTOCOL 8.7): AO's document, every route, on one port.

Processes (`/process`), messages (`/message`), the scheduler (`/scheduler`, the chain behind
it), the compute unit (`/compute`), the messenger (`/messenger`) and cron (`/cron`). Bad
input is answered 400 (or 404 for an unknown process or message) with `{error}` saying what
is wrong, and nothing is scheduled; a chain that cannot be reached is 503.

A JSON request that carries `owner`, `signature` and `nonce` is sent as the EIP-712
transaction it signs (PROTOCOL 3, 8.2); one without them is sent from `owner`, or dev
account 0, unsigned, which only a dev chain takes (its dev accounts are unlocked, 5.4).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ao.cu import ComputeUnit, UnknownMessage, UnknownProcess
from ao.mu import MessengerUnit
from ao.runtime import Limits, ModuleError, ProcessInfo, ProcessRuntime
from ao.store import JsonStore
from chain.protocol import ans104, wire
from chain.protocol import ao as ao_rules
from chain.protocol.errors import InvalidParams
from rpc import api
from rpc.client import (
    AO_DEFAULT_COMPUTE_LIMIT,
    AO_DEFAULT_MEMORY_LIMIT,
    AoReceipt,
    InferchainClient,
    RpcError,
    TransportError,
    Wallet,
    ao_tags_json,
)

log = logging.getLogger(__name__)

SUBMITTED_PREFIX = b"api/submitted/"  # <message id> -> {process}
SIZE = re.compile(r"(\d{1,12})(?:-(b|kb|mb|gb))?")
SIZE_UNITS = {None: 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
MAX_PAGE = 1000
WAIT_S = 30.0
POLL_S = 0.05
DEV_ACCOUNT = Wallet.dev(0).address

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(Exception):
    """400 `{error}`."""


class NotFoundError(Exception):
    """404 `{error}`."""


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def ao_size(value: Any, name: str, default: int) -> int:
    """A memory or compute limit: an integer, or AO's text (`"256-mb"`, `"1-gb"`)."""
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = SIZE.fullmatch(value.strip().lower())
        if match is not None:
            return int(match.group(1)) * SIZE_UNITS[match.group(2)]
    raise BadRequest(f"{name}: an integer, or N-kb, N-mb, N-gb; got {value!r}")


def tags_of(value: Any, name: str = "tags") -> list[tuple[str, str]]:
    """AO's tags `[{name, value}]` of a JSON request."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("value"), str)
        for t in value
    ):
        raise BadRequest(f"{name}: a list of {{name, value}} strings")
    return [(t["name"], t["value"]) for t in value]


async def hand_in_data_item(
    mu: MessengerUnit, raw: bytes, *, committed: bool = False
) -> tuple[ans104.DataItem, AoReceipt]:
    """A data item (PROTOCOL 8.3) checked, then handed to the chain signed by the unit; a
    process it spawns is monitored. With `committed`, answered once its transaction is in a
    block (BadRequest if it is not committed). BadRequest naming what is wrong with the item."""
    try:
        item = ans104.parse(raw)
        ans104.verify(item)
    except ans104.Ans104Error as exc:
        raise BadRequest(f"data item: {exc}") from exc
    receipt = await mu.send_data_item(raw)
    if committed:
        tx = await mu.client.wait_for_tx(receipt.tx_hash, timeout=WAIT_S)
        if tx["status"] != "committed":
            raise BadRequest(f"data item {receipt.id}: its transaction is {tx['status']}")
    if ao_rules.tag([(t.name, t.value) for t in item.tags], ao_rules.TYPE_TAG) == (
        ao_rules.PROCESS_TYPE
    ):
        mu.monitor(receipt.id)
    return item, receipt


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is `{}`); BadRequest otherwise."""
    raw = await request.read()
    try:
        body = wire.parse_json(raw) if raw.strip() else {}
    except ValueError as exc:
        raise BadRequest(f"body: not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise BadRequest("body: a JSON object")
    return body


def id_param(value: Any, name: str) -> str:
    """An AO id of a request, in its canonical form (PROTOCOL 8.1); BadRequest naming it."""
    if not isinstance(value, str) or not ao_rules.is_id(value):
        raise BadRequest(f"{name}: an AO id, 43 characters of base64url")
    return value


class UnitApi:
    """Routes over the unit's compute unit, messenger unit, client library and store."""

    def __init__(
        self, client: InferchainClient, cu: ComputeUnit, mu: MessengerUnit, store: JsonStore
    ) -> None:
        self.client = client
        self.cu = cu
        self.mu = mu
        self.store = store


def guard(handler: Handler) -> Handler:
    """A route whose refusals answer `{error}`: 400 for bad input or a refusal of the chain
    (its param and reason), 404 for an unknown process or message (a message to no process
    or a terminated one included), 503 when the chain cannot be reached or does not schedule
    in time. Never a 500 for what the caller did."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadRequest as exc:
            return error(400, str(exc))
        except (NotFoundError, UnknownProcess, UnknownMessage) as exc:
            return error(404, _not_found_text(exc))
        except RpcError as exc:
            data = exc.data if isinstance(exc.data, dict) else {}
            if data.get("param") == "target":
                return error(404, str(data.get("reason", exc.message)))
            if "param" in data and "reason" in data:
                return error(400, f"the chain refused it: {data['param']}: {data['reason']}")
            detail = f" ({exc.data})" if exc.data else ""
            return error(400, f"the chain refused it: {exc.message}{detail}")
        except TransportError as exc:
            return error(503, f"the chain cannot be reached: {exc}")
        except TimeoutError:
            return error(503, f"the chain did not schedule it within {WAIT_S:.0f} s")

    return guarded


class AoApi(UnitApi):
    """The routes of AO's document."""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/process", guard(self.spawn)),
            web.get("/process/{id}", guard(self.process_memory)),
            web.delete("/process/{id}", guard(self.terminate)),
            web.post("/message", guard(self.message)),
            web.get("/message/{id}", guard(self.message_status)),
            web.post("/scheduler", guard(self.scheduler_post)),
            web.get("/scheduler/{id}", guard(self.scheduler_get)),
            web.post("/compute/{pid}/message/{mid}", guard(self.compute)),
            web.get("/compute/{pid}/message/{mid}", guard(self.compute)),
            web.post("/messenger", guard(self.messenger)),
            web.post("/messenger/monitor/{pid}", guard(self.monitor)),
            web.delete("/messenger/monitor/{pid}", guard(self.unmonitor)),
            web.get("/cron/{pid}", guard(self.cron_list)),
            web.post("/cron/{pid}", guard(self.cron_run)),
        ]

    # Bodies

    async def _send(self, method: str, fields: dict[str, Any], body: dict[str, Any]) -> Any:
        """A signed request as the transaction it signs; else unsigned, from `owner` or dev
        account 0 (a dev chain fills nonce and signature)."""
        if body.get("signature") is not None:
            for name in ("owner", "nonce"):
                if body.get(name) is None:
                    raise BadRequest(f"{name}: needed with a signature (PROTOCOL 8.2)")
            params = {**fields, "sender": body["owner"], "nonce": body["nonce"]}
            params["signature"] = body["signature"]
            return await self.client.send_signed(method, params)
        sender = body.get("owner") or DEV_ACCOUNT
        return await self.client.call(method, {**fields, "sender": sender})

    def _remember(self, message_id: str, pid: str) -> None:
        self.store.write({SUBMITTED_PREFIX + message_id.encode(): {"process": pid}})

    # Processes

    async def spawn(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        module = body.get("module", "")
        if not isinstance(module, str):
            raise BadRequest("module: Lua source, or the id of a published module")
        source = module
        if ao_rules.ID.fullmatch(module):
            try:
                published = await self.client.ao_process(module)
            except RpcError as exc:
                raise BadRequest(f"module: no published module {module}") from exc
            if published.get("type") != "Module":
                raise BadRequest(f"module: {module} is a process, not a module")
            source = str(published["module"])
        memory = ao_size(body.get("memory_limit"), "memory_limit", AO_DEFAULT_MEMORY_LIMIT)
        compute = ao_size(body.get("compute_limit"), "compute_limit", AO_DEFAULT_COMPUTE_LIMIT)
        for name, value, low, high in (
            ("memory_limit", memory, ao_rules.MIN_MEMORY_LIMIT, ao_rules.MAX_MEMORY_LIMIT),
            ("compute_limit", compute, ao_rules.MIN_COMPUTE_LIMIT, ao_rules.MAX_COMPUTE_LIMIT),
        ):
            if not low <= value <= high:
                raise BadRequest(f"{name}: from {low} to {high}, got {value}")
        cron = body.get("cron_interval") or ""
        if not isinstance(cron, str):
            raise BadRequest("cron_interval: text such as 5-blocks, 10-seconds, 1-minute")
        try:
            ao_rules.parse_cron_interval(cron)
        except InvalidParams as exc:
            raise BadRequest(str(exc)) from exc
        tags = tags_of(body.get("tags"))
        scheduler = body.get("scheduler") or self.mu.wallet.address
        check = ProcessInfo(id="0" * 43, owner=DEV_ACCOUNT, module_id="0" * 43, tags=tuple(tags))
        try:
            ProcessRuntime(source, check, Limits(memory_bytes=memory, compute_instructions=compute))
        except ModuleError as exc:
            raise BadRequest(f"module: it does not load: {exc}") from exc
        fields = {
            "module": module,
            "scheduler": scheduler,
            "memoryLimit": memory,
            "computeLimit": compute,
            "cronInterval": cron,
            "tags": ao_tags_json(tags),
            "data": body.get("data", ""),
        }
        receipt = await self._send(api.AO_SPAWN, fields, body)
        self._remember(receipt["id"], receipt["id"])
        # answered once the chain scheduled it (slot 0), so the process can be read and
        # messaged at once
        tx = await self.client.wait_for_tx(receipt["txHash"], timeout=WAIT_S)
        if tx["status"] != "committed":
            raise BadRequest(f"the spawn was not scheduled: its transaction is {tx['status']}")
        if str(scheduler).lower() == self.mu.wallet.address.lower():
            self.mu.monitor(receipt["id"])
        return web.json_response({"process_id": receipt["id"]})

    async def process_memory(self, request: web.Request) -> web.Response:
        pid = id_param(request.match_info["id"], "process id")
        to = request.query.get("to")
        if to is not None and not wire.ascii_digits(to):
            raise BadRequest(f"to: a timestamp in ms, got {to!r}")
        memory = await self.cu.memory(pid, None if to is None else int(to))
        return web.Response(body=memory, content_type="application/octet-stream")

    async def terminate(self, request: web.Request) -> web.Response:
        pid = id_param(request.match_info["id"], "process id")
        body = {**request.query, **await json_body(request)}
        process = await self.cu.process(pid)
        if body.get("signature") is None and not body.get("owner"):
            body["owner"] = process["owner"]
        await self._send(api.AO_TERMINATE, {"process": pid}, body)
        return web.json_response({"status": "terminated", "process_id": pid})

    # Messages

    async def message(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        target = id_param(body.get("to"), "to")
        data = body.get("data", "")
        if not isinstance(data, str):
            raise BadRequest("data: a string")
        tags = tags_of(body.get("tags"))
        from_process = body.get("from_process") or ""
        if from_process:
            id_param(from_process, "from_process")
        if body.get("read_only"):
            return web.json_response(
                {"result": (await self._dry_run(target, body, tags)).to_json()}
            )
        fields = {
            "target": target,
            "data": data,
            "tags": ao_tags_json(tags),
            "fromProcess": from_process,
        }
        receipt = await self._send(api.AO_MESSAGE, fields, body)
        self._remember(receipt["id"], target)
        return web.json_response({"message_id": receipt["id"]})

    async def _dry_run(self, target: str, body: dict[str, Any], tags: list[tuple[str, str]]) -> Any:
        owner = str(body.get("owner") or DEV_ACCOUNT)
        digest = hashlib.sha256(repr(sorted(body.items())).encode()).digest()
        return await self.cu.dry_run(
            target,
            message_id=ao_rules.ao_id(digest),
            owner=owner,
            sender=str(body.get("from_process") or owner),
            tags=tags,
            data=str(body.get("data", "")),
            from_process=body.get("from_process") or None,
        )

    async def message_status(self, request: web.Request) -> web.Response:
        message_id = id_param(request.match_info["id"], "message id")
        try:
            entry = await self.client.ao_message_by_id(message_id)
        except RpcError as exc:
            if self.store.get(SUBMITTED_PREFIX + message_id.encode()) is None:
                raise NotFoundError(f"no message {message_id}") from exc
            return web.json_response({"status": "pending", "result": None})
        result = await self.cu.result(entry["process"], message_id)
        return web.json_response({"status": "processed", "result": result})

    # The scheduler

    async def scheduler_post(self, request: web.Request) -> web.Response:
        _item, receipt = await hand_in_data_item(self.mu, await request.read())
        return web.json_response({"id": receipt.id, "timestamp": int(time.time() * 1000)})

    async def scheduler_get(self, request: web.Request) -> web.Response:
        item_id = id_param(request.match_info["id"], "id")
        pid = request.query.get("process-id")
        if pid is not None:
            try:
                entry = await self.client.ao_message_by_id(item_id)
            except RpcError as exc:
                raise NotFoundError(f"no message {item_id}") from exc
            if entry["process"] != pid:
                raise NotFoundError(f"message {item_id} is not process {pid}'s")
            return web.json_response(entry)
        await self.cu.process(item_id)
        low = self._timestamp(request, "from", 0)
        high = self._timestamp(request, "to", 2**63)
        limit = request.query.get("limit", "100")
        if not wire.ascii_digits(limit) or not 1 <= int(limit) <= MAX_PAGE:
            raise BadRequest(f"limit: from 1 to {MAX_PAGE}")
        entries = [e for e in await self.cu.slots(item_id, 0) if low <= e["timestamp"] <= high]
        return web.json_response(entries[: int(limit)])

    @staticmethod
    def _timestamp(request: web.Request, name: str, default: int) -> int:
        value = request.query.get(name)
        if value is None:
            return default
        if not wire.ascii_digits(value):
            raise BadRequest(f"{name}: a timestamp in ms, got {value!r}")
        return int(value)

    # Compute, messenger, cron

    async def compute(self, request: web.Request) -> web.Response:
        pid = id_param(request.match_info["pid"], "process id")
        mid = id_param(request.match_info["mid"], "message id")
        await self.cu.process(pid)
        return web.json_response(await self.cu.result(pid, mid))

    async def messenger(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        mid = id_param(body.get("message_id"), "message_id")
        target = id_param(body.get("target_process"), "target_process")
        try:
            entry = await self.client.ao_message_by_id(mid)
        except RpcError as exc:
            raise NotFoundError(f"no message {mid}") from exc
        result = await self.cu.result(entry["process"], mid)
        outbox = [m for m in result["Messages"] if m.get("Target") == target]
        if not outbox:
            raise BadRequest(f"message {mid} sent nothing to {target}")
        for index, outgoing in enumerate(result["Messages"]):
            if outgoing.get("Target") == target:
                await self.mu.relay(entry["process"], entry["slot"], index, outgoing)
        return web.json_response({"status": "relayed", "count": len(outbox)})

    async def monitor(self, request: web.Request) -> web.Response:
        pid = id_param(request.match_info["pid"], "process id")
        await self.cu.process(pid)
        self.mu.monitor(pid)
        return web.json_response({"status": f"monitoring {pid}"})

    async def unmonitor(self, request: web.Request) -> web.Response:
        pid = id_param(request.match_info["pid"], "process id")
        await self.cu.process(pid)
        self.mu.unmonitor(pid)
        return web.json_response({"status": f"not monitoring {pid}"})

    async def cron_list(self, request: web.Request) -> web.Response:
        pid = id_param(request.match_info["pid"], "process id")
        await self.cu.process(pid)
        low = self._timestamp(request, "from", 0)
        high = self._timestamp(request, "to", 2**63)
        await self.cu.catch_up(pid)
        out = []
        for entry in await self.cu.slots(pid, 0):
            if entry["cron"] and low <= entry["timestamp"] <= high:
                out.append({"message": entry, "result": await self.cu.result(pid, entry["id"])})
        return web.json_response(out)

    async def cron_run(self, request: web.Request) -> web.Response:
        """A Cron message now, from the unit; its result once evaluated."""
        pid = id_param(request.match_info["pid"], "process id")
        await self.cu.process(pid)
        receipt = await self.mu.send_message(pid, [("Action", "Cron")])
        async with asyncio.timeout(WAIT_S):
            while True:
                try:
                    await self.client.ao_message_by_id(receipt.id)
                    break
                except RpcError:
                    await asyncio.sleep(POLL_S)
        return web.json_response(await self.cu.result(pid, receipt.id))


def _not_found_text(exc: Exception) -> str:
    if isinstance(exc, UnknownProcess):
        return f"no process {exc.args[0]}"
    if isinstance(exc, UnknownMessage):
        return f"no message {exc.args[0]} of this process"
    return str(exc)
