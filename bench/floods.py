"""Floods: the attacks of the robustness table as plain async functions, and what an honest
client sees while one runs against the same validator (the `floods` section).

Each attack is `async def attack(..., stop, ready) -> dict` of counters: it sets `ready` once
the flood is in place (the connections open, the bodies sent, the first request answered)
and runs until `stop` is set. The lower-level pieces (`open_connections`, `count_open`,
`deep_nesting_body`, `p2p_junk_body`, `post_loop`) are importable on their own. They speak
raw TCP or raw HTTP on purpose: an attacker does not use the client library. The honest side
(`honest_client`) does: a read (`blockNumber`, `getAccount`) and a signed transfer per round.

Nothing here judges a figure; `floods` reports them (PERFORMANCE.md, "Under attack").
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from bench.common import REPO, Service, percentile, rss_bytes, validator
from chain.protocol import crypto, wire
from chain.protocol.genesis import DEV_MNEMONIC, dev_genesis
from chain.protocol.types import SubmitTask, Transfer
from rpc.client import InferchainClient, RpcError, TransportError, Wallet, presign

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEAD = "0x000000000000000000000000000000000000dEaD"
ATTACKS = ("idle", "slowloris", "stalled", "nesting", "p2p", "mempool")
CONNECT_CONCURRENCY = 256
CONNECT_TIMEOUT_S = 10.0
RECONNECT_TIMEOUT_S = 2.0  # slowloris: a connection the server closed, opened again
READY_TIMEOUT_S = 300.0
HONEST_TIMEOUT_S = 10.0  # one honest call; a call that takes longer counts as failed
SETTLE_AFTER_S = 5.0  # the RSS "after" figure of the stalled bodies: this long after closing
NOFILE_WANTED = 65_536
FD_MARGIN = 256  # descriptors a process keeps for everything but the idle connections
FLOODER = 0  # dev account of the mempool flood
HONEST = 1  # dev account of the honest client


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big each attack is; the defaults are the robustness table's."""

    idle_connections: int = 20_000
    slowloris_connections: int = 1_000
    slowloris_interval_s: float = 1.0
    stalled_connections: int = 300
    stalled_sent_bytes: int = 5 * MIB - 1024
    stalled_declared_bytes: int = 6 * MIB
    nesting_depth: int = 100_000
    p2p_txs: int = 11_000
    p2p_body_bytes: int = 4 * MIB + MIB // 2
    mempool_batch: int = 500
    honest_rounds: int = 100  # reads and submits each, during the flood and for the baseline
    honest_min_s: float = 20.0  # during a flood, at least this long (past the server's timeouts)
    honest_max_s: float = 60.0  # the honest client stops after this long whatever it got

    def describe(self, attack: str) -> str:
        return {
            "idle": f"{self.idle_connections:,} idle TCP connections",
            "slowloris": f"{self.slowloris_connections:,} connections, headers 1 byte "
            f"per {self.slowloris_interval_s:g} s",
            "stalled": f"{self.stalled_connections} bodies of {self.stalled_sent_bytes / MIB:.1f}"
            f" MiB sent of {self.stalled_declared_bytes / MIB:.1f} MiB declared",
            "nesting": f"{self.nesting_depth:,} `[` + a 30-digit integer + "
            f"{self.nesting_depth:,} `]`, in a loop",
            "p2p": f"POST /p2p/messages, {self.p2p_txs:,} badly signed txs "
            f"({self.p2p_body_bytes / MIB:.1f} MiB), in a loop",
            "mempool": f"one sender's self-transfers in batches of {self.mempool_batch}",
        }[attack]


TINY = Sizes(
    idle_connections=50,
    slowloris_connections=20,
    slowloris_interval_s=0.2,
    stalled_connections=4,
    stalled_sent_bytes=256 * 1024,
    stalled_declared_bytes=512 * 1024,
    nesting_depth=1_000,
    p2p_txs=100,
    p2p_body_bytes=40_000,
    mempool_batch=50,
    honest_rounds=5,
    honest_min_s=0.5,
    honest_max_s=30.0,
)


def raise_nofile(wanted: int = NOFILE_WANTED) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to `wanted` (the hard limit too, where
    allowed), else to the hard limit; the soft limit now. Children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# Connections


async def open_connection(
    host: str, port: int, timeout: float = CONNECT_TIMEOUT_S
) -> socket.socket:
    """One non-blocking TCP connection to host:port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_connections(
    host: str, port: int, count: int, concurrency: int = CONNECT_CONCURRENCY
) -> tuple[list[socket.socket], Counter[str]]:
    """Up to `count` connections, `concurrency` being opened at a time; the open ones and
    the failures by kind (`EMFILE` on this side stops the opening)."""
    socks: list[socket.socket] = []
    failures: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)
    out_of_files = False

    async def one() -> None:
        nonlocal out_of_files
        async with gate:
            if out_of_files:
                failures["notTried"] += 1
                return
            try:
                socks.append(await open_connection(host, port))
            except OSError as exc:
                if exc.errno == errno.EMFILE:
                    out_of_files = True
                failures[errno.errorcode.get(exc.errno or 0, type(exc).__name__)] += 1
            except TimeoutError:
                failures["timeout"] += 1

    await asyncio.gather(*(one() for _ in range(count)))
    return socks, failures


def is_open(sock: socket.socket) -> bool:
    """False once the peer closed or reset the connection."""
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return bool(data)  # b"": closed; data: an answer waits (still open)


def count_open(socks: list[socket.socket]) -> int:
    return sum(1 for sock in socks if is_open(sock))


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


async def idle_connections(
    host: str, port: int, count: int, stop: asyncio.Event, ready: asyncio.Event
) -> dict[str, Any]:
    """Open `count` TCP connections, send nothing on them, hold them until `stop`. What this
    process's RLIMIT_NOFILE cannot hold, holder processes (`python -m bench.floods hold`)
    open and hold."""
    per_process = max(1, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - FD_MARGIN)
    own = min(count, per_process)
    holders = []
    for start in range(own, count, per_process):
        args = ["-m", "bench.floods", "hold", host, str(port), str(min(per_process, count - start))]
        holders.append(
            await asyncio.create_subprocess_exec(
                sys.executable, *args, cwd=REPO, stdin=PIPE, stdout=PIPE
            )
        )
    socks, failures = await open_connections(host, port, own)
    opened_open = count_open(socks)
    opened = len(socks)
    for holder in holders:
        assert holder.stdout is not None
        line = await holder.stdout.readline()
        report: dict[str, Any] = orjson.loads(line) if line else {"opened": 0, "openOnceOpened": 0}
        opened += report["opened"]
        opened_open += report["openOnceOpened"]
        failures.update(report.get("failures", {}))
    ready.set()
    await stop.wait()
    still_open = count_open(socks)
    close_all(socks)
    for holder in holders:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        line = await holder.stdout.readline()
        still_open += orjson.loads(line)["openAtEnd"] if line else 0
        await holder.wait()
    return {
        "opened": opened,
        "openOnceOpened": opened_open,
        "openAtEnd": still_open,
        "processes": 1 + len(holders),
        "failures": dict(failures),
    }


async def _hold(host: str, port: int, count: int) -> None:
    """A holder process: open `count` connections, say how many on stdout (one JSON line),
    hold them until stdin closes, then say how many are still open."""
    raise_nofile()
    socks, failures = await open_connections(host, port, count)
    report = {"opened": len(socks), "openOnceOpened": count_open(socks), "failures": failures}
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    sys.stdout.write(orjson.dumps({"openAtEnd": count_open(socks)}).decode() + "\n")
    sys.stdout.flush()
    close_all(socks)


def _slow_header_bytes() -> Iterator[int]:
    """An endless request head: a request line, then header lines that never end the head."""
    yield from b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    for k in itertools.count():
        yield from b"X-Slow-%d: a\r\n" % k


async def slowloris(
    host: str,
    port: int,
    count: int,
    stop: asyncio.Event,
    ready: asyncio.Event,
    interval_s: float = 1.0,
    reconnect: bool = True,
) -> dict[str, Any]:
    """`count` connections that each send one more byte of an endless request head every
    `interval_s`; with `reconnect`, one the server closes is opened again."""
    socks, failures = await open_connections(host, port, count)
    streams = [_slow_header_bytes() for _ in socks]
    alive = [True] * len(socks)
    closed = reopened = ticks = 0

    async def reopen(i: int) -> None:
        nonlocal reopened
        with contextlib.suppress(OSError, TimeoutError):
            socks[i] = await open_connection(host, port, RECONNECT_TIMEOUT_S)
            streams[i] = _slow_header_bytes()
            alive[i] = True
            reopened += 1

    ready.set()
    while not stop.is_set():
        ticks += 1
        dead = []
        for i, sock in enumerate(socks):
            if not alive[i]:
                dead.append(i)
                continue
            try:
                sock.send(bytes([next(streams[i])]))
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
                sock.close()
                alive[i] = False
                dead.append(i)
        if reconnect and dead:
            await asyncio.gather(*(reopen(i) for i in dead))
        await _wait_or_stop(stop, interval_s)
    still_open = count_open([sock for sock, up in zip(socks, alive, strict=True) if up])
    close_all(socks)
    return {
        "opened": len(socks),
        "closedByServer": closed,
        "reopened": reopened,
        "openAtEnd": still_open,
        "ticks": ticks,
        "failures": dict(failures),
    }


async def _send_until(sock: socket.socket, data: memoryview, deadline: float) -> int:
    """Send `data` until done, the connection fails or the loop time passes `deadline`;
    the bytes sent."""
    loop = asyncio.get_running_loop()
    sent = 0
    while sent < len(data):
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            await asyncio.wait_for(loop.sock_sendall(sock, data[sent : sent + 65536]), remaining)
        except (OSError, TimeoutError):
            break
        sent = min(len(data), sent + 65536)
    return sent


async def stalled_bodies(
    host: str,
    port: int,
    count: int,
    stop: asyncio.Event,
    ready: asyncio.Event,
    sent_bytes: int = 5 * MIB - 1024,
    declared_bytes: int = 6 * MIB,
    send_timeout_s: float = 120.0,
) -> dict[str, Any]:
    """`count` POSTs that declare `declared_bytes` of JSON body, send `sent_bytes` of it
    (JSON whitespace) and then nothing, held open until `stop`. `ready` is set once every
    body was sent, or could not be sent for `send_timeout_s`."""
    socks, failures = await open_connections(host, port, count)
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared_bytes}\r\n\r\n"
    ).encode()
    data = memoryview(head + b" " * sent_bytes)
    deadline = asyncio.get_running_loop().time() + send_timeout_s
    sent = await asyncio.gather(*(_send_until(sock, data, deadline) for sock in socks))
    ready.set()
    await stop.wait()
    still_open = count_open(socks)
    close_all(socks)
    return {
        "opened": len(socks),
        "bodyBytesSent": sum(max(0, s - len(head)) for s in sent),
        "fullySent": sum(1 for s in sent if s == len(data)),
        "openAtEnd": still_open,
        "failures": dict(failures),
    }


# Bodies posted in a loop


def deep_nesting_body(depth: int = 100_000) -> bytes:
    """`depth` brackets around a 30-digit integer (beyond 64 bits: read by the standard
    library's JSON parser, which recurses)."""
    return b"[" * depth + b"123456789012345678901234567890" + b"]" * depth


def p2p_junk_body(
    chain_id: int, count: int = 11_000, body_bytes: int = 4 * MIB + MIB // 2
) -> bytes:
    """A /p2p/messages body of `count` transactions in the gossip form, each with a signature
    that belongs to another message (so each recovers a signer that is not its sender),
    padded to about `body_bytes` in all."""
    key = crypto.dev_private_key(DEV_MNEMONIC, FLOODER)
    sender = crypto.address_of_private_key(key)
    signature = crypto.sign_message(
        SubmitTask(sender, 0, "text", 1, "a junk task", ""), chain_id, key
    ).signature
    per_item = body_bytes // max(count, 1) - 1  # a comma between two
    hex_signature = wire.hex0x(signature)

    def item(k: int, pad: int) -> dict[str, Any]:
        msg = SubmitTask(sender, k + 1, "text", 1, f"junk {k} " + "x" * pad, "")
        return {
            "type": msg.TYPE,
            "message": wire.message_to_params(msg),
            "signature": hex_signature,
        }

    txs = []
    for k in range(count):
        pad = max(0, per_item - len(orjson.dumps(item(k, 0))))
        txs.append(item(k, pad))
    return orjson.dumps({"messages": [], "txs": txs})


async def post_loop(
    url: str,
    body: bytes,
    stop: asyncio.Event,
    ready: asyncio.Event,
    concurrency: int = 1,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """POST `body` to `url` again and again from `concurrency` loops until `stop`; the
    answers by HTTP status (and failures by kind)."""
    statuses: Counter[str] = Counter()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def loop_posts() -> None:
            while not stop.is_set():
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        statuses[str(resp.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    statuses[type(exc).__name__] += 1
                    if not ready.is_set():
                        ready.set()
                    await _wait_or_stop(stop, 0.1)  # a refused connection: do not spin
                ready.set()

        await asyncio.gather(*(loop_posts() for _ in range(concurrency)))
    return {"requests": sum(statuses.values()), "answers": dict(statuses)}


async def mempool_flood(
    url: str,
    wallet: Wallet,
    chain_id: int,
    stop: asyncio.Event,
    ready: asyncio.Event,
    batch: int = 500,
) -> dict[str, Any]:
    """`wallet` sends transfers to itself as fast as it can: batches of `batch` presigned
    transfers with consecutive nonces; a refused batch is sent again until it gets in."""
    admitted = sent = 0
    refusals: Counter[str] = Counter()
    async with InferchainClient(url, timeout=60.0) as client:
        nonce = int((await client.get_account(wallet.address))["pendingNonce"])
        calls: list[tuple[str, Any]] = []
        while not stop.is_set():
            if not calls:
                txs = [
                    presign(
                        Transfer(wallet.address, n, wallet.address, 1), chain_id, wallet.private_key
                    )
                    for n in range(nonce, nonce + batch)
                ]
                calls = [(tx.method, tx.params) for tx in txs]
            try:
                results = await client.batch(calls)
            except (RpcError, TransportError) as exc:
                refusals[type(exc).__name__] += 1
                ready.set()
                continue
            sent += len(calls)
            taken = 0
            for result in results:
                if isinstance(result, RpcError):
                    refusals[str(result.code)] += 1
                    break
                taken += 1
            admitted += taken
            nonce += taken
            calls = calls[taken:]
            if not taken:  # refused from its first: the pool may be full, or the nonce off
                pending = int((await client.get_account(wallet.address))["pendingNonce"])
                if pending != nonce:
                    nonce, calls = pending, []
            ready.set()
    return {"sent": sent, "admitted": admitted, "refusals": dict(refusals)}


# The honest client


@dataclass(frozen=True, slots=True)
class Latencies:
    samples: int
    failed: int
    p50_ms: float | None
    p99_ms: float | None

    @classmethod
    def of(cls, seconds: list[float], failed: int) -> Latencies:
        if not seconds:
            return cls(0, failed, None, None)
        p50, p99 = percentile(seconds, 0.5), percentile(seconds, 0.99)
        return cls(len(seconds), failed, round(p50 * 1000, 3), round(p99 * 1000, 3))

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "failed": self.failed,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
        }


async def _timed(call: Callable[[], Awaitable[Any]], into: list[float]) -> bool:
    t0 = time.perf_counter()
    try:
        await call()
    except (RpcError, TransportError, TimeoutError, aiohttp.ClientError):
        return False
    into.append(time.perf_counter() - t0)
    return True


async def honest_client(
    url: str,
    wallet: Wallet,
    rounds: int,
    max_seconds: float,
    min_seconds: float = 0.0,
    timeout_s: float = HONEST_TIMEOUT_S,
) -> dict[str, Any]:
    """At least `rounds` rounds, and rounds for at least `min_seconds`, of a read
    (blockNumber and getAccount in turn) and a signed transfer from `wallet`, each timed;
    stops early after `max_seconds`. A fresh client: it connects while whatever runs runs."""
    reads: list[float] = []
    submits: list[float] = []
    read_failed = submit_failed = 0
    started = time.monotonic()
    async with InferchainClient(url, timeout=timeout_s) as client:
        for k in itertools.count():
            elapsed = time.monotonic() - started
            if elapsed > max_seconds or (k >= rounds and elapsed >= min_seconds):
                break
            read: Callable[[], Awaitable[Any]] = (
                client.block_number if k % 2 == 0 else lambda: client.get_account(wallet.address)
            )
            if not await _timed(read, reads):
                read_failed += 1
            if not await _timed(lambda: client.transfer(wallet, DEAD, 1), submits):
                submit_failed += 1
                client.reset_nonce(wallet.address)
    return {
        "read": Latencies.of(reads, read_failed).to_json(),
        "submit": Latencies.of(submits, submit_failed).to_json(),
    }


# The section


async def _alive(url: str) -> bool:
    """The validator answers /health and blockNumber."""
    try:
        async with InferchainClient(url, timeout=HONEST_TIMEOUT_S) as client:
            await client.health()
            await client.block_number()
    except (RpcError, TransportError, TimeoutError, aiohttp.ClientError):
        return False
    return True


def _rss_mib(service: Service) -> float | None:
    if not service.running():
        return None
    try:
        return round(rss_bytes(service.pid) / MIB, 1)
    except (OSError, RuntimeError):
        return None


def _attack(
    name: str, url: str, sizes: Sizes, chain_id: int, stop: asyncio.Event, ready: asyncio.Event
) -> Coroutine[Any, Any, dict[str, Any]]:
    host, port = host_port(url)
    if name == "idle":
        return idle_connections(host, port, sizes.idle_connections, stop, ready)
    if name == "slowloris":
        return slowloris(
            host, port, sizes.slowloris_connections, stop, ready, sizes.slowloris_interval_s
        )
    if name == "stalled":
        return stalled_bodies(
            host,
            port,
            sizes.stalled_connections,
            stop,
            ready,
            sizes.stalled_sent_bytes,
            sizes.stalled_declared_bytes,
        )
    if name == "nesting":
        return post_loop(url + "/", deep_nesting_body(sizes.nesting_depth), stop, ready)
    if name == "p2p":
        body = p2p_junk_body(chain_id, sizes.p2p_txs, sizes.p2p_body_bytes)
        return post_loop(url + "/p2p/messages", body, stop, ready)
    if name == "mempool":
        return mempool_flood(url, Wallet.dev(FLOODER), chain_id, stop, ready, sizes.mempool_batch)
    raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")


async def under_attack(
    name: str, genesis_path: Path, chain_id: int, data_dir: Path, sizes: Sizes
) -> dict[str, Any]:
    """One attack against a fresh validator process: the honest figures before and during
    it, the validator's RSS, and whether it still serves afterwards."""
    honest = Wallet.dev(HONEST)
    with validator(genesis_path, data_dir) as service:
        url = service.url
        baseline = await honest_client(url, honest, sizes.honest_rounds, sizes.honest_max_s)
        rss_before = _rss_mib(service)
        stop, ready = asyncio.Event(), asyncio.Event()
        flood = asyncio.create_task(_attack(name, url, sizes, chain_id, stop, ready))
        try:
            ready_task = asyncio.ensure_future(ready.wait())
            await asyncio.wait(
                {flood, ready_task}, timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
            ready_task.cancel()
            if flood.done():
                flood.result()  # raises what stopped it
            established = ready.is_set()
            rss_during = _rss_mib(service)
            during = await honest_client(
                url, honest, sizes.honest_rounds, sizes.honest_max_s, sizes.honest_min_s
            )
            rss_during = max(filter(None, (rss_during, _rss_mib(service))), default=None)
        finally:
            stop.set()
            stats = await flood
        survived_process = service.running()
        rss_after = None
        if name == "stalled":
            await asyncio.sleep(SETTLE_AFTER_S)  # the figure asked for: RSS this long after
            rss_after = _rss_mib(service)
        survived = survived_process and await _alive(url)
        if rss_after is None:
            rss_after = _rss_mib(service)
    return {
        "attack": name,
        "size": sizes.describe(name),
        "established": established,
        "flood": stats,
        "baseline": baseline,
        "during": during,
        "rssMiB": {"before": rss_before, "during": rss_during, "after": rss_after},
        "survived": survived,
    }


def write_dev_genesis(path: Path) -> int:
    """The dev chain's genesis (one validator, default params) at `path`; its chain id."""
    genesis = dev_genesis()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(orjson.dumps(genesis, option=orjson.OPT_INDENT_2).decode())
    return int(genesis["chainId"])


async def floods(
    work_dir: Path, sizes: Sizes = Sizes(), attacks: tuple[str, ...] = ATTACKS
) -> dict[str, Any]:
    """Every attack in `attacks`, each against its own fresh validator."""
    nofile = raise_nofile(max(NOFILE_WANTED, sizes.idle_connections + FD_MARGIN))
    genesis_path = work_dir / "floods-genesis.json"
    chain_id = write_dev_genesis(genesis_path)
    rows = []
    for name in attacks:
        log.info("floods: %s (%s)", name, sizes.describe(name))
        rows.append(
            await under_attack(name, genesis_path, chain_id, work_dir / f"flood-{name}", sizes)
        )
    return {"nofile": nofile, "attacks": rows}


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "hold":
        sys.exit("usage: python -m bench.floods hold HOST PORT COUNT")
    asyncio.run(_hold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
