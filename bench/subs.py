"""The subscriptions' latency (PROTOCOL 5.6): from a block's commit to its `newBlocks`
notification, at several numbers of subscribers, against polling in the same run.

A validator process makes a block every `block_time_ms`. The commit of a block is taken as
the moment a client that polls `blockNumber` back to back (no pause, one call in flight)
first sees it: within one round trip after the commit (its p50 round trip is reported
beside). Each subscriber's latency for a block is its notification's arrival minus that
moment; a resource node's default poll every 200 ms is measured the same way, as the peer.
All clients run in this process, on one loop, on the machine's other core.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, validator
from rpc.client import InferchainClient

SUBSCRIBERS = (1, 16, 64)
BLOCKS = 40
POLL_INTERVAL_S = 0.2  # a resource node's default --poll-interval


class Seen:
    """The first moment each height was seen by one observer."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}

    def saw(self, height: int) -> None:
        self.at.setdefault(height, time.perf_counter())


async def _poll(client: InferchainClient, seen: Seen, stop: asyncio.Event, pause: float) -> None:
    while not stop.is_set():
        seen.saw(await client.block_number())
        if pause:
            await asyncio.sleep(pause)


async def _subscribe(client: InferchainClient, seen: Seen, ready: asyncio.Event) -> None:
    async with client.subscription("newBlocks") as subscription:
        ready.set()
        async for note in subscription:
            seen.saw(int(note["height"]))


def _latencies(observer: Seen, reference: Seen) -> list[float]:
    return [
        observer.at[h] - reference.at[h]
        for h in reference.at
        if h in observer.at and h > min(reference.at)  # the first height was there before
    ]


def _figure(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"samples": 0}
    return {
        "samples": len(samples),
        "p50_ms": round(percentile(samples, 0.5) * 1000, 2),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 2),
    }


async def one_run(url: str, subscribers: int, blocks: int) -> dict[str, Any]:
    clients = [InferchainClient(url) for _ in range(subscribers + 2)]
    stop = asyncio.Event()
    commit, polled = Seen(), Seen()
    subs = [Seen() for _ in range(subscribers)]
    readies = [asyncio.Event() for _ in range(subscribers)]
    tasks = [
        asyncio.create_task(_subscribe(clients[i], subs[i], readies[i])) for i in range(subscribers)
    ]
    try:
        for ready, task in zip(readies, tasks, strict=True):  # a refusal ends its task
            waiting = asyncio.ensure_future(ready.wait())
            await asyncio.wait({waiting, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            if not ready.is_set():
                waiting.cancel()
                raise RuntimeError(f"a subscriber did not subscribe: {task}")
        round_trips = []
        for _ in range(50):
            t0 = time.perf_counter()
            await clients[-1].block_number()
            round_trips.append(time.perf_counter() - t0)
        start = await clients[-1].block_number()
        tasks.append(asyncio.create_task(_poll(clients[-1], commit, stop, 0.0)))
        tasks.append(asyncio.create_task(_poll(clients[-2], polled, stop, POLL_INTERVAL_S)))
        while max(commit.at, default=start) < start + blocks:
            await asyncio.sleep(0.05)
        await asyncio.sleep(POLL_INTERVAL_S * 2)  # the last block reaches the slow poller
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.close()
    pushed = [s for sub in subs for s in _latencies(sub, commit)]
    return {
        "subscribers": subscribers,
        "pushed": _figure(pushed),
        "polled200ms": _figure(_latencies(polled, commit)),
        "roundTrip": _figure(round_trips),
    }


async def subscription_latency(
    genesis_path: Path,
    work_dir: Path,
    block_time_ms: int = 200,
    subscribers: tuple[int, ...] = SUBSCRIBERS,
    blocks: int = BLOCKS,
) -> dict[str, Any]:
    """One validator with `block_time_ms` blocks; a run per number of subscribers."""
    runs = []
    sockets = str(max(subscribers) + 1)  # all from this one address
    with validator(
        genesis_path,
        work_dir / "subs",
        *("--block-time", str(block_time_ms), "--ws-connections", sockets, "--quiet"),
    ) as node:
        for count in subscribers:
            runs.append(await one_run(node.url, count, blocks))
    return {"blockTimeMs": block_time_ms, "runs": runs}


def subscriptions_table(part: dict[str, Any]) -> list[str]:
    lines = [
        f"Subscriptions: commit to notification, {part['blockTimeMs']} ms blocks",
        "",
        "| subscribers | pushed p50 | pushed p99 | polled (200 ms) p50 | p99 | round trip p50 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for run in part["runs"]:
        pushed, polled, rtt = run["pushed"], run["polled200ms"], run["roundTrip"]
        lines.append(
            f"| {run['subscribers']} | {pushed.get('p50_ms', '-')} ms | "
            f"{pushed.get('p99_ms', '-')} ms | {polled.get('p50_ms', '-')} ms | "
            f"{polled.get('p99_ms', '-')} ms | {rtt.get('p50_ms', '-')} ms |"
        )
    return lines
