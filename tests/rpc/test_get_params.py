"""getParams (PROTOCOL 5.2): the genesis params a chain runs with, and a resource node started
without --genesis learning them from the chain (its forced errors follow the chain's
canaryRateBps, not the protocol's default)."""

from __future__ import annotations

import random
from pathlib import Path

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.protocol.genesis import Params, params_to_json, parse_params
from resource_node.backends.deterministic import DeterministicBackend
from resource_node.worker import ResourceNode, WorkerConfig
from rpc.client import InferchainClient, Wallet
from tests.helpers import local_chain, make_genesis

NODE = Wallet.dev(200)


async def test_get_params_answers_every_param_of_the_genesis(tmp_path: Path) -> None:
    genesis = make_genesis(canary_rate_bps=0, verification_quorum=3, canary_bonus=7)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        raw = await chain.client.call("getParams")
        assert raw == params_to_json(genesis.params)
        assert raw["canaryRateBps"] == 0 and raw["verificationQuorum"] == 3
        assert raw["canaryBonus"] == "7"
        assert await chain.client.get_params() == genesis.params


async def test_get_params_takes_no_params(tmp_path: Path) -> None:
    async with local_chain(tmp_path / "ledger", run=False) as chain:
        body = {"jsonrpc": "2.0", "id": 1, "method": "getParams", "params": {"x": 1}}
        async with aiohttp.ClientSession() as http, http.post(chain.url, json=body) as resp:
            answer = await resp.json()
        assert answer["error"]["code"] == -32602, answer
        assert "x" in str(answer["error"]["data"])


@settings(max_examples=50, deadline=None)
@given(
    rate=st.integers(0, 10_000),
    quorum=st.integers(1, 64),
    bonus=st.integers(0, 2**128),
)
def test_params_round_trip_through_their_wire_form(rate: int, quorum: int, bonus: int) -> None:
    params = Params(canary_rate_bps=rate, verification_quorum=quorum, canary_bonus=bonus)
    assert parse_params(params_to_json(params)) == params


async def test_a_node_without_genesis_file_learns_the_chains_canary_rate(tmp_path: Path) -> None:
    genesis = make_genesis(canary_rate_bps=0)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        node = ResourceNode(
            InferchainClient(chain.url, timeout=10.0),
            NODE,
            DeterministicBackend(),
            config=WorkerConfig(),  # no params given: the protocol's defaults (canary 100)
            rng=random.Random(7),
        )
        assert node.params.canary_rate_bps == Params().canary_rate_bps
        try:
            await node.setup()
            assert node.params == genesis.params
            assert node.info()["secrets"]["state"] == "off"
        finally:
            await node.cleanup()


async def test_a_node_given_a_genesis_file_keeps_its_params(tmp_path: Path) -> None:
    genesis = make_genesis(canary_rate_bps=0)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        from_file = Params(canary_rate_bps=0, verification_quorum=5)
        node = ResourceNode(
            InferchainClient(chain.url, timeout=10.0),
            NODE,
            DeterministicBackend(),
            config=WorkerConfig(params=from_file, genesis_hash="0x" + genesis.hash.hex()),
            rng=random.Random(7),
        )
        try:
            await node.setup()
            assert node.params == from_file
        finally:
            await node.cleanup()


async def test_deadlines_longer_than_the_chain_of_secrets_still_let_a_node_compute(
    tmp_path: Path,
) -> None:
    """A chain whose deadlines add up to more than a dev node's 65,536 heights of secrets: the
    node keeps at most half its chain in hand for them, so it still computes (it used to
    count the chain as run out at once and never take a task)."""
    genesis = make_genesis(compute_deadline_blocks=100_000, verify_deadline_blocks=100_000)
    async with local_chain(tmp_path / "ledger", genesis, run=False) as chain:
        receipt = await chain.client.submit_task(
            Wallet.dev(0), prompts="Hello", model_options='{"model":"demo"}', target_count=1
        )
        chain.node.produce_block()
        node = ResourceNode(
            InferchainClient(chain.url, timeout=10.0),
            NODE,
            DeterministicBackend(),
            config=WorkerConfig(),
            rng=random.Random(7),
        )
        try:
            await node.setup()
            report = await node.run_once()
            assert (report.results, report.error) == (1, None), report
            assert node.info()["secrets"]["state"] == "ready"
        finally:
            await node.cleanup()
        chain.node.produce_block()
        task = await chain.client.query_task(receipt.task_hash)
        assert [e["resourceNode"] for e in task["executionInfo"]] == [NODE.address]
