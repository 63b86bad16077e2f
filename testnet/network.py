"""A network of validator and resource node processes of one genesis, on loopback or where a
`Placement` puts them (a `testnet.netns.Plan`: each process in its namespace on its own
address; `testnet.compose`: a container each, reached by its service's name): the
`perturb.Cluster` both the testnet supervisor (`testnet.launcher`) and the process-level tests
run, and whose command lines a Compose project runs.

Validator k is `python -m rpc --validator k` on `ports[k]` with its ledger in
`root/validator-k` and its log in `root/validator-k.log`, the others as its `--peer`s; resource
node i works through validator i mod N, with its state in `root/node-i`, its log in
`root/node-i.log`, serving the models of the genesis's resource node i (its `models`, which the
chain routes tasks by). The genesis is `root/genesis.json`, written by whoever builds the
network.
Faults: SIGKILL, SIGSTOP/SIGCONT, a foreign genesis; cutting links goes through the dev-chain
control of the transport (`perturb`), with the token each validator writes into its data dir.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from chain.protocol import wire
from chain.protocol.genesis import Genesis
from chain.protocol.gossip import DEV_TOKEN_FILE
from resource_node.backends.faults import Faults
from resource_node.worker import CRASH_EXIT_CODE
from rpc.client import DEFAULT_TIMEOUT, InferchainClient, TransportError
from testnet.commands import (
    AO_READY,
    RESOURCE_NODE_READY,
    VALIDATOR_READY,
    ao_args,
    resource_node_args,
    validator_args,
)
from testnet.process import START_TIMEOUT_S, LaunchError, Process, run_to_exit, stop_all

HEALTH_POLL_S = 0.1
LOOPBACK = "127.0.0.1"


class Placement(Protocol):
    """Where each process (`validator-0`, `node-1`, `ao`) listens and how the others reach it."""

    def bind(self, name: str) -> str:
        """The address it listens on."""
        ...

    def reach(self, name: str) -> str:
        """The host the others' URLs of it name."""
        ...

    def command_prefix(self, name: str) -> list[str]:
        """The command that runs it there ([]: none)."""
        ...

    def dev_control_from(self) -> list[str]:
        """The addresses besides loopback the validators let set their dev links."""
        ...


class Network:
    """The processes of one network and a client of each validator (`perturb.Cluster`)."""

    def __init__(
        self,
        genesis: Genesis,
        root: Path,
        ports: Sequence[int],
        *,
        block_time_ms: int | None = None,
        log_level: str | None = None,
        check_invariants: bool = False,
        node_faults: Mapping[int, str] | None = None,
        request_timeout_s: float = DEFAULT_TIMEOUT,
        node_ports: Sequence[int] | None = None,
        validator_extra: Sequence[str] = (),
        placement: Placement | None = None,
        keys: Path | None = None,
    ) -> None:
        if len(ports) != len(genesis.validators):
            raise ValueError(f"{len(genesis.validators)} validators, {len(ports)} ports")
        self.genesis = genesis
        self.root = root
        self.genesis_path = root / "genesis.json"
        self.ports = list(ports)
        self.placement = placement  # None: every process on loopback
        self.keys = keys  # a directory of key files (`key_file`); None: the dev keys by index
        self.urls = [
            f"http://{self.reach(f'validator-{k}')}:{port}" for k, port in enumerate(ports)
        ]
        self.block_time_ms = block_time_ms
        self.log_level = log_level
        self.check_invariants = check_invariants
        self.node_faults = dict(node_faults or {})  # resource node -> its --fault spec
        self.request_timeout_s = request_timeout_s
        self.validator_extra = tuple(validator_extra)  # options given to every validator
        self.node_ports = list(node_ports) if node_ports is not None else None  # None: free
        self.validators: list[Process | None] = [None] * len(ports)
        self.nodes: dict[int, Process] = {}
        self.ao: Process | None = None  # the AO unit, when one is started
        self.apus: dict[str, Any] | None = None  # its GET /apus: the APUS processes' ids
        self.clients = [self._client(k) for k in range(len(ports))]
        self._retired: list[InferchainClient] = []

    def data_dir(self, k: int) -> Path:
        return self.root / f"validator-{k}"

    def host_of(self, name: str) -> str | None:
        """The address process `name` (`validator-0`, `node-1`, `ao`) listens on; None (its
        default, loopback) without a placement."""
        return None if self.placement is None else self.placement.bind(name)

    def reach(self, name: str) -> str:
        """The host of process `name` in the URLs of it."""
        return LOOPBACK if self.placement is None else self.placement.reach(name)

    def prefix_of(self, name: str) -> list[str]:
        """The command that runs process `name` where it is placed ([]: none)."""
        return [] if self.placement is None else self.placement.command_prefix(name)

    def key_file(self, name: str) -> Path | None:
        """The key file of process `name` (`KEYS/<name>.key`, the AO unit's bridge's
        `KEYS/ao-bridge.key`), or None when the processes take the dev keys by index."""
        return None if self.keys is None else self.keys / f"{name}.key"

    def validator_args(self, k: int, genesis_path: Path | None = None) -> list[str]:
        return validator_args(
            genesis_path or self.genesis_path,
            self.data_dir(k),
            port=self.ports[k],
            host=self.host_of(f"validator-{k}"),
            validator=k,
            key_file=self.key_file(f"validator-{k}"),
            peers=[url for j, url in enumerate(self.urls) if j != k],
            dev_control_from=[] if self.placement is None else self.placement.dev_control_from(),
            block_time_ms=self.block_time_ms,
            check_invariants=self.check_invariants,
            log_level=self.log_level,
            extra=self.validator_extra,
        )

    def spawn_validator(self, k: int) -> Process:
        """Start validator k on its data (do not wait for it), with a fresh client: pooled
        connections to the process before do not survive it."""
        process = Process(
            f"validator {k}",
            self.validator_args(k),
            self.root / f"validator-{k}.log",
            ready_prefix=VALIDATOR_READY,
            prefix=self.prefix_of(f"validator-{k}"),
        )
        self.validators[k] = process
        process.spawn()
        self._retired.append(self.clients[k])
        self.clients[k] = self._client(k)
        return process

    async def wait_serving(self, ks: Iterable[int] | None = None) -> None:
        """Until validators `ks` (default: all) answer GET /health for this chain; LaunchError
        if one exits first, does not answer within START_TIMEOUT_S or serves another chain."""
        expected = wire.hex0x(self.genesis.hash)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        for k in range(len(self.urls)) if ks is None else ks:
            process = self.validators[k]
            assert process is not None
            client = self.clients[k]
            while (health := await health_of(client)) is None:
                if not process.running():
                    raise LaunchError(process.exit_report())
                if loop.time() > deadline:
                    raise LaunchError(
                        f"{process.name} did not answer on {client.url} in {START_TIMEOUT_S:g} s"
                        f"\n  log: {process.log_path}"
                    )
                await asyncio.sleep(HEALTH_POLL_S)
            if health.get("genesisHash") != expected:
                raise LaunchError(
                    f"{client.url} answers for another chain (genesis hash "
                    f"{health.get('genesisHash')}): is another testnet running? "
                    "Stop it or choose another --port"
                )

    def spawn_node(self, i: int) -> Process:
        """Start resource node i (do not wait for it)."""
        fault = self.node_faults.get(i)
        crashes = fault is not None and Faults.parse([fault]).crash_after is not None
        process = Process(
            f"resource node {i}",
            self.node_args(i),
            self.root / f"node-{i}.log",
            ready_prefix=RESOURCE_NODE_READY,
            may_exit_with=CRASH_EXIT_CODE if crashes else None,
            prefix=self.prefix_of(f"node-{i}"),
        )
        self.nodes[i] = process
        process.spawn()
        return process

    def node_args(self, i: int) -> list[str]:
        """Resource node i's command line: dev node i through validator i mod N, with its
        `--fault` and the models of its genesis entry."""
        fault = self.node_faults.get(i)
        name = f"node-{i}"
        port = 0 if self.node_ports is None else self.node_ports[i]
        host = self.host_of(name)
        # A node that listens on every address registers the URL the others reach it at.
        wildcard = host is not None and host != self.reach(name) and port
        return resource_node_args(
            self.urls[i % len(self.urls)],
            i,
            key_file=self.key_file(name),
            state_dir=self.root / name,
            http_port=port,
            host=host,
            endpoint=f"http://{self.reach(name)}:{port}" if wildcard else None,
            log_level=self.log_level,
            faults=[fault] if fault is not None else [],
            genesis_path=self.genesis_path,
            models=self.node_models(i),
        )

    def node_models(self, i: int) -> str | None:
        """Resource node i's `--models`: those of its genesis entry, so that it takes the
        tasks the chain lets it take; None (every model) for a node the genesis lacks."""
        nodes = self.genesis.resource_nodes
        return nodes[i].models if i < len(nodes) else None

    def processes(self) -> list[Process]:
        """Every process started so far (the last one of each validator and node, the AO
        unit)."""
        found = [*(p for p in self.validators if p is not None), *self.nodes.values()]
        return found if self.ao is None else [*found, self.ao]

    def ao_args(self, port: int = 0) -> list[str]:
        """The AO unit's command line: over validator 0, its store in `root/ao`."""
        return ao_args(
            self.urls[0],
            self.root / "ao",
            port=port,
            host=self.host_of("ao"),
            key_file=self.key_file("ao"),
            bridge_key_file=self.key_file("ao-bridge"),
            log_level=self.log_level,
        )

    def spawn_ao(self, port: int = 0) -> Process:
        """Start the AO unit over validator 0 (do not wait for it)."""
        process = Process(
            "AO unit",
            self.ao_args(port),
            self.root / "ao.log",
            ready_prefix=AO_READY,
            prefix=self.prefix_of("ao"),
        )
        self.ao = process
        process.spawn()
        return process

    async def start_ao(self, port: int = 0) -> None:
        process = self.spawn_ao(port)
        await asyncio.to_thread(process.wait_ready)
        self.apus = await apus_of(process.url)

    # perturb.Cluster

    @property
    def size(self) -> int:
        return len(self.urls)

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    def client(self, k: int) -> InferchainClient:
        return self.clients[k]

    def url(self, k: int) -> str:
        return self.urls[k]

    def dev_token(self, k: int) -> str:
        """The token of validator k's dev link control, which it wrote into its data dir."""
        return (self.data_dir(k) / DEV_TOKEN_FILE).read_text(encoding="ascii").strip()

    def kill_validator(self, k: int) -> None:
        self._validator(k).kill()

    async def start_validator(self, k: int) -> None:
        self.spawn_validator(k)
        await self.wait_serving([k])

    async def refused_with_foreign_genesis(self, k: int) -> str:
        raw: dict[str, Any] = dict(self.genesis.raw)
        raw["chainId"] = self.genesis.chain_id + 1
        path = self.root / "foreign-genesis.json"
        path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        args = self.validator_args(k, path)
        prefix = self.prefix_of(f"validator-{k}")
        exited = await asyncio.to_thread(run_to_exit, args, START_TIMEOUT_S, prefix)
        if exited.timed_out:
            raise AssertionError("a validator with a foreign genesis kept running")
        if exited.returncode == 0:
            raise AssertionError("a validator with a foreign genesis exited 0")
        return exited.stderr

    def pause_validator(self, k: int) -> None:
        self._validator(k).pause()

    def resume_validator(self, k: int) -> None:
        self._validator(k).resume()

    def kill_node(self, i: int) -> None:
        self.nodes[i].kill()

    async def start_node(self, i: int) -> None:
        process = self.spawn_node(i)
        await asyncio.to_thread(process.wait_ready)

    # The end

    async def close_clients(self) -> None:
        for client in [*self.clients, *self._retired]:
            await client.close()

    def stop(self, timeout: float) -> None:
        """Stop every process cleanly (`stop_all`): the resource nodes, then the validators."""
        stop_all([] if self.ao is None else [self.ao], timeout)
        stop_all(self.nodes.values(), timeout)
        stop_all((p for p in self.validators if p is not None), timeout)

    async def close(self) -> None:
        """Close the clients and SIGKILL whatever still runs."""
        await self.close_clients()
        for process in self.processes():
            process.close()

    def _validator(self, k: int) -> Process:
        process = self.validators[k]
        assert process is not None, f"validator {k} was never started"
        return process

    def _client(self, k: int) -> InferchainClient:
        return InferchainClient(self.urls[k], timeout=self.request_timeout_s)


async def apus_of(url: str) -> dict[str, Any] | None:
    """The AO unit's `GET /apus` (the shipped token's and router's ids), or None when it ships
    none (`--no-apus`) or does not answer."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(url + "/apus") as response,
        ):
            if response.status != 200:
                return None
            info: dict[str, Any] = await response.json()
            return info
    except (aiohttp.ClientError, TimeoutError):
        return None


async def health_of(client: InferchainClient) -> dict[str, Any] | None:
    """GET /health, or None if the validator does not answer."""
    try:
        return await client.health()
    except TransportError:
        return None
