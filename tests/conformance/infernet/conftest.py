"""Fixtures of the Infernet conformance suite: the node under test, reached over HTTP only.

`pytest tests/conformance/infernet --target URL` checks the Infernet node API served at URL
(the `--target` option of `tests/conformance/conftest.py`); its containers are read from its
`GET /info`. Without `--target` the suite starts, once per session (per xdist worker), a
validator of the dev genesis, a stub OpenAI-compatible server that fails every completion,
and two resource node processes:

- the main node, `--config` with the containers `first`, `second` (external, the built-in
  model), `inner` (not external), `local` (allowed_ips 10.0.0.0/8, which refuses 127.0.0.1),
  `broken` (the openai backend at the stub) and `slow` (the built-in model at 2 tokens a
  second), and a rate limit no run reaches; the restart row kills it (SIGKILL) and starts it
  again on the same state directory and port;
- the limited node, `--rate-limit 3/600 --max-running-jobs 1` with `first` and `slow` given
  by `--container`: the 429 and 503 rows.

The rows that need what only such a node has skip against a foreign target, with the reason.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from testnet.commands import RESOURCE_NODE_READY, resource_node_args
from testnet.process import Process
from tests.conformance.infernet.stub import FailingOpenAIServer
from tests.conformance.infernet.support import (
    MAIN_CLIENT,
    Caller,
    CallerFactory,
    Target,
    check_info,
)
from tests.helpers import ValidatorProcess, make_genesis, write_genesis

INFO_TIMEOUT_S = 10.0
SLOW_TOKENS_PER_SECOND = 2  # a job of `slow` runs 8 to 16 s (16 to 32 words)
MAIN_RATE_LIMIT = "100000/60"  # never reached by a run
LIMITED_RATE_LIMIT = "3/600"

MAIN_CONTAINERS: list[dict[str, Any]] = [
    {"id": "first", "model": "first", "description": "the built-in model, as model first"},
    {"id": "second", "model": "second", "description": "the built-in model, as model second"},
    {"id": "inner", "model": "inner", "external": False},
    {"id": "local", "model": "local", "allowed_ips": ["10.0.0.0/8"]},
    {
        "id": "slow",
        "model": "slow",
        "backend_options": {"tokens_per_second": SLOW_TOKENS_PER_SECOND},
    },
]
LIMITED_CONTAINERS: list[dict[str, Any]] = [
    {"id": "first", "model": "first"},
    {
        "id": "slow",
        "model": "slow",
        "backend_options": {"tokens_per_second": SLOW_TOKENS_PER_SECOND},
    },
]


def broken_container(stub_url: str) -> dict[str, Any]:
    """The container whose every run fails: the openai backend at the failing stub (exact
    verification, so that its start asks the stub for /v1/models only)."""
    return {
        "id": "broken",
        "model": "stub-failing-model",
        "backend": "openai",
        "backend_options": {"base_url": stub_url, "verify": "exact", "timeout": 5},
    }


class NodeProcess:
    """A resource node process of the suite; `restart()` kills it (SIGKILL) and starts it
    again with the same command on the port it had."""

    def __init__(
        self, name: str, rpc_url: str, dev_index: int, base: Path, extra: list[str]
    ) -> None:
        self.name = name
        self.rpc_url = rpc_url
        self.dev_index = dev_index
        self.state_dir = base / name
        self.log_path = base / f"{name}.log"
        self.extra = ["--endpoint", "off", *extra]
        self.process = self._process(0)

    def _process(self, port: int) -> Process:
        args = resource_node_args(
            self.rpc_url,
            self.dev_index,
            state_dir=self.state_dir,
            http_port=port,
            extra=self.extra,
        )
        return Process(self.name, args, self.log_path, ready_prefix=RESOURCE_NODE_READY)

    @property
    def url(self) -> str:
        return self.process.url

    def restart(self) -> None:
        port = urlsplit(self.url).port
        assert port is not None, self.url
        self.process.kill()
        self.process = self._process(port)
        self.process.start()

    def close(self) -> None:
        self.process.kill()


def read_info(url: str) -> dict[str, Any] | None:
    """The target's GET /info, None when it serves no such route (404)."""
    try:
        with urllib.request.urlopen(url + "/info", timeout=INFO_TIMEOUT_S) as resp:
            info = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        pytest.fail(f"GET {url}/info answered HTTP {exc.code}")
    check_info(info)
    return dict(info)


def foreign_target(url: str) -> Target:
    info = read_info(url)
    if info is None:
        pytest.skip(f"{url} serves no Infernet GET /info (404): --target a resource node")
    if not any(c["external"] for c in info["containers"]):
        pytest.skip(f"{url} lists no external container in GET /info: no job can start")
    return Target(url, owned=False, info=info)


@pytest.fixture(scope="session")
def owned_nodes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, NodeProcess] | None]:
    """The processes the suite starts (None with --target): the main and the limited node,
    started side by side once the validator and the stub serve."""
    if request.config.getoption("--target"):
        yield None
        return
    base = tmp_path_factory.mktemp("infernet")
    genesis = write_genesis(base / "genesis.json", make_genesis())
    validator = ValidatorProcess(genesis, base / "validator")
    stub = FailingOpenAIServer()
    nodes: dict[str, NodeProcess] = {}
    try:
        rpc_url = validator.start()
        stub_url = stub.start()
        config = base / "main.json"
        document = {
            "containers": [*MAIN_CONTAINERS[:4], broken_container(stub_url), MAIN_CONTAINERS[4]],
            "server": {"rate_limit": MAIN_RATE_LIMIT},
        }
        config.write_text(json.dumps(document, indent=2))
        nodes["main"] = NodeProcess("main", rpc_url, 0, base, ["--config", str(config)])
        limited = ["--rate-limit", LIMITED_RATE_LIMIT, "--max-running-jobs", "1"]
        for container in LIMITED_CONTAINERS:
            limited += ["--container", json.dumps(container)]
        nodes["limited"] = NodeProcess("limited", rpc_url, 1, base, limited)
        for node in nodes.values():
            node.process.spawn()
        for node in nodes.values():
            node.process.wait_ready()
        yield nodes
    finally:
        for node in nodes.values():
            node.close()
        if validator.running():
            validator.terminate()
        validator.close()
        stub.stop()


@pytest.fixture(scope="session")
def infernet(request: pytest.FixtureRequest, owned_nodes: dict[str, NodeProcess] | None) -> Target:
    """The node under test: --target, else the main node the suite started."""
    if owned_nodes is None:
        return foreign_target(str(request.config.getoption("--target")).rstrip("/"))
    main = owned_nodes["main"]
    info = read_info(main.url)
    assert info is not None, f"the main node serves no GET /info: {main.log_path}"
    return Target(main.url, owned=True, info=info, restart=main.restart)


@pytest.fixture
def owned(infernet: Target) -> Target:
    """The main node; the row skips against a foreign target."""
    if not infernet.owned:
        pytest.skip(
            "needs a node the suite starts (without --target): its containers inner, local, "
            "broken and slow, or a restart"
        )
    return infernet


@pytest.fixture(scope="session")
def limited_url(owned_nodes: dict[str, NodeProcess] | None) -> str:
    if owned_nodes is None:
        pytest.skip(
            f"needs a node the suite starts with --rate-limit {LIMITED_RATE_LIMIT} and "
            "--max-running-jobs 1 (without --target): provoking them is not the suite's business"
        )
    return owned_nodes["limited"].url


@pytest.fixture
async def callers(infernet: Target) -> AsyncIterator[CallerFactory]:
    """`await callers(address=None, url=None)`: a client of the node (or of `url`) whose
    requests leave from `address`; closed when the test ends. A second address skips the
    row unless the node listens on loopback."""
    async with AsyncExitStack() as stack:

        async def make(address: str | None = None, url: str | None = None) -> Caller:
            target = url or infernet.url
            second = address is not None and address != MAIN_CLIENT and url is None
            if second and not infernet.loopback():
                pytest.skip(
                    f"needs a second client address ({address}): {infernet.url} is not on loopback"
                )
            connector = aiohttp.TCPConnector(local_addr=(address, 0) if address else None)
            session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
            return Caller(target, session, address, limited=url is not None)

        yield make


@pytest.fixture
async def caller(callers: CallerFactory) -> Caller:
    """The suite's usual client (the default local address, 127.0.0.1 on loopback)."""
    return await callers()
