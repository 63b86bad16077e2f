"""Fixtures of the AO unit's conformance suite: the unit under test, reached over HTTP only.

`pytest tests/conformance/ao --target URL` checks the AO unit at URL (PROTOCOL 8.7);
`--chain URL` names the validator behind it, for the rows that compare the chain's list of
processes before and after bad input (without it they check the process's schedule only,
and the signed row skips). The rows send unsigned requests, which only a dev chain takes
(PROTOCOL 5.4): against a unit over another chain they skip, saying so.

Without `--target` the suite starts, once per session (per xdist worker), a validator of the
dev genesis with 200 ms blocks and `python -m ao` over it, and stops both at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from rpc.client import InferchainClient
from testnet.commands import AO_READY, ao_args
from testnet.process import Process
from tests.conformance.ao.support import COUNTER, PING, AoUnit, Reference, error_text
from tests.helpers import ValidatorProcess, make_genesis, write_genesis

BLOCK_TIME_MS = 200


def pytest_addoption(parser: pytest.Parser) -> None:
    with contextlib.suppress(ValueError):  # registered already (the Ocean suite's)
        parser.addoption(
            "--chain",
            metavar="URL",
            default=None,
            help="the validator RPC behind the node or unit at --target",
        )


@dataclass
class AoTarget:
    """The unit under test, the chain behind it (when known), and what it was probed for."""

    url: str
    chain_url: str | None
    owned: bool
    dev_mode: bool | None = None  # does the unit's chain take unsigned requests?
    refusal: str = ""  # what the unit answered an unsigned spawn, when it refused it
    reference: Reference | None = None  # made once, by the first row that needs it


def stop(process: Process) -> None:
    """SIGTERM (a clean stop), then make sure it is gone."""
    if process.proc is not None and process.proc.poll() is None:
        process.terminate()
    process.close()


@pytest.fixture(scope="session")
def ao_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AoTarget]:
    url = request.config.getoption("--target", default=None)
    if url:
        chain_url = request.config.getoption("--chain", default=None)
        yield AoTarget(url.rstrip("/"), chain_url.rstrip("/") if chain_url else None, False)
        return
    base: Path = tmp_path_factory.mktemp("ao-conformance")
    genesis = write_genesis(base / "genesis.json", make_genesis(block_time_ms=BLOCK_TIME_MS))
    validator = ValidatorProcess(genesis, base / "validator")
    unit: Process | None = None
    try:
        rpc = validator.start().rstrip("/")
        unit = Process(
            "ao unit", ao_args(rpc, base / "unit"), base / "unit.log", ready_prefix=AO_READY
        )
        yield AoTarget(unit.start().rstrip("/"), rpc, True)
    finally:
        for process in (unit, validator):
            if process is not None:
                stop(process)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def unit(ao_target: AoTarget, http: aiohttp.ClientSession) -> AoUnit:
    """The unit, once it is known to take unsigned requests (a dev chain behind it)."""
    client = AoUnit(ao_target.url, http)
    if ao_target.dev_mode is None:
        answer = await client.post("/process", {"module": ""})
        if answer.status == 200:
            ao_target.dev_mode = True
        else:
            ao_target.dev_mode = False
            ao_target.refusal = error_text(answer)
    if not ao_target.dev_mode:
        pytest.skip(
            "the unit's chain does not take unsigned requests (only a dev chain does, "
            f"PROTOCOL 5.4): {ao_target.refusal}"
        )
    return client


@pytest.fixture
async def chain(ao_target: AoTarget) -> AsyncIterator[InferchainClient | None]:
    """The chain behind the unit, when known (None otherwise)."""
    if ao_target.chain_url is None:
        yield None
        return
    async with InferchainClient(ao_target.chain_url) as client:
        yield client


@pytest.fixture
async def ledger(chain: InferchainClient | None) -> InferchainClient:
    """The chain behind the unit: the rows that need it skip without `--chain`."""
    if chain is None:
        pytest.skip("needs --chain URL, the validator behind the unit at --target")
    return chain


@pytest.fixture
async def reference(ao_target: AoTarget, unit: AoUnit) -> Reference:
    """The processes of the bad-input rows, spawned once per session."""
    if ao_target.reference is None:
        pid = await unit.spawn(COUNTER)
        mid = await unit.send(pid, "Increment", "1")
        await unit.processed(mid)
        ao_target.reference = Reference(pid, mid, await unit.spawn(PING))
    return ao_target.reference
