"""The faults of a real network, as CometBFT's e2e runner makes them, on a live testnet of four
validators and three resource nodes with tasks in flight.

Each perturbation is followed by the same checks: the validators converge (the same blocks and
appHashes on all four), and no task is left stuck (each ends `verified` or `failed` by its
deadlines). The default run makes each perturbation once; `INFERCHAIN_LONG=1` repeats the
sequence (`INFERCHAIN_LONG_ROUNDS`, default 5 rounds) under the `long` marker.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chain.protocol.genesis import Genesis, Params, dev_genesis, parse_genesis
from rpc.client import Wallet
from testnet import perturb
from tests.e2e.network import LocalNetwork, eventually

LONG = os.environ.get("INFERCHAIN_LONG") == "1"
LONG_ROUNDS = int(os.environ.get("INFERCHAIN_LONG_ROUNDS", "5"))
# deadlines of 30 blocks of 200 ms: a task is decided within about 12 s of its block
DEADLINE_BLOCKS = 30
TASK_TIMEOUT_S = 90.0


def perturb_genesis() -> Genesis:
    params = Params(
        block_time_ms=200,
        compute_deadline_blocks=DEADLINE_BLOCKS,
        verify_deadline_blocks=DEADLINE_BLOCKS,
    )
    return parse_genesis(dev_genesis(validators=4, params=params))


@pytest.fixture
async def testnet(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    net = LocalNetwork(tmp_path, perturb_genesis())
    try:
        net.start_all()
        await net.wait_heights([0, 1, 2, 3], 2)
        for i in range(3):
            net.start_resource_node(i)
        yield net
    finally:
        await net.close()


class Tasks:
    """Tasks submitted through every validator in turn, from dev accounts 1 to 4."""

    def __init__(self, net: LocalNetwork) -> None:
        self.net = net
        self.hashes: list[str] = []
        self.entered: dict[str, int] = {}  # task hash -> the validator it was sent to
        self._count = 0

    async def submit(self, count: int, through: list[int]) -> None:
        for _ in range(count):
            k = through[self._count % len(through)]
            wallet = Wallet.dev(1 + self._count % 4)
            receipt = await self.net.clients[k].submit_task(
                wallet,
                prompts=f'{{"prompt":"task {self._count}"}}',
                model_options='{"model":"demo","max_tokens":8}',
            )
            self.hashes.append(receipt.task_hash)
            self.entered[receipt.task_hash] = k
            self._count += 1

    async def all_decided(self) -> dict[str, int]:
        """Wait until every task is verified or failed where it entered; counts by status."""
        statuses: dict[str, int] = {}
        for task_hash, k in self.entered.items():
            task = await self.net.clients[k].wait_for_task(task_hash, timeout=TASK_TIMEOUT_S)
            statuses[task["status"]] = statuses.get(task["status"], 0) + 1
        return statuses


def assert_recovered(outcomes: list[perturb.Outcome]) -> None:
    report = "\n".join(outcome.line() for outcome in outcomes)
    print("\n" + report)
    assert all(outcome.recovered for outcome in outcomes), report


async def converge(net: LocalNetwork) -> None:
    await perturb.converge(net)


async def check_no_task_stuck(net: LocalNetwork, tasks: Tasks) -> None:
    # each task is decided where it entered, then every validator holds that decision
    statuses = await tasks.all_decided()
    assert set(statuses) <= {"verified", "failed"}, statuses
    await converge(net)
    for task_hash in tasks.hashes:
        views = [await client.query_task(task_hash) for client in net.clients]
        assert len({(v["status"], v.get("response")) for v in views}) == 1, views
        assert views[0]["status"] in ("verified", "failed"), views[0]


async def test_perturbations_leave_one_chain_and_no_stuck_task(testnet: LocalNetwork) -> None:
    tasks = Tasks(testnet)
    await tasks.submit(4, through=[0, 1, 2, 3])
    outcomes = await perturb.one_round(testnet, 0)
    assert [o.name for o in outcomes] == [
        "pause",
        "disconnect",
        "split",
        "slow-links",
        "restart",
        "foreign-genesis",
        "kill-node",
    ]
    assert_recovered(outcomes)
    await check_no_task_stuck(testnet, tasks)
    # with three honest resource nodes most tasks are verified, not failed
    statuses = await tasks.all_decided()
    assert statuses.get("verified", 0) >= len(tasks.hashes) // 2, statuses


@pytest.mark.long
@pytest.mark.skipif(not LONG, reason="the long fault run: INFERCHAIN_LONG=1")
async def test_perturbations_repeated(testnet: LocalNetwork) -> None:
    tasks = Tasks(testnet)
    outcomes = []
    for round_ in range(LONG_ROUNDS):
        await tasks.submit(4, through=[0, 1, 2, 3])
        outcomes += await perturb.one_round(testnet, round_)
    assert_recovered(outcomes)
    await check_no_task_stuck(testnet, tasks)


async def test_a_two_two_split_halts_without_a_fork_and_heals(testnet: LocalNetwork) -> None:
    tasks = Tasks(testnet)
    await tasks.submit(4, through=[0, 1, 2, 3])
    outcome = await perturb.split(testnet)
    assert_recovered([outcome])
    assert outcome.target == "[0, 1] | [2, 3]"
    await check_no_task_stuck(testnet, tasks)


async def test_resource_nodes_killed_in_the_middle_of_tasks(testnet: LocalNetwork) -> None:
    tasks = Tasks(testnet)
    await tasks.submit(4, through=[0, 1, 2, 3])
    # wait until some task has a result, then kill two of the three nodes
    await eventually(
        # each task at the validator it entered through: the others may not have it yet
        lambda: asyncio.gather(
            *(testnet.clients[k].query_task(h) for h, k in tasks.entered.items())
        ),
        lambda views: any(v.get("executionInfo") for v in views),
        30,
        "a first inference result",
    )
    testnet.kill_resource_node(0)
    testnet.kill_resource_node(1)
    await tasks.submit(3, through=[0, 1, 2, 3])
    statuses = await tasks.all_decided()
    # one node left cannot verify its own results: what it alone answered fails at deadline
    assert set(statuses) <= {"verified", "failed"}
    testnet.start_resource_node(0)
    testnet.start_resource_node(1)
    await tasks.submit(2, through=[0, 1, 2, 3])
    await check_no_task_stuck(testnet, tasks)
