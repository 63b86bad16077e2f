"""The node's jobs across a restart, over HTTP: the node the suite started is killed (SIGKILL)
while a job runs and started again on the same state directory and port; the finished jobs
read as they did, and the one that ran ends failed with a ContainerError of the container it
was in, saying the node stopped."""

from __future__ import annotations

import asyncio

import pytest

from tests.conformance.infernet.support import (
    RESTART_CLIENT,
    CallerFactory,
    Target,
    prompt,
)

CUT_CHAINS = [
    pytest.param(["slow"], id="one stage"),
    pytest.param(["first", "slow"], id="cut in its second stage"),
]


@pytest.mark.parametrize("chain", CUT_CHAINS)
async def test_jobs_survive_a_kill_and_the_running_one_ends_failed(
    owned: Target, callers: CallerFactory, chain: list[str]
) -> None:
    assert owned.restart is not None
    client = await callers(RESTART_CLIENT)
    before = await client.ids()
    done = await client.create(["first", "second"], prompt("restart done"))
    finished = await client.finished(done, intermediate=True)
    assert finished["status"] == "success", finished
    cut = await client.create(chain, prompt("restart cut"))
    await client.running(cut)
    ids = await client.ids()
    assert ids == [*before, done, cut]
    await client.session.close()  # no connection of this client to the node as it dies

    await asyncio.to_thread(owned.restart)

    client = await callers(RESTART_CLIENT)
    assert await client.ids() == ids
    assert await client.result(done, intermediate=True) == finished
    failed = await client.result(cut, intermediate=True)
    assert failed["status"] == "failed", failed
    assert "stopped" in failed["result"]["error"], failed
    assert cut in await client.ids(pending=False)
    assert cut not in await client.ids(pending=True)
    assert failed["result"]["container"] == "slow", failed
    assert [s["container"] for s in failed["intermediate_results"]] == chain[:-1], failed
    # the node takes jobs again
    again = await client.create(["first"], prompt("restart again"))
    assert (await client.finished(again))["status"] == "success"
