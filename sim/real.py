"""The simulator's agents on a real chain, through rpc.client, and the same blocks executed
again in the simulator's engine: the check that the engine is the chain, base unit for base
unit.

`drive` lets a simulation's senders and agents act on a running validator (an automine dev
chain of the simulation's genesis): each round, every agent reads its queryPendingTasks,
decides as in the simulator, and the round's transactions go as one batch; it waits until
each accepted one is in a block (or, with nothing to send, for the next block). `replay`
executes the chain's blocks, with their own times, proposer and commits, on a fresh
simulation, and `compare` reads every task's settlement and every account on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain.protocol import blocks, state, wire
from chain.protocol.types import Block, SignedTx, SubmitTask
from rpc import api
from rpc.client import (
    InferchainClient,
    RpcError,
    Wallet,
    method_for,
    params_of_signed,
    pending_tasks_params,
)
from sim.agents import Job, job_of_json
from sim.engine import CHAIN_ID, Simulation
from sim.population import Population

TASK_FINAL = ("verified", "failed")


@dataclass(frozen=True, slots=True)
class Drive:
    """What a drive sent: every accepted transaction by hash, the tasks, and the blocks."""

    txs: dict[bytes, SignedTx]
    tasks: list[bytes]
    rounds: int
    refused: int


async def _jobs(client: InferchainClient, sim: Simulation) -> dict[str, list[Job]]:
    calls: list[tuple[str, Any]] = [
        (
            api.QUERY_PENDING_TASKS,
            pending_tasks_params(Wallet.from_key(agent.key), chain_id=CHAIN_ID, limit=1000),
        )
        for agent in sim.agents
    ]
    answers = await client.batch(calls)
    jobs: dict[str, list[Job]] = {}
    for agent, answer in zip(sim.agents, answers, strict=True):
        # a jailed node's query answers -32005: it can do nothing, as in the simulator
        jobs[agent.address] = (
            [] if isinstance(answer, RpcError) else [job_of_json(i) for i in answer]
        )
    return jobs


async def drive(
    sim: Simulation, client: InferchainClient, *, max_rounds: int = 400, block_timeout: float = 10
) -> Drive:
    """Run `sim`'s senders and agents against the chain `client` talks to, until every task
    is sent and settled."""
    sent: dict[bytes, SignedTx] = {}
    task_hashes: list[bytes] = []
    final: set[bytes] = set()
    refused = 0
    for rounds in range(1, max_rounds + 1):
        head = await client.block_number()
        jobs = await _jobs(client, sim)
        messages = [m for sender in sim.senders for m in sender.decide()]
        agents = list(sim.agents)
        sim.rng.shuffle(agents)
        agents.sort(key=lambda a: not a.first)
        for agent in agents:
            messages.extend(agent.decide(jobs[agent.address]))
        txs = sim.sign(messages)
        answers = await client.batch([(method_for(tx.message), params_of_signed(tx)) for tx in txs])
        accepted = [
            tx
            for tx, answer in zip(txs, answers, strict=True)
            if not isinstance(answer, RpcError) and answer is not False
        ]
        refused += len(txs) - len(accepted)
        for tx in accepted:
            sent[tx.hash] = tx
            if isinstance(tx.message, SubmitTask):
                task_hashes.append(tx.digest)
        if accepted:
            for tx in accepted:
                await client.wait_for_tx(wire.hex0x(tx.hash), timeout=block_timeout)
        else:
            await client.wait_for_block(head + 1, timeout=block_timeout)
        for task_hash in task_hashes:
            if task_hash not in final:
                task = await client.query_task(wire.hex0x(task_hash))
                if task["status"] in TASK_FINAL:
                    final.add(task_hash)
        if all(s.remaining == 0 for s in sim.senders) and len(final) == len(task_hashes):
            return Drive(sent, task_hashes, rounds, refused)
    raise TimeoutError(
        f"{len(task_hashes) - len(final)} tasks still open after {max_rounds} rounds"
    )


async def real_blocks(client: InferchainClient) -> list[Block]:
    """Every block of the chain after genesis, each checked against the hash it was served
    with."""
    out = []
    for height in range(1, await client.block_number() + 1):
        obj = await client.get_block(height)
        block = blocks.block_from_json(obj)
        if wire.hex0x(blocks.block_hash(block)) != obj["hash"]:
            raise ValueError(f"block {height} does not hash to the hash it was served with")
        out.append(block)
    return out


def replay(
    population: Population, chain: list[Block], txs: dict[bytes, SignedTx], secret_chain_length: int
) -> Simulation:
    """A fresh simulation of `population` that executes exactly the chain's blocks."""
    sim = Simulation(population, secret_chain_length=secret_chain_length)
    for block in chain:
        sim.execute(block, [txs[h] for h in block.txs])
    return sim


async def compare(sim: Simulation, client: InferchainClient, task_hashes: list[bytes]) -> list[str]:
    """Every difference between the simulated state and the chain's: each task's status,
    response and settlement, each account's balance, stake, nonce and jail."""
    problems = []
    for task_hash in task_hashes:
        real = await client.query_task(wire.hex0x(task_hash))
        task = state.get_task(sim.store, task_hash)
        if task is None:
            problems.append(f"task {wire.hex0x(task_hash)} is missing from the simulation")
            continue
        mine = state.task_to_json(task)
        for key in ("status", "response", "verificationCount", "settlement", "executionInfo"):
            theirs = real[key]
            if key == "executionInfo":
                theirs = [{k: v for k, v in e.items() if k != "postprocessed"} for e in theirs]
            if mine[key] != theirs:
                problems.append(f"task {wire.hex0x(task_hash)} {key}: {mine[key]!r} != {theirs!r}")
    addresses = [m.address for m in sim.members] + [s.address for s in sim.senders]
    for address in [*addresses, sim.validator]:
        real = await client.get_account(address)
        account = state.get_account(sim.store, address)
        node = state.get_node(sim.store, address)
        mine = {
            "balance": str(account.balance),
            "stake": str(account.stake),
            "nonce": account.nonce,
            "jailed": node is not None and node.jailed,
        }
        theirs = {key: real[key] for key in mine}
        if mine != theirs:
            problems.append(f"account {address}: {mine} != {theirs}")
    return problems
