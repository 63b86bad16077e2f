"""Fixtures of the Ocean compute-to-data suite: a resource node and the validator it is paid
through, reached over HTTP only.

`pytest tests/conformance/ocean --target URL --chain URL` checks the resource node at URL,
paid through the validator at `--chain` by the funded dev accounts of a dev chain (the
well-known mnemonic); the node must allow the suite's polling (`--rate-limit 100000/60`,
as the suite's own node runs), and the tests that stop a job in the middle need its `slow`
container (the stop test skips without one). Without `--target`, the suite starts a validator
(the dev genesis, automine) and dev resource node 0 as processes, with a second, slow
container (`slow`: the deterministic model at 4 tokens a second) for the tests that stop or
kill the node in the middle of a job.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from rpc.client import InferchainClient, Wallet
from testnet.commands import RESOURCE_NODE_READY, resource_node_args
from testnet.process import Process
from tests.conformance.support import DEV_WALLETS, MIN_FUNDS
from tests.helpers import ValidatorProcess, make_genesis, write_genesis

SLOW_CONTAINER = "slow"
NODE_CONFIG = {
    "containers": [
        {"id": "deterministic", "backend": "deterministic", "description": "the built-in model"},
        {
            "id": SLOW_CONTAINER,
            "backend": "deterministic",
            "backend_options": {"tokens_per_second": 4},
            "description": "the built-in model at 4 tokens a second",
        },
    ]
}


def pytest_addoption(parser: pytest.Parser) -> None:
    with contextlib.suppress(ValueError):  # registered already
        parser.addoption(
            "--chain",
            metavar="URL",
            default=None,
            help="Ocean suite: the validator RPC the resource node at --target is paid through",
        )


class NodeProcess(Process):
    """`python -m resource_node` as dev resource node 0 with the suite's config."""

    def __init__(self, rpc_url: str, base: Path) -> None:
        config = base / "node.json"
        config.write_text(json.dumps(NODE_CONFIG))
        args = resource_node_args(
            rpc_url,
            0,
            state_dir=base / "state",
            http_port=0,
            extra=("--config", str(config), "--rate-limit", "100000/60"),
        )
        super().__init__("resource node", args, base / "node.log", ready_prefix=RESOURCE_NODE_READY)


@dataclass
class OceanTarget:
    """The resource node under test and the chain that pays it."""

    url: str
    chain_url: str
    node: NodeProcess | None = None
    funded: list[Wallet] = field(default_factory=list)

    @property
    def owned(self) -> bool:
        return self.node is not None

    def restart(self, *, kill: bool) -> None:
        """Stop the node (SIGKILL or SIGTERM) and start it again on the same state."""
        assert self.node is not None
        if kill:
            self.node.kill()
        else:
            self.node.terminate()
            self.node.close()
        self.url = self.node.start().rstrip("/")


@pytest.fixture(scope="session")
def ocean_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OceanTarget]:
    url = request.config.getoption("--target", default=None)
    if url:
        chain_url = request.config.getoption("--chain", default=None)
        if not chain_url:
            pytest.fail("--target URL needs --chain URL: the validator the node is paid through")
        yield OceanTarget(url.rstrip("/"), chain_url.rstrip("/"))
        return
    base = tmp_path_factory.mktemp("ocean")
    genesis = write_genesis(base / "genesis.json", make_genesis())
    validator = ValidatorProcess(genesis, base / "validator")
    node: NodeProcess | None = None
    try:
        chain_url = validator.start().rstrip("/")
        node = NodeProcess(chain_url, base)
        yield OceanTarget(node.start().rstrip("/"), chain_url, node)
    finally:
        for process in (node, validator):
            if process is not None and process.proc is not None:
                if process.proc.poll() is None:
                    process.terminate()
                process.close()


@pytest.fixture
async def chain(ocean_target: OceanTarget) -> AsyncIterator[InferchainClient]:
    async with InferchainClient(ocean_target.chain_url) as client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def funder(ocean_target: OceanTarget, chain: InferchainClient) -> Wallet:
    """A dev account with funds on the chain."""
    if not ocean_target.funded:
        for wallet in DEV_WALLETS:
            account = await chain.get_account(wallet.address)
            if int(account["balance"]) >= 10 * MIN_FUNDS:
                ocean_target.funded.append(wallet)
    if not ocean_target.funded:
        pytest.skip("no dev account (m/44'/60'/0'/0/0..9 of the dev mnemonic) has funds here")
    return ocean_target.funded[0]
