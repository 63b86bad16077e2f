"""A network of validator and resource node processes on loopback for the consensus and
fault tests.

Each validator is `python -m rpc --validator K` in its own process with its own LevelDB
directory and log, on a port chosen by the OS before the network starts (the peers must
know each other's URLs), and with the others as `--peer`s. Resource node i works through
validator i mod N. Faults: SIGKILL, SIGSTOP/SIGCONT, and cutting links with the dev-chain
control of the transport (`rpc.p2p`).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from chain.protocol.genesis import Genesis, Params, dev_genesis, parse_genesis
from rpc.client import InferchainClient
from testnet import perturb
from tests.e2e.processes import run_to_exit
from tests.helpers import ResourceNodeProcess, ValidatorProcess, write_genesis

T = TypeVar("T")

POLL_S = 0.05


def free_ports(count: int) -> list[int]:
    """Ports the OS considers free now (all held open together, so they are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def network_genesis(validators: int, block_time_ms: int = 200, **params: Any) -> Genesis:
    return parse_genesis(
        dev_genesis(
            validators=validators,
            params=Params(block_time_ms=block_time_ms, **params),
        )
    )


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float,
    what: str,
) -> T:
    """Poll `probe` until `done(value)`; fail with `what` and the last value after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {value}")
        await asyncio.sleep(POLL_S)


class LocalNetwork:
    """N validator processes of one genesis; `close()` kills whatever still runs."""

    def __init__(self, root: Path, genesis: Genesis, *extra: str) -> None:
        self.root = root
        self.genesis = genesis
        self.genesis_path = write_genesis(root / "genesis.json", genesis)
        self.size = len(genesis.validators)
        self.ports = free_ports(self.size)
        self.urls = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.extra = extra
        self.processes: list[ValidatorProcess | None] = [None] * self.size
        self.clients = [InferchainClient(url) for url in self.urls]
        self.resource_nodes: dict[int, ResourceNodeProcess] = {}
        self._retired: list[InferchainClient] = []
        self._node_count = 0

    def data_dir(self, k: int) -> Path:
        return self.root / f"validator-{k}"

    def start(self, k: int) -> ValidatorProcess:
        peers = [arg for j, url in enumerate(self.urls) if j != k for arg in ("--peer", url)]
        process = ValidatorProcess(
            self.genesis_path,
            self.data_dir(k),
            "--validator",
            str(k),
            "--port",
            str(self.ports[k]),
            "--check-invariants",
            *peers,
            *self.extra,
        )
        self.processes[k] = process
        process.start()
        # a fresh client: pooled connections to the process before do not survive it
        self._retired.append(self.clients[k])
        self.clients[k] = InferchainClient(self.urls[k])
        return process

    def start_all(self) -> None:
        for k in range(self.size):
            self.start(k)

    def kill(self, k: int) -> None:
        process = self.processes[k]
        assert process is not None
        process.kill()
        process.close()

    def running(self) -> list[int]:
        return [
            k
            for k, p in enumerate(self.processes)
            if p is not None and p.proc is not None and p.proc.poll() is None
        ]

    def log(self, k: int) -> str:
        process = self.processes[k]
        return process.log_path.read_text() if process is not None else ""

    def pause(self, k: int) -> None:
        process = self.processes[k]
        assert process is not None and process.proc is not None
        process.proc.send_signal(signal.SIGSTOP)

    def resume(self, k: int) -> None:
        process = self.processes[k]
        assert process is not None and process.proc is not None
        process.proc.send_signal(signal.SIGCONT)

    def start_resource_node(self, i: int, *extra: str) -> ResourceNodeProcess:
        via = self.urls[i % self.size]
        node = ResourceNodeProcess(via, i, self.root / f"node-{i}", *extra)
        self.resource_nodes[i] = node
        self._node_count = max(self._node_count, i + 1)
        node.start()
        return node

    def kill_resource_node(self, i: int) -> None:
        node = self.resource_nodes.pop(i)
        node.kill()
        node.close()

    # testnet.perturb.Cluster

    @property
    def node_count(self) -> int:
        return self._node_count

    def client(self, k: int) -> InferchainClient:
        return self.clients[k]

    def url(self, k: int) -> str:
        return self.urls[k]

    def kill_validator(self, k: int) -> None:
        self.kill(k)

    async def start_validator(self, k: int) -> None:
        await asyncio.to_thread(self.start, k)

    async def refused_with_foreign_genesis(self, k: int) -> str:
        raw = dict(self.genesis.raw)
        raw["chainId"] = self.genesis.chain_id + 1
        path = write_genesis(self.root / "foreign-genesis.json", parse_genesis(raw))
        exited = await asyncio.to_thread(run_to_exit, path, self.data_dir(k), "--validator", str(k))
        if exited.returncode == 0:
            raise AssertionError("the validator started with a foreign genesis")
        return exited.stderr

    def pause_validator(self, k: int) -> None:
        self.pause(k)

    def resume_validator(self, k: int) -> None:
        self.resume(k)

    def kill_node(self, i: int) -> None:
        self.kill_resource_node(i)

    async def start_node(self, i: int) -> None:
        await asyncio.to_thread(self.start_resource_node, i)

    async def close(self) -> None:
        for client in [*self.clients, *self._retired]:
            await client.close()
        for node in self.resource_nodes.values():
            node.close()
        for process in self.processes:
            if process is not None:
                process.close()

    # Reads

    async def heights(self, ks: list[int] | None = None) -> dict[int, int]:
        """The heights of validators `ks` (default: those running) that answer."""
        return await perturb.heights(self, self.running() if ks is None else ks)

    async def wait_heights(self, ks: list[int], height: int, timeout: float = 30.0) -> None:
        await eventually(
            lambda: self.heights(ks),
            lambda seen: len(seen) == len(ks) and min(seen.values()) >= height,
            timeout,
            f"validators {ks} at height {height}",
        )

    async def blocks(self, k: int, last: int) -> list[dict[str, Any]]:
        return [await self.clients[k].get_block(h) for h in range(1, last + 1)]

    async def assert_same_chain(self, ks: list[int], last: int) -> None:
        """Validators `ks` hold the same blocks 1..last, with the same hashes and appHashes."""
        reference = [(b["hash"], b["appHash"]) for b in await self.blocks(ks[0], last)]
        for k in ks[1:]:
            mine = [(b["hash"], b["appHash"]) for b in await self.blocks(k, last)]
            assert mine == reference, f"validator {k} and validator {ks[0]} differ"
