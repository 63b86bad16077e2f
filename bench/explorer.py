"""The explorer's page loads (PROTOCOL 5.10) against the read benchmark's ledger: what a
browser asks of the validator to draw a page, timed from the first request to the last answer.

A load is the page's three files (`GET /` as a browser asks for it, the script, the style
sheet) and then the reads that page makes, as `explorer.js` makes them:
- a task's page: one batch of `queryTask` and `blockNumber`;
- the blocks page: `blockNumber`, then one batch of `getBlock` for the latest 20 heights;
- a block's page: one batch of `blockNumber`, `getBlock` and `getBlockEvents`.

One client, one load at a time, over one keep-alive connection for the files and one for the
API (a browser keeps both). The files alone are timed too.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from bench.common import Throughput, throughput
from chain.protocol import wire
from rpc import api
from rpc.client import InferchainClient, Params, RpcError

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
FILES = ("/", "/explorer/explorer.js", "/explorer/explorer.css")
PAGE_BLOCKS = 20  # the blocks page's rows (PAGE_BLOCKS in explorer.js)
LOADS = 50


class PageFailed(RuntimeError):
    """A page's request was not answered as the page needs it."""


async def _files(http: aiohttp.ClientSession, url: str) -> None:
    for path in FILES:
        headers = {"Accept": BROWSER_ACCEPT} if path == "/" else {}
        async with http.get(url + path, headers=headers) as resp:
            if resp.status != 200:
                raise PageFailed(f"GET {path} answered {resp.status}")
            await resp.read()


def _answered(results: list[Any]) -> list[Any]:
    for result in results:
        if isinstance(result, RpcError):
            raise PageFailed(f"a read of the page was refused: {result}")
    return results


async def _timed(loads: int, load: Callable[[int], Awaitable[None]]) -> Throughput:
    await load(0)  # opens the connections: not timed
    latencies = []
    started = time.perf_counter()
    for k in range(1, loads + 1):
        t0 = time.perf_counter()
        await load(k)
        latencies.append(time.perf_counter() - t0)
    return throughput(loads, time.perf_counter() - started, latencies)


async def page_loads(
    url: str, task_hashes: Sequence[bytes], *, loads: int = LOADS, seed: int = 1
) -> dict[str, Throughput]:
    """`loads` loads of each page (a task's from `task_hashes`, drawn in turn; a block's at
    heights drawn uniformly), and of the files alone."""
    rng = random.Random(seed)
    async with aiohttp.ClientSession() as http, InferchainClient(url) as client:
        head = await client.block_number()
        heights = [rng.randint(1, max(1, head)) for _ in range(loads + 1)]

        async def files(_k: int) -> None:
            await _files(http, url)

        async def task_page(k: int) -> None:
            await _files(http, url)
            task_hash = wire.hex0x(task_hashes[k % len(task_hashes)])
            _answered(
                await client.batch(
                    [(api.QUERY_TASK, {"taskHash": task_hash}), (api.BLOCK_NUMBER, {})]
                )
            )

        async def blocks_page(_k: int) -> None:
            await _files(http, url)
            top = await client.block_number()
            calls: list[tuple[str, Params]] = [
                (api.GET_BLOCK, {"height": h}) for h in range(top, max(-1, top - PAGE_BLOCKS), -1)
            ]
            _answered(await client.batch(calls))

        async def block_page(k: int) -> None:
            await _files(http, url)
            height: Params = {"height": heights[k]}
            _answered(
                await client.batch(
                    [
                        (api.BLOCK_NUMBER, {}),
                        (api.GET_BLOCK, height),
                        (api.GET_BLOCK_EVENTS, height),
                    ]
                )
            )

        return {
            "files": await _timed(loads, files),
            "taskPage": await _timed(loads, task_page),
            "blocksPage": await _timed(loads, blocks_page),
            "blockPage": await _timed(loads, block_page),
        }
