"""The validator's WebSocket, `GET /ws` (PROTOCOL 5.6): JSON-RPC `subscribe` and
`unsubscribe`, and notifications of what each committed block changed.

A subscription names a topic (`newBlocks`, `task {taskHash}`, `tasks {sender}`, `tx
{txHash}`, `pendingTasks {ResourceAddress, TimeStamp, Signature}`) and may give
`fromHeight`: the events of the blocks from there to the head are sent first, then the live
ones, each block once (every subscription keeps the next height it has not been given). The
events are the ledger's (`chain.node.events`), the same whenever they are read.

Limits: each connection's outgoing queue holds at most `queue` notifications, and a
connection whose queue is full (a consumer that falls behind) is closed with code 1008 and a
reason; at most `subscriptions` per connection and `connections` per client address (HTTP
429 before the upgrade); a replay reaches at most `replay` blocks back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from chain.node.node import Node
from chain.protocol import wire
from chain.protocol.errors import ChainError, InvalidParams
from chain.protocol.types import SignedTx, SubmitTask
from rpc import errors
from rpc.methods import MAX_PENDING_LIMIT, pending_tasks_answer, work_items

log = logging.getLogger(__name__)

SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
NOTIFICATION = "subscription"
TOPICS = ("newBlocks", "task", "tasks", "tx", "pendingTasks")
POLICY_VIOLATION = WSCloseCode.POLICY_VIOLATION  # 1008
MAX_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    queue: int = 1024  # notifications waiting per connection
    subscriptions: int = 64  # per connection
    connections: int = 16  # per client address
    replay: int = 10_000  # blocks a fromHeight may reach back


Match = Callable[[dict[str, Any]], bool]


@dataclass
class Subscription:
    id: str
    topic: str
    match: Match
    cursor: int  # the next height whose events it has not been given
    key: str = ""  # tx: the transaction's hash; pendingTasks: the resource node's address
    offered: set[str] = field(default_factory=set)  # pendingTasks: work already given


def _text(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str):
        raise InvalidParams(name, "missing" if value is None else "a string")
    return value


def _hash(params: dict[str, Any], name: str) -> str:
    return wire.hex0x(wire.parse_hash(_text(params, name), name))


KNOWN = {
    "newBlocks": {"topic", "fromHeight"},
    "task": {"topic", "fromHeight", "taskHash"},
    "tasks": {"topic", "fromHeight", "sender"},
    "tx": {"topic", "fromHeight", "txHash"},
    "pendingTasks": {"topic", "fromHeight", "ResourceAddress", "TimeStamp", "Signature", "limit"},
}


class Connection:
    """One client's socket: its subscriptions and its bounded outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse, limits: Limits) -> None:
        self.ws = ws
        self.limits = limits
        self.queue: asyncio.Queue[str] = asyncio.Queue(limits.queue)
        self.subscriptions: dict[str, Subscription] = {}
        self.closing: str | None = None

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; a full queue closes the connection (1008) once."""
        if self.closing is not None:
            return
        try:
            self.queue.put_nowait(orjson.dumps(message).decode())
        except asyncio.QueueFull:
            self.closing = (
                f"too slow: {self.limits.queue} notifications were waiting; reconnect with "
                "fromHeight to resume"
            )
            asyncio.get_running_loop().create_task(
                self.ws.close(code=POLICY_VIOLATION, message=self.closing.encode())
            )

    def notify(self, sub: Subscription, result: Any) -> None:
        self.send(
            {
                "jsonrpc": "2.0",
                "method": NOTIFICATION,
                "params": {"subscription": sub.id, "result": result},
            }
        )

    async def write_forever(self) -> None:
        while True:
            await self.ws.send_str(await self.queue.get())


class Hub:
    """Every connection of one validator, and the delivery of each new block to them."""

    def __init__(self, node: Node, limits: Limits = Limits()) -> None:
        self.node = node
        self.limits = limits
        self.connections: set[Connection] = set()
        self.per_client: Counter[str] = Counter()
        self._delivered = -1  # the last height given to the connections
        self._runner: asyncio.Task[None] | None = None
        node.on_rewind.append(self.rewind)
        node.on_admitted.append(self.admitted)
        self._admitted: list[bytes] = []  # tasks admitted since the last offer of them

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws", self.handle)
        app.on_startup.append(self._start)
        # on shutdown, before aiohttp waits for the handlers: an open socket would hold the
        # validator's stop for the whole shutdown timeout
        app.on_shutdown.append(self._stop)

    async def _start(self, _app: web.Application) -> None:
        self._delivered = self.node.ledger.head.height
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def _stop(self, _app: web.Application) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for conn in list(self.connections):
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"the validator stops")

    # Delivery

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await self.node.wait_for_height(self._delivered + 1, timeout=5.0)
            self.deliver()

    def deliver(self) -> None:
        """Give every subscription the blocks after the ones it was given, to the head."""
        head = self.node.ledger.head.height
        heights = range(self._delivered + 1, head + 1) if self.connections else range(0)
        for height in heights:  # with no connection, nothing is read
            events = self.node.ledger.events_at(height)
            for conn in list(self.connections):
                for sub in list(conn.subscriptions.values()):
                    if sub.cursor <= height:
                        self._give(conn, sub, height, events)
        self._delivered = max(self._delivered, head)

    def rewind(self, height: int) -> None:
        """The head moved back to `height` (a dev revert or reset): the blocks made from
        there are new ones, delivered as any other; work is offered again."""
        self._delivered = min(self._delivered, height)
        for conn in self.connections:
            for sub in conn.subscriptions.values():
                sub.cursor = min(sub.cursor, height + 1)
                sub.offered.clear()

    def _give(
        self, conn: Connection, sub: Subscription, height: int, events: list[dict[str, Any]]
    ) -> None:
        if sub.topic == "pendingTasks":  # the work of the tasks this block changed
            changed = {e["taskHash"] for e in events if e["topic"] == "task"}
            if changed:
                self._offer_work(conn, sub, [bytes.fromhex(h[2:]) for h in sorted(changed)])
        else:
            for event in events:
                if sub.match(event):
                    conn.notify(sub, event)
        sub.cursor = height + 1

    def _offer_work(
        self,
        conn: Connection,
        sub: Subscription,
        task_hashes: list[bytes] | None = None,
        in_mempool: bool = False,
    ) -> None:
        """The resource node's work (queryPendingTasks' items) not offered before (the same
        work of a task whose results changed is new: a rejected result opens a slot); among
        `task_hashes` only when given (the tasks a block changed, or tasks just admitted to
        the mempool). A node that cannot act (jailed, unstaked) is offered nothing until it
        can."""
        try:
            items = work_items(self.node, sub.key, MAX_PENDING_LIMIT, task_hashes)
        except ChainError:
            return
        height = self.node.ledger.head.height
        for item in items:
            judged = ",".join(sorted(str(v["submitter"]) for v in item["verify"]))
            results = ",".join(str(e.get("status")) for e in item["executionInfo"])
            key = f"{item['taskHash']}:{item['compute']}:{judged}:{item['reveal']}:{results}"
            if in_mempool:  # offered again from its block, where its createdHeight is known
                key += ":mempool"
            if key not in sub.offered:
                sub.offered.add(key)
                note = {"height": height, "work": item}
                if in_mempool:
                    note["inMempool"] = True
                conn.notify(sub, note)

    def admitted(self, tx: SignedTx) -> None:
        """A transaction was admitted: a new task's work is offered to the resource nodes
        subscribed, before its block (once per turn of the loop, for a batch's tasks), on a
        chain of one validator, where the block it goes in is the next one."""
        if not isinstance(tx.message, SubmitTask) or not self.connections:
            return
        if self.node.dev is None:  # under consensus the task's block, and so its
            return  # createdHeight (the seed of its forced errors), is not known yet
        if not self._admitted:
            asyncio.get_running_loop().call_soon(self._offer_admitted)
        self._admitted.append(tx.digest)

    def _offer_admitted(self) -> None:
        hashes, self._admitted = self._admitted, []
        for conn in list(self.connections):
            for sub in list(conn.subscriptions.values()):
                if sub.topic == "pendingTasks":
                    self._offer_work(conn, sub, hashes, in_mempool=True)

    # The socket

    async def handle(self, request: web.Request) -> web.StreamResponse:
        client = request.remote or "?"
        if self.per_client[client] >= self.limits.connections:
            return web.json_response(
                {"error": f"at most {self.limits.connections} WebSocket connections per client"},
                status=429,
            )
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30.0)
        await ws.prepare(request)
        conn = Connection(ws, self.limits)
        self.per_client[client] += 1
        self.connections.add(conn)
        writer = asyncio.get_running_loop().create_task(conn.write_forever())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    answer = self.answer(conn, msg.data)
                    if answer is not None:
                        conn.send(answer)
                elif msg.type == WSMsgType.BINARY:
                    conn.send(self._error(None, errors.parse_error("send JSON-RPC as text")))
        finally:
            writer.cancel()
            self.connections.discard(conn)
            self.per_client[client] -= 1
            if self.per_client[client] <= 0:
                del self.per_client[client]
        return ws

    @staticmethod
    def _error(request_id: Any, failure: errors.RpcFailure) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "error": failure.to_json(), "id": request_id}

    def answer(self, conn: Connection, text: str) -> dict[str, Any] | None:
        """The answer to one request over the socket (None for a notification)."""
        try:
            item = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return self._error(None, errors.parse_error(str(exc)))
        if not isinstance(item, dict) or item.get("jsonrpc") != "2.0":
            return self._error(None, errors.invalid_request('a JSON object with "jsonrpc": "2.0"'))
        request_id = item.get("id")
        method = item.get("method")
        params = item.get("params", {})
        try:
            if method == SUBSCRIBE:
                sub = self.subscribe(conn, params)
                if "id" in item:
                    conn.send({"jsonrpc": "2.0", "result": sub.id, "id": request_id})
                self._catch_up(conn, sub)  # after the id: nothing can come in between
                return None
            if method == UNSUBSCRIBE:
                result = self.unsubscribe(conn, params)
            else:
                return self._error(
                    request_id,
                    errors.RpcFailure(
                        errors.METHOD_NOT_FOUND,
                        "Method not found",
                        {
                            "method": str(method),
                            "reason": "over /ws: subscribe and unsubscribe; every other "
                            "method on POST /",
                        },
                    ),
                )
        except ChainError as exc:
            return self._error(request_id, errors.error_for(exc))
        return None if "id" not in item else {"jsonrpc": "2.0", "result": result, "id": request_id}

    def subscribe(self, conn: Connection, params: Any) -> Subscription:
        if isinstance(params, list) and len(params) == 1:
            params = params[0]
        if not isinstance(params, dict):
            raise InvalidParams("params", "an object {topic, ...}")
        topic = params.get("topic")
        if topic not in TOPICS:
            raise InvalidParams("topic", f"one of {', '.join(TOPICS)}; got {topic!r}")
        unknown = sorted(set(params) - KNOWN[topic])
        if unknown:
            raise InvalidParams(unknown[0], f"unknown for topic {topic}")
        if len(conn.subscriptions) >= self.limits.subscriptions:
            raise InvalidParams(
                "topic", f"at most {self.limits.subscriptions} subscriptions per connection"
            )
        head = self.node.ledger.head.height
        start = head + 1
        if "fromHeight" in params:
            start = wire.parse_int(params["fromHeight"], "fromHeight", 0, head + 1)
            if head + 1 - start > self.limits.replay:
                raise InvalidParams(
                    "fromHeight", f"at most {self.limits.replay} blocks back (the head is {head})"
                )
        sub = Subscription(secrets.token_hex(16), str(topic), self._match(topic, params), start)
        if topic == "pendingTasks":
            if "ResourceAddress" not in params or "TimeStamp" not in params:
                raise InvalidParams("ResourceAddress", "ResourceAddress and TimeStamp are required")
            pending_tasks_answer(self.node, params)  # checks the signature, when given
            sub.key = wire.parse_address(params["ResourceAddress"], "ResourceAddress")
        elif topic == "tx":
            sub.key = _hash(params, "txHash")
        conn.subscriptions[sub.id] = sub
        return sub

    def _catch_up(self, conn: Connection, sub: Subscription) -> None:
        """After the subscription's id was answered: what it asked to replay (to the last
        height the hub delivered; the hub gives the rest), and for `tx` and `pendingTasks`
        where things stand now."""
        if sub.topic == "pendingTasks":
            self._offer_work(conn, sub)
        elif sub.topic == "tx":
            self._tx_now(conn, sub)
        for height in range(sub.cursor, self._delivered + 1):
            self._give(conn, sub, height, self.node.ledger.events_at(height))

    def _tx_now(self, conn: Connection, sub: Subscription) -> None:
        """A subscribed transaction that is in the mempool is `pending`; one committed before
        `fromHeight` (or before the head, without it) is given as it was committed."""
        tx_hash = sub.key
        record = self.node.ledger.get_tx(bytes.fromhex(tx_hash[2:]))
        if record is not None and record.height is not None and record.height < sub.cursor:
            for event in self.node.ledger.events_at(record.height):
                if sub.match(event):
                    conn.notify(sub, event)
        elif record is None and bytes.fromhex(tx_hash[2:]) in self.node.mempool:
            conn.notify(sub, {"topic": "tx", "txHash": tx_hash, "status": "pending"})

    def unsubscribe(self, conn: Connection, params: Any) -> bool:
        if isinstance(params, list) and len(params) == 1:
            params = {"subscription": params[0]}
        if not isinstance(params, dict) or not isinstance(params.get("subscription"), str):
            raise InvalidParams("subscription", "the id subscribe answered")
        return conn.subscriptions.pop(params["subscription"], None) is not None

    def _match(self, topic: str, params: dict[str, Any]) -> Match:
        if topic == "newBlocks":
            return lambda e: e["topic"] == "newBlocks"
        if topic == "task":
            wanted = _hash(params, "taskHash")
            return lambda e: e["topic"] == "task" and e["taskHash"] == wanted
        if topic == "tasks":
            sender = wire.parse_address(_text(params, "sender"), "sender").lower()
            return lambda e: e["topic"] == "task" and e["sender"].lower() == sender
        if topic == "tx":
            tx_hash = _hash(params, "txHash")
            return lambda e: e["topic"] == "tx" and e["txHash"] == tx_hash
        return lambda e: False  # pendingTasks: offered from the node's work, not from events
