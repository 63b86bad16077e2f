"""The compute unit tells its listeners (the messenger unit) of every slot it keeps exactly
once (PROTOCOL 8.5): a listener that fails is told the same slot again at the next
evaluation, a slot kept but not told before a stop is told on the replay after it, and a slot
told is never told again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ao.cu import ComputeUnit, result_key
from ao.runtime import Result
from ao.store import JsonStore
from rpc.client import Wallet
from tests.helpers import LocalChain, local_chain

OWNER = Wallet.dev(1)
MODULE = "Handlers.add('ping', function (msg) return msg.Action == 'Ping' end, function () end)"


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[LocalChain]:
    async with local_chain(tmp_path / "ledger", run=False) as running:
        yield running


class Listener:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.told: list[int] = []

    async def __call__(self, pid: str, entry: dict[str, Any], result: Result) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the chain is not reachable")
        self.told.append(int(entry["slot"]))


async def spawned(chain: LocalChain, messages: int) -> str:
    pid = (await chain.client.ao_spawn(OWNER, module=MODULE)).id
    chain.node.produce_block()
    for _ in range(messages):
        await chain.client.ao_message(OWNER, pid, tags=[("Action", "Ping")])
    chain.node.produce_block()
    return pid


async def test_a_failed_listener_is_told_again_and_each_slot_once(
    manual: LocalChain, tmp_path: Path
) -> None:
    pid = await spawned(manual, 2)
    store = JsonStore(tmp_path / "store")
    try:
        cu = ComputeUnit(manual.client, store)
        listener = Listener(failures=1)
        cu.listeners.append(listener)
        with pytest.raises(ConnectionError):
            await cu.catch_up(pid)
        assert listener.told == []
        await cu.catch_up(pid)
        assert listener.told == [0, 1, 2]
        await cu.catch_up(pid)
        assert listener.told == [0, 1, 2]
    finally:
        store.close()


async def test_a_slot_kept_but_not_told_before_a_stop_is_told_after_it(
    manual: LocalChain, tmp_path: Path
) -> None:
    pid = await spawned(manual, 1)
    store = JsonStore(tmp_path / "store")
    try:
        first = ComputeUnit(manual.client, store)
        first.listeners.append(Listener())
        await first.catch_up(pid)
        # as if the unit stopped between keeping slot 1 and telling it
        key = result_key(pid, 1)
        kept = store.get(key)
        assert kept is not None and kept["told"] is True
        store.write({key: {**kept, "told": False}})
        again = ComputeUnit(manual.client, store)
        listener = Listener()
        again.listeners.append(listener)
        await again.catch_up(pid)
        assert listener.told == [1]
        assert store.get(key)["told"] is True
    finally:
        store.close()
