"""The routes `@permaweb/aoconnect` calls in its legacy mode (PROTOCOL 8.7), on the unit's port.

aoconnect's legacy client speaks to three units by base URL: the messenger unit (`MU_URL`),
the compute unit (`CU_URL`) and a gateway (`GATEWAY_URL`, for GraphQL). All three can be the
unit's own URL: these routes sit beside AO's document (`ao.server`) without overlapping it.

- `POST /` (the MU) takes the bytes of a signed data item, a process (`spawn`), a message
  (`message`) or a module, checks it and hands it to the chain as `POST /scheduler` does
  (`ao.server.hand_in_data_item`), and answers `{id, timestamp}` once the chain scheduled it,
  so a `message` right after a `spawn` finds its process. `POST` / `DELETE /monitor/{pid}`
  (aoconnect's `monitor`, `unmonitor`) take a signed data item and (un)monitor the process.
- `GET /result/{id}?process-id=` and `GET /results/{pid}?from&to&sort&limit` (the CU): AO's
  `{Output, Messages, Spawns, Error}`, the latter as `{edges: [{cursor, node}]}`, a cursor
  being the slot. `POST /dry-run?process-id=` takes aoconnect's message `{Id, Owner, Target,
  Data, Tags, Anchor}` and answers the dry run's result; nothing is scheduled.
- `POST /graphql` (the gateway) answers the two queries aoconnect and its scheduler lookup
  make: transactions by ids (the Module and Scheduler tags of a spawn, from the chain) and
  the `Scheduler-Location` of an owner (this unit's URL for its own address).
- `GET /` answers the unit as AO's scheduler does: `{Unit, Address, Timestamp, Processes}`;
  `Address` is what a spawn names in its `Scheduler` tag.

A published module's tags are not on the chain (it keeps the module's source): the tags of a
module handed in here are kept in the unit's store, and any other module answers the tags
aoconnect requires with `Module-Format` `inferchain-lua-5.4` and JSON-1 encodings.

Errors are `{error}`: 400 for bad input, 404 for an unknown process, message or module, 503
when the chain cannot be reached or does not schedule in time. aoconnect throws on a refusal
of `POST /` and `/graphql` with the status and that text; its `result` and `dryrun` return
the `{error}` object as AO's compute unit answers it.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from ao.server import (
    BadRequest,
    NotFoundError,
    UnitApi,
    guard,
    hand_in_data_item,
    id_param,
    json_body,
    tags_of,
)
from chain.protocol import ans104, wire
from chain.protocol import ao as ao_rules
from chain.protocol.errors import InvalidParams
from rpc.client import RpcError
from rpc.errors import INVALID_PARAMS

MODULE_TAGS_PREFIX = b"compat/module/"  # <module id> -> {owner, tags: [[name, value]]}
LUA_MODULE_FORMAT = "inferchain-lua-5.4"
SCHEDULER_LOCATION_TTL_MS = 3_600_000
DEFAULT_RESULTS = 25
MAX_RESULTS = 1000
MAX_GRAPHQL_IDS = 100


class AoConnectApi(UnitApi):
    """aoconnect's legacy routes."""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", guard(self.info)),
            web.post("/", guard(self.mu_post)),
            web.post("/monitor/{pid}", guard(self.monitor)),
            web.delete("/monitor/{pid}", guard(self.unmonitor)),
            web.get("/result/{id}", guard(self.result)),
            web.get("/results/{pid}", guard(self.results)),
            web.post("/dry-run", guard(self.dry_run)),
            web.post("/graphql", guard(self.graphql)),
        ]

    # The scheduler's root

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "Unit": "Scheduler",
                "Address": self.mu.wallet.address,
                "Timestamp": int(time.time() * 1000),
                "Processes": self.mu.monitored(),
            }
        )

    # The messenger unit

    async def mu_post(self, request: web.Request) -> web.Response:
        if "assign" in request.query or "process-id" in request.query:
            raise BadRequest("assign: assignments are not supported by this unit")
        raw = await request.read()
        if not raw:
            raise BadRequest("body: the bytes of a signed ANS-104 data item")
        kind, tags = self._precheck(raw)
        item, receipt = await hand_in_data_item(self.mu, raw, committed=True)
        if kind == ao_rules.MODULE_TYPE:
            self.store.write(
                {
                    MODULE_TAGS_PREFIX + receipt.id.encode(): {
                        "owner": item.owner_address,
                        "tags": [[name, value] for name, value in tags],
                    }
                }
            )
        return web.json_response({"id": receipt.id, "timestamp": int(time.time() * 1000)})

    def _precheck(self, raw: bytes) -> tuple[str | None, list[tuple[str, str]]]:
        """The item's Type and tags; a spawn's Scheduler must be an Ethereum address (the
        chain's form of a scheduler), said here with the unit's own."""
        try:
            item = ans104.parse(raw)
        except ans104.Ans104Error as exc:
            raise BadRequest(f"data item: {exc}") from exc
        tags = [(t.name, t.value) for t in item.tags]
        kind = ao_rules.tag(tags, ao_rules.TYPE_TAG)
        scheduler = ao_rules.tag(tags, "Scheduler")
        if kind == ao_rules.PROCESS_TYPE and scheduler is not None:
            try:
                wire.parse_address(scheduler, "Scheduler")
            except InvalidParams as exc:
                raise BadRequest(
                    f"tag Scheduler: {scheduler!r} is not an Ethereum address; this unit "
                    f"schedules as {self.mu.wallet.address} (GET / answers it)"
                ) from exc
        return kind, tags

    async def monitor(self, request: web.Request) -> web.Response:
        pid = await self._monitored_pid(request)
        self.mu.monitor(pid)
        return web.json_response({"status": f"monitoring {pid}"})

    async def unmonitor(self, request: web.Request) -> web.Response:
        pid = await self._monitored_pid(request)
        self.mu.unmonitor(pid)
        return web.json_response({"status": f"not monitoring {pid}"})

    async def _monitored_pid(self, request: web.Request) -> str:
        """The process of a (un)monitor request, which carries a signed data item."""
        pid = id_param(request.match_info["pid"], "process id")
        try:
            ans104.verify(ans104.parse(await request.read()))
        except ans104.Ans104Error as exc:
            raise BadRequest(f"data item: {exc}") from exc
        await self.cu.process(pid)
        return pid

    # The compute unit

    async def result(self, request: web.Request) -> web.Response:
        mid = id_param(request.match_info["id"], "message id")
        pid = id_param(request.query.get("process-id"), "process-id")
        await self.cu.process(pid)
        return web.json_response(await self.cu.result(pid, mid))

    async def results(self, request: web.Request) -> web.Response:
        pid = id_param(request.match_info["pid"], "process id")
        low = _cursor(request, "from")
        high = _cursor(request, "to")
        sort = request.query.get("sort", "ASC")
        if sort not in ("ASC", "DESC"):
            raise BadRequest(f"sort: ASC or DESC, got {sort!r}")
        limit = request.query.get("limit", str(DEFAULT_RESULTS))
        if not wire.ascii_digits(limit) or not 1 <= int(limit) <= MAX_RESULTS:
            raise BadRequest(f"limit: from 1 to {MAX_RESULTS}")
        await self.cu.process(pid)
        await self.cu.catch_up(pid)
        entries = [
            e
            for e in await self.cu.slots(pid, 0)
            if (low is None or e["slot"] > low) and (high is None or e["slot"] <= high)
        ]
        if sort == "DESC":
            entries.reverse()
        edges = [
            {"cursor": str(e["slot"]), "node": await self.cu.result(pid, e["id"])}
            for e in entries[: int(limit)]
        ]
        return web.json_response({"edges": edges})

    async def dry_run(self, request: web.Request) -> web.Response:
        pid = id_param(request.query.get("process-id"), "process-id")
        body = await json_body(request)
        target = body.get("Target", pid)
        if target != pid:
            raise BadRequest(f"Target: {target!r} is not the process-id {pid}")
        fields = {}
        for name, default in (("Id", "1234"), ("Owner", "1234"), ("Data", "")):
            value = body.get(name, default)
            if not isinstance(value, str):
                raise BadRequest(f"{name}: a string")
            fields[name] = value
        sender = body.get("From", fields["Owner"])
        if not isinstance(sender, str):
            raise BadRequest("From: a string")
        result = await self.cu.dry_run(
            pid,
            message_id=fields["Id"],
            owner=fields["Owner"],
            sender=sender,
            tags=tags_of(body.get("Tags"), "Tags"),
            data=fields["Data"],
        )
        return web.json_response(result.to_json())

    # The gateway

    async def graphql(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        query = body.get("query")
        variables = body.get("variables") or {}
        if not isinstance(query, str) or not isinstance(variables, dict):
            raise BadRequest("graphql: a body {query, variables}")
        ids = variables.get("transactionIds", variables.get("ids"))
        if ids is not None:
            if (
                not isinstance(ids, list)
                or not 1 <= len(ids) <= MAX_GRAPHQL_IDS
                or not all(isinstance(i, str) for i in ids)
            ):
                raise BadRequest(f"graphql: ids, a list of 1 to {MAX_GRAPHQL_IDS} ids")
            nodes = [node for i in ids if (node := await self._transaction(i)) is not None]
            if not nodes:
                raise NotFoundError(f"no module, process or message {', '.join(ids)} on this chain")
            return _edges(nodes)
        owner = variables.get("owner")
        if isinstance(owner, str) and "Scheduler-Location" in query:
            if owner.lower() != self.mu.wallet.address.lower():
                return _edges([])
            tags = [
                ("Data-Protocol", "ao"),
                ("Variant", "ao.TN.1"),
                ("Type", "Scheduler-Location"),
                ("Url", f"{request.scheme}://{request.host}"),
                ("Time-To-Live", str(SCHEDULER_LOCATION_TTL_MS)),
            ]
            return _edges([_node(owner, self.mu.wallet.address, tags, None)])
        raise BadRequest(
            "graphql: this unit answers transactions by ids (transactionIds or ids) and a "
            "Scheduler-Location by owner"
        )

    async def _transaction(self, item_id: str) -> dict[str, Any] | None:
        """A module, process or message as a gateway's transaction node, None if unknown."""
        if not ao_rules.is_id(item_id):
            return None
        try:
            record = await self.client.ao_process(item_id)
        except RpcError as exc:
            if exc.code != INVALID_PARAMS:
                raise
            try:
                message = await self.client.ao_message_by_id(item_id)
            except RpcError as inner:
                if inner.code != INVALID_PARAMS:
                    raise
                return None
            block = {"height": message["height"], "timestamp": message["timestamp"] // 1000}
            return _node(item_id, message["owner"], message["tags"], block)
        if record.get("type") == ao_rules.MODULE_TYPE:
            kept = self.store.get(MODULE_TAGS_PREFIX + item_id.encode())
            if kept is not None:
                return _node(item_id, kept["owner"], kept["tags"], None)
            tags = [
                ("Data-Protocol", "ao"),
                ("Variant", "ao.TN.1"),
                ("Type", ao_rules.MODULE_TYPE),
                ("Module-Format", LUA_MODULE_FORMAT),
                ("Input-Encoding", "JSON-1"),
                ("Output-Encoding", "JSON-1"),
            ]
            return _node(item_id, None, tags, None)
        block = {"height": record["height"], "timestamp": record["timestamp"] // 1000}
        return _node(item_id, record["owner"], record["tags"], block)


def _node(
    item_id: str, owner: str | None, tags: Any, block: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": item_id,
        "owner": None if owner is None else {"address": owner},
        "tags": [{"name": str(name), "value": str(value)} for name, value in tags],
        "block": block,
    }


def _edges(nodes: list[dict[str, Any]]) -> web.Response:
    return web.json_response({"data": {"transactions": {"edges": [{"node": n} for n in nodes]}}})


def _cursor(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if not wire.ascii_digits(value) or len(value) > 15:
        raise BadRequest(f"{name}: a cursor (a slot) of this unit, got {value!r}")
    return int(value)
