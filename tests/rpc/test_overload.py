"""Graceful overload over HTTP (PROTOCOL 5.11): on a timed chain whose nodes verify nothing,
the new task past the floor is refused -32007 with when to retry, and changes nothing;
other transactions still go in; a validator told --no-overload-guard admits it. The cap
grows while the open work is near it and no task is slow, and falls once tasks are late,
also after a restart (the ledger reads when its open tasks were created again)."""

from __future__ import annotations

from pathlib import Path

from chain.node.overload import BACKOFF, FLOOR, GROWTH
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


async def test_the_cap_grows_while_tasks_are_on_time_and_falls_once_they_are_late(
    tmp_path: Path,
) -> None:
    async with local_chain(tmp_path / "ledger", timed_genesis(), run=False) as chain:
        client, node = chain.client, chain.node
        assert node.overload is not None
        await fill(client, FLOOR - 1)
        await client.dev_mine()  # FLOOR - 1 open: near the cap, none slow
        await fill(client, 1)  # the first task at the new head: the cap grows
        grown = FLOOR + int(FLOOR * GROWTH)
        assert node.overload.max_open() == grown
        await fill(client, grown - FLOOR)  # up to the new cap
        error = await rpc_error(client, api.SUBMIT_TASK, task_params(DEV1.address))
        assert (error.data["openTasks"], error.data["maxOpenTasks"]) == (grown, grown)

        await client.dev_mine(node.overload.late_blocks + 1)  # nothing computes: all late
        error = await rpc_error(client, api.SUBMIT_TASK, task_params(DEV1.address))
        assert error.code == -32007
        assert error.data["maxOpenTasks"] == int(grown * BACKOFF)


async def test_a_restarted_validator_knows_how_long_its_tasks_have_been_open(
    tmp_path: Path,
) -> None:
    genesis = timed_genesis()
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        await fill(chain.client, FLOOR // 2)
        await chain.client.dev_mine()
        assert chain.node.overload is not None
        late = chain.node.overload.late_blocks
        await chain.client.dev_mine(late)
        head = chain.node.ledger.head.height
        before = chain.node.ledger.open_tasks_created_by(head - late, head - late)
    assert before == (FLOOR // 2, FLOOR // 2)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        ledger = chain.node.ledger
        assert ledger.head.height == head
        assert ledger.open_tasks_created_by(head - late, head - late) == before
        assert ledger.open_tasks_created_by(head - late - 1, head - late - 1) == (0, 0)
