"""The simulator is the chain: its agents drive a real validator process (an automine dev
chain of the simulation's genesis) through rpc.client, block by block, from the chain's own
queryPendingTasks; then the chain's blocks (the same transactions, the real blocks' times,
proposer and commits) run again in the simulator's engine. Every block's appHash, every
task's results, verdicts and settlement and every account agree, base unit for base unit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from chain.protocol import wire
from rpc.client import InferchainClient
from sim.engine import Simulation
from sim.population import Group, Population
from sim.real import compare, drive, real_blocks, replay
from tests.e2e.processes import StartValidator

pytestmark = pytest.mark.slow

SECRET_CHAIN_LENGTH = 4096
POPULATION = Population(
    (
        Group("honest", 4),
        Group("wrong", 1, p=0.5),
        Group("lazy", 1),
        Group("copying", 1),
        Group("silent", 1),
        Group("sybil-pair", 1),
        Group("whale", 1, 6_000),
    ),
    tasks=12,
    seed=5,
    task_rate=2,
    target_count=2,
    params={
        "blockTimeMs": 0,
        "computeDeadlineBlocks": 4,
        "verifyDeadlineBlocks": 4,
        "revealDeadlineBlocks": 3,
        "canaryRateBps": 2000,
    },
)
DRIVE_TIMEOUT_S = 150.0


async def test_the_simulator_matches_a_real_validator(
    tmp_path: Path, validators: StartValidator
) -> None:
    sim = Simulation(POPULATION, secret_chain_length=SECRET_CHAIN_LENGTH)
    genesis_path = tmp_path / "genesis.json"
    genesis_path.write_text(json.dumps(sim.genesis.raw, indent=1))
    key_path = tmp_path / "validator.key"
    key_path.write_text(wire.hex0x(sim.validator_key))
    process = validators(genesis_path, tmp_path / "ledger", "--validator-key", str(key_path))
    async with InferchainClient(process.url) as client:
        assert await client.genesis_hash() == wire.hex0x(sim.genesis.hash)
        driven = await asyncio.wait_for(drive(sim, client), DRIVE_TIMEOUT_S)
        chain = await real_blocks(client)
        # the engine refuses a block whose appHash is not its own state after the last one
        again = replay(POPULATION, chain, driven.txs, SECRET_CHAIN_LENGTH)
        assert again.height == chain[-1].height
        assert await compare(again, client, driven.tasks) == []
    settled = [t for t in again.settled if t.settlement is not None]
    assert len(settled) == POPULATION.tasks
    slashes = {s.reason for t in settled for s in t.settlement.slashed}
    assert {"result", "verdict"} <= slashes
    assert sum(len(b.txs) for b in chain) == len(driven.txs)
    # and a block executed without one of its transactions leaves another state behind
    k = next(i for i, block in enumerate(chain[:-1]) if block.txs)
    short = Simulation(POPULATION, secret_chain_length=SECRET_CHAIN_LENGTH)
    for block in chain[:k]:
        short.execute(block, [driven.txs[h] for h in block.txs])
    short.execute(chain[k], [driven.txs[h] for h in chain[k].txs[1:]])
    with pytest.raises(ValueError, match="appHash"):
        short.execute(chain[k + 1], [driven.txs[h] for h in chain[k + 1].txs])
