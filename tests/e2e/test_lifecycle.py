"""The whole task lifecycle with real processes: one validator, three resource nodes, one of
them byzantine (`--fault wrong:1`). Every task ends verified with an honest response, the
byzantine node is slashed until it is jailed and then offered no work, and every balance and
stake on chain equals what the settlement records say (PROTOCOL 4.8, 4.9).

Each result is judged by the two other nodes (no self-vote, verificationQuorum 2); the
byzantine node computes wrong but judges honestly, so an honest result is verified by both.
The chain's default canaryRateBps (1%) stays on: an honest node's forced error (PROTOCOL 4.13)
is rejected with `forcedError` true, neither paid nor slashed, and is not a failure."""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chain.protocol.genesis import Genesis, Params, dev_genesis, parse_genesis
from resource_node.backends import request_from_task
from resource_node.backends.deterministic import DeterministicBackend
from rpc.client import InferchainClient, RpcError, Wallet
from tests.helpers import ResourceNodeProcess, ValidatorProcess, write_genesis

pytestmark = pytest.mark.slow

TASKS = 20
SERVED_MODEL = "demo"
TASK_TIMEOUT = 120.0
USER = Wallet.dev(0)
HONEST = (Wallet.dev(200), Wallet.dev(201))
BYZANTINE = Wallet.dev(202)
REJECTED = 3
VERIFIED = 2


def lifecycle_genesis() -> Genesis:
    """The dev genesis with 200 ms blocks, its three nodes serving only SERVED_MODEL.

    Timed blocks, not automine: with automine every burst of transactions makes blocks, so a
    deadline counted in blocks can pass before a node has polled once."""
    params = Params(block_time_ms=200, compute_deadline_blocks=30, verify_deadline_blocks=30)
    raw = copy.deepcopy(dev_genesis(params=params))
    for node in raw["resourceNodes"]:
        node["models"] = SERVED_MODEL
    return parse_genesis(raw)


class Network:
    """A validator and three resource node processes, all killed at the end."""

    def __init__(self, tmp_path: Path, genesis: Genesis) -> None:
        genesis_path = write_genesis(tmp_path / "genesis.json", genesis)
        self.validator = ValidatorProcess(
            genesis_path, tmp_path / "validator", "--check-invariants"
        )
        self.nodes: list[ResourceNodeProcess] = []
        self.tmp_path = tmp_path

    def start(self) -> str:
        url = self.validator.start()
        for index in range(3):
            extra = ("--fault", "wrong:1") if index == 2 else ()
            node = ResourceNodeProcess(url, index, self.tmp_path / f"node-{index}", *extra)
            self.nodes.append(node)
            node.start()
        return url

    def close(self) -> None:
        for process in [*self.nodes, self.validator]:
            process.close()


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Network, str, Genesis]]:
    genesis = lifecycle_genesis()
    net = Network(tmp_path, genesis)
    try:
        url = net.start()
        yield net, url, genesis
    finally:
        net.close()


async def honest_output(task: dict[str, Any], seed: str) -> str:
    backend = DeterministicBackend()
    return await backend.infer(request_from_task(task, int(seed)))


async def test_byzantine_node_is_slashed_jailed_and_every_unit_accounted(
    network: tuple[Network, str, Genesis],
) -> None:
    _net, url, genesis = network
    params = genesis.params
    async with InferchainClient(url) as client:
        before = {
            w.address: await client.get_account(w.address) for w in (USER, *HONEST, BYZANTINE)
        }
        receipts = [
            await client.submit_task(
                USER,
                prompts=f'{{"prompt": "question {i}"}}',
                model_options=f'{{"model": "{SERVED_MODEL}", "max_tokens": 12}}',
                target_count=3,
            )
            for i in range(TASKS)
        ]
        unserved = await client.submit_task(
            USER, prompts="nobody serves this", model_options='{"model": "gpt-nobody"}'
        )
        tasks = await asyncio.gather(
            *(client.wait_for_task(r.task_hash, timeout=TASK_TIMEOUT) for r in receipts)
        )
        failed = await client.wait_for_task(unserved.task_hash, timeout=TASK_TIMEOUT)

        # Every task is verified with an honest response; each honest result is verified, or
        # rejected as the node's own forced error, which costs it nothing.
        for task in tasks:
            assert task["status"] == "verified", task
            by_node = {e["resourceNode"]: e for e in task["executionInfo"]}
            for wallet in HONEST:
                mine = by_node[wallet.address]
                if mine["forcedError"]:
                    assert mine["status"] == REJECTED, mine
                    assert mine["result"] != await honest_output(task, mine["seed"])
                    assert wallet.address not in {
                        p["address"]
                        for p in task["settlement"]["payouts"]
                        if p["role"] == "compute"
                    }
                else:
                    assert mine["status"] == VERIFIED, mine
                    assert mine["forcedError"] is False, mine
            honest_slashed = [
                s for s in task["settlement"]["slashed"] if s["address"] != BYZANTINE.address
            ]
            assert honest_slashed == [], task["settlement"]
            chosen = next(e for e in task["executionInfo"] if e["result"] == task["response"])
            assert chosen["resourceNode"] in {w.address for w in HONEST}
            assert task["response"] == await honest_output(task, chosen["seed"])
            wrong = by_node.get(BYZANTINE.address)
            if wrong is not None:
                assert wrong["status"] == REJECTED
                assert wrong["result"] != await honest_output(task, wrong["seed"])

        # The task nobody can serve fails at its compute deadline, its fee refunded in full.
        assert failed["status"] == "failed"
        assert failed["executionInfo"] == []
        assert failed["settlement"]["refund"] == failed["fee"]
        assert failed["finishedHeight"] == failed["createdHeight"] + params.compute_deadline_blocks

        # The byzantine node was slashed for every rejected result and is jailed.
        slashes = [
            s
            for t in tasks
            for s in t["settlement"]["slashed"]
            if s["address"] == BYZANTINE.address
        ]
        # 2000 AEGIS * 0.9**7 < minNodeStake 1000 AEGIS; its own forced errors are not slashed
        assert len(slashes) >= 7
        assert all(s["reason"] == "result" for s in slashes)
        account = await client.get_account(BYZANTINE.address)
        assert account["jailed"] is True
        assert int(account["stake"]) < params.min_node_stake
        with pytest.raises(RpcError) as info:
            await client.query_pending_tasks(BYZANTINE)
        assert info.value.code == -32005

        # Work goes on without it: a new task is verified by the two honest nodes alone.
        late = await client.submit_task(
            USER,
            prompts="after the jailing",
            model_options=f'{{"model": "{SERVED_MODEL}"}}',
            target_count=2,
        )
        last = await client.wait_for_task(late.task_hash, timeout=TASK_TIMEOUT)
        assert last["status"] == "verified"
        assert {e["resourceNode"] for e in last["executionInfo"]} == {w.address for w in HONEST}

        # Every balance and stake equals genesis plus what the settlements say.
        settled = [*tasks, failed, last]
        balance = Counter({a: int(v["balance"]) for a, v in before.items()})
        stake = Counter({a: int(v["stake"]) for a, v in before.items()})
        for task in settled:
            record = task["settlement"]
            balance[USER.address] += int(record["refund"]) - int(task["fee"])
            for payout in record["payouts"]:
                balance[payout["address"]] += int(payout["amount"])
            for slash in record["slashed"]:
                stake[slash["address"]] -= int(slash["amount"])
            paid = sum(int(p["amount"]) for p in record["payouts"])
            assert paid + int(record["refund"]) + int(record["burned"]) == int(task["fee"]) + int(
                record["networkReward"]
            ) + sum(int(s["amount"]) for s in record["slashed"])
        for address in before:
            now = await client.get_account(address)
            assert int(now["balance"]) == balance[address], address
            assert int(now["stake"]) == stake[address], address
