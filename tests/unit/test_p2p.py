"""rpc.p2p: how the outbox to a peer becomes request bodies, what a peer's answers tell of
its height and when its status is polled, the budget of requests no validator signed, and
the check of the dev link control (PROTOCOL 6.8)."""

from __future__ import annotations

import asyncio
import ipaddress
import math
from collections import deque
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from chain.protocol.gossip import DEV_TOKEN_FILE
from rpc.p2p import (
    HEIGHT_HEADER,
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    NEVER,
    STATUS_CHECK_S,
    STATUS_INTERVAL_S,
    Peers,
    SourceLimits,
    TokenBucket,
    dev_control_refusal,
    dev_token,
    encoded_item,
    needs_poll,
    next_batch,
)
from tests.helpers import serving, wait_until

GENESIS_HASH = b"\x00" * 32
WAIT_S = 10.0


def outbox(items: list[tuple[str, dict[str, Any]]]) -> deque[tuple[str, bytes]]:
    encoded = (encoded_item(kind, obj) for kind, obj in items)
    return deque(item for item in encoded if item is not None)


def test_a_batch_keeps_order_within_each_kind_and_parses() -> None:
    box = outbox([("messages", {"n": 0}), ("txs", {"n": 1}), ("messages", {"n": 2})])
    body = orjson.loads(next_batch(box))
    assert body == {"messages": [{"n": 0}, {"n": 2}], "txs": [{"n": 1}]}
    assert not box


def test_a_batch_stops_at_the_item_limit() -> None:
    box = outbox([("messages", {"n": i}) for i in range(MAX_BATCH_ITEMS + 5)])
    first = orjson.loads(next_batch(box))
    assert [m["n"] for m in first["messages"]] == list(range(MAX_BATCH_ITEMS))
    second = orjson.loads(next_batch(box))
    assert [m["n"] for m in second["messages"]] == list(range(MAX_BATCH_ITEMS, MAX_BATCH_ITEMS + 5))


def test_a_batch_stops_at_the_byte_limit_but_always_carries_one_item() -> None:
    big = "x" * (MAX_BATCH_BYTES // 3)
    box = outbox([("txs", {"n": i, "pad": big}) for i in range(5)])
    sizes = []
    while box:
        body = next_batch(box)
        sizes.append(len(orjson.loads(body)["txs"]))
        assert len(body) <= MAX_BATCH_BYTES + 100
    assert sum(sizes) == 5 and max(sizes) < 5
    huge = outbox([("messages", {"pad": "y" * (2 * MAX_BATCH_BYTES)}), ("messages", {"n": 1})])
    assert len(orjson.loads(next_batch(huge))["messages"]) == 1
    assert len(huge) == 1


def test_an_item_that_is_not_json_is_dropped_not_sent() -> None:
    assert encoded_item("txs", {"n": 2**70}) is None
    box = outbox([("txs", {"n": 2**70}), ("txs", {"n": 1})])
    assert orjson.loads(next_batch(box)) == {"messages": [], "txs": [{"n": 1}]}
    assert not box


# Two lanes to each peer: consensus messages never wait behind transactions


async def test_a_vote_reaches_a_peer_that_is_still_admitting_transactions() -> None:
    """A peer answers a request of transactions only once it has admitted them: the request
    of a vote sent meanwhile is not queued behind it, and each lane keeps its order."""
    received: list[tuple[str, Any]] = []
    admitting = asyncio.Event()
    release = asyncio.Event()
    arrived = asyncio.Condition()

    async def messages(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        async with arrived:
            received.extend(("txs", tx["n"]) for tx in body["txs"])
            received.extend(("messages", m["n"]) for m in body["messages"])
            arrived.notify_all()
        if body["txs"]:
            admitting.set()
            await release.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/p2p/messages", messages)
    async with serving(app) as url:
        peers = Peers([url], GENESIS_HASH)
        await peers.start()
        try:
            peers.gossip_tx({"n": 0})
            await asyncio.wait_for(admitting.wait(), WAIT_S)
            peers.gossip_tx({"n": 1})  # waits for the request of tx 0: one request at a time
            peers.broadcast({"n": 2})
            peers.broadcast({"n": 3})
            async with arrived:
                await asyncio.wait_for(
                    arrived.wait_for(lambda: ("messages", 3) in received), WAIT_S
                )
            assert received == [("txs", 0), ("messages", 2), ("messages", 3)]
            release.set()
            async with arrived:
                await asyncio.wait_for(arrived.wait_for(lambda: ("txs", 1) in received), WAIT_S)
            assert received[-1] == ("txs", 1)
        finally:
            release.set()
            await peers.stop()


# What a peer's answers tell, and when its status is polled (PROTOCOL 6.8)


def fake_peer(
    genesis_hash: bytes, polled_height: int, answers: list[int]
) -> tuple[web.Application, list[bytes]]:
    """A peer whose status says `polled_height` on the chain of `genesis_hash`, and whose
    answer to the n-th request of messages says its height is answers[n] (the last one
    after that); and the bodies of the requests it answered."""
    bodies: list[bytes] = []

    async def status(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "height": polled_height,
                "round": 0,
                "validator": "0x" + "11" * 20,
                "genesisHash": "0x" + genesis_hash.hex(),
            }
        )

    async def messages(request: web.Request) -> web.Response:
        height = answers[min(len(bodies), len(answers) - 1)]
        bodies.append(await request.read())
        return web.Response(status=204, headers={HEIGHT_HEADER: str(height)})

    app = web.Application()
    app.router.add_get("/p2p/status", status)
    app.router.add_post("/p2p/messages", messages)
    return app, bodies


async def test_a_peer_tells_its_height_in_its_answers() -> None:
    """Once a poll has shown a peer on this chain, each answer to a request of messages
    tells its height as well: block sync learns that a peer is ahead from the traffic."""
    app, _bodies = fake_peer(GENESIS_HASH, polled_height=5, answers=[9, 12])
    async with serving(app) as url:
        peers = Peers([url], GENESIS_HASH)
        await peers.start()
        try:
            await wait_until(lambda: peers.best_peer() == (url, 5), "the poll's height")
            peers.broadcast({"n": 1})
            await wait_until(lambda: peers.best_peer() == (url, 9), "the first answer's height")
            peers.broadcast({"n": 2})
            await wait_until(lambda: peers.best_peer() == (url, 12), "the second answer's height")
            assert peers.reachable() == 1
        finally:
            await peers.stop()


async def test_the_answers_of_a_peer_on_another_chain_tell_nothing() -> None:
    """A peer whose status names another genesis is ignored, whatever its answers say."""
    app, bodies = fake_peer(b"\x01" * 32, polled_height=5, answers=[9])
    async with serving(app) as url:
        peers = Peers([url], GENESIS_HASH)
        await peers.start()
        try:
            # a request goes only once the answer before it was read: after the second has
            # arrived, the first answer has been taken in (or not)
            peers.broadcast({"n": 1})
            await wait_until(lambda: len(bodies) == 1, "the first request")
            peers.broadcast({"n": 2})
            await wait_until(lambda: len(bodies) == 2, "the second request")
            assert peers.best_peer() is None
            assert peers.reachable() == 0
        finally:
            await peers.stop()


def test_a_peer_never_heard_from_is_polled() -> None:
    assert needs_poll(NEVER, NEVER, 0.0)
    assert needs_poll(NEVER, NEVER, 1e6)


@given(
    now=st.floats(0, 1e6, allow_nan=False),
    seen_ago=st.floats(0, 100, allow_nan=False),
    polled_ago=st.floats(0, 100, allow_nan=False),
)
def test_a_peer_is_polled_when_silent_or_unchecked_for_too_long(
    now: float, seen_ago: float, polled_ago: float
) -> None:
    """A peer that told its height within STATUS_INTERVAL_S is not polled, unless no poll
    has checked its genesis for STATUS_CHECK_S: however busy the traffic, a poll at least
    every STATUS_CHECK_S; with none, a poll every STATUS_INTERVAL_S, as before answers told
    heights."""
    polls = needs_poll(now - seen_ago, now - polled_ago, now)
    if polled_ago >= STATUS_CHECK_S or seen_ago >= STATUS_INTERVAL_S:
        assert polls
    else:
        assert not polls


# The budget of requests not signed by a validator (PROTOCOL 6.8)

takes = st.lists(
    st.tuples(st.floats(0, 5, allow_nan=False), st.integers(0, 3000)), min_size=1, max_size=60
)


@given(
    capacity=st.integers(1, 3000),
    rate=st.floats(0.5, 1000, allow_nan=False),
    steps=takes,
)
def test_a_token_bucket_never_grants_more_than_its_burst_and_its_rate(
    capacity: int, rate: float, steps: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(capacity, rate, capacity, 0.0)
    now, granted = 0.0, 0
    for gap, amount in steps:
        now += gap
        before = bucket.tokens
        wait = bucket.take(amount, now)
        if wait == 0.0:
            granted += amount
        else:  # refused: nothing taken, and the wait says when it would be granted
            assert amount > bucket.tokens >= 0 and bucket.tokens >= min(before, capacity) - 1e-9
            assert (wait == math.inf) == (amount > capacity)
        assert granted <= capacity + rate * now + 1e-6
        assert 0 <= bucket.tokens <= capacity


@given(capacity=st.integers(1, 3000), rate=st.floats(0.5, 1000), amount=st.integers(1, 3000))
def test_a_refused_take_is_granted_once_its_wait_has_passed(
    capacity: int, rate: float, amount: int
) -> None:
    bucket = TokenBucket(capacity, rate, 0.0, 10.0)  # empty at time 10
    wait = bucket.take(amount, 10.0)
    if amount > capacity:
        assert wait == math.inf
        return
    assert wait > 0
    assert bucket.take(amount, 10.0 + wait * (1 + 1e-9) + 1e-9) == 0.0


def test_the_budget_is_per_address_and_answers_429_or_413_naming_the_limit() -> None:
    limits = SourceLimits(items=(10, 1), bytes_=(1000, 100))
    assert limits.take("10.0.0.1", 10, 500, 0.0) is None
    refused = limits.take("10.0.0.1", 1, 0, 0.0)
    assert refused is not None and refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    answer = orjson.loads(refused.body)  # type: ignore[arg-type]
    assert "items" in answer["error"] and "10.0.0.1" in answer["error"]
    assert limits.take("10.0.0.2", 10, 500, 0.0) is None  # another address, its own budget
    assert limits.take("10.0.0.1", 1, 0, 1.0) is None  # refilled
    too_big = limits.take("10.0.0.3", 0, 1001, 0.0)
    assert too_big is not None and too_big.status == 413
    assert orjson.loads(too_big.body)["limit"] == 1000  # type: ignore[arg-type]
    too_many = limits.take("10.0.0.4", 11, 0, 0.0)
    assert too_many is not None and too_many.status == 413
    assert orjson.loads(too_many.body)["got"] == 11  # type: ignore[arg-type]


def test_the_budgets_kept_are_bounded_and_idle_ones_go_first() -> None:
    limits = SourceLimits(items=(10, 1), bytes_=(1000, 100), max_sources=4)
    assert limits.take("busy", 10, 0, 0.0) is None
    for i in range(20):
        assert limits.take(f"idle-{i}", 1, 0, 100.0 + i) is None
    assert len(limits._budgets) <= 4
    assert limits.take("busy", 10, 0, 100.0) is None  # forgotten: a fresh budget


# The dev link control (PROTOCOL 6.8)

TOKEN = "ab" * 32


@given(st.ip_addresses())
def test_the_dev_link_control_answers_loopback_callers_with_the_token_only(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    refusal = dev_control_refusal(str(address), TOKEN, TOKEN)
    if address.is_loopback:
        assert refusal is None
    else:
        assert refusal is not None and f"loopback callers only, not {address}" in refusal


@given(st.text(max_size=80))
def test_the_dev_link_control_refuses_any_other_token(sent: str) -> None:
    refusal = dev_control_refusal("127.0.0.1", sent, TOKEN)
    if sent == TOKEN:
        assert refusal is None
    elif not sent:
        assert refusal is not None and refusal.startswith("no dev token")
    else:
        assert refusal is not None and refusal.startswith("wrong dev token")


@given(st.ip_addresses(v=4))
def test_the_dev_link_control_also_answers_the_addresses_allowed(
    address: ipaddress.IPv4Address,
) -> None:
    allowed = frozenset({"10.77.3.1"})
    refusal = dev_control_refusal(str(address), TOKEN, TOKEN, allowed)
    if address.is_loopback or str(address) == "10.77.3.1":
        assert refusal is None
        assert dev_control_refusal(str(address), "", TOKEN, allowed) is not None  # the token
    else:
        assert refusal is not None
        assert f"loopback callers and 10.77.3.1 only, not {address}" in refusal


def test_the_dev_link_control_refuses_an_unknown_caller() -> None:
    assert dev_control_refusal(None, TOKEN, TOKEN) is not None
    assert dev_control_refusal("not an address", TOKEN, TOKEN) is not None


def test_the_dev_token_is_written_once_private_and_then_read(tmp_path: Path) -> None:
    token = dev_token(tmp_path)
    path = tmp_path / DEV_TOKEN_FILE
    assert len(token) == 64 and int(token, 16) >= 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert dev_token(tmp_path) == token
    assert dev_token(tmp_path / ".." / tmp_path.name) == token
