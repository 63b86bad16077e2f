"""Fixtures of the process-level tests: validator processes that are always killed at
teardown, the dev genesis written to a file, and a network of four validators."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chain.protocol.genesis import Genesis
from tests.e2e.network import LocalNetwork, network_genesis
from tests.e2e.processes import StartValidator
from tests.helpers import ValidatorProcess, make_genesis, write_genesis


@pytest.fixture
def validators() -> Iterator[StartValidator]:
    """`start(genesis_path, data_dir, *extra)` -> a started ValidatorProcess; every process
    started through it is killed (if still running) when the test ends, pass or fail."""
    started: list[ValidatorProcess] = []

    def start(genesis_path: Path, data_dir: Path, *extra: str) -> ValidatorProcess:
        process = ValidatorProcess(genesis_path, data_dir, *extra)
        started.append(process)  # before start(): a failed start is cleaned up too
        process.start()
        return process

    yield start
    for process in started:
        process.close()


@pytest.fixture
def dev_genesis(tmp_path: Path) -> tuple[Genesis, Path]:
    """make_genesis() (automine) written to tmp_path/genesis.json."""
    genesis = make_genesis()
    return genesis, write_genesis(tmp_path / "genesis.json", genesis)


@pytest.fixture
async def network(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    """Four validator processes of equal stake (not started: `network.start_all()`), all
    killed at teardown."""
    net = LocalNetwork(tmp_path, network_genesis(4))
    try:
        yield net
    finally:
        await net.close()
