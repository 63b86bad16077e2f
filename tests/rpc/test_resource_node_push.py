"""Pushed work (PROTOCOL 5.6): a resource node subscribed to `pendingTasks` acts on a task
offered from the mempool, so its result lands in the task's own block, with its polls
minutes apart; a validator that refuses the WebSocket leaves it polling."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from resource_node.backends.deterministic import DeterministicBackend
from resource_node.worker import ResourceNode, WorkerConfig
from rpc import subscriptions
from rpc.client import InferchainClient, Wallet
from tests.helpers import LocalChain, local_chain, make_genesis, wait_until

DEV0 = Wallet.dev(0)
NODE = Wallet.dev(200)  # resource node 0 of the dev genesis
MODEL_OPTIONS = json.dumps({"model": "demo", "max_tokens": 8})
A_LONG_TIME = 600.0  # seconds between polls: the tests end long before a second one


@pytest.fixture
async def running_nodes() -> AsyncIterator[list[tuple[ResourceNode, asyncio.Task[None]]]]:
    started: list[tuple[ResourceNode, asyncio.Task[None]]] = []
    yield started
    for node, runner in started:
        node.stop()
        await asyncio.wait_for(runner, 10)
        await node.cleanup()


async def run_node(
    chain: LocalChain,
    started: list[tuple[ResourceNode, asyncio.Task[None]]],
    tmp_path: Path,
    **config: Any,
) -> ResourceNode:
    node = ResourceNode(
        InferchainClient(chain.url, timeout=10.0),
        NODE,
        DeterministicBackend(),
        config=WorkerConfig(state_dir=tmp_path / "state", **config),
        rng=random.Random(7),
    )
    await node.setup()
    started.append((node, asyncio.get_running_loop().create_task(node.run_forever())))
    return node


def subscribed(node: ResourceNode) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return node.info()["push"] == "subscribed"

    return probe


async def mempool(chain: LocalChain) -> int:
    return int((await chain.client.health())["mempool"])


async def test_work_offered_from_the_mempool_lands_in_the_tasks_own_block(
    tmp_path: Path, running_nodes: list[tuple[ResourceNode, asyncio.Task[None]]]
) -> None:
    genesis = make_genesis(canary_rate_bps=0)  # no forced errors: nothing waits for the block
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        node = await run_node(
            chain,
            running_nodes,
            tmp_path,
            poll_interval=A_LONG_TIME,
            pushed_poll_interval=A_LONG_TIME,
            params=genesis.params,
        )
        await wait_until(subscribed(node), "the node subscribed to pendingTasks")
        receipt = await chain.client.submit_task(
            DEV0, prompts="2 + 2?", model_options=MODEL_OPTIONS, target_count=2
        )

        async def task_and_result_wait() -> bool:
            return await mempool(chain) == 2

        await wait_until(task_and_result_wait, "the node's result beside the task, unmined")
        await chain.client.dev_mine()
        task = await chain.client.query_task(receipt.task_hash)
        [entry] = task["executionInfo"]
        assert entry["resourceNode"] == NODE.address
        assert task["createdHeight"] == await chain.client.block_number()
        assert node.info()["pushes"] >= 1
        assert node.stats().polls == 1  # the first poll only: the work came pushed


async def test_a_validator_that_refuses_the_websocket_leaves_the_node_polling(
    tmp_path: Path, running_nodes: list[tuple[ResourceNode, asyncio.Task[None]]]
) -> None:
    refusing = subscriptions.Limits(connections=0)
    async with local_chain(tmp_path / "ledger", run=False, ws_limits=refusing) as chain:
        node = await run_node(chain, running_nodes, tmp_path, poll_interval=0.05)
        receipt = await chain.client.submit_task(
            DEV0, prompts="2 + 2?", model_options=MODEL_OPTIONS, target_count=2
        )
        await chain.client.dev_mine()

        async def computed() -> bool:
            task = await chain.client.query_task(receipt.task_hash)
            return bool(task["executionInfo"]) or await mempool(chain) == 1

        await wait_until(computed, "the node's result, found by polling")
        info = node.info()
        assert (info["push"], info["pushes"]) == ("polling", 0)
        assert node.stats().polls >= 2


async def test_with_forced_errors_the_node_waits_for_the_tasks_block(
    tmp_path: Path, running_nodes: list[tuple[ResourceNode, asyncio.Task[None]]]
) -> None:
    """A forced error is drawn from the secret of the task's block (PROTOCOL 4.13): the
    mempool's offer is not acted on, the block's is."""
    async with local_chain(tmp_path / "ledger", run=False) as chain:  # canaryRateBps 100
        node = await run_node(
            chain,
            running_nodes,
            tmp_path,
            poll_interval=A_LONG_TIME,
            pushed_poll_interval=A_LONG_TIME,
            params=chain.node.params,
        )
        await wait_until(subscribed(node), "the node subscribed to pendingTasks")
        receipt = await chain.client.submit_task(
            DEV0, prompts="2 + 2?", model_options=MODEL_OPTIONS, target_count=2
        )

        async def offered() -> bool:
            return bool(node.info()["pushes"] >= 1)

        await wait_until(offered, "the mempool's offer")
        assert await mempool(chain) == 1  # the task alone: nothing was computed from it
        await chain.client.dev_mine()

        async def result_sent() -> bool:
            return await mempool(chain) == 1

        await wait_until(result_sent, "the node's result, after the task's block")
        await chain.client.dev_mine()
        task = await chain.client.query_task(receipt.task_hash)
        [entry] = task["executionInfo"]
        assert entry["resourceNode"] == NODE.address
        assert entry["height"] == task["createdHeight"] + 1
