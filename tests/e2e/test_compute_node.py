"""A resource node is a compute node beside its chain work, against real processes: a dev
chain validator and two resource node processes (PROTOCOL 7).

Each node registers the URL it serves on as its `endpoint`, so `getResourceNodes` leads to
its Infernet and Ocean APIs (a node with `--endpoint off` leaves the genesis's). An Infernet
job and a chain task run at the same time on the same node, the task verified by the other
node. A node killed with SIGKILL while a job runs comes back on the same state directory
with its finished jobs and that job failed, saying the node stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chain.protocol.genesis import Params, dev_genesis, parse_genesis
from resource_node.jobs import STOPPED_ERROR
from rpc.client import InferchainClient, Wallet
from tests.helpers import ResourceNodeProcess, ValidatorProcess, wait_until, write_genesis

pytestmark = pytest.mark.slow

USER = Wallet.dev(0)
NODES = (Wallet.dev(200), Wallet.dev(201))
WAIT_S = 60.0
SLOW = '{"id": "slow", "backend_options": {"tokens_per_second": 0.2}}'


async def job_result(http: aiohttp.ClientSession, url: str, job_id: str) -> dict[str, Any]:
    async with http.get(f"{url}/api/jobs", params={"id": job_id}) as resp:
        assert resp.status == 200, await resp.text()
        (result,) = await resp.json()
    return dict(result)


async def test_a_node_serves_jobs_beside_the_chain_and_keeps_them(tmp_path: Path) -> None:
    params = Params(block_time_ms=0, canary_rate_bps=0)
    genesis = parse_genesis(dev_genesis(resource_nodes=len(NODES), params=params))
    genesis_path = write_genesis(tmp_path / "genesis.json", genesis)
    validator = ValidatorProcess(genesis_path, tmp_path / "validator")
    nodes: list[ResourceNodeProcess] = []
    try:
        rpc = validator.start()
        nodes.append(ResourceNodeProcess(rpc, 0, tmp_path / "node-0", "--container", SLOW))
        nodes.append(ResourceNodeProcess(rpc, 1, tmp_path / "node-1", "--endpoint", "off"))
        for node in nodes:
            node.start()
        async with InferchainClient(rpc) as client, aiohttp.ClientSession() as http:

            async def endpoints() -> dict[str, str] | None:
                listed = {n["address"]: n["endpoint"] for n in await client.get_resource_nodes()}
                return listed if listed[NODES[0].address] == nodes[0].url else None

            listed = await wait_until(endpoints, "the endpoint registered", WAIT_S)
            assert listed[NODES[1].address] == genesis.resource_nodes[1].endpoint
            assert nodes[1].url != genesis.resource_nodes[1].endpoint  # it chose a free port
            models = {n["address"]: n["models"] for n in await client.get_resource_nodes()}
            assert models[NODES[0].address] == "*"

            # an Infernet job and a chain task at once, on node 0
            body = {"containers": ["deterministic"], "data": {"prompt": "Hello"}}
            async with http.post(nodes[0].url + "/api/jobs", json=body) as resp:
                assert resp.status == 200
                done_id = (await resp.json())["id"]
            receipt = await client.submit_task(
                USER, prompts='{"prompt":"Hi"}', model_options='{"max_tokens":8}', target_count=1
            )
            task = await client.wait_for_task(receipt.task_hash, timeout=WAIT_S)
            assert task["status"] == "verified"

            async def finished() -> dict[str, Any] | None:
                result = await job_result(http, nodes[0].url, done_id)
                return result if result["status"] != "running" else None

            done = await wait_until(finished, "the job done", WAIT_S)
            assert done["status"] == "success"

            # a job that runs for a while, and the node killed under it
            slow = {"containers": ["slow"], "data": {"prompt": "a b c"}}
            async with http.post(nodes[0].url + "/api/jobs", json=slow) as resp:
                slow_id = (await resp.json())["id"]
            assert (await job_result(http, nodes[0].url, slow_id))["status"] == "running"
            nodes[0].kill()
            nodes[0].start()

            async def served() -> bool:
                try:
                    async with http.get(nodes[0].url + "/health") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(served, "the node serving again", WAIT_S)
            assert await job_result(http, nodes[0].url, done_id) == done
            cut = await job_result(http, nodes[0].url, slow_id)
            assert cut["status"] == "failed"
            assert cut["result"] == {"container": "slow", "error": STOPPED_ERROR}
            # and the chain learns the restarted node's new URL
            await wait_until(endpoints, "the new endpoint registered", WAIT_S)
    finally:
        for node in nodes:
            node.close()
        validator.close()
