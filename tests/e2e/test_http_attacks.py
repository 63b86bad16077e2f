"""Attacks on a validator process's HTTP face, and what it answers (PROTOCOL 1, nesting;
PROTOCOL 5, "Transport limits"): a body nested 100,000 deep around a long number (which sent
the standard library's parser past the C stack once py_ecc had raised the recursion limit),
an idle-connection flood past the connection cap, slowloris heads, stalled bodies (the RSS of
the process before, during and after), and CORS on dev and non-dev chains. The attacks are
bench.floods' own; the defences are rpc.serving's, unit-tested in
tests/rpc/test_hardening_http.py. The 20,000-connection run is `long` (INFERCHAIN_LONG=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.common import rss_bytes
from bench.floods import (
    close_all,
    count_open,
    deep_nesting_body,
    host_port,
    idle_connections,
    open_connections,
    stalled_bodies,
)
from chain.protocol import crypto
from chain.protocol.genesis import DEV_MNEMONIC, Params, dev_genesis, parse_genesis
from rpc.client import InferchainClient
from tests.e2e.network import eventually
from tests.e2e.processes import TRACEBACK, StartValidator, log_text, run_to_exit
from tests.helpers import ValidatorProcess, write_genesis

WAIT_S = 30.0  # the longest any condition here is waited for
JSON = {"Content-Type": "application/json"}
MIB = 1024 * 1024
LONG = os.environ.get("INFERCHAIN_LONG") == "1"


def dev_path(tmp_path: Path) -> Path:
    genesis = parse_genesis(dev_genesis(params=Params(block_time_ms=0)))
    return write_genesis(tmp_path / "genesis.json", genesis)


def start_dev(validators: StartValidator, tmp_path: Path, *extra: str) -> ValidatorProcess:
    return validators(dev_path(tmp_path), tmp_path / "data", *extra)


def start_non_dev(validators: StartValidator, tmp_path: Path, *extra: str) -> ValidatorProcess:
    """A chain without a `dev` section: the validator's key from a file."""
    raw = dev_genesis(params=Params(block_time_ms=0))
    del raw["dev"]
    path = write_genesis(tmp_path / "genesis.json", parse_genesis(raw))
    key_file = tmp_path / "validator.key"
    key_file.write_text("0x" + crypto.dev_private_key(DEV_MNEMONIC, 100).hex())
    return validators(path, tmp_path / "data", "--validator-key", str(key_file), *extra)


async def honest_block_number(url: str) -> int:
    """blockNumber through the client library, on a connection of its own."""
    async with InferchainClient(url, timeout=WAIT_S) as client:
        return await client.block_number()


async def recv_until_closed(sock: socket.socket) -> bytes:
    """What the server sends on `sock` until it closes (or resets) it, waited for up to
    WAIT_S."""
    loop = asyncio.get_running_loop()
    chunks = []
    async with asyncio.timeout(WAIT_S):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await loop.sock_recv(sock, 65536):
                chunks.append(chunk)
    return b"".join(chunks)


def rss_mib(process: ValidatorProcess) -> float:
    return rss_bytes(process.pid) / MIB


# Nesting


async def test_a_body_nested_100000_deep_around_a_long_number_kills_nothing(
    validators: StartValidator, tmp_path: Path
) -> None:
    """The dev chain derives its keys with the dev mnemonic, which imports py_ecc (the
    recursion limit it raises is set back); the body is refused on its depth before any
    parser sees it, on the JSON-RPC path and on the transport's."""
    process = start_dev(validators, tmp_path)
    body = deep_nesting_body(100_000)
    assert len(body) > 200_000
    async with aiohttp.ClientSession() as http:
        async with http.post(process.url, data=body, headers=JSON) as resp:
            assert resp.status == 200
            answer = await resp.json()
        async with http.post(f"{process.url}/p2p/messages", data=body, headers=JSON) as resp:
            assert resp.status == 400
            assert "error" in await resp.json()
    assert answer["error"]["code"] == -32700
    reason = answer["error"]["data"]["reason"]
    assert "deep or more, at most 1024" in reason
    assert process.running()
    assert await honest_block_number(process.url) >= 0


# Connections


async def test_an_idle_flood_past_the_cap_leaves_room_for_an_honest_call_and_a_short_log(
    validators: StartValidator, tmp_path: Path
) -> None:
    """500 idle sockets against a cap of 50 (and a header timeout long enough not to help):
    the server holds at most 50 of them, a new honest connection is answered, and the log
    says so in a line or two rather than one per connection."""
    process = start_dev(validators, tmp_path, "--max-connections", "50", "--header-timeout", "600")
    lines_before = len(log_text(process).splitlines())
    host, port = host_port(process.url)
    socks, _failures = await open_connections(host, port, 500)
    try:
        assert len(socks) > 50  # the kernel accepted them; the server closes the excess
        await eventually(
            lambda: asyncio.sleep(0, count_open(socks)),
            lambda n: n <= 50,
            WAIT_S,
            "the server to hold at most its cap of the idle sockets",
        )
        assert await honest_block_number(process.url) >= 0
        assert count_open(socks) <= 50
    finally:
        close_all(socks)
    assert process.running()
    log = log_text(process)
    assert TRACEBACK not in log
    assert len(log.splitlines()) - lines_before <= 5, log


async def test_slowloris_heads_are_cut_at_the_header_timeout_and_idle_ones_at_keepalive(
    validators: StartValidator, tmp_path: Path
) -> None:
    process = start_dev(
        validators,
        tmp_path,
        "--header-timeout",
        "1",
        "--keepalive-timeout",
        "1",
        "--body-timeout",
        "1",
    )
    host, port = host_port(process.url)
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []

    async def connect() -> socket.socket:
        opened, failures = await open_connections(host, port, 1)
        assert opened, failures
        socks.extend(opened)
        return opened[0]

    try:
        # a head that never ends, sent at once
        never_ends = await connect()
        await loop.sock_sendall(never_ends, b"POST / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n")
        assert await recv_until_closed(never_ends) == b""

        # one byte at a time, each well within the timeout, the head as a whole not
        async def drip() -> int:
            sent = 0
            for byte in b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: a\r\n" * 1000:
                try:
                    await loop.sock_sendall(byte_a_time, bytes([byte]))
                except OSError:
                    return sent
                sent += 1
                await asyncio.sleep(0.05)
            return sent

        byte_a_time = await connect()
        dripping = asyncio.create_task(drip())
        assert await recv_until_closed(byte_a_time) == b""
        dripping.cancel()

        # answered, then quiet: closed after the keep-alive timeout
        keepalive = await connect()
        await loop.sock_sendall(keepalive, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await recv_until_closed(keepalive)
        assert answer.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in answer

        # a body that stops coming: a JSON-RPC error naming the timeout, then closed
        late_body = await connect()
        await loop.sock_sendall(
            late_body, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        )
        answer = await recv_until_closed(late_body)
        assert answer.startswith(b"HTTP/1.1 408")
        assert b'"code":-32600' in answer and b"the body did not arrive within 1 s" in answer
    finally:
        close_all(socks)
    assert await honest_block_number(process.url) >= 0


# Bodies


async def test_stalled_bodies_hold_no_more_than_the_budget_and_free_it_when_closed(
    validators: StartValidator, tmp_path: Path
) -> None:
    """Ten connections each send most of a 4 MiB body and stop, against a budget of 32 MiB:
    eight are read (the process grows by about their size), the next bodies are refused before
    they are read with a JSON-RPC error naming the budget, and once the attackers close, RSS
    comes back down near where it was (what the allocator keeps is a few MiB)."""
    budget = 32 * MIB
    process = start_dev(validators, tmp_path, "--bodies-in-flight", str(budget))
    assert await honest_block_number(process.url) >= 0
    before = rss_mib(process)
    host, port = host_port(process.url)
    stop, ready = asyncio.Event(), asyncio.Event()
    attack = asyncio.create_task(
        stalled_bodies(host, port, 10, stop, ready, 4 * MIB - 4096, 4 * MIB, WAIT_S)
    )
    try:
        await asyncio.wait_for(ready.wait(), WAIT_S)
        during = await eventually(
            lambda: asyncio.sleep(0, rss_mib(process)),
            lambda rss: rss >= before + 24,
            WAIT_S,
            f"the eight admitted bodies in memory (RSS {before:.1f} MiB before)",
        )
        call = b'{"jsonrpc":"2.0","method":"blockNumber","id":7}'
        async with (
            aiohttp.ClientSession() as http,
            http.post(process.url, data=call, headers=JSON) as resp,
        ):
            assert resp.status == 503
            refusal = await resp.json()
        assert refusal["id"] is None and refusal["error"]["code"] == -32600
        assert refusal["error"]["data"]["limit"] == budget
        assert refusal["error"]["data"]["retry"] is True
        assert "retry later" in refusal["error"]["data"]["reason"]
    finally:
        stop.set()
        stats = await attack
    assert stats["opened"] == 10
    after = await eventually(
        lambda: asyncio.sleep(0, rss_mib(process)),
        lambda rss: rss <= before + 0.25 * (during - before),
        WAIT_S,
        f"RSS back down near {before:.1f} MiB (it was {during:.1f} MiB during)",
    )
    assert after < during
    assert await honest_block_number(process.url) >= 0  # the budget is free again


# CORS


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }


async def cors_answers(url: str, origin: str) -> dict[str, Any]:
    """What a browser's preflight and call from `origin` get: the statuses and CORS headers."""
    call = b'{"jsonrpc":"2.0","method":"chainId","id":1}'
    async with aiohttp.ClientSession() as http:
        async with http.options(url, headers=preflight_headers(origin)) as pre:
            preflight = (pre.status, dict(pre.headers))
        async with http.post(url, data=call, headers={**JSON, "Origin": origin}) as resp:
            assert resp.status == 200
            posted = dict(resp.headers)
        async with http.get(f"{url}/health", headers={"Origin": origin}) as resp:
            health = dict(resp.headers)
    return {"preflight": preflight, "post": posted, "health": health}


async def test_a_dev_chain_answers_preflights_and_allows_any_origin(
    validators: StartValidator, tmp_path: Path
) -> None:
    process = start_dev(validators, tmp_path)
    seen = await cors_answers(process.url, "http://localhost:5173")
    status, headers = seen["preflight"]
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "content-type"
    assert headers["Access-Control-Max-Age"] == "600"
    assert seen["post"]["Access-Control-Allow-Origin"] == "*"
    assert seen["health"]["Access-Control-Allow-Origin"] == "*"


async def test_a_non_dev_chain_sends_no_cors_headers_without_the_flag(
    validators: StartValidator, tmp_path: Path
) -> None:
    process = start_non_dev(validators, tmp_path)
    seen = await cors_answers(process.url, "http://localhost:5173")
    status, headers = seen["preflight"]
    assert status == 405
    for answer in (headers, seen["post"], seen["health"]):
        assert not any(name.startswith("Access-Control-") for name in answer)


async def test_a_non_dev_chain_with_cors_allows_the_origins_it_names(
    validators: StartValidator, tmp_path: Path
) -> None:
    process = start_non_dev(validators, tmp_path, "--cors", "https://app.example")
    seen = await cors_answers(process.url, "https://app.example")
    assert seen["preflight"][0] == 204
    assert seen["preflight"][1]["Access-Control-Allow-Origin"] == "https://app.example"
    assert seen["post"]["Access-Control-Allow-Origin"] == "https://app.example"
    assert seen["post"]["Vary"] == "Origin"
    other = await cors_answers(process.url, "https://elsewhere.example")
    assert other["preflight"][0] == 403
    assert "Access-Control-Allow-Origin" not in other["post"]


# Flags


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--cors", "app.example", "'app.example' is not an origin"),
        ("--max-connections", "0", "expected a positive number, got '0'"),
        ("--header-timeout", "soon", "expected a positive number, got 'soon'"),
    ],
)
def test_a_malformed_limit_is_refused_at_start_naming_the_flag(
    tmp_path: Path, flag: str, value: str, says: str
) -> None:
    exited = run_to_exit(dev_path(tmp_path), tmp_path / "data", flag, value)
    assert exited.returncode == 2
    assert flag in exited.stderr and says in exited.stderr
    assert TRACEBACK not in exited.stderr


# The long run


@pytest.mark.long
@pytest.mark.skipif(not LONG, reason="20,000 connections: INFERCHAIN_LONG=1")
async def test_20000_idle_connections_leave_room_for_an_honest_call(
    validators: StartValidator, tmp_path: Path
) -> None:
    """The default cap (1024) under 20,000 idle connections (held by helper processes where
    this one's open-files limit ends): an honest call on a new connection is answered."""
    process = start_dev(validators, tmp_path)
    host, port = host_port(process.url)
    stop, ready = asyncio.Event(), asyncio.Event()
    flood = asyncio.create_task(idle_connections(host, port, 20_000, stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), 300)
        t0 = time.perf_counter()
        assert await honest_block_number(process.url) >= 0
        latency_ms = (time.perf_counter() - t0) * 1000
    finally:
        stop.set()
        stats = await flood
    print(f"20,000 idle connections ({stats}): blockNumber in {latency_ms:.1f} ms")
    assert stats["opened"] == 20_000
    assert stats["openAtEnd"] <= 1024
    assert process.running()
    log = log_text(process)
    assert TRACEBACK not in log
    assert len(log.splitlines()) < 50, log
