"""`--dump-state FILE` and `--load-state FILE` (PROTOCOL 5.9) on real validator processes: a
state written at a clean stop and loaded into a new data directory gives back the same head,
appHash, nonces, tasks and pending transactions; a file that is not this chain's state, a
data directory that already holds a chain, and a chain of several validators are refused
with exit code 2 and a message that says why."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import pytest

from chain.protocol.genesis import Params, dev_genesis, parse_genesis
from rpc import api
from rpc.client import InferchainClient
from testnet.process import LaunchError
from tests.helpers import ValidatorProcess, make_genesis, write_genesis
from tests.rpc.support import DEAD, DEV0, DEV1, E18, snapshot, task_params

HOLD = ("--block-time", "600000")  # blocks come from dev_mine only


async def view(client: InferchainClient, task_hash: str) -> dict[str, Any]:
    health = await client.health()
    return {
        "head": (health["height"], health["blockHash"], health["appHash"], health["time"]),
        "state": await snapshot(client, DEV0.address, DEV1.address, DEAD),
        "task": await client.query_task(task_hash),
    }


async def run_and_dump(genesis: Path, data_dir: Path, dump: Path) -> tuple[dict[str, Any], str]:
    """A chain with a committed task and transfer and one transfer pending, dumped at stop."""
    validator = ValidatorProcess(genesis, data_dir, "--dump-state", str(dump), *HOLD)
    try:
        url = await asyncio.to_thread(validator.start)
        async with InferchainClient(url) as client:
            task = await client.call(api.SUBMIT_TASK, task_params(DEV0.address))
            await client.transfer(DEV0, DEAD, E18)
            await client.dev_mine()
            pending = await client.transfer(DEV1, DEAD, 2 * E18)
            before = await view(client, task["taskHash"])
            assert before["state"]["mempool"] == 1
        assert await asyncio.to_thread(validator.terminate) == 0
    finally:
        validator.close()
    return before, pending


async def test_a_dumped_state_loads_back_exactly(tmp_path: Path) -> None:
    genesis = write_genesis(tmp_path / "genesis.json", make_genesis())
    dump = tmp_path / "state.json.gz"
    before, pending = await run_and_dump(genesis, tmp_path / "a", dump)
    task_hash = before["task"]["taskHash"]

    loaded = ValidatorProcess(genesis, tmp_path / "b", "--load-state", str(dump), *HOLD)
    try:
        url = await asyncio.to_thread(loaded.start)
        async with InferchainClient(url) as client:
            assert await view(client, task_hash) == before
            assert (await client.get_transaction(pending))["status"] == "pending"
            await client.dev_mine()
            assert (await client.get_transaction(pending))["status"] == "committed"
    finally:
        loaded.close()


def refused(genesis: Path, data_dir: Path, *extra: str) -> str:
    validator = ValidatorProcess(genesis, data_dir, *extra)
    try:
        with pytest.raises(LaunchError) as info:
            validator.start()
        assert validator.proc is not None and validator.proc.returncode == 2
        return str(info.value)
    finally:
        validator.close()


async def test_state_files_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    genesis = write_genesis(tmp_path / "genesis.json", make_genesis())
    dump = tmp_path / "state.json.gz"
    await run_and_dump(genesis, tmp_path / "a", dump)

    report = await asyncio.to_thread(refused, genesis, tmp_path / "a", "--load-state", str(dump))
    assert "already holds a chain at height 1" in report

    other = write_genesis(
        tmp_path / "other.json", parse_genesis(dev_genesis(chain_id=9, params=Params()))
    )
    report = await asyncio.to_thread(refused, other, tmp_path / "c", "--load-state", str(dump))
    assert "not of this one" in report

    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(gzip.compress(b'{"format": "something else"}'))
    report = await asyncio.to_thread(refused, genesis, tmp_path / "d", "--load-state", str(garbage))
    assert "is not a state dump of format" in report

    report = await asyncio.to_thread(
        refused, genesis, tmp_path / "e", "--load-state", str(tmp_path / "missing")
    )
    assert "cannot read the state dump" in report

    several = write_genesis(tmp_path / "four.json", parse_genesis(dev_genesis(validators=4)))
    report = await asyncio.to_thread(
        refused, several, tmp_path / "f", "--validator", "0", "--dump-state", str(dump)
    )
    assert "several" in report
