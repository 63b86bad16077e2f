"""Forced errors (PROTOCOL 4.13) with real processes: a validator (`--check-invariants`) and
five dev resource nodes, three honest, one `--fault lazy` (it votes valid without computing)
and one `--fault noreveal` (it never reveals a secret), at canaryRateBps 3000 so that forced
errors come quickly. Tasks are given in batches until the lazy node is caught (at most
MAX_TASKS); the tests then read what the chain settled:

- an honest node's forced error is rejected and revealed, and the lazy node, which voted it
  valid, is slashed `lazy`, while the nodes that voted it invalid are paid the canary bonus;
- each decided result of the noreveal node is slashed `result` at the task's reveal deadline;
- no honest node is ever slashed, every settlement accounts for every base unit
  (`sum(payouts) + refund + burned = fee + networkReward + sum(slashed)`), and the supply is
  what genesis held plus what the settlements minted less what they burned (blockReward 0, so
  that the settlements are all that mints).

Five nodes, not the default three: a result is judged by assigned verifiers (4.5, quorum 2),
and with three nodes an honest forced error is judged by the other honest node and the lazy
one, 1 against 1: it ends `unverified`, needs no reveal, and nobody is caught.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chain.protocol.genesis import Genesis, Params, dev_genesis, parse_genesis
from rpc.client import InferchainClient, Wallet
from tests.helpers import ResourceNodeProcess, ValidatorProcess, dev_node_wallet, write_genesis

pytestmark = pytest.mark.slow

USER = Wallet.dev(0)
TASK_TIMEOUT = 90.0
VERIFIED, REJECTED, UNVERIFIED = 2, 3, 4
COMPUTE_BLOCKS, VERIFY_BLOCKS, REVEAL_BLOCKS = 10, 10, 5
FAULTS: list[str | None] = [None, None, None, "lazy", "noreveal"]
HONEST = {dev_node_wallet(k).address for k in range(3)}
LAZY = dev_node_wallet(3).address
SILENT = dev_node_wallet(4).address
BATCH = 6
# An honest result is a forced error at 30% and the lazy node is in its first round at 1/2:
# P(no catch in a task of three honest results) = 0.85**3 < 0.62; in 30 tasks < 1e-6.
MAX_TASKS = 30


def fault_genesis() -> Genesis:
    params = Params(
        block_time_ms=200,
        compute_deadline_blocks=COMPUTE_BLOCKS,
        verify_deadline_blocks=VERIFY_BLOCKS,
        reveal_deadline_blocks=REVEAL_BLOCKS,
        canary_rate_bps=3000,
        block_reward=0,
    )
    return parse_genesis(dev_genesis(resource_nodes=len(FAULTS), params=params))


@dataclass(frozen=True)
class Run:
    """What the network settled: the tasks in order, the supply held and expected at the end,
    and whether the validator (checking the supply invariant at every block) still runs."""

    tasks: list[dict[str, Any]]
    held: int
    expected: int
    validator_running: bool
    validator_report: str


async def submit(client: InferchainClient, count: int, first: int) -> list[str]:
    hashes = []
    for i in range(first, first + count):
        receipt = await client.submit_task(
            USER,
            prompts=f'{{"prompt": "forced {i}"}}',
            model_options='{"model": "demo", "max_tokens": 8}',
            target_count=len(FAULTS),
        )
        hashes.append(receipt.task_hash)
    return hashes


def lazy_catches(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The honest forced errors of the task that the lazy node voted valid."""
    return [
        e
        for e in task["executionInfo"]
        if e["resourceNode"] in HONEST
        and e["forcedError"]
        and any(v["verifier"] == LAZY and v["valid"] for v in e["verifications"])
    ]


async def supply(client: InferchainClient, genesis: Genesis, tasks: list[Any]) -> tuple[int, int]:
    """(held, expected): every balance and stake of genesis's addresses, and what genesis held
    plus the settlements' networkReward less their burned (no task unsettled: no escrow)."""
    raw = genesis.raw
    addresses = {a["address"] for a in raw["accounts"]}
    addresses |= {v["address"] for v in raw["validators"]}
    addresses |= {n["address"] for n in raw["resourceNodes"]}
    expected = sum(int(a["balance"]) for a in raw["accounts"])
    expected += sum(int(v["stake"]) for v in raw["validators"])
    expected += sum(int(n["stake"]) for n in raw["resourceNodes"])
    for task in tasks:
        expected += int(task["settlement"]["networkReward"]) - int(task["settlement"]["burned"])
    held = 0
    for address in addresses:
        account = await client.get_account(address)
        held += int(account["balance"]) + int(account["stake"])
    return held, expected


async def drive(url: str, genesis: Genesis) -> tuple[list[dict[str, Any]], int, int]:
    tasks: list[dict[str, Any]] = []
    async with InferchainClient(url) as client:
        while len(tasks) < MAX_TASKS and not any(lazy_catches(t) for t in tasks):
            hashes = await submit(client, BATCH, len(tasks))
            tasks += await asyncio.gather(
                *(client.wait_for_task(h, timeout=TASK_TIMEOUT) for h in hashes)
            )
        held, expected = await supply(client, genesis, tasks)
    return tasks, held, expected


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("forced")
    genesis = fault_genesis()
    genesis_path = write_genesis(root / "genesis.json", genesis)
    validator = ValidatorProcess(genesis_path, root / "validator", "--check-invariants")
    processes: list[ValidatorProcess | ResourceNodeProcess] = [validator]
    try:
        url = validator.start()
        for index, fault in enumerate(FAULTS):
            extra = ["--genesis", str(genesis_path)]
            if fault is not None:
                extra += ["--fault", fault]
            node = ResourceNodeProcess(url, index, root / f"node-{index}", *extra)
            processes.append(node)
            node.spawn()  # all five start together
        for process in processes[1:]:
            process.wait_ready()
        tasks, held, expected = asyncio.run(drive(url, genesis))
        print(f"\n{len(tasks)} tasks until the lazy node was caught")
        yield Run(tasks, held, expected, validator.running(), validator.exit_report())
    finally:
        for process in reversed(processes):
            process.close()


def test_every_settlement_accounts_for_every_unit_and_no_honest_node_is_slashed(
    run: Run,
) -> None:
    for task in run.tasks:
        assert task["status"] in ("verified", "failed"), task
        record = task["settlement"]
        paid = sum(int(p["amount"]) for p in record["payouts"])
        slashed = sum(int(s["amount"]) for s in record["slashed"])
        assert (
            paid + int(record["refund"]) + int(record["burned"])
            == int(task["fee"]) + int(record["networkReward"]) + slashed
        ), record
        assert not [s for s in record["slashed"] if s["address"] in HONEST], record
    assert run.validator_running, run.validator_report
    assert run.held == run.expected


def test_a_lazy_verifier_is_slashed_on_an_honest_forced_error(run: Run) -> None:
    caught = [(t, e) for t in run.tasks for e in lazy_catches(t)]
    assert caught, f"no honest forced error judged by the lazy node in {len(run.tasks)} tasks"
    for task, forced in caught:
        record = task["settlement"]
        assert forced["status"] == REJECTED, forced
        lazy = [s["reason"] for s in record["slashed"] if s["address"] == LAZY]
        assert "lazy" in lazy, record
        catchers = {v["verifier"] for v in forced["verifications"] if v["valid"] is False}
        assert catchers and LAZY not in catchers and forced["resourceNode"] not in catchers
        canary = {p["address"] for p in record["payouts"] if p["role"] == "canary"}
        assert catchers <= canary, record
    # Every honest forced error: never the response, its node neither paid for it nor slashed.
    for task in run.tasks:
        computed = {p["address"] for p in task["settlement"]["payouts"] if p["role"] == "compute"}
        for entry in task["executionInfo"]:
            if entry["resourceNode"] in HONEST and entry["forcedError"]:
                assert entry["status"] in (REJECTED, UNVERIFIED), entry
                assert entry["result"] != task["response"]
                assert entry["resourceNode"] not in computed, task["settlement"]


def test_results_never_revealed_are_slashed_at_the_reveal_deadline(run: Run) -> None:
    decided = 0
    for task in run.tasks:
        mine = [e for e in task["executionInfo"] if e["resourceNode"] == SILENT]
        if not mine or mine[0]["status"] not in (VERIFIED, REJECTED):
            continue
        decided += 1
        record = task["settlement"]
        assert mine[0]["forcedError"] is None, mine
        assert task["finishedHeight"] == task["createdHeight"] + (
            COMPUTE_BLOCKS + VERIFY_BLOCKS + REVEAL_BLOCKS
        )
        assert [s["reason"] for s in record["slashed"] if s["address"] == SILENT] == ["result"]
        assert SILENT not in {p["address"] for p in record["payouts"] if p["role"] == "compute"}
        if task["status"] == "verified":
            chosen = next(e for e in task["executionInfo"] if e["result"] == task["response"])
            assert chosen["resourceNode"] in HONEST | {LAZY}, chosen
    assert decided > 0, run.tasks
