"""Tasks no resource node can read, against real processes: a dev chain validator and two
resource node processes (`python -m resource_node`).

A `modelOptions` of 100,000 `[` does not start with `{`, so the validator stores it as opaque
bytes (PROTOCOL 1) and lists it as given; a `prompts` value is never parsed by the validator.
Both once reached a JSON parser in the node unbounded, with the recursion limit as high as a
dependency set it (py_ecc: 100,000): the process died of a stack overflow, on every restart,
while the task was open. Now each node skips both tasks, names each in its log once, and
serves the good task submitted after them, each node's result verified by the other. Killed
with SIGKILL and restarted while the bad tasks are still open, a node comes back, names them
once again, and keeps working.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chain.protocol.genesis import Params, dev_genesis, parse_genesis
from rpc.client import InferchainClient, Wallet
from tests.helpers import ResourceNodeProcess, ValidatorProcess, write_genesis

pytestmark = pytest.mark.slow

USER = Wallet.dev(0)
NODES = (Wallet.dev(200), Wallet.dev(201))
DEEP = "[" * 100_000
TASK_TIMEOUT = 60.0
VERIFIED = 2


class Network:
    """A validator and two resource node processes, all killed at the end."""

    def __init__(self, tmp_path: Path) -> None:
        # Deadlines far away: the bad tasks stay open through the restart. Only the two nodes
        # that run are registered: each result is judged by the other one alone (no
        # self-vote), not waiting for a third that never answers. canaryRateBps 0: forced
        # errors are not this test's subject (the good tasks must end with both results
        # verified), and no chain of secrets reaches a deadline 100,000 blocks away.
        params = Params(
            block_time_ms=0,
            compute_deadline_blocks=100_000,
            verify_deadline_blocks=100_000,
            canary_rate_bps=0,
        )
        genesis = parse_genesis(dev_genesis(resource_nodes=len(NODES), params=params))
        genesis_path = write_genesis(tmp_path / "genesis.json", genesis)
        self.genesis_path = genesis_path
        self.validator = ValidatorProcess(genesis_path, tmp_path / "validator")
        self.tmp_path = tmp_path
        self.nodes: list[ResourceNodeProcess] = []

    def start(self) -> str:
        url = self.validator.start()
        for index in range(len(NODES)):
            node = ResourceNodeProcess(
                url, index, self.tmp_path / f"node-{index}", "--genesis", str(self.genesis_path)
            )
            self.nodes.append(node)
            node.start()
        return url

    def close(self) -> None:
        for process in [*self.nodes, self.validator]:
            process.close()


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Network, str]]:
    net = Network(tmp_path)
    try:
        yield net, net.start()
    finally:
        net.close()


def log_since(node: ResourceNodeProcess, offset: int) -> str:
    return node.log_path.read_bytes()[offset:].decode(errors="replace")


def lines_naming(text: str, task_hash: str) -> list[str]:
    return [line for line in text.splitlines() if task_hash in line]


async def wait_logged(node: ResourceNodeProcess, offset: int, hashes: list[str]) -> None:
    """Until the node's log since `offset` names every one of `hashes` (or TASK_TIMEOUT)."""
    deadline = time.monotonic() + TASK_TIMEOUT
    while not all(lines_naming(log_since(node, offset), h) for h in hashes):
        assert node.running(), node.exit_report()
        assert time.monotonic() < deadline, f"{node.name} never named {hashes}"
        await asyncio.sleep(0.1)  # polling a file for a condition, with a deadline


async def node_info(node: ResourceNodeProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(node.url + "/status") as resp:
        assert resp.status == 200
        info: dict[str, Any] = await resp.json()
        return info


async def good_task(client: InferchainClient, prompts: str) -> dict[str, Any]:
    """A task both nodes compute and verify; its queryTask object once verified."""
    receipt = await client.submit_task(
        USER, prompts=prompts, model_options='{"model":"demo","max_tokens":8}', target_count=2
    )
    task = await client.wait_for_task(
        receipt.task_hash, timeout=TASK_TIMEOUT, statuses=("verified",)
    )
    assert {e["resourceNode"] for e in task["executionInfo"]} == {w.address for w in NODES}
    assert all(e["status"] == VERIFIED for e in task["executionInfo"])
    return task


async def test_tasks_no_node_can_read_are_skipped_once_also_after_a_kill(
    network: tuple[Network, str],
) -> None:
    net, url = network
    async with InferchainClient(url) as client:
        bad = []
        for prompts, model_options in (("p", DEEP), (DEEP, "")):
            receipt = await client.submit_task(
                USER, prompts=prompts, model_options=model_options, target_count=2
            )
            await client.wait_for_tx(receipt.tx_hash, timeout=TASK_TIMEOUT)
            bad.append(receipt.task_hash)
        stored = await client.query_task(bad[0])
        assert stored["modelOptions"] == DEEP  # opaque bytes, answered as given

        await good_task(client, "after the deep ones")
        for node in net.nodes:
            assert node.running(), node.exit_report()
            text = log_since(node, 0)
            for task_hash in bad:
                [line] = lines_naming(text, task_hash)
                assert "skipped: cannot read it" in line and "nested deeper than" in line
            assert "Traceback" not in text
            assert (await node_info(node))["unreadable"] == len(bad)

        # SIGKILL while the bad tasks are open; the node restarts on the same state.
        victim = net.nodes[0]
        victim.kill()
        offset = victim.log_path.stat().st_size
        victim.start()
        await wait_logged(victim, offset, bad)
        await good_task(client, "after the restart")
        assert victim.running(), victim.exit_report()
        text = log_since(victim, offset)
        for task_hash in bad:
            assert len(lines_naming(text, task_hash)) == 1, text
        assert (await node_info(victim))["unreadable"] == len(bad)
        for task_hash in bad:
            task = await client.query_task(task_hash)
            assert task["status"] == "submitted" and task["executionInfo"] == []
