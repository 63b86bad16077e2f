"""GET /metrics of a validator (PROTOCOL 5.7): a real validator on loopback, scraped and read
with prometheus_client's own parser, after transactions admitted and refused (single calls and
a batch whose signatures are recovered ahead) and blocks committed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chain.protocol import blocks
from chain.protocol.types import Transfer
from rpc.client import RpcError, presign
from rpc.errors import METHOD_NOT_FOUND, NONCE_MISMATCH
from rpc.server import RECOVER_AHEAD_MIN
from tests.helpers import LocalChain, local_chain, wait_until
from tests.rpc.support import CHAIN_ID, DEAD, DEV0, DEV1, mine, task_params

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[LocalChain]:
    """A dev chain whose blocks the test produces (`mine`)."""
    async with local_chain(tmp_path / "ledger", run=False) as running:
        yield running


async def scrape(chain: LocalChain) -> Samples:
    """Every sample of GET /metrics by (name, labels), checked to be the text format."""
    async with aiohttp.ClientSession() as http, http.get(chain.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample `name` with exactly `labels`; 0 when it is not there (never counted)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def names(samples: Samples) -> set[str]:
    return {name for name, _labels in samples}


def held_bytes(chain: LocalChain) -> int:
    return sum(blocks.tx_size(tx) for tx in chain.node.mempool.held())


async def test_metrics_follow_admissions_refusals_and_blocks(manual: LocalChain) -> None:
    before = await scrape(manual)
    assert value(before, "inferchain_height") == 0
    assert value(before, "inferchain_round") == 0
    assert value(before, "inferchain_peers_up") == 0  # a one-validator chain has no peers
    assert value(before, "inferchain_mempool_txs") == 0
    assert value(before, "inferchain_mempool_bytes") == 0
    for status in ("submitted", "processing", "completed", "verified", "failed"):
        assert ("inferchain_tasks", frozenset({("status", status)})) in before
        assert value(before, "inferchain_tasks", status=status) == 0
    assert value(before, "inferchain_block_commit_seconds_count") == 0

    # a task from an unlocked dev account, and a call refused for its nonce
    receipt = await manual.client.call("submitTask", task_params(DEV0.address))
    with pytest.raises(RpcError) as refused:
        await manual.client.call("submitTask", task_params(DEV0.address, nonce=7))
    assert refused.value.code == NONCE_MISMATCH

    pending = await scrape(manual)
    assert value(pending, "inferchain_txs_admitted_total", method="submitTask") == 1
    code = str(NONCE_MISMATCH)
    assert value(pending, "inferchain_txs_rejected_total", method="submitTask", code=code) == 1
    assert value(pending, "inferchain_mempool_txs") == 1
    assert value(pending, "inferchain_mempool_bytes") == held_bytes(manual) > 0
    assert value(pending, "inferchain_rpc_seconds_count", method="submitTask") == 2
    assert value(pending, "inferchain_height") == 0

    # a batch of signed transfers, recovered ahead of their turns, one of them refused
    transfers = [
        presign(Transfer(DEV1.address, nonce, DEAD, 1), CHAIN_ID, DEV1.private_key)
        for nonce in [*range(RECOVER_AHEAD_MIN), RECOVER_AHEAD_MIN + 1]
    ]
    answers = await manual.client.batch([(tx.method, tx.params) for tx in transfers])
    assert not any(isinstance(a, RpcError) for a in answers[:-1])
    assert isinstance(answers[-1], RpcError) and answers[-1].code == NONCE_MISMATCH

    batched = await scrape(manual)
    assert value(batched, "inferchain_txs_admitted_total", method="transfer") == RECOVER_AHEAD_MIN
    assert value(batched, "inferchain_txs_rejected_total", method="transfer", code=code) == 1
    assert value(batched, "inferchain_rpc_seconds_count", method="transfer") == len(transfers)
    assert value(batched, "inferchain_mempool_txs") == 1 + RECOVER_AHEAD_MIN
    assert value(batched, "inferchain_mempool_bytes") == held_bytes(manual)
    assert value(batched, "inferchain_mempool_bytes") > value(pending, "inferchain_mempool_bytes")

    assert mine(manual) == 1
    after = await scrape(manual)
    assert value(after, "inferchain_height") == 1
    assert value(after, "inferchain_mempool_txs") == 0
    assert value(after, "inferchain_mempool_bytes") == 0
    stats = await manual.client.task_stats()
    assert stats["submitted"] == 1
    for status in ("submitted", "processing", "completed", "verified", "failed"):
        assert value(after, "inferchain_tasks", status=status) == stats[status]
    assert value(after, "inferchain_block_commit_seconds_count") == 1
    assert value(after, "inferchain_block_commit_seconds_bucket", le="+Inf") == 1
    assert value(after, "inferchain_block_commit_seconds_sum") > 0
    task = await manual.client.query_task(receipt["taskHash"])
    assert task["status"] == "submitted"
    # the counters only count: a block changes none of them
    assert value(after, "inferchain_txs_admitted_total", method="submitTask") == 1
    assert value(after, "inferchain_txs_admitted_total", method="transfer") == RECOVER_AHEAD_MIN


async def test_reads_are_timed_not_counted_as_transactions(manual: LocalChain) -> None:
    await manual.client.call("blockNumber")
    await manual.client.call("submitRequest", task_params(DEV0.address))  # submitTask's alias
    with pytest.raises(RpcError) as unknown:
        await manual.client.call("noSuchMethod")
    assert unknown.value.code == METHOD_NOT_FOUND
    with pytest.raises(RpcError) as bad:
        await manual.client.call("getAccount", {"address": "nope"})
    samples = await scrape(manual)
    assert value(samples, "inferchain_rpc_seconds_count", method="blockNumber") == 1
    assert value(samples, "inferchain_rpc_seconds_count", method="getAccount") == 1
    # an alias is counted under the method it names; an unknown name under one label
    assert value(samples, "inferchain_rpc_seconds_count", method="submitTask") == 1
    assert value(samples, "inferchain_txs_admitted_total", method="submitTask") == 1
    assert value(samples, "inferchain_rpc_seconds_count", method="unknown") == 1
    labelled = {dict(labels).get("method") for name, labels in samples if "rpc_seconds" in name}
    assert "noSuchMethod" not in labelled and "submitRequest" not in labelled
    for name, labels in samples:
        if name.startswith("inferchain_txs_"):
            assert dict(labels)["method"] == "submitTask", (name, labels)
    assert bad.value.code != -32603


async def test_each_automined_block_is_timed(chain: LocalChain) -> None:
    """The producer's own loop (automine): every block it commits is observed once."""
    await chain.client.call("submitTask", task_params(DEV0.address))

    async def mined() -> Samples | None:
        samples = await scrape(chain)
        return samples if value(samples, "inferchain_height") >= 1 else None

    samples = await wait_until(mined, "a block with the task")
    height = value(samples, "inferchain_height")
    assert value(samples, "inferchain_block_commit_seconds_count") == height
    assert value(samples, "inferchain_tasks", status="submitted") == 1


async def test_metrics_leave_the_other_routes_as_they_were(manual: LocalChain) -> None:
    samples = await scrape(manual)
    assert {"inferchain_height", "inferchain_mempool_txs", "inferchain_tasks"} <= names(samples)
    health = await manual.client.health()
    assert health["status"] == "ok" and health["height"] == 0
    async with aiohttp.ClientSession() as http:
        async with http.post(manual.url + "/metrics", data=b"{}") as resp:
            assert resp.status == 405
        async with http.get(manual.url + "/p2p/status") as resp:
            assert resp.status == 200
