"""The dev controls (PROTOCOL 5.9) on a real validator over HTTP: snapshots reverted exactly
(head, appHash, nonces, tasks and the mempool), blocks mined at once, the clock moved, a
balance set (durable, with the supply invariant kept), a reset to genesis; their bad-input
rows changing nothing; and -32601 with the reason on chains that have no dev controls."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from chain.node.ledger import _SortedReader
from chain.node.node import dev_validator_key
from chain.node.store import MemoryStore
from chain.protocol import crypto
from chain.protocol.genesis import DEV_MNEMONIC, dev_genesis, parse_genesis
from chain.protocol.gossip import ValidatorKey
from rpc import api
from rpc.client import InferchainClient
from tests.helpers import LocalChain, local_chain, wait_until
from tests.rpc.support import DEAD, DEV0, DEV1, E18, rpc_error, snapshot, task_params

DEV_METHODS = (
    (api.DEV_SNAPSHOT, []),
    (api.DEV_REVERT, ["0x1"]),
    (api.DEV_MINE, [1]),
    (api.DEV_SET_NEXT_BLOCK_TIMESTAMP, [2_000_000_000]),
    (api.DEV_INCREASE_TIME, [60]),
    (api.DEV_SET_BALANCE, [DEV0.address, "1"]),
    (api.DEV_RESET, []),
)


@pytest.fixture
async def held(tmp_path: Path) -> Any:
    """A dev chain whose blocks come only from dev_mine (no automine)."""
    async with local_chain(tmp_path / "ledger", run=False) as running:
        yield running


async def chain_view(client: InferchainClient, *task_hashes: str) -> dict[str, Any]:
    """What a revert must give back exactly."""
    health = await client.health()
    return {
        "head": (health["height"], health["blockHash"], health["appHash"], health["time"]),
        "state": await snapshot(client, DEV0.address, DEV1.address, DEAD),
        "tasks": [await client.query_task(h) for h in task_hashes],
    }


async def test_a_revert_restores_head_app_hash_nonces_tasks_and_mempool(held: LocalChain) -> None:
    client = held.client
    task = await client.call(api.SUBMIT_TASK, task_params(DEV0.address))
    await client.dev_mine()
    pending = await client.transfer(DEV1, DEAD, E18)  # waits in the mempool
    before = await chain_view(client, task["taskHash"])
    snap = await client.dev_snapshot()

    await client.transfer(DEV0, DEAD, 2 * E18)
    await client.call(api.SUBMIT_TASK, task_params(DEV1.address))
    assert await client.dev_mine(3) == before["head"][0] + 3
    assert await chain_view(client, task["taskHash"]) != before

    assert await client.dev_revert(snap) is True
    assert await chain_view(client, task["taskHash"]) == before
    assert (await client.get_transaction(pending))["status"] == "pending"
    # the reverted chain goes on, and the pending transfer is in its next block
    assert await client.dev_mine() == before["head"][0] + 1
    assert (await client.get_transaction(pending))["status"] == "committed"


async def test_a_revert_consumes_its_snapshot_and_every_later_one(held: LocalChain) -> None:
    client = held.client
    first = await client.dev_snapshot()
    await client.dev_mine()
    second = await client.dev_snapshot()
    await client.dev_mine()
    third = await client.dev_snapshot()
    assert len({first, second, third}) == 3
    assert await client.dev_revert(second) is True
    assert await client.block_number() == 1
    assert await client.dev_revert(third) is False
    assert await client.dev_revert(second) is False
    assert await client.dev_revert(first) is True
    assert await client.block_number() == 0


async def test_the_same_snapshot_id_twice_reverts_to_the_same_app_hash(held: LocalChain) -> None:
    client = held.client
    await client.transfer(DEV0, DEAD, E18)
    snap = await client.dev_snapshot()
    await client.dev_mine()
    reached = (await client.health())["appHash"]
    assert await client.dev_revert(snap) is True
    await client.dev_mine()
    assert (await client.health())["appHash"] == reached


async def test_dev_mine_mines_at_once_while_automine_waits_its_interval(tmp_path: Path) -> None:
    async with local_chain(tmp_path / "ledger", automine_interval_ms=600_000) as running:
        client = running.client
        first = await client.transfer(DEV0, DEAD, E18)
        await client.wait_for_tx(first)
        height = await client.block_number()
        second = await client.transfer(DEV0, DEAD, E18)
        with pytest.raises(TimeoutError):  # the interval holds the next block back
            await running.node.wait_for_height(height + 1, timeout=0.5)
        assert (await client.get_transaction(second))["status"] == "pending"
        assert await client.dev_mine() == height + 1
        assert (await client.get_transaction(second))["status"] == "committed"


async def test_increase_time_moves_the_next_block_times(held: LocalChain) -> None:
    client = held.client
    await client.dev_mine()
    start = (await client.get_block("latest"))["time"]
    assert await client.dev_increase_time(3600) == 3600
    assert await client.dev_increase_time(60) == 3660
    await client.dev_mine()
    assert (await client.get_block("latest"))["time"] >= start + 3660


async def test_set_next_block_timestamp_pins_the_next_block(held: LocalChain) -> None:
    client = held.client
    at = 2_000_000_000
    assert await client.dev_set_next_block_timestamp(at) == at
    await client.dev_mine()
    assert (await client.get_block("latest"))["time"] == at
    await client.dev_mine()
    assert (await client.get_block("latest"))["time"] >= at


async def test_set_balance_is_exact_durable_and_keeps_the_supply(tmp_path: Path) -> None:
    data_dir = tmp_path / "ledger"
    async with local_chain(data_dir, run=False) as running:
        client = running.client
        await client.dev_set_balance(DEV1.address, 3 * E18)
        await client.dev_set_balance(DEAD, 5 * E18 + 7)
        assert (await client.get_account(DEV1.address))["balance"] == str(3 * E18)
        assert (await client.get_account(DEAD))["balance"] == str(5 * E18 + 7)
        tx = await client.transfer(DEV1, DEAD, E18)
        await client.dev_mine()  # the node checks the supply invariant after each block
        assert (await client.get_transaction(tx))["status"] == "committed"
        held = running.node.ledger.supply_check()
        assert held[0] == held[1]
    async with local_chain(data_dir, run=False) as reopened:  # the ledger's check passes
        balance = (await reopened.client.get_account(DEAD))["balance"]
        assert balance == str(6 * E18 + 7)


async def test_reset_goes_back_to_genesis(held: LocalChain) -> None:
    client = held.client
    genesis_view = await chain_view(client)
    snap = await client.dev_snapshot()
    await client.transfer(DEV0, DEAD, E18)
    await client.dev_mine(2)
    await client.dev_increase_time(100)
    await client.transfer(DEV0, DEAD, E18)  # pending
    assert await client.dev_reset() == 0
    assert await chain_view(client) == genesis_view
    assert await client.dev_revert(snap) is False  # the snapshots went too
    assert await client.dev_increase_time(0) == 0


async def test_a_revert_replays_new_blocks_to_a_subscriber(held: LocalChain) -> None:
    client = held.client
    snap = await client.dev_snapshot()
    heights: list[int] = []

    async def follow() -> None:
        async for note in client.subscribe("newBlocks", fromHeight=1):
            heights.append(note["height"])
            if len(heights) == 3:
                return

    async def two() -> bool:
        return len(heights) == 2

    follower = asyncio.create_task(follow())
    await client.dev_mine(2)
    await wait_until(two, "blocks 1 and 2 notified")
    assert await client.dev_revert(snap) is True
    await client.dev_mine()
    await asyncio.wait_for(follower, 5)
    assert heights == [1, 2, 1]


BAD_INPUT = [
    (api.DEV_MINE, {"blocks": 0}, "blocks"),
    (api.DEV_MINE, {"blocks": 1001}, "blocks"),
    (api.DEV_MINE, {"blocks": "2"}, "blocks"),
    (api.DEV_REVERT, {"id": "one"}, "id"),
    (api.DEV_REVERT, {"id": -1}, "id"),
    (api.DEV_REVERT, {}, "id"),
    (api.DEV_INCREASE_TIME, {"seconds": -5}, "seconds"),
    (api.DEV_INCREASE_TIME, {"seconds": 1.5}, "seconds"),
    (api.DEV_SET_NEXT_BLOCK_TIMESTAMP, {"timestamp": 0}, "timestamp"),  # before the head
    (api.DEV_SET_NEXT_BLOCK_TIMESTAMP, {"timestamp": "soon"}, "timestamp"),
    (api.DEV_SET_BALANCE, {"address": "0x12", "balance": "1"}, "address"),
    (api.DEV_SET_BALANCE, {"address": DEV0.address, "balance": "-1"}, "balance"),
    (api.DEV_SET_BALANCE, {"address": DEV0.address}, "balance"),
    (api.DEV_SNAPSHOT, {"extra": 1}, "extra"),
]


@pytest.mark.parametrize(("method", "params", "param"), BAD_INPUT)
async def test_bad_input_is_refused_and_changes_nothing(
    held: LocalChain, method: str, params: dict[str, Any], param: str
) -> None:
    client = held.client
    await client.dev_mine()
    before = await chain_view(client)
    error = await rpc_error(client, method, params)
    assert error.code == -32602
    assert error.data["param"] == param
    assert await chain_view(client) == before
    assert await client.dev_increase_time(0) == 0  # the clock did not move


def genesis_without_dev() -> Any:
    raw = dev_genesis()
    raw.pop("dev")
    return parse_genesis(raw)


@pytest.mark.parametrize("kind", ["several validators", "no dev section"])
@pytest.mark.parametrize(("method", "params"), DEV_METHODS)
async def test_chains_without_dev_controls_answer_method_not_found(
    tmp_path: Path, kind: str, method: str, params: list[Any]
) -> None:
    if kind == "several validators":
        genesis = parse_genesis(dev_genesis(validators=4))
        key = dev_validator_key(genesis, 0)
        reason = "several"
    else:
        genesis = genesis_without_dev()
        key = ValidatorKey.from_account_key(crypto.dev_private_key(DEV_MNEMONIC, 100))
        reason = "no dev section"
    async with local_chain(tmp_path / "ledger", genesis, run=False, key=key) as running:
        error = await rpc_error(running.client, method, params)
        assert error.code == -32601
        assert error.data["method"] == method
        assert reason in error.data["reason"]
        assert await running.client.block_number() == 0


async def test_a_batch_runs_dev_controls_in_order_with_other_calls(held: LocalChain) -> None:
    answers = await held.client.batch(
        [
            (api.BLOCK_NUMBER, []),
            (api.DEV_MINE, {"blocks": 2}),
            (api.BLOCK_NUMBER, []),
            (api.DEV_MINE, {"blocks": 0}),
            (api.DEV_RESET, []),
            (api.BLOCK_NUMBER, []),
        ]
    )
    assert answers[:3] == [0, 2, 2]
    assert getattr(answers[3], "code", None) == -32602
    assert answers[4:] == [0, 0]


KEYS = hs.lists(hs.binary(min_size=0, max_size=4), max_size=30, unique=True)


@given(keys=KEYS, prefix=hs.binary(max_size=2), start=hs.none() | hs.binary(max_size=4))
def test_the_sorted_reader_iterates_as_the_store_does(
    keys: list[bytes], prefix: bytes, start: bytes | None
) -> None:
    """The reader a restored state is checked through ranges as a store does."""
    items = {key: key[::-1] for key in keys}
    store = MemoryStore()
    store.write(items)
    reader = _SortedReader(items)
    for reverse in (False, True):
        got = list(reader.iterate(prefix, start=start, reverse=reverse))
        assert got == list(store.iterate(prefix, start=start, reverse=reverse))
