"""Graceful overload over HTTP (PROTOCOL 5.11): on a timed chain whose nodes verify nothing,
the new task past the floor is refused -32007 with when to retry, and changes nothing;
other transactions still go in; a validator told --no-overload-guard admits it."""

from __future__ import annotations

from pathlib import Path

from chain.node.overload import FLOOR
from chain.protocol.genesis import Genesis, Params, dev_genesis, parse_genesis
from rpc import api
from rpc.client import InferchainClient
from tests.helpers import local_chain
from tests.rpc.support import DEAD, DEV0, DEV1, E18, rpc_error, snapshot, task_params

AN_HOUR_MS = 3_600_000  # the blocks this test makes itself


def timed_genesis() -> Genesis:
    return parse_genesis(dev_genesis(params=Params(block_time_ms=AN_HOUR_MS)))


async def fill(client: InferchainClient, count: int) -> None:
    calls = [(api.SUBMIT_TASK, task_params(DEV0.address)) for _ in range(count)]
    answers = await client.batch(calls)
    assert all(isinstance(a, dict) and "taskHash" in a for a in answers), answers[:3]


async def test_a_task_past_what_the_network_verifies_is_refused(tmp_path: Path) -> None:
    async with local_chain(tmp_path / "ledger", timed_genesis(), run=False) as chain:
        client = chain.client
        await fill(client, FLOOR // 2)
        await client.dev_mine()  # open tasks in the ledger and in the mempool both count
        await fill(client, FLOOR - FLOOR // 2)
        before = await snapshot(client, DEV0.address, DEV1.address)
        error = await rpc_error(client, api.SUBMIT_TASK, task_params(DEV1.address))
        assert error.code == -32007
        assert error.data["limit"] == "openTasks"
        assert (error.data["openTasks"], error.data["maxOpenTasks"]) == (FLOOR, FLOOR)
        assert error.data["retryAfterMs"] > 0 and error.data["retry"] is True
        assert "overloaded" in error.data["reason"]
        assert await snapshot(client, DEV0.address, DEV1.address) == before
        transfer = await client.transfer(DEV1, DEAD, E18)  # not a task: admitted
        assert (await client.get_transaction(transfer))["status"] == "pending"


async def test_without_the_guard_the_task_is_admitted(tmp_path: Path) -> None:
    async with local_chain(
        tmp_path / "ledger", timed_genesis(), run=False, overload_guard=False
    ) as chain:
        await fill(chain.client, FLOOR + 1)
        assert (await chain.client.health())["mempool"] == FLOOR + 1


async def test_an_automined_chain_has_no_guard(tmp_path: Path) -> None:
    async with local_chain(tmp_path / "ledger", run=False) as chain:  # block time 0
        assert chain.node.overload is None
        await fill(chain.client, FLOOR + 1)
