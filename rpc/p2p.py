"""The transport between validators: HTTP on each validator's RPC port (aiohttp).

Routes a validator serves to its peers:

  POST /p2p/messages   {"messages": [proposal | vote, ...], "txs": [signed tx, ...]}
  GET  /p2p/status     {"height", "round", "validator", "genesisHash"}
  GET  /p2p/blocks?from=H&limit=N   committed blocks with their commits and transactions

On a dev chain (a genesis with a `dev` section) a validator also serves a control of its own
links, so partitions can be made on loopback:

  GET  /p2p/dev/links  {"<peer url>": {"drop": bool, "delayMs": int}, ...}
  POST /p2p/dev/links  {"peer": "<peer url>" | "*", "drop": bool, "delayMs": int}

`drop` stops everything this validator sends to that peer (messages, status polls, block
fetches); `delayMs` holds each request to it that long. A symmetric partition is the same
setting on both sides. The POST takes effect only from a loopback caller that sends the
token this validator keeps in `<data-dir>/dev-token` (`dev_token`), in the header
X-Inferchain-Dev-Token; anything else is answered 403.

What a validator posts to /p2p/messages is signed (`gossip.RequestSigner`): a request whose
signature checks out comes from a genesis validator. Any other request may carry transactions
and consensus messages too, but within a budget per remote address (`SourceLimits`: items and
bytes), and past it is answered 429. Every request holds at most MAX_BATCH_ITEMS items; a
badly signed item refuses the request (400) at the first one.

`Peers` is the sending side. Each peer has two lanes, one for consensus messages and one for
transactions, each an outbox drained by a task of its own that posts what accumulated as one
request, so the items of a lane keep their order. A proposal or a vote never waits behind a
request of transactions (which the peer answers only once it has admitted them): the lanes
post side by side. Delivery is best effort:
when a peer is down its messages are dropped (the outbox is bounded), and consensus recovers
through its timeouts and the node's periodic re-sending of its own messages. A peer's height
tells the node who is ahead, for block sync: each answer to a request of messages carries it
(HEIGHT_HEADER), and a status poll asks it of a peer that said nothing for STATUS_INTERVAL_S,
and of every peer every STATUS_CHECK_S, which also checks its genesis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import math
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from chain.node.node import Node
from chain.protocol import gossip, wire
from chain.protocol.errors import InvalidPeerMessage

log = logging.getLogger(__name__)

MAX_BATCH_ITEMS = 2000
MAX_BATCH_BYTES = 1024 * 1024
OUTBOX_LIMIT = 10_000
SEND_TIMEOUT_S = 2.0
STATUS_INTERVAL_S = 0.5
# a peer that answered a request of this validator's within STATUS_INTERVAL_S is polled only
# once in this many seconds: the answer carries its height (HEIGHT_HEADER)
STATUS_CHECK_S = 5.0
HEIGHT_HEADER = "X-Inferchain-Height"
NEVER = -1e9
# a peer counts as reachable if it told its height within this many seconds (a status poll
# or an answer)
REACHABLE_S = 3.0
MAX_SYNC_BLOCKS = 100
MAX_SYNC_BYTES = 8 * 1024 * 1024  # a sync answer stops after the block that passes this
MAX_DELAY_MS = 60_000
JSON_HEADERS = {"Content-Type": "application/json"}
# The budget of each remote address for requests not signed by a validator: items
# (messages and transactions) and body bytes, each a token bucket (burst, then a rate).
UNSIGNED_ITEMS_BURST = MAX_BATCH_ITEMS
UNSIGNED_ITEMS_PER_S = 200.0
UNSIGNED_BYTES_BURST = MAX_BATCH_BYTES
UNSIGNED_BYTES_PER_S = 256 * 1024.0
MAX_SOURCES = 4096  # remote addresses with a budget kept; the idle ones are forgotten first


def add_routes(app: web.Application, node: Node, dev_control_from: Iterable[str] = ()) -> None:
    """Serve the validator-to-validator routes on `app`; `dev_control_from` are the addresses
    besides loopback that may set the dev links (with the token)."""
    allowed = frozenset(dev_control_from)

    limits = SourceLimits()

    async def messages(request: web.Request) -> web.Response:
        source = request.remote or "unknown"
        signed = gossip.VALIDATOR_HEADER in request.headers
        if not signed and request.content_length is not None:  # refused before it is read
            refusal = limits.take(source, 0, request.content_length, _now())
            if refusal is not None:
                refusal.force_close()  # the connection closes: its body is never read
                return refusal
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            return _error(413, exc.text or "the request body is too large")
        if signed:
            try:
                node.consensus.verifier.request(request.headers, raw, int(time.time() * 1000))
            except InvalidPeerMessage as exc:
                return _error(401, f"the request's validator signature: {exc}")
        elif request.content_length is None:
            refusal = limits.take(source, 0, len(raw), _now())
            if refusal is not None:
                return refusal
        try:
            body = wire.parse_json(raw)
        except ValueError as exc:
            return _error(400, f"invalid JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, "expected a JSON object")
        msgs, txs = body.get("messages", []), body.get("txs", [])
        if not isinstance(msgs, list) or not isinstance(txs, list):
            return _error(400, "messages and txs must be lists")
        count = len(msgs) + len(txs)
        if count > MAX_BATCH_ITEMS:
            return _error(
                400,
                f"a request holds at most {MAX_BATCH_ITEMS} items (messages and txs "
                f"together); this one holds {count}",
                limit=MAX_BATCH_ITEMS,
                got=count,
            )
        if not signed:
            refusal = limits.take(source, count, 0, _now())
            if refusal is not None:
                return refusal
        try:
            if txs:
                await node.consensus.receive_txs(txs)
            if msgs:
                node.consensus.receive_messages(msgs)
        except InvalidPeerMessage as exc:
            log.info("refused a /p2p/messages request from %s: %s", source, exc)
            return _error(400, str(exc))
        return web.Response(status=204, headers={HEIGHT_HEADER: str(node.head.height)})

    async def status(_request: web.Request) -> web.Response:
        head = node.head
        machine = node.consensus_status()
        return _json(
            {
                "height": head.height,
                "round": machine.get("round", 0),
                "validator": node.validator.address,
                "genesisHash": wire.hex0x(node.genesis.hash),
            }
        )

    async def blocks(request: web.Request) -> web.Response:
        try:
            start = int(request.query.get("from", "1"))
            limit = min(int(request.query.get("limit", str(MAX_SYNC_BLOCKS))), MAX_SYNC_BLOCKS)
        except ValueError:
            return web.json_response({"error": "from and limit must be integers"}, status=400)
        out: list[bytes] = []
        size = 0
        for height in range(max(start, 1), min(start + limit, node.head.height + 1)):
            committed = node.consensus.committed_block(height)
            if committed is None or (out and size > MAX_SYNC_BYTES):
                break
            out.append(orjson.dumps(gossip.committed_to_wire(committed)))
            size += len(out[-1])
        body = b'{"blocks":[' + b",".join(out) + b"]}"
        return web.Response(body=body, headers=JSON_HEADERS)

    async def get_links(_request: web.Request) -> web.Response:
        peers = node.network
        return _json(peers.links() if isinstance(peers, Peers) else {})

    token = dev_token(node.data_dir) if node.genesis.dev is not None else ""

    async def set_links(request: web.Request) -> web.Response:
        refusal = dev_control_refusal(
            request.remote, request.headers.get(gossip.DEV_TOKEN_HEADER), token, allowed
        )
        if refusal is not None:
            log.warning("dev control: refused a link setting from %s: %s", request.remote, refusal)
            return _error(403, refusal)
        peers = node.network
        if not isinstance(peers, Peers):
            return _error(400, "this validator has no peers")
        try:
            body = wire.parse_json(await request.read())
            peers.set_link(*_link_setting(body))
        except ValueError as exc:  # not JSON, or not a link setting
            return _error(400, str(exc))
        return _json(peers.links())

    app.router.add_post("/p2p/messages", messages)
    app.router.add_get("/p2p/status", status)
    app.router.add_get("/p2p/blocks", blocks)
    if node.genesis.dev is not None:
        app.router.add_get("/p2p/dev/links", get_links)
        app.router.add_post("/p2p/dev/links", set_links)


def _link_setting(body: Any) -> tuple[str, bool, int]:
    if not isinstance(body, dict) or not isinstance(body.get("peer"), str):
        raise ValueError('expected {"peer": url or "*", "drop": bool, "delayMs": int}')
    drop = body.get("drop", False)
    delay = body.get("delayMs", 0)
    if not isinstance(drop, bool):
        raise ValueError("drop must be true or false")
    if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= MAX_DELAY_MS:
        raise ValueError(f"delayMs must be an integer from 0 to {MAX_DELAY_MS}")
    return body["peer"], drop, delay


def _json(obj: Any) -> web.Response:
    return web.Response(body=orjson.dumps(obj), headers=JSON_HEADERS)


def _error(status: int, message: str, **data: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps({"error": message, **data}), status=status, headers=JSON_HEADERS
    )


def _now() -> float:
    return time.monotonic()


# The dev link control's token


def dev_token(data_dir: Path) -> str:
    """The token of `data_dir/dev-token`, written (random, mode 0600) if it is missing."""
    path = data_dir / gossip.DEV_TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text(encoding="ascii").strip()
        if text:
            return text
    text = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text + "\n")
    return text


def dev_control_refusal(
    remote: str | None, sent: str | None, token: str, allowed: frozenset[str] = frozenset()
) -> str | None:
    """Why a caller at `remote` sending `sent` may not set the dev links, or None if it may:
    only loopback callers, and those at the `allowed` addresses (`--dev-control-from`), with
    the data directory's token."""
    try:
        address = None if remote is None else ipaddress.ip_address(remote)
    except ValueError:
        address = None
    if address is None or not (address.is_loopback or str(address) in allowed):
        also = f" and {', '.join(sorted(allowed))}" if allowed else ""
        return f"the dev link control answers loopback callers{also} only, not {remote}"
    if not sent:
        return (
            f"no dev token: send the contents of the validator's <data-dir>/"
            f"{gossip.DEV_TOKEN_FILE} in the {gossip.DEV_TOKEN_HEADER} header"
        )
    if not token or not hmac.compare_digest(sent.encode(), token.encode()):
        return f"wrong dev token (see the validator's <data-dir>/{gossip.DEV_TOKEN_FILE})"
    return None


# The budget of requests not signed by a validator


@dataclass(slots=True)
class TokenBucket:
    """Up to `capacity` tokens, refilled at `rate` a second; a take of more than is there
    takes nothing."""

    capacity: float
    rate: float
    tokens: float
    at: float

    def take(self, amount: float, now: float) -> float:
        """0.0 if `amount` was taken at time `now`, else the seconds until it could be
        (math.inf for more than `capacity`)."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = max(self.at, now)
        if amount <= self.tokens:
            self.tokens -= amount
            return 0.0
        if amount > self.capacity:
            return math.inf
        return (amount - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        return self.tokens + max(0.0, now - self.at) * self.rate >= self.capacity


@dataclass(slots=True)
class _Budget:
    items: TokenBucket
    size: TokenBucket


class SourceLimits:
    """A budget of items and bytes per remote address, for /p2p/messages requests that no
    validator signed. `take` answers None (taken) or the 429 (or 413) to send."""

    def __init__(
        self,
        items: tuple[float, float] = (UNSIGNED_ITEMS_BURST, UNSIGNED_ITEMS_PER_S),
        bytes_: tuple[float, float] = (UNSIGNED_BYTES_BURST, UNSIGNED_BYTES_PER_S),
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self.items, self.bytes = items, bytes_
        self.max_sources = max_sources
        self._budgets: dict[str, _Budget] = {}

    def take(self, source: str, items: int, size: int, now: float) -> web.Response | None:
        budget = self._budget(source, now)
        spends = (
            ("bytes", size, budget.size, self.bytes),
            ("items", items, budget.items, self.items),
        )
        for what, amount, bucket, limits in spends:
            if not amount:
                continue
            wait = bucket.take(amount, now)
            if wait == math.inf:  # more than the whole burst (items: only below the item cap)
                return _error(
                    413,
                    f"a request not signed by a validator holds at most "
                    f"{int(limits[0])} {what}; this one holds {amount}",
                    limit=int(limits[0]),
                    got=amount,
                )
            if wait:
                return self._too_many(source, what, limits, wait)
        return None

    def _budget(self, source: str, now: float) -> _Budget:
        budget = self._budgets.get(source)
        if budget is None:
            if len(self._budgets) >= self.max_sources:
                self._forget(now)
            budget = _Budget(
                TokenBucket(*self.items, self.items[0], now),
                TokenBucket(*self.bytes, self.bytes[0], now),
            )
            self._budgets[source] = budget
        return budget

    def _forget(self, now: float) -> None:
        idle = [s for s, b in self._budgets.items() if b.items.full(now) and b.size.full(now)]
        for source in idle or list(self._budgets)[: max(1, self.max_sources // 8)]:
            del self._budgets[source]

    @staticmethod
    def _too_many(source: str, what: str, limit: tuple[float, float], wait: float) -> web.Response:
        retry = max(1, math.ceil(wait))
        response = _error(
            429,
            f"too many {what} from {source} in requests not signed by a validator: "
            f"at most {limit[1]:g} a second, in bursts of {limit[0]:g}; retry in {retry} s",
            limit=what,
            retryAfterS=retry,
        )
        response.headers["Retry-After"] = str(retry)
        return response


@dataclass(slots=True)
class _Lane:
    """What waits to be posted to a peer of one kind ("messages" or "txs")."""

    outbox: deque[tuple[str, bytes]] = field(default_factory=deque)  # kind, item's JSON
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, item: tuple[str, bytes]) -> None:
        if len(self.outbox) >= OUTBOX_LIMIT:
            self.outbox.popleft()
        self.outbox.append(item)
        self.ready.set()


LANES = ("messages", "txs")


@dataclass(slots=True)
class _Peer:
    url: str
    lanes: dict[str, _Lane] = field(default_factory=lambda: {kind: _Lane() for kind in LANES})
    height: int = -1
    seen_at: float = NEVER  # when it last told its height (a status poll or an answer)
    polled_at: float = NEVER  # when a status poll last showed it on this chain
    failing: bool = False
    foreign: bool = False
    drop: bool = False
    delay_ms: int = 0


class Peers:
    """The sending side of the transport, to a fixed list of peer URLs (the `Network` of
    `chain.node.validators`). Lifecycle: `start()`, `stop()`."""

    def __init__(
        self,
        urls: list[str],
        genesis_hash: bytes,
        pending_txs: Callable[[], list[dict[str, Any]]] | None = None,
        signer: gossip.RequestSigner | None = None,
    ) -> None:
        self._peers = [_Peer(url.rstrip("/")) for url in urls]
        # what this validator posts is signed, so a peer knows it comes from a validator
        self._signer = signer
        # a peer that comes back (restarted, reconnected) gets this mempool in full
        self._pending_txs = pending_txs
        self._genesis_hash = wire.hex0x(genesis_hash)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_S))
        for peer in self._peers:
            for lane in peer.lanes.values():
                self._tasks.append(asyncio.create_task(self._send_loop(peer, lane)))
        self._tasks.append(asyncio.create_task(self._status_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # Network (chain.node.validators)

    def broadcast(self, message: dict[str, Any]) -> None:
        self._enqueue("messages", message)

    def gossip_tx(self, tx: dict[str, Any]) -> None:
        self._enqueue("txs", tx)

    def best_peer(self) -> tuple[str, int] | None:
        now = asyncio.get_running_loop().time()
        live = [p for p in self._peers if now - p.seen_at < REACHABLE_S and not p.drop]
        if not live:
            return None
        best = max(live, key=lambda p: p.height)
        return best.url, best.height

    def reachable(self) -> int:
        now = asyncio.get_running_loop().time()
        return sum(1 for p in self._peers if now - p.seen_at < REACHABLE_S and not p.drop)

    async def fetch_blocks(self, peer: str, from_height: int, limit: int) -> list[Any]:
        link = self._peer(peer)
        if link.drop:
            raise ConnectionError(f"the link to {peer} is cut (dev control)")
        if link.delay_ms:
            await asyncio.sleep(link.delay_ms / 1000)
        session = self._get_session()
        params = {"from": str(from_height), "limit": str(limit)}
        async with session.get(f"{peer}/p2p/blocks", params=params) as response:
            response.raise_for_status()
            body = wire.parse_json(await response.read())
        blocks = body.get("blocks") if isinstance(body, dict) else None
        return blocks if isinstance(blocks, list) else []

    # Dev control of the links

    def links(self) -> dict[str, dict[str, Any]]:
        return {p.url: {"drop": p.drop, "delayMs": p.delay_ms} for p in self._peers}

    def set_link(self, peer: str, drop: bool, delay_ms: int) -> None:
        """Cut (`drop`) or slow (`delay_ms`) what this validator sends to `peer` ("*": all)."""
        chosen = self._peers if peer == "*" else [self._peer(peer)]
        for link in chosen:
            link.drop, link.delay_ms = drop, delay_ms
            if drop:
                for lane in link.lanes.values():
                    lane.outbox.clear()
        log.warning("dev control: links to %s set to drop=%s delayMs=%d", peer, drop, delay_ms)

    def _peer(self, url: str) -> _Peer:
        for peer in self._peers:
            if peer.url == url.rstrip("/"):
                return peer
        raise ValueError(f"{url} is not a peer of this validator")

    # Sending

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the transport is not started")
        return self._session

    def _enqueue(self, kind: str, obj: dict[str, Any]) -> None:
        item = encoded_item(kind, obj)  # once, for every peer
        if item is None:
            return
        for peer in self._peers:
            if not peer.drop:
                peer.lanes[kind].put(item)

    async def _send_loop(self, peer: _Peer, lane: _Lane) -> None:
        session = self._get_session()
        while True:
            await lane.ready.wait()
            lane.ready.clear()
            while lane.outbox:
                body = next_batch(lane.outbox)
                if peer.delay_ms:  # dev control: a slow link
                    await asyncio.sleep(peer.delay_ms / 1000)
                if not peer.drop:
                    await self._post(session, peer, lane, body)

    async def _post(
        self, session: aiohttp.ClientSession, peer: _Peer, lane: _Lane, body: bytes
    ) -> None:
        try:
            url = f"{peer.url}/p2p/messages"
            headers = JSON_HEADERS
            if self._signer is not None:
                headers = JSON_HEADERS | self._signer.headers(body, int(time.time() * 1000))
            async with session.post(url, data=body, headers=headers) as response:
                answer = await response.read()
                if response.status >= 400:
                    log.warning("peer %s answered %d: %s", peer.url, response.status, answer[:300])
                elif not peer.foreign and peer.polled_at > NEVER:  # a poll has checked its genesis
                    with contextlib.suppress(ValueError):
                        self._heard(peer, int(response.headers.get(HEIGHT_HEADER, "")))
            if peer.failing:
                log.info("peer %s is reachable again", peer.url)
                peer.failing = False
        except (aiohttp.ClientError, TimeoutError) as exc:
            if not peer.failing:
                log.info("peer %s unreachable (%s); dropping messages to it", peer.url, exc)
                peer.failing = True
            # what was not delivered is dropped: consensus re-sends what still matters
            lane.outbox.clear()

    async def _status_loop(self) -> None:
        session = self._get_session()
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.gather(*(self._poll(session, peer, loop) for peer in self._peers))
            await asyncio.sleep(STATUS_INTERVAL_S)

    async def _poll(
        self, session: aiohttp.ClientSession, peer: _Peer, loop: asyncio.AbstractEventLoop
    ) -> None:
        if peer.drop:
            return
        if not needs_poll(peer.seen_at, peer.polled_at, loop.time()):
            return
        try:
            async with session.get(f"{peer.url}/p2p/status") as response:
                status = wire.parse_json(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return
        if not isinstance(status, dict) or status.get("genesisHash") != self._genesis_hash:
            if not peer.foreign:
                log.warning("peer %s is on another chain (genesis); ignoring it", peer.url)
                peer.foreign = True
            return
        peer.foreign = False
        height = status.get("height")
        if isinstance(height, int):
            peer.polled_at = loop.time()
            self._heard(peer, height)

    def _heard(self, peer: _Peer, height: int) -> None:
        """`peer` told its height, by a status poll or in an answer: a peer back after
        REACHABLE_S or more of silence gets this validator's mempool."""
        now = asyncio.get_running_loop().time()
        back = now - peer.seen_at >= REACHABLE_S
        peer.height = height
        peer.seen_at = now
        if back and self._pending_txs is not None:
            lane = peer.lanes["txs"]
            for tx in self._pending_txs():
                item = encoded_item("txs", tx)
                if item is not None:
                    lane.outbox.append(item)
            lane.ready.set()


def needs_poll(seen_at: float, polled_at: float, now: float) -> bool:
    """Whether a peer's status is asked at `now`: unless it told its height within
    STATUS_INTERVAL_S (`seen_at`: its answers carry it) and a poll showed it on this chain
    within STATUS_CHECK_S (`polled_at`)."""
    return now - seen_at >= STATUS_INTERVAL_S or now - polled_at >= STATUS_CHECK_S


def encoded_item(kind: str, obj: dict[str, Any]) -> tuple[str, bytes] | None:
    """An outgoing item as JSON, encoded once for all peers; None (and logged) when it is not
    JSON orjson can write: nothing a peer could read."""
    try:
        return kind, orjson.dumps(obj)
    except TypeError as exc:
        log.error("dropped an outgoing %s item: %s", kind, exc)
        return None


def next_batch(outbox: deque[tuple[str, bytes]]) -> bytes:
    """The body of one POST /p2p/messages from the head of `outbox`: up to MAX_BATCH_ITEMS
    items and MAX_BATCH_BYTES (one item alone may be larger; the proposer keeps it under the
    server's body limit)."""
    parts: dict[str, list[bytes]] = {"messages": [], "txs": []}
    size = 0
    count = 0
    while outbox and count < MAX_BATCH_ITEMS:
        kind, encoded = outbox[0]
        if count and size + len(encoded) > MAX_BATCH_BYTES:
            break
        outbox.popleft()
        parts[kind].append(encoded)
        size += len(encoded) + 1
        count += 1
    return (
        b'{"messages":['
        + b",".join(parts["messages"])
        + b'],"txs":['
        + b",".join(parts["txs"])
        + b"]}"
    )
